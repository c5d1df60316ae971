// Registration hooks of the kernel families in native/ops/ (called once from registerOps).
#pragma once
#include <napi.h>

namespace inferjit {
void registerElementwise(Napi::Env env, Napi::Object exports);
void registerNorm(Napi::Env env, Napi::Object exports);
void registerMovement(Napi::Env env, Napi::Object exports);
void registerConv(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
