// Helpers for the N-API bindings: typed-array views without copies and argument checks that
// turn a size mismatch into a JS RangeError instead of a wild write.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace inferjit {

template <typename T>
struct View {
  T* data = nullptr;
  size_t length = 0;
  explicit operator bool() const { return data != nullptr; }
};

template <typename T>
inline View<T> viewOf(const Napi::Env& env, const Napi::Value& v, const char* what, bool optional = false) {
  if (optional && (v.IsNull() || v.IsUndefined())) return {};
  napi_typedarray_type type;
  size_t length = 0, byteOffset = 0;
  void* data = nullptr;
  napi_value buffer;
  // napi_get_typedarray_info's data pointer already includes the byte offset.
  if (!v.IsTypedArray() || napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &byteOffset) != napi_ok) {
    throw Napi::TypeError::New(env, std::string(what) + ": expected a typed array");
  }
  size_t size = 0;
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: size = 1; break;
    case napi_int16_array: case napi_uint16_array: size = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: size = 4; break;
    default: size = 8;
  }
  if (size != sizeof(T)) throw Napi::TypeError::New(env, std::string(what) + ": wrong element size");
  if (data == nullptr) data = reinterpret_cast<void*>(alignof(T));  // zero-length arrays may have no buffer
  return {static_cast<T*>(data), length};
}

inline int64_t i64(const Napi::Value& v) { return static_cast<int64_t>(v.As<Napi::Number>().DoubleValue()); }
inline double f64(const Napi::Value& v) { return v.As<Napi::Number>().DoubleValue(); }
inline bool flag(const Napi::Value& v) { return v.ToBoolean().Value(); }

// Integer list from a JS array of numbers or a Float64Array/Int32Array (null -> empty).
inline std::vector<int64_t> ints(const Napi::Env& env, const Napi::Value& v) {
  std::vector<int64_t> out;
  if (v.IsNull() || v.IsUndefined()) return out;
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() == napi_float64_array) {
      auto a = v.As<Napi::Float64Array>();
      for (size_t i = 0; i < a.ElementLength(); i++) out.push_back(static_cast<int64_t>(a[i]));
      return out;
    }
    if (ta.TypedArrayType() == napi_int32_array) {
      auto a = v.As<Napi::Int32Array>();
      for (size_t i = 0; i < a.ElementLength(); i++) out.push_back(a[i]);
      return out;
    }
  }
  if (!v.IsArray()) throw Napi::TypeError::New(env, "expected an array of integers");
  Napi::Array arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(i64(arr.Get(i)));
  return out;
}

inline void need(const Napi::Env& env, bool ok, const std::string& msg) {
  if (!ok) throw Napi::RangeError::New(env, msg);
}

}  // namespace inferjit
