// Data movement for any element size: permute (blocked transposes, memcpy runs where the last
// dim stays contiguous) and gather/embedding along one axis with i32 or i64 indices.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../common.h"
#include "../threadpool.h"
#include "registry.h"

namespace inferjit {
namespace {

struct RawView {
  uint8_t* data = nullptr;
  size_t bytes = 0;
  size_t elemSize = 0;
};
RawView rawOf(const Napi::Env& env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(env, std::string(what) + ": expected a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  napi_typedarray_type type;
  size_t length = 0, off = 0;
  void* data = nullptr;
  napi_value buf;
  napi_get_typedarray_info(env, v, &type, &length, &data, &buf, &off);
  return {static_cast<uint8_t*>(data), length * ta.ElementSize(), ta.ElementSize()};
}

template <typename T>
void permuteTyped(const T* x, T* y, const std::vector<int64_t>& os, const std::vector<int64_t>& is) {
  const int rank = static_cast<int>(os.size());
  std::vector<int64_t> ostr(rank);
  int64_t acc = 1;
  for (int d = rank - 1; d >= 0; d--) {
    ostr[d] = acc;
    acc *= os[d];
  }
  const int64_t total = acc;
  if (total == 0) return;
  const int last = rank - 1;
  if (is[last] == 1) {
    // Rows of the last dim are contiguous in both: copy them whole.
    const int64_t len = os[last], rows = total / len;
    parallelFor(std::min<int64_t>(rows, numThreads() * 4), [&](int64_t c, int) {
      const int64_t chunks = std::min<int64_t>(rows, numThreads() * 4);
      const int64_t lo = rows * c / chunks, hi = rows * (c + 1) / chunks;
      for (int64_t r = lo; r < hi; r++) {
        int64_t rem = r, src = 0;
        for (int d = last - 1; d >= 0; d--) {
          src += (rem % os[d]) * is[d];
          rem /= os[d];
        }
        std::memcpy(y + r * len, x + src, len * sizeof(T));
      }
    });
    return;
  }
  // A true transpose: out dim j reads the input's contiguous dim. Tile (j, last) in 32×32 blocks
  // so both the reads and the writes stay within a few cache lines.
  int j = 0;
  for (int d = 0; d < rank; d++)
    if (is[d] == 1 && os[d] > 1) j = d;
  std::vector<int> others;
  for (int d = 0; d < rank; d++)
    if (d != j && d != last) others.push_back(d);
  int64_t outerCount = 1;
  for (int d : others) outerCount *= os[d];
  const int64_t A = os[j], B = os[last];
  const int64_t tilesA = (A + 31) / 32, tilesB = (B + 31) / 32;
  parallelFor(outerCount * tilesA, [&](int64_t t, int) {
    const int64_t o = t / tilesA, ta = t % tilesA;
    int64_t rem = o, src = 0, dst = 0;
    for (int k = static_cast<int>(others.size()) - 1; k >= 0; k--) {
      const int d = others[k];
      const int64_t idx = rem % os[d];
      rem /= os[d];
      src += idx * is[d];
      dst += idx * ostr[d];
    }
    const int64_t a0 = ta * 32, a1 = std::min(A, a0 + 32);
    for (int64_t tb = 0; tb < tilesB; tb++) {
      const int64_t b0 = tb * 32, b1 = std::min(B, b0 + 32);
      for (int64_t a = a0; a < a1; a++) {
        T* yr = y + dst + a * ostr[j];
        const T* xr = x + src + a * is[j];
        for (int64_t b = b0; b < b1; b++) yr[b] = xr[b * is[last]];
      }
    }
  });
}

// permute(x, out, inShape, perm)
Napi::Value Permute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RawView x = rawOf(env, info[0], "permute: x"), y = rawOf(env, info[1], "permute: out");
  auto shape = ints(env, info[2]);
  auto perm = ints(env, info[3]);
  const int rank = static_cast<int>(shape.size());
  need(env, static_cast<int>(perm.size()) == rank && x.elemSize == y.elemSize && x.bytes == y.bytes, "permute: bad arguments");
  std::vector<int64_t> inStr(rank);
  int64_t acc = 1;
  for (int d = rank - 1; d >= 0; d--) {
    inStr[d] = acc;
    acc *= shape[d];
  }
  need(env, static_cast<size_t>(acc) * x.elemSize == x.bytes, "permute: shape does not match x");
  if (acc == 0) return env.Undefined();
  // Out dims (dropping size-1 dims), their input strides, then merge dims that stay adjacent.
  std::vector<int64_t> os, is;
  for (int d = 0; d < rank; d++) {
    need(env, perm[d] >= 0 && perm[d] < rank, "permute: bad perm");
    const int64_t n = shape[perm[d]];
    if (n == 1) continue;
    if (!os.empty() && is.back() == inStr[perm[d]] * n) {
      os.back() *= n;
      is.back() = inStr[perm[d]];
    } else {
      os.push_back(n);
      is.push_back(inStr[perm[d]]);
    }
  }
  if (os.empty()) {
    std::memcpy(y.data, x.data, x.bytes);
    return env.Undefined();
  }
  switch (x.elemSize) {
    case 1: permuteTyped(reinterpret_cast<const uint8_t*>(x.data), reinterpret_cast<uint8_t*>(y.data), os, is); break;
    case 2: permuteTyped(reinterpret_cast<const uint16_t*>(x.data), reinterpret_cast<uint16_t*>(y.data), os, is); break;
    case 4: permuteTyped(reinterpret_cast<const uint32_t*>(x.data), reinterpret_cast<uint32_t*>(y.data), os, is); break;
    default: permuteTyped(reinterpret_cast<const uint64_t*>(x.data), reinterpret_cast<uint64_t*>(y.data), os, is); break;
  }
  return env.Undefined();
}

// gather(x, indices, out, outer, size, inner, allowNegative) -> undefined, or the first bad index.
// x is [outer, size, inner]; out is [outer, count, inner] with out[o, j] = x[o, idx[j]].
Napi::Value Gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RawView x = rawOf(env, info[0], "gather: x"), idx = rawOf(env, info[1], "gather: indices"), y = rawOf(env, info[2], "gather: out");
  const int64_t outer = i64(info[3]), size = i64(info[4]), inner = i64(info[5]);
  const bool allowNegative = flag(info[6]);
  need(env, idx.elemSize == 4 || idx.elemSize == 8, "gather: indices must be i32 or i64");
  const int64_t count = static_cast<int64_t>(idx.bytes / idx.elemSize);
  const size_t es = x.elemSize;
  need(env, x.bytes == static_cast<size_t>(outer * size * inner) * es && y.bytes == static_cast<size_t>(outer * count * inner) * es && y.elemSize == es,
       "gather: sizes do not match");
  std::vector<int64_t> pos(count);
  for (int64_t j = 0; j < count; j++) {
    int64_t v = idx.elemSize == 8 ? reinterpret_cast<const int64_t*>(idx.data)[j] : reinterpret_cast<const int32_t*>(idx.data)[j];
    if (v < -size || v >= size || (!allowNegative && v < 0)) return Napi::Number::New(env, static_cast<double>(v));
    pos[j] = v < 0 ? v + size : v;
  }
  const size_t rowBytes = static_cast<size_t>(inner) * es;
  const int64_t rows = outer * count;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(numThreads() * 4, static_cast<int64_t>(rows * rowBytes / 65536)));
  parallelFor(chunks, [&](int64_t c, int) {
    const int64_t lo = rows * c / chunks, hi = rows * (c + 1) / chunks;
    for (int64_t r = lo; r < hi; r++) {
      const int64_t o = r / count, j = r % count;
      std::memcpy(y.data + r * rowBytes, x.data + (o * size + pos[j]) * rowBytes, rowBytes);
    }
  });
  return env.Undefined();
}

}  // namespace

void registerMovement(Napi::Env env, Napi::Object exports) {
  exports.Set("permute", Napi::Function::New(env, Permute));
  exports.Set("gather", Napi::Function::New(env, Gather));
}

}  // namespace inferjit
