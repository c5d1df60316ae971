// N-API bindings of the reduced-precision kernels (bf16 / fp16-storage GEMM, bf16 attention).
#pragma once
#include <napi.h>

namespace inferjit {
void registerBf16(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
