// XXH64 content hash (the cache keys of packed weights and the checksums of large cache files).
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace inferjit {
uint64_t xxh64(const void* data, size_t len, uint64_t seed);
void registerHash(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
