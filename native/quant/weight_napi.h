// N-API argument helpers for weight matrices: [format, data, scales | null, N, K, group] arrays
// (src/llm/weights.ts nativeWeightSpec, the eager quant_linear kernel) checked and turned into the
// WeightRef the kernels of qmatmul.h read, without copying the bytes.
#pragma once
#include <napi.h>

#include <string>

#include "../common.h"
#include "qmatmul.h"

namespace inferjit {

struct Bytes {
  const uint8_t* data = nullptr;
  size_t bytes = 0;
};

// Any typed array as raw bytes.
inline Bytes bytesOf(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  napi_typedarray_type type;
  size_t length = 0, byteOffset = 0;
  void* data = nullptr;
  napi_value buffer;
  if (!v.IsTypedArray() || napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &byteOffset) != napi_ok) {
    throw Napi::TypeError::New(env, what + ": expected a typed array");
  }
  size_t size = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: size = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: size = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: size = 8; break;
    default: size = 1;
  }
  return {static_cast<const uint8_t*>(data), length * size};
}

inline const char* const kFormatNames[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "int8", "int4", "q8_0x16", "q4_0x16", "q4_k", "q5_k", "q6_k", "q4_kx16", "q5_kx16", "q6_kx16"};

// [format, data, scales | null, N, K, group] -> WeightRef, checked against the expected shape.
inline WeightRef weightOf(const Napi::Env& env, const Napi::Value& v, const std::string& what, int64_t N, int64_t K) {
  need(env, v.IsArray(), what + ": expected [format, data, scales, N, K, group]");
  Napi::Array a = v.As<Napi::Array>();
  need(env, a.Length() == 6, what + ": expected [format, data, scales, N, K, group]");
  WeightRef w;
  w.format = static_cast<int>(i64(a.Get(0u)));
  w.N = i64(a.Get(3u));
  w.K = i64(a.Get(4u));
  w.group = static_cast<int>(i64(a.Get(5u)));
  if (const char* bad = checkWeight(w.format, w.K, w.group)) throw Napi::RangeError::New(env, what + ": " + bad);
  if (N >= 0 && K >= 0 && (w.N != N || w.K != K)) {
    throw Napi::RangeError::New(env, what + ": shape is [" + std::to_string(w.N) + ", " + std::to_string(w.K) +
                                         "], expected [" + std::to_string(N) + ", " + std::to_string(K) + "]");
  }
  Bytes b = bytesOf(env, a.Get(1u), what + " data");
  const size_t want = weightDataBytes(w.format, w.N, w.K);
  if (b.bytes < want) {
    throw Napi::RangeError::New(env, what + ": " + kFormatNames[w.format] + " data holds " + std::to_string(b.bytes) +
                                         " bytes, the shape needs " + std::to_string(want));
  }
  w.data = b.data;
  const size_t nScales = weightScaleCount(w.format, w.N, w.K, w.group);
  if (nScales > 0) {
    auto s = viewOf<float>(env, a.Get(2u), (what + " scales").c_str());
    need(env, s.length >= nScales, what + ": scales are too short");
    w.scales = s.data;
  }
  return w;
}

}  // namespace inferjit
