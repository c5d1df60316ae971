// Data movement for any element size: strided copies (blocked transposes, memcpy runs where the
// last dim stays contiguous), permute on top of them, and gather/embedding along one axis with i32
// or i64 indices.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../common.h"
#include "../threadpool.h"
#include "kernels_core.h"
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
  // The output walks x through the permuted input strides; it is itself contiguous.
  std::vector<int64_t> os(rank), is(rank), ostr(rank);
  for (int d = 0; d < rank; d++) {
    need(env, perm[d] >= 0 && perm[d] < rank, "permute: bad perm");
    os[d] = shape[perm[d]];
    is[d] = inStr[perm[d]];
  }
  acc = 1;
  for (int d = rank - 1; d >= 0; d--) {
    ostr[d] = acc;
    acc *= os[d];
  }
  need(env, static_cast<size_t>(acc) * x.elemSize == y.bytes, "permute: bad perm");
  copyStrided(x.data, y.data, static_cast<int>(x.elemSize), os, is, ostr);
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
  int64_t bad = 0;
  if (!gatherRows(x.data, idx.data, static_cast<int>(idx.elemSize), count, y.data, static_cast<int>(es), outer, size, inner, allowNegative, &bad)) {
    return Napi::Number::New(env, static_cast<double>(bad));
  }
  return env.Undefined();
}

}  // namespace

bool gatherRows(const uint8_t* x, const void* indices, int indexBytes, int64_t count, uint8_t* out, int elemSize, int64_t outer,
                int64_t size, int64_t inner, bool allowNegative, int64_t* badIndex) {
  std::vector<int64_t> pos(count);
  for (int64_t j = 0; j < count; j++) {
    const int64_t v = indexBytes == 8 ? static_cast<const int64_t*>(indices)[j] : static_cast<const int32_t*>(indices)[j];
    if (v < -size || v >= size || (!allowNegative && v < 0)) {
      *badIndex = v;
      return false;
    }
    pos[j] = v < 0 ? v + size : v;
  }
  const size_t rowBytes = static_cast<size_t>(inner) * elemSize;
  const int64_t rows = outer * count;
  parallelSpans(rows, std::max<int64_t>(1, static_cast<int64_t>(65536 / std::max<size_t>(rowBytes, 1))), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const int64_t o = r / count, j = r % count;
      std::memcpy(out + r * rowBytes, x + (o * size + pos[j]) * rowBytes, rowBytes);
    }
  });
  return true;
}

namespace {

template <typename T>
void copyTyped(const T* src, T* dst, const std::vector<int64_t>& sh, const std::vector<int64_t>& s, const std::vector<int64_t>& d) {
  const int rank = static_cast<int>(sh.size());
  const int last = rank - 1;
  int64_t total = 1;
  for (int64_t x : sh) total *= x;
  const int64_t len = sh[last], rows = total / len;
  auto rowOffsets = [&](int64_t r, int skip, int64_t& so, int64_t& dof) {
    so = 0;
    dof = 0;
    for (int k = last - 1; k >= 0; k--) {
      if (k == skip) continue;
      const int64_t idx = r % sh[k];
      r /= sh[k];
      so += idx * s[k];
      dof += idx * d[k];
    }
  };
  if (s[last] == 1 && d[last] == 1) {
    parallelSpans(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(len, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; r++) {
        int64_t so, dof;
        rowOffsets(r, -1, so, dof);
        std::memcpy(dst + dof, src + so, len * sizeof(T));
      }
    });
    return;
  }
  // A transpose: some dim j reads the source's contiguous dim while the destination's last dim is
  // contiguous. Tile (j, last) in 32×32 blocks so reads and writes both stay in a few cache lines.
  int j = -1;
  if (d[last] == 1)
    for (int k = 0; k < last; k++)
      if (s[k] == 1) j = k;
  if (j >= 0) {
    int64_t outer = 1;
    for (int k = 0; k < last; k++)
      if (k != j) outer *= sh[k];
    const int64_t A = sh[j], Bn = sh[last];
    const int64_t tilesA = (A + 31) / 32, tilesB = (Bn + 31) / 32;
    parallelSpans(outer * tilesA, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; t++) {
        const int64_t o = t / tilesA, ta = t % tilesA;
        // offsets of the "other" dims (all but j and last)
        int64_t rem = o, so = 0, dof = 0;
        for (int k = last - 1; k >= 0; k--) {
          if (k == j) continue;
          const int64_t idx = rem % sh[k];
          rem /= sh[k];
          so += idx * s[k];
          dof += idx * d[k];
        }
        const int64_t a0 = ta * 32, a1 = std::min(A, a0 + 32);
        for (int64_t tb = 0; tb < tilesB; tb++) {
          const int64_t b0 = tb * 32, b1 = std::min(Bn, b0 + 32);
          for (int64_t a = a0; a < a1; a++) {
            T* yr = dst + dof + a * d[j];
            const T* xr = src + so + a;
            for (int64_t b = b0; b < b1; b++) yr[b] = xr[b * s[last]];
          }
        }
      }
    });
    return;
  }
  parallelSpans(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(len, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      int64_t so, dof;
      rowOffsets(r, -1, so, dof);
      for (int64_t i = 0; i < len; i++) dst[dof + i * d[last]] = src[so + i * s[last]];
    }
  });
}

}  // namespace

void copyStrided(const uint8_t* src, uint8_t* dst, int elemSize, const std::vector<int64_t>& shape, const std::vector<int64_t>& ss,
                 const std::vector<int64_t>& ds) {
  std::vector<int64_t> sh, s, d;
  for (size_t i = 0; i < shape.size(); i++) {
    if (shape[i] == 0) return;
    if (shape[i] == 1) continue;
    if (!sh.empty() && s.back() == ss[i] * shape[i] && d.back() == ds[i] * shape[i]) {
      sh.back() *= shape[i];
      s.back() = ss[i];
      d.back() = ds[i];
    } else {
      sh.push_back(shape[i]);
      s.push_back(ss[i]);
      d.push_back(ds[i]);
    }
  }
  if (sh.empty()) {
    std::memcpy(dst, src, elemSize);
    return;
  }
  switch (elemSize) {
    case 1: copyTyped(reinterpret_cast<const uint8_t*>(src), reinterpret_cast<uint8_t*>(dst), sh, s, d); break;
    case 2: copyTyped(reinterpret_cast<const uint16_t*>(src), reinterpret_cast<uint16_t*>(dst), sh, s, d); break;
    case 4: copyTyped(reinterpret_cast<const uint32_t*>(src), reinterpret_cast<uint32_t*>(dst), sh, s, d); break;
    default: copyTyped(reinterpret_cast<const uint64_t*>(src), reinterpret_cast<uint64_t*>(dst), sh, s, d); break;
  }
}

void registerMovement(Napi::Env env, Napi::Object exports) {
  exports.Set("permute", Napi::Function::New(env, Permute));
  exports.Set("gather", Napi::Function::New(env, Gather));
}

}  // namespace inferjit
