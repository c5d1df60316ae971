// N-API bindings of the reduced-precision kernels (bf16 / fp16-storage GEMM, bf16 attention).
#pragma once
#include <napi.h>

#include "gemm_bf16.h"

namespace inferjit {
void registerBf16(Napi::Env env, Napi::Object exports);

// The packed weight behind a JS handle from packBf16 / packF16 (or loadPackedBf16 / loadPackedF16),
// for native callers such as the plan executor; throws a JS TypeError naming `what` otherwise.
const PackedBf16* packedBf16FromValue(Napi::Env env, const Napi::Value& v, const char* what);
const PackedF16* packedF16FromValue(Napi::Env env, const Napi::Value& v, const char* what);
}  // namespace inferjit
