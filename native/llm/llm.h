// Native LLM path: a Llama-family forward pass (prefill or decode step) in one call, over a paged
// KV cache (LlamaEngine; retiring with src/llm/engine.ts: the quantized-weight bindings are native/quant/quant_napi.cc).
#pragma once
#include <napi.h>

namespace inferjit {
void registerLlm(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
