// Non-GEMM kernel families (elementwise, norms, movement, conv) and their N-API bindings.
#pragma once
#include <napi.h>

namespace inferjit {
void registerOps(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
