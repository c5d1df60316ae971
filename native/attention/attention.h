// Fused scaled-dot-product attention (flash-attention style) and its N-API binding.
#pragma once
#include <napi.h>

namespace inferjit {
void registerAttention(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
