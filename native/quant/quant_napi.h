// N-API bindings of the weight-only quantized kernels: quantMatmul, quantizeWeight, packWeight.
#pragma once
#include <napi.h>

namespace inferjit {
void registerQuant(Napi::Env env, Napi::Object exports);
// w8Gemm: the W8A8 / FP8 GEMM for eager calls (w8a8_napi.cc).
void registerW8a8(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
