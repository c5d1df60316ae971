// Paged attention kernels (layout in paged_attention.h). One task handles one kv head and a range
// of key positions for all of that head's query heads (GQA): each K/V row is loaded once (and
// converted from f16 once) and used by every query head of the group. Scores for the range sit in
// a per-thread buffer, never a [queries × keys] matrix.
#include "paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../quant/qmatmul.h"
#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {
namespace {

struct Scratch {
  std::vector<float> s, row;
};
thread_local Scratch tScratch;

inline float dotF(const float* a, const float* b, int64_t n) {
  VecF acc = VecF::zero();
  int64_t i = 0;
  for (; i + kW <= n; i += kW) acc = fmadd(VecF::load(a + i), VecF::load(b + i), acc);
  float s = acc.sum();
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

inline void axpy(float a, const float* x, float* y, int64_t n) {
  const VecF av = VecF::set1(a);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) fmadd(av, VecF::load(x + i), VecF::load(y + i)).store(y + i);
  for (; i < n; i++) y[i] += a * x[i];
}

inline void halfRow(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#if defined(IJ_AVX512)
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
#elif defined(IJ_AVX2)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; i++) dst[i] = halfToFloat(src[i]);
}

inline void toHalfRow(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(IJ_AVX512)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#elif defined(IJ_AVX2)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; i++) dst[i] = floatToHalf(src[i]);
}

// Row of K or V at (pos, kvh) as fp32: a pointer into the cache, or `tmp` after converting f16.
inline const float* cacheRow(const PagedKv& kv, const void* base, int64_t pos, int64_t kvh, float* tmp) {
  const int64_t off = kv.offset(pos, kvh);
  if (!kv.f16) return static_cast<const float*>(base) + off;
  halfRow(static_cast<const uint16_t*>(base) + off, tmp, kv.headDim);
  return tmp;
}

// Partial attention of G query heads (q, consecutive rows of headDim) over keys [j0, j1):
// m[g] = max score, l[g] = Σ exp(score − m), o[g] = Σ exp(score − m)·v (unnormalized).
void attendRange(const PagedKv& kv, int64_t kvh, const float* q, int64_t G, int64_t j0, int64_t j1, float scale,
                 float* m, float* l, float* o) {
  const int64_t hd = kv.headDim, n = j1 - j0;
  Scratch& sc = tScratch;
  if (static_cast<int64_t>(sc.s.size()) < G * n) sc.s.resize(G * n);
  if (static_cast<int64_t>(sc.row.size()) < hd) sc.row.resize(hd);
  float* s = sc.s.data();
  for (int64_t j = 0; j < n; j++) {
    const float* kr = cacheRow(kv, kv.k, j0 + j, kvh, sc.row.data());
    for (int64_t g = 0; g < G; g++) s[g * n + j] = dotF(q + g * hd, kr, hd) * scale;
  }
  for (int64_t g = 0; g < G; g++) {
    float* sg = s + g * n;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; j++) mx = std::max(mx, sg[j]);
    const VecF mv = VecF::set1(mx);
    VecF sum = VecF::zero();
    int64_t j = 0;
    for (; j + kW <= n; j += kW) {
      const VecF e = expv(VecF::load(sg + j) - mv);
      e.store(sg + j);
      sum = sum + e;
    }
    float total = sum.sum();
    for (; j < n; j++) {
      sg[j] = std::exp(sg[j] - mx);
      total += sg[j];
    }
    m[g] = mx;
    l[g] = total;
  }
  std::fill(o, o + G * hd, 0.0f);
  for (int64_t j = 0; j < n; j++) {
    const float* vr = cacheRow(kv, kv.v, j0 + j, kvh, sc.row.data());
    for (int64_t g = 0; g < G; g++) axpy(s[g * n + j], vr, o + g * hd, hd);
  }
}

}  // namespace

void pagedStore(const PagedKv& kv, const float* k, const float* v, int64_t T, int64_t start) {
  const int64_t hd = kv.headDim, width = kv.nKv * hd;
  for (int64_t t = 0; t < T; t++) {
    for (int64_t h = 0; h < kv.nKv; h++) {
      const int64_t off = kv.offset(start + t, h);
      const float* ks = k + t * width + h * hd;
      const float* vs = v + t * width + h * hd;
      if (kv.f16) {
        toHalfRow(ks, static_cast<uint16_t*>(kv.k) + off, hd);
        toHalfRow(vs, static_cast<uint16_t*>(kv.v) + off, hd);
      } else {
        std::memcpy(static_cast<float*>(kv.k) + off, ks, hd * 4);
        std::memcpy(static_cast<float*>(kv.v) + off, vs, hd * 4);
      }
    }
  }
}

void pagedAttention(const PagedKv& kv, const float* q, float* out, int64_t T, int64_t start, int64_t nHeads,
                    float scale) {
  const int64_t hd = kv.headDim, nKv = kv.nKv, G = nHeads / nKv, width = nHeads * hd;
  if (T > 1) {
    parallelFor(nKv * T, [&](int64_t task, int) {
      const int64_t kvh = task % nKv, t = task / nKv;
      std::vector<float> ml(2 * G);
      float* o = out + t * width + kvh * G * hd;
      attendRange(kv, kvh, q + t * width + kvh * G * hd, G, 0, start + t + 1, scale, ml.data(), ml.data() + G, o);
      for (int64_t g = 0; g < G; g++) {
        const float inv = 1.0f / ml[G + g];
        for (int64_t i = 0; i < hd; i++) o[g * hd + i] *= inv;
      }
    });
    return;
  }
  // Decode: split the keys into chunks (whole pages) so every thread has work even when nKv is
  // small, then merge the chunks' softmax partials: with M = max m_c,
  // out = Σ_c e^(m_c − M)·o_c / Σ_c e^(m_c − M)·l_c.
  const int64_t ctx = start + 1;
  const int64_t wantChunks = std::max<int64_t>(1, (4 * numThreads() + nKv - 1) / nKv);
  int64_t chunkLen = std::max<int64_t>((ctx + wantChunks - 1) / wantChunks, 64);
  chunkLen = (chunkLen + kv.blockSize - 1) / kv.blockSize * kv.blockSize;
  const int64_t nChunks = (ctx + chunkLen - 1) / chunkLen;
  const int64_t stride = G * (2 + hd);
  std::vector<float> part(nKv * nChunks * stride);
  parallelFor(nKv * nChunks, [&](int64_t task, int) {
    const int64_t kvh = task / nChunks, c = task % nChunks;
    const int64_t j0 = c * chunkLen, j1 = std::min(ctx, j0 + chunkLen);
    float* p = part.data() + task * stride;
    attendRange(kv, kvh, q + kvh * G * hd, G, j0, j1, scale, p, p + G, p + 2 * G);
  });
  for (int64_t kvh = 0; kvh < nKv; kvh++) {
    for (int64_t g = 0; g < G; g++) {
      float M = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < nChunks; c++) M = std::max(M, part[(kvh * nChunks + c) * stride + g]);
      float* o = out + (kvh * G + g) * hd;
      std::fill(o, o + hd, 0.0f);
      float L = 0.0f;
      for (int64_t c = 0; c < nChunks; c++) {
        const float* p = part.data() + (kvh * nChunks + c) * stride;
        const float w = std::exp(p[g] - M);
        L += w * p[G + g];
        axpy(w, p + 2 * G + g * hd, o, hd);
      }
      const float inv = 1.0f / L;
      for (int64_t i = 0; i < hd; i++) o[i] *= inv;
    }
  }
}

}  // namespace inferjit
