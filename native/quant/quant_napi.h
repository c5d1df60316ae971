// N-API bindings of the weight-only quantized kernels: quantMatmul, quantizeWeight, packWeight.
#pragma once
#include <napi.h>

namespace inferjit {
void registerQuant(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
