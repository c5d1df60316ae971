// Native LLM path: a Llama-family forward pass (prefill or decode step) in one call, over a paged
// KV cache, plus the weight-only matmul and weight quantization entry points it is built from.
#pragma once
#include <napi.h>

namespace inferjit {
void registerLlm(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
