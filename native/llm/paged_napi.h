// N-API bindings of the paged KV kernels (eager kv_write / paged_attention); see paged_napi.cc.
#pragma once
#include <napi.h>

namespace inferjit {
void registerPagedKv(Napi::Env env, Napi::Object exports);
}
