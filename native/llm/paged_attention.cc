// Paged attention kernels (layout in paged_attention.h). One task handles one kv head and a range
// of key positions for all of that head's query heads (GQA): each K/V row is loaded once (and
// converted from f16 once) and used by every query head of the group. Scores for the range sit in
// a per-thread buffer, never a [queries × keys] matrix.
#include "paged_attention.h"

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "../gemm/gemm.h"
#include "../quant/qmatmul.h"
#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {
namespace {

struct Scratch {
  std::vector<float> s, row;
};
thread_local Scratch tScratch;

struct TileScratch {
  std::vector<float> q, s, k, v, o, row;
};
thread_local TileScratch tTile;

template <typename T>
T* sized(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

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

// kW int8 values widened to floats in registers.
inline VecF loadI8(const int8_t* p) {
#if defined(IJ_AVX512)
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(IJ_AVX2)
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  return VecF(static_cast<float>(*p));
#endif
}

// An int8 pool's row at (pos, kvh): its values and its scale (layout in paged_attention.h).
struct I8Row {
  const int8_t* q;
  float scale;
};
inline I8Row i8Row(const PagedKv& kv, const void* base, int64_t pos, int64_t kvh) {
  const int8_t* tile = static_cast<const int8_t*>(base) + kv.tile(pos, kvh);
  const int64_t slot = pos % kv.blockSize;
  float scale;
  std::memcpy(&scale, tile + kv.blockSize * kv.headDim + slot * 4, 4);
  return {tile + slot * kv.headDim, scale};
}

// Quantizes one row: scale = absmax/127, q = round-half-even(x·(127/absmax)) (all f32, as the
// reference in src/ops/kv-int8.ts); an all-zero row gets scale 0.
inline float quantizeRowI8(const float* x, int8_t* q, int64_t n) {
  VecF mv = VecF::zero();
  int64_t i = 0;
  for (; i + kW <= n; i += kW) mv = vmax(mv, vabs(VecF::load(x + i)));
  float amax = mv.max();
  for (; i < n; i++) amax = std::max(amax, std::fabs(x[i]));
  if (!(amax > 0.0f)) {
    std::memset(q, 0, static_cast<size_t>(n));
    return 0.0f;
  }
  const float inv = 127.0f / amax;
  i = 0;
#if defined(IJ_AVX512)
  const __m512 iv = _mm512_set1_ps(inv);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  for (; i + 16 <= n; i += 16) {
    __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), iv));  // nearest even (MXCSR default)
    r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(r));
  }
#endif
  for (; i < n; i++) q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, std::nearbyint(x[i] * inv))));
  return amax / 127.0f;
}

inline void storeRowI8(void* base, const PagedKv& kv, int64_t pos, int64_t kvh, const float* x) {
  int8_t* tile = static_cast<int8_t*>(base) + kv.tile(pos, kvh);
  const int64_t slot = pos % kv.blockSize;
  const float scale = quantizeRowI8(x, tile + slot * kv.headDim, kv.headDim);
  std::memcpy(tile + kv.blockSize * kv.headDim + slot * 4, &scale, 4);
}

// Row of K or V at (pos, kvh) as fp32: a pointer into the cache, or `tmp` after converting f16
// or dequantizing int8 (one row, for the prefill path's GEMM panels).
inline const float* cacheRow(const PagedKv& kv, const void* base, int64_t pos, int64_t kvh, float* tmp) {
  if (kv.dtype == KvDtype::f32) return static_cast<const float*>(base) + kv.offset(pos, kvh);
  if (kv.dtype == KvDtype::f16) {
    halfRow(static_cast<const uint16_t*>(base) + kv.offset(pos, kvh), tmp, kv.headDim);
    return tmp;
  }
  const I8Row r = i8Row(kv, base, pos, kvh);
  const VecF sv = VecF::set1(r.scale);
  int64_t i = 0;
  for (; i + kW <= kv.headDim; i += kW) (loadI8(r.q + i) * sv).store(tmp + i);
  for (; i < kv.headDim; i++) tmp[i] = r.q[i] * r.scale;
  return tmp;
}

// Scores of G query heads (rows of hd) against one int8 row: s[g·stride] = (q_g · r)·mult. Each
// chunk of the row is widened once in registers and used by every head of the group.
inline void dotsI8(const float* q, int64_t G, int64_t hd, const int8_t* r, float mult, float* s, int64_t stride) {
  constexpr int64_t kMaxAcc = 8;
  for (int64_t g0 = 0; g0 < G; g0 += kMaxAcc) {
    const int64_t gn = std::min(kMaxAcc, G - g0);
    const float* qg = q + g0 * hd;
    VecF acc[kMaxAcc];
    for (int64_t g = 0; g < gn; g++) acc[g] = VecF::zero();
    int64_t i = 0;
    for (; i + kW <= hd; i += kW) {
      const VecF x = loadI8(r + i);
      for (int64_t g = 0; g < gn; g++) acc[g] = fmadd(VecF::load(qg + g * hd + i), x, acc[g]);
    }
    for (int64_t g = 0; g < gn; g++) {
      float t = acc[g].sum();
      for (int64_t k = i; k < hd; k++) t += qg[g * hd + k] * r[k];
      s[(g0 + g) * stride] = t * mult;
    }
  }
}

// o_g += w_g·scale·r for the G heads of a group (o rows of hd), the row widened once per chunk.
inline void axpysI8(const float* w, int64_t wStride, float scale, const int8_t* r, float* o, int64_t G, int64_t hd) {
  int64_t i = 0;
  for (; i + kW <= hd; i += kW) {
    const VecF x = loadI8(r + i) * VecF::set1(scale);
    for (int64_t g = 0; g < G; g++) fmadd(VecF::set1(w[g * wStride]), x, VecF::load(o + g * hd + i)).store(o + g * hd + i);
  }
  for (; i < hd; i++) {
    const float x = r[i] * scale;
    for (int64_t g = 0; g < G; g++) o[g * hd + i] += w[g * wStride] * x;
  }
}

// max(x[0..n)), -inf for n = 0, in four vectors of partial maxima: a scalar loop is one dependent
// vmaxss per value (3-4 cycles each), which profiled at half of softmaxPartials and ~9% of a
// 16-sequence decode's attention at context 192. max is exact, so results are unchanged; vmax(x,
// acc) keeps acc where x is NaN, as std::max(acc, x) does.
inline float rowMax(const float* x, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  VecF mv[4] = {VecF::set1(mx), VecF::set1(mx), VecF::set1(mx), VecF::set1(mx)};
  for (; j + 4 * kW <= n; j += 4 * kW)
    for (int u = 0; u < 4; u++) mv[u] = vmax(VecF::load(x + j + u * kW), mv[u]);
  for (; j + kW <= n; j += kW) mv[0] = vmax(VecF::load(x + j), mv[0]);
  mx = vmax(vmax(mv[0], mv[1]), vmax(mv[2], mv[3])).max();
  for (; j < n; j++) mx = std::max(mx, x[j]);
  return mx;
}

// Softmax partials of G score rows s[g·n + j] in place: m[g] = max, l[g] = Σ exp(s − m), s = exp(s − m).
void softmaxPartials(float* s, int64_t G, int64_t n, float* m, float* l) {
  for (int64_t g = 0; g < G; g++) {
    float* sg = s + g * n;
    const float mx = rowMax(sg, n);
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
}

#if defined(IJ_AVX512)
// Decode attention over a key range, blocked for AVX-512 (head dims that are multiples of 16, up
// to 128: NV vectors per row). The general loop below converts every f16 row into a buffer, takes
// one horizontal sum per (key, head) and divides to find each row's page; this one walks the
// pages (one table read per page), scores 16 keys at a time into 16 accumulators reduced together
// (sum16), converts f16 K rows in registers (once into an L1 tile when several query heads share
// them), and keeps the outputs of up to 4 query heads in registers across the V pass.

// Lane j of the result = Σ of v[j]'s 16 lanes. Forced inline: GCC kept it out of line, so every call
// stored its 16 accumulators to the stack and loaded them back (~7% of the 16-sequence decode's
// attention at context 192, A/B in one process).
inline __attribute__((always_inline)) __m512 sum16(__m512 v[16]) {
  __m512 w[8], u[4];
  for (int i = 0; i < 8; i++) w[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; i++) {
    const __m512d c = _mm512_castps_pd(w[2 * i]), d = _mm512_castps_pd(w[2 * i + 1]);
    u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(c, d)), _mm512_castpd_ps(_mm512_unpackhi_pd(c, d)));
  }
  const __m512 e = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x44), _mm512_shuffle_f32x4(u[0], u[1], 0xEE));
  const __m512 f = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x44), _mm512_shuffle_f32x4(u[2], u[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e, f, 0x88), _mm512_shuffle_f32x4(e, f, 0xDD));
}

// One kv head's rows of consecutive pages lie nKv tiles apart in the pool (a tile: a page's rows of
// one kv head, 1-4 KiB), so the hardware prefetchers, which follow streams within a 4 KiB page, do
// not run ahead of a sequence's pages: each tile's first touch waited a full memory latency (perf
// on the int8 kernel: a third of its time on the first load of each tile). The walkers below ask
// for the tile kPrefetchPages ahead whenever they enter a page (INFERJIT_PAGED_PREFETCH=N sets the
// distance, 0 turns it off: an A/B knob for benchmarks).
const int64_t kPrefetchPages = [] {
  const char* e = std::getenv("INFERJIT_PAGED_PREFETCH");
  return e ? std::max<int64_t>(0, std::atoll(e)) : int64_t{4};
}();

// Prefetches the tiles of one kv head for the pages (first, last] of a range, as bytes of a pool.
struct TilePrefetcher {
  const PagedKv& kv;
  const char* base;
  int64_t kvh, lastPage, tileBytes;
  TilePrefetcher(const PagedKv& pk, const void* b, int64_t head, int64_t endPos)
      : kv(pk), base(static_cast<const char*>(b)), kvh(head), lastPage((endPos - 1) / pk.blockSize),
        tileBytes(pk.blockSize * (pk.dtype == KvDtype::i8 ? pk.headDim + 4 : pk.headDim * (pk.dtype == KvDtype::f16 ? 2 : 4))) {}
  void page(int64_t p) const {
    if (p > lastPage) return;
    const char* tile = base + (static_cast<int64_t>(kv.table[p]) * kv.nKv + kvh) * tileBytes;
    for (int64_t i = 0; i < tileBytes; i += 64) prefetchLine(tile + i);
  }
  void start(int64_t first) const {
    for (int64_t p = first + 1; p <= first + kPrefetchPages; p++) page(p);
  }
};

// Where a walk over the rows [pos, endPos) of one kv head stands, page by page (no division per
// row), prefetching ahead as it enters each page.
struct PageCursor {
  TilePrefetcher ahead;
  int64_t page, off;
  PageCursor(const PagedKv& kv, const void* base, int64_t kvh, int64_t pos, int64_t endPos)
      : ahead(kv, base, kvh, endPos), page(pos / kv.blockSize), off(pos % kv.blockSize) {
    ahead.start(page);
  }
  void step(int64_t blockSize) {
    if (++off == blockSize) {
      off = 0;
      page++;
      ahead.page(page + kPrefetchPages);
    }
  }
};

// The V tiles of a key range, prefetched page by page while the K pass walks the same pages: the V
// pass that follows then finds its rows in cache (its own PageCursor runs kPrefetchPages ahead of
// itself, but the first pages of each task waited a memory latency: ~4% of a 16-sequence decode's
// attention at context 192, A/B in one process). Off with kPrefetchPages = 0, like the others.
struct FollowingPrefetcher {
  TilePrefetcher tiles;
  int64_t next;  // first page not yet asked for
  FollowingPrefetcher(const PagedKv& kv, const void* base, int64_t kvh, int64_t pos, int64_t endPos)
      : tiles(kv, base, kvh, endPos), next(pos / kv.blockSize) {}
  // The K pass is about to read the rows before position `end`.
  void reach(int64_t end) {
    if (kPrefetchPages == 0) return;
    for (const int64_t last = (end - 1) / tiles.kv.blockSize; next <= last; next++) tiles.page(next);
  }
};

// Element offsets of consecutive positions [pos, endPos) of one kv head (f32 / f16 pools).
struct RowWalker {
  const PagedKv& kv;
  int64_t kvh;
  PageCursor at;
  RowWalker(const PagedKv& pk, const void* base, int64_t head, int64_t pos, int64_t endPos)
      : kv(pk), kvh(head), at(pk, base, head, pos, endPos) {}
  int64_t next() {
    const int64_t o = ((static_cast<int64_t>(kv.table[at.page]) * kv.nKv + kvh) * kv.blockSize + at.off) * kv.headDim;
    at.step(kv.blockSize);
    return o;
  }
};

template <bool F16>
inline __m512 loadRow(const void* base, int64_t at) {
  if constexpr (F16) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + at)));
  else return _mm512_loadu_ps(static_cast<const float*>(base) + at);
}

// Scores of query row qs (scaled, NV vectors) against cnt <= 16 key rows at base + at[jj] into dst.
template <int NV, bool F16>
inline void score16(const float* qs, const void* base, const int64_t* at, int cnt, float* dst) {
  __m512 qv[NV];
  for (int d = 0; d < NV; d++) qv[d] = _mm512_loadu_ps(qs + 16 * d);
  __m512 acc[16];
  for (int jj = 0; jj < 16; jj++) {
    __m512 a = _mm512_setzero_ps();
    if (jj < cnt)
      for (int d = 0; d < NV; d++) a = _mm512_fmadd_ps(qv[d], loadRow<F16>(base, at[jj] + 16 * d), a);
    acc[jj] = a;
  }
  _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << cnt) - 1u), sum16(acc));
}

// Scores of two query rows qa, qb (scaled, NV vectors each) against cnt <= 8 key rows at base + at[jj]:
// each key row is loaded once for both heads (score16 loads it once per head), and the 16 sums
// (8 keys × 2 heads) reduce together, lanes 0-7 row a's and 8-15 row b's.
template <int NV, bool F16>
inline void score8x2(const float* qa, const float* qb, const void* base, const int64_t* at, int cnt, float* da, float* db) {
  __m512 q0[NV], q1[NV];
  for (int d = 0; d < NV; d++) { q0[d] = _mm512_loadu_ps(qa + 16 * d); q1[d] = _mm512_loadu_ps(qb + 16 * d); }
  __m512 acc[16];
  for (int jj = 0; jj < 8; jj++) {
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    if (jj < cnt)
      for (int d = 0; d < NV; d++) {
        const __m512 r = loadRow<F16>(base, at[jj] + 16 * d);
        a = _mm512_fmadd_ps(q0[d], r, a);
        b = _mm512_fmadd_ps(q1[d], r, b);
      }
    acc[jj] = a;
    acc[8 + jj] = b;
  }
  const __m512 sums = sum16(acc);
  const __mmask16 mask = static_cast<__mmask16>((1u << cnt) - 1u);
  _mm512_mask_storeu_ps(da, mask, sums);
  _mm512_mask_storeu_ps(db, mask, _mm512_shuffle_f32x4(sums, sums, 0xEE));
}

// Two query heads at a time through score8x2 (head dims up to 64: 2·NV query vectors and 16
// accumulators stay in registers); INFERJIT_PAGED_SCORE_PAIRS=0 keeps one head at a time (A/B).
const bool kScorePairs = [] {
  const char* e = std::getenv("INFERJIT_PAGED_SCORE_PAIRS");
  return !(e && e[0] == '0');
}();

// o[g] = Σ_j p[g·ldp + j]·V[j0 + j] for GB query heads (rows of 16·NV floats), kept in registers.
template <int NV, bool F16, int GB>
void accumulateV(const PagedKv& kv, int64_t kvh, int64_t j0, int64_t n, const float* p, int64_t ldp, float* o) {
  __m512 acc[GB][NV];
  for (int g = 0; g < GB; g++)
    for (int d = 0; d < NV; d++) acc[g][d] = _mm512_setzero_ps();
  RowWalker vw(kv, kv.v, kvh, j0, j0 + n);
  for (int64_t j = 0; j < n; j++) {
    const int64_t a = vw.next();
    __m512 vr[NV];
    for (int d = 0; d < NV; d++) vr[d] = loadRow<F16>(kv.v, a + 16 * d);
    for (int g = 0; g < GB; g++) {
      const __m512 w = _mm512_set1_ps(p[g * ldp + j]);
      for (int d = 0; d < NV; d++) acc[g][d] = _mm512_fmadd_ps(w, vr[d], acc[g][d]);
    }
  }
  for (int g = 0; g < GB; g++)
    for (int d = 0; d < NV; d++) _mm512_storeu_ps(o + g * 16 * NV + 16 * d, acc[g][d]);
}

// Scores of G query heads against cnt <= 16 keys, for both pool kinds: pairs of heads (head dims
// up to 64, NV <= 4, unless INFERJIT_PAGED_SCORE_PAIRS=0) as pair(g, first key, keys) over keys 0-7
// and 8-15, the rest one head at a time as single(g).
template <int NV, typename Pair, typename Single>
inline void scoreHeadsInPairs(int64_t G, int cnt, Pair pair, Single single) {
  int64_t g = 0;
  if (NV <= 4 && kScorePairs) {
    for (; g + 2 <= G; g += 2) {
      pair(g, 0, std::min(cnt, 8));
      if (cnt > 8) pair(g, 8, cnt - 8);
    }
  }
  for (; g < G; g++) single(g);
}

// Scores of the G query heads (rows of qs) against cnt <= 16 key rows into s[g·n + c ..].
template <int NV, bool F16>
inline void scoreHeads(const float* qs, int64_t G, const void* base, const int64_t* at, int cnt, float* s, int64_t n, int64_t c) {
  constexpr int64_t hd = 16 * NV;
  scoreHeadsInPairs<NV>(
      G, cnt,
      [&](int64_t g, int j, int keys) {
        float* sa = s + g * n + c + j;
        score8x2<NV, F16>(qs + g * hd, qs + (g + 1) * hd, base, at + j, keys, sa, sa + n);
      },
      [&](int64_t g) { score16<NV, F16>(qs + g * hd, base, at, cnt, s + g * n + c); });
}

template <int NV, bool F16>
void attendRangeBlocked(const PagedKv& kv, int64_t kvh, const float* q, int64_t G, int64_t j0, int64_t j1, float scale,
                        float* m, float* l, float* o) {
  constexpr int64_t hd = 16 * NV;
  const int64_t n = j1 - j0;
  Scratch& sc = tScratch;
  float* s = sized(sc.s, G * n);
  // scaled queries, then (f16 pools with several query heads) a 16-row f32 tile of K
  float* qs = sized(sc.row, G * hd + (F16 && G > 1 ? 16 * hd : 0));
  float* tile = qs + G * hd;
  const __m512 sv = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < G * hd; i += 16) _mm512_storeu_ps(qs + i, _mm512_mul_ps(_mm512_loadu_ps(q + i), sv));
  RowWalker kw(kv, kv.k, kvh, j0, j0 + n);
  FollowingPrefetcher vAhead(kv, kv.v, kvh, j0, j0 + n);
  int64_t at[16];
  for (int64_t c = 0; c < n; c += 16) {
    const int cnt = static_cast<int>(std::min<int64_t>(16, n - c));
    vAhead.reach(j0 + c + cnt);
    for (int jj = 0; jj < cnt; jj++) at[jj] = kw.next();
    if (F16 && G > 1) {
      for (int jj = 0; jj < cnt; jj++) {
        for (int d = 0; d < NV; d++) _mm512_storeu_ps(tile + jj * hd + 16 * d, loadRow<true>(kv.k, at[jj] + 16 * d));
        at[jj] = jj * hd;
      }
      scoreHeads<NV, false>(qs, G, tile, at, cnt, s, n, c);
    } else {
      scoreHeads<NV, F16>(qs, G, kv.k, at, cnt, s, n, c);
    }
  }
  softmaxPartials(s, G, n, m, l);
  // V pass in groups of up to 4 query heads whose outputs stay in registers (≤ 16 accumulators):
  // each V row is loaded (converted) once per group
  constexpr int64_t kGroup = NV <= 4 ? 4 : NV == 5 ? 3 : 2;  // at most 16 accumulators
  for (int64_t g0 = 0; g0 < G; g0 += kGroup) {
    switch (std::min<int64_t>(kGroup, G - g0)) {
      case 1: accumulateV<NV, F16, 1>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      case 2: accumulateV<NV, F16, 2>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      case 3: accumulateV<NV, F16, 3>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      default: accumulateV<NV, F16, 4>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
    }
  }
}

// int8 pools (layout in paged_attention.h), blocked like the above: consecutive positions of one kv
// head walked page by page, giving each row's values and its f32 scale. Scores: 16 keys at a time,
// each row's int8 values widened to f32 in registers and dotted with the (unquantized) query, the
// 16 sums reduced together and multiplied by the 16 row scales at once; with several query heads
// the 16 rows are widened once into an L1 tile shared by the group. V pass: the row scale is folded
// into the softmax weight (one multiply per key and head), the row widened once per group of query
// heads whose outputs stay in registers. Same arithmetic as the reference up to f32 reassociation.
struct I8Walker {
  const PagedKv& kv;
  const int8_t* base;
  int64_t kvh;
  PageCursor at;
  I8Walker(const PagedKv& pk, const void* b, int64_t head, int64_t pos, int64_t endPos)
      : kv(pk), base(static_cast<const int8_t*>(b)), kvh(head), at(pk, b, head, pos, endPos) {}
  const int8_t* next(float* scale) {
    const int8_t* tile = base + (static_cast<int64_t>(kv.table[at.page]) * kv.nKv + kvh) * kv.blockSize * (kv.headDim + 4);
    const int8_t* row = tile + at.off * kv.headDim;
    std::memcpy(scale, tile + kv.blockSize * kv.headDim + at.off * 4, 4);
    at.step(kv.blockSize);
    return row;
  }
};

inline __m512 widenI8(const int8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))); }

#if defined(__AVX512VNNI__)
// With VNNI the dots run in integers: the query (scaled) and the softmax weights (times the V row
// scales) are rounded to int16 with one scale per (query head) and per (query head, 16 keys) — a
// relative error of 2^-16, 256 times below the rows' own int8 rounding — and the int8 rows are
// sign-extended to int16 in registers, so one vpdpwssd does 32 multiply-adds where the f32 path
// needs a widening, a conversion and an FMA per 16. Scores: lanes hold pairs of head dims, so the
// rows need no shuffles. V pass: lanes must hold pairs of keys, so two rows are interleaved
// (unpacklo/hi_epi16: a fixed permutation of the head dims, undone once at the end); the int32 sums
// of each 16-key block (≤ 16·32767·127, no overflow) are scaled into f32 accumulators.
constexpr int64_t kI16Max = 32767;

// Row of 16·NV int8 values sign-extended to (NV + 1) / 2 vectors of 32 int16 (the last half zero
// when NV is odd).
template <int NV>
inline void widenI16(const int8_t* row, __m512i* out) {
  for (int c = 0; c < NV / 2; c++) out[c] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * c)));
  if constexpr (NV % 2 == 1)
    out[NV / 2] = _mm512_cvtepi8_epi16(_mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 32 * (NV / 2)))));
}

// Rounds n floats x·mult to int16 (nearest even) into dst, zero-padded to a multiple of 32 values;
// returns the scale of one unit (0 when every value is 0).
inline float roundToI16(const float* x, float mult, int64_t n, int16_t* dst) {
  __m512 mv = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) mv = _mm512_max_ps(mv, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  const float amax = _mm512_reduce_max_ps(mv) * std::fabs(mult);
  const int64_t padded = (n + 31) / 32 * 32;
  if (!(amax > 0.0f)) {
    std::fill(dst, dst + padded, int16_t{0});
    return 0.0f;
  }
  const __m512 inv = _mm512_set1_ps(mult * static_cast<float>(kI16Max) / amax);
  for (int64_t i = 0; i < n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), inv))));
  std::fill(dst + n, dst + padded, int16_t{0});
  return amax / static_cast<float>(kI16Max);
}

// dst[jj] = mult·scales[jj]·(q · row jj) for cnt <= 16 rows, q as NC vectors of int16 pairs. Rows
// come widened from `tile` (16 rows of NC vectors) or, when tile is null, from the int8 `rows`.
template <int NV>
inline void score16I16(const int16_t* q, const int8_t* const* rows, const int16_t* tile, const float* scales, float mult, int cnt,
                       float* dst) {
  constexpr int NC = (NV + 1) / 2;
  __m512i qv[NC];
  for (int c = 0; c < NC; c++) qv[c] = _mm512_loadu_si512(q + 32 * c);
  __m512 acc[16];
  for (int jj = 0; jj < 16; jj++) {
    __m512i a = _mm512_setzero_si512();
    if (jj < cnt) {
      if (tile) {
        for (int c = 0; c < NC; c++) a = _mm512_dpwssd_epi32(a, _mm512_loadu_si512(tile + (jj * NC + c) * 32), qv[c]);
      } else {
        __m512i k[NC];
        widenI16<NV>(rows[jj], k);
        for (int c = 0; c < NC; c++) a = _mm512_dpwssd_epi32(a, k[c], qv[c]);
      }
    }
    acc[jj] = _mm512_cvtepi32_ps(a);
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << cnt) - 1u);
  const __m512 sc = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, scales), _mm512_set1_ps(mult));
  _mm512_mask_storeu_ps(dst, mask, _mm512_mul_ps(sum16(acc), sc));
}

// As score16I16 from the widened tile, for two query heads qa, qb (mults ma, mb) against cnt <= 8
// rows: each tile vector loaded once for both heads (as score8x2 does for f16/f32 pools).
template <int NV>
inline void score8x2I16(const int16_t* qa, const int16_t* qb, const int16_t* tile, const float* scales, float ma, float mb, int cnt,
                        float* da, float* db) {
  constexpr int NC = (NV + 1) / 2;
  __m512i q0[NC], q1[NC];
  for (int c = 0; c < NC; c++) { q0[c] = _mm512_loadu_si512(qa + 32 * c); q1[c] = _mm512_loadu_si512(qb + 32 * c); }
  __m512 acc[16];
  for (int jj = 0; jj < 8; jj++) {
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    if (jj < cnt)
      for (int c = 0; c < NC; c++) {
        const __m512i k = _mm512_loadu_si512(tile + (jj * NC + c) * 32);
        a = _mm512_dpwssd_epi32(a, k, q0[c]);
        b = _mm512_dpwssd_epi32(b, k, q1[c]);
      }
    acc[jj] = _mm512_cvtepi32_ps(a);
    acc[8 + jj] = _mm512_cvtepi32_ps(b);
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << cnt) - 1u);
  // lanes 0-7: row scales × ma, lanes 8-15: the same row scales × mb
  const __m512 rs = _mm512_castps256_ps512(_mm256_maskz_loadu_ps(static_cast<__mmask8>(mask), scales));
  const __m512 both = _mm512_shuffle_f32x4(rs, rs, 0x44);
  const __m512 mults = _mm512_mask_blend_ps(static_cast<__mmask16>(0xFF00), _mm512_set1_ps(ma), _mm512_set1_ps(mb));
  const __m512 sums = _mm512_mul_ps(sum16(acc), _mm512_mul_ps(both, mults));
  _mm512_mask_storeu_ps(da, mask, sums);
  _mm512_mask_storeu_ps(db, mask, _mm512_shuffle_f32x4(sums, sums, 0xEE));
}

// o[g] = Σ_j p[g·ldp + j]·scale_j·V[j0 + j] for GB query heads (rows of 16·NV floats).
template <int NV, int GB>
void accumulateVI16(const PagedKv& kv, int64_t kvh, int64_t j0, int64_t n, const float* p, int64_t ldp, float* o) {
  constexpr int NC = (NV + 1) / 2;
  alignas(64) static const int8_t zeroRow[128] = {};
  __m512 accf[GB][2 * NC];
  for (int g = 0; g < GB; g++)
    for (int c = 0; c < 2 * NC; c++) accf[g][c] = _mm512_setzero_ps();
  I8Walker vw(kv, kv.v, kvh, j0, j0 + n);
  const int8_t* rows[16];
  alignas(64) float scales[16];
  alignas(64) int16_t wq[GB][16];
  float wscale[GB];
  for (int64_t b = 0; b < n; b += 16) {
    const int cnt = static_cast<int>(std::min<int64_t>(16, n - b));
    for (int jj = 0; jj < cnt; jj++) rows[jj] = vw.next(&scales[jj]);
    for (int jj = cnt; jj < 16; jj++) rows[jj] = zeroRow, scales[jj] = 0.0f;
    const __mmask16 mask = static_cast<__mmask16>((1u << cnt) - 1u);
    const __m512 sv = _mm512_load_ps(scales);
    for (int g = 0; g < GB; g++) {
      const __m512 w = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, p + g * ldp + b), sv);
      const float m = _mm512_reduce_max_ps(w);  // weights are >= 0
      wscale[g] = m > 0.0f ? m / static_cast<float>(kI16Max) : 0.0f;
      const __m512 inv = _mm512_set1_ps(m > 0.0f ? static_cast<float>(kI16Max) / m : 0.0f);
      _mm256_store_si256(reinterpret_cast<__m256i*>(wq[g]), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(w, inv))));
    }
    __m512i acc[GB][2 * NC];
    for (int g = 0; g < GB; g++)
      for (int c = 0; c < 2 * NC; c++) acc[g][c] = _mm512_setzero_si512();
    for (int jj = 0; jj < cnt; jj += 2) {
      __m512i ka[NC], kb[NC];
      widenI16<NV>(rows[jj], ka);
      widenI16<NV>(rows[jj + 1], kb);
      for (int c = 0; c < NC; c++) {
        const __m512i lo = _mm512_unpacklo_epi16(ka[c], kb[c]), hi = _mm512_unpackhi_epi16(ka[c], kb[c]);
        for (int g = 0; g < GB; g++) {
          int32_t pair;
          std::memcpy(&pair, &wq[g][jj], 4);
          const __m512i w2 = _mm512_set1_epi32(pair);
          acc[g][2 * c] = _mm512_dpwssd_epi32(acc[g][2 * c], lo, w2);
          acc[g][2 * c + 1] = _mm512_dpwssd_epi32(acc[g][2 * c + 1], hi, w2);
        }
      }
    }
    for (int g = 0; g < GB; g++) {
      const __m512 ws = _mm512_set1_ps(wscale[g]);
      for (int c = 0; c < 2 * NC; c++) accf[g][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[g][c]), ws, accf[g][c]);
    }
  }
  // undo the interleave: in chunk c, lane 4L + i of the lo vector is head dim 32c + 8L + i, of the
  // hi vector 32c + 8L + 4 + i
  constexpr int64_t hd = 16 * NV;
  for (int g = 0; g < GB; g++) {
    alignas(64) float lohi[2][16];
    for (int c = 0; c < NC; c++) {
      _mm512_store_ps(lohi[0], accf[g][2 * c]);
      _mm512_store_ps(lohi[1], accf[g][2 * c + 1]);
      for (int L = 0; L < 4; L++)
        for (int h = 0; h < 2; h++)
          for (int i = 0; i < 4; i++) {
            const int64_t d = 32 * c + 8 * L + 4 * h + i;
            if (d < hd) o[g * hd + d] = lohi[h][4 * L + i];
          }
    }
  }
}

template <int NV>
void attendRangeBlockedI8(const PagedKv& kv, int64_t kvh, const float* q, int64_t G, int64_t j0, int64_t j1, float scale,
                          float* m, float* l, float* o) {
  constexpr int64_t hd = 16 * NV;
  constexpr int NC = (NV + 1) / 2;
  const int64_t n = j1 - j0;
  Scratch& sc = tScratch;
  float* s = sized(sc.s, G * n);
  // per query head: its int16 query (NC vectors) and the scale of one unit
  thread_local std::vector<int16_t> qStore, tileStore;
  int16_t* qi = sized(qStore, G * NC * 32);
  int16_t* tile = G > 1 ? sized(tileStore, 16 * NC * 32) : nullptr;
  float* qScale = sized(sc.row, G);
  for (int64_t g = 0; g < G; g++) qScale[g] = roundToI16(q + g * hd, scale, hd, qi + g * NC * 32);
  I8Walker kw(kv, kv.k, kvh, j0, j0 + n);
  FollowingPrefetcher vAhead(kv, kv.v, kvh, j0, j0 + n);
  const int8_t* rows[16];
  alignas(64) float scales[16];
  for (int64_t c = 0; c < n; c += 16) {
    const int cnt = static_cast<int>(std::min<int64_t>(16, n - c));
    vAhead.reach(j0 + c + cnt);
    for (int jj = 0; jj < cnt; jj++) rows[jj] = kw.next(&scales[jj]);
    if (G > 1) {
      // widen the 16 rows once for the whole group
      for (int jj = 0; jj < cnt; jj++) {
        __m512i k[NC];
        widenI16<NV>(rows[jj], k);
        for (int cc = 0; cc < NC; cc++) _mm512_storeu_si512(tile + (jj * NC + cc) * 32, k[cc]);
      }
      scoreHeadsInPairs<NV>(
          G, cnt,
          [&](int64_t g, int j, int keys) {
            float* sa = s + g * n + c + j;
            const int16_t* qa = qi + g * NC * 32;
            score8x2I16<NV>(qa, qa + NC * 32, tile + j * NC * 32, scales + j, qScale[g], qScale[g + 1], keys, sa, sa + n);
          },
          [&](int64_t g) { score16I16<NV>(qi + g * NC * 32, rows, tile, scales, qScale[g], cnt, s + g * n + c); });
    } else {
      score16I16<NV>(qi, rows, nullptr, scales, qScale[0], cnt, s + c);
    }
  }
  softmaxPartials(s, G, n, m, l);
  constexpr int64_t kGroup = NC <= 2 ? 4 : 2;
  for (int64_t g0 = 0; g0 < G; g0 += kGroup) {
    switch (std::min<int64_t>(kGroup, G - g0)) {
      case 1: accumulateVI16<NV, 1>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      case 2: accumulateVI16<NV, 2>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      case 3: accumulateVI16<NV, 3>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      default: accumulateVI16<NV, 4>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
    }
  }
}
#else

// dst[jj] = scales[jj]·(qs · rows[jj]) for cnt <= 16 int8 rows of 16·NV values.
template <int NV>
inline void score16I8(const float* qs, const int8_t* const* rows, const float* scales, int cnt, float* dst) {
  __m512 qv[NV];
  for (int d = 0; d < NV; d++) qv[d] = _mm512_loadu_ps(qs + 16 * d);
  __m512 acc[16];
  for (int jj = 0; jj < 16; jj++) {
    __m512 a = _mm512_setzero_ps();
    if (jj < cnt)
      for (int d = 0; d < NV; d++) a = _mm512_fmadd_ps(qv[d], widenI8(rows[jj] + 16 * d), a);
    acc[jj] = a;
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << cnt) - 1u);
  _mm512_mask_storeu_ps(dst, mask, _mm512_mul_ps(sum16(acc), _mm512_maskz_loadu_ps(mask, scales)));
}

// o[g] = Σ_j p[g·ldp + j]·scale_j·V[j0 + j] for GB query heads (rows of 16·NV floats), in registers.
template <int NV, int GB>
void accumulateVI8(const PagedKv& kv, int64_t kvh, int64_t j0, int64_t n, const float* p, int64_t ldp, float* o) {
  __m512 acc[GB][NV];
  for (int g = 0; g < GB; g++)
    for (int d = 0; d < NV; d++) acc[g][d] = _mm512_setzero_ps();
  I8Walker vw(kv, kv.v, kvh, j0, j0 + n);
  for (int64_t j = 0; j < n; j++) {
    float scale;
    const int8_t* row = vw.next(&scale);
    __m512 vr[NV];
    for (int d = 0; d < NV; d++) vr[d] = widenI8(row + 16 * d);
    for (int g = 0; g < GB; g++) {
      const __m512 w = _mm512_set1_ps(p[g * ldp + j] * scale);
      for (int d = 0; d < NV; d++) acc[g][d] = _mm512_fmadd_ps(w, vr[d], acc[g][d]);
    }
  }
  for (int g = 0; g < GB; g++)
    for (int d = 0; d < NV; d++) _mm512_storeu_ps(o + g * 16 * NV + 16 * d, acc[g][d]);
}

template <int NV>
void attendRangeBlockedI8(const PagedKv& kv, int64_t kvh, const float* q, int64_t G, int64_t j0, int64_t j1, float scale,
                          float* m, float* l, float* o) {
  constexpr int64_t hd = 16 * NV;
  const int64_t n = j1 - j0;
  Scratch& sc = tScratch;
  float* s = sized(sc.s, G * n);
  // scaled queries, then (several query heads) a 16-row f32 tile of widened K rows
  float* qs = sized(sc.row, G * hd + (G > 1 ? 16 * hd : 0));
  float* tile = qs + G * hd;
  const __m512 sv = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < G * hd; i += 16) _mm512_storeu_ps(qs + i, _mm512_mul_ps(_mm512_loadu_ps(q + i), sv));
  I8Walker kw(kv, kv.k, kvh, j0, j0 + n);
  const int8_t* rows[16];
  float scales[16];
  for (int64_t c = 0; c < n; c += 16) {
    const int cnt = static_cast<int>(std::min<int64_t>(16, n - c));
    for (int jj = 0; jj < cnt; jj++) rows[jj] = kw.next(&scales[jj]);
    if (G > 1) {
      int64_t at[16];
      for (int jj = 0; jj < cnt; jj++) {
        for (int d = 0; d < NV; d++) _mm512_storeu_ps(tile + jj * hd + 16 * d, widenI8(rows[jj] + 16 * d));
        at[jj] = jj * hd;
      }
      for (int64_t g = 0; g < G; g++) {
        float* dst = s + g * n + c;
        score16<NV, false>(qs + g * hd, tile, at, cnt, dst);
        for (int jj = 0; jj < cnt; jj++) dst[jj] *= scales[jj];
      }
    } else {
      score16I8<NV>(qs, rows, scales, cnt, s + c);
    }
  }
  softmaxPartials(s, G, n, m, l);
  constexpr int64_t kGroup = NV <= 4 ? 4 : NV == 5 ? 3 : 2;  // at most 16 accumulators
  for (int64_t g0 = 0; g0 < G; g0 += kGroup) {
    switch (std::min<int64_t>(kGroup, G - g0)) {
      case 1: accumulateVI8<NV, 1>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      case 2: accumulateVI8<NV, 2>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      case 3: accumulateVI8<NV, 3>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
      default: accumulateVI8<NV, 4>(kv, kvh, j0, n, s + g0 * n, n, o + g0 * hd); break;
    }
  }
}
#endif  // __AVX512VNNI__

// The blocked kernel for this head dim and pool type, or nullptr (then the general loop runs).
using AttendFn = void (*)(const PagedKv&, int64_t, const float*, int64_t, int64_t, int64_t, float, float*, float*, float*);
template <int NV>
AttendFn blockedFor(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::f16: return &attendRangeBlocked<NV, true>;
    case KvDtype::i8: return &attendRangeBlockedI8<NV>;
    default: return &attendRangeBlocked<NV, false>;
  }
}
AttendFn blockedAttend(int64_t hd, KvDtype dtype) {
  switch (hd) {
    case 16: return blockedFor<1>(dtype);
    case 32: return blockedFor<2>(dtype);
    case 48: return blockedFor<3>(dtype);
    case 64: return blockedFor<4>(dtype);
    case 80: return blockedFor<5>(dtype);
    case 96: return blockedFor<6>(dtype);
    case 112: return blockedFor<7>(dtype);
    case 128: return blockedFor<8>(dtype);
    default: return nullptr;
  }
}
#endif

// Partial attention of G query heads (q, consecutive rows of headDim) over keys [j0, j1):
// m[g] = max score, l[g] = Σ exp(score − m), o[g] = Σ exp(score − m)·v (unnormalized).
void attendRange(const PagedKv& kv, int64_t kvh, const float* q, int64_t G, int64_t j0, int64_t j1, float scale,
                 float* m, float* l, float* o, float softcap = 0.0f) {
  const int64_t hd = kv.headDim, n = j1 - j0;
#if defined(IJ_AVX512)
  if (softcap <= 0.0f) {
    if (AttendFn fn = blockedAttend(hd, kv.dtype)) {
      fn(kv, kvh, q, G, j0, j1, scale, m, l, o);
      return;
    }
  }
#endif
  Scratch& sc = tScratch;
  if (static_cast<int64_t>(sc.s.size()) < G * n) sc.s.resize(G * n);
  if (static_cast<int64_t>(sc.row.size()) < hd) sc.row.resize(hd);
  float* s = sc.s.data();
  const bool i8 = kv.dtype == KvDtype::i8;
  for (int64_t j = 0; j < n; j++) {
    if (i8) {
      const I8Row r = i8Row(kv, kv.k, j0 + j, kvh);
      dotsI8(q, G, hd, r.q, r.scale * scale, s + j, n);
      continue;
    }
    const float* kr = cacheRow(kv, kv.k, j0 + j, kvh, sc.row.data());
    for (int64_t g = 0; g < G; g++) s[g * n + j] = dotF(q + g * hd, kr, hd) * scale;
  }
  if (softcap > 0.0f) {
    const float inv = 1.0f / softcap;
    for (int64_t i = 0; i < G * n; i++) s[i] = softcap * std::tanh(s[i] * inv);
  }
  softmaxPartials(s, G, n, m, l);
  std::fill(o, o + G * hd, 0.0f);
  for (int64_t j = 0; j < n; j++) {
    if (i8) {
      const I8Row r = i8Row(kv, kv.v, j0 + j, kvh);
      axpysI8(s + j, n, r.scale, r.q, o, G, hd);
      continue;
    }
    const float* vr = cacheRow(kv, kv.v, j0 + j, kvh, sc.row.data());
    for (int64_t g = 0; g < G; g++) axpy(s[g * n + j], vr, o + g * hd, hd);
  }
}


// Prefill: one task per (kv head, tile of queries). The tile's rows (query t, head g of the group)
// are gathered and scaled into Q [R][hd]; the keys it may see, 0..start+t_last, are packed once as
// GEMM panels (Kᵀ and V, converted from f16 once per task), so S = Q·Kᵀ and O = softmax(S)·V run on
// the fp32 GEMM microkernel instead of one dot product per (query, key). S holds R × ctx floats
// per thread (R ≤ 128).
void prefillTile(const PagedKv& kv, const float* q, float* out, int64_t t0, int64_t nq, int64_t start, int64_t nHeads,
                 int64_t kvh, float scale) {
  const int64_t hd = kv.headDim, G = nHeads / kv.nKv, width = nHeads * hd, R = nq * G;
  const int64_t ctx = start + t0 + nq;  // keys the last query of the tile sees
  const int64_t kPanels = (ctx + kNR - 1) / kNR, ctxPad = kPanels * kNR, vPanels = (hd + kNR - 1) / kNR;
  TileScratch& sc = tTile;
  float* qs = sized(sc.q, R * hd);
  float* S = sized(sc.s, R * ctxPad);
  float* kp = sized(sc.k, kPanels * hd * kNR);
  float* vp = sized(sc.v, vPanels * ctx * kNR);
  float* o = sized(sc.o, R * hd);
  float* row = sized(sc.row, hd);
  const VecF sv = VecF::set1(scale);
  for (int64_t t = 0; t < nq; t++) {
    for (int64_t g = 0; g < G; g++) {
      const float* src = q + (t0 + t) * width + (kvh * G + g) * hd;
      float* dst = qs + (t * G + g) * hd;
      int64_t i = 0;
      for (; i + kW <= hd; i += kW) (VecF::load(src + i) * sv).store(dst + i);
      for (; i < hd; i++) dst[i] = src[i] * scale;
    }
  }
  // Kᵀ panels: panel p, row d, column jj = K[p·kNR + jj][d] (zero past ctx).
  std::fill(kp + (kPanels - 1) * hd * kNR, kp + kPanels * hd * kNR, 0.0f);
  // V panels: panel p, row j, column dd = V[j][p·kNR + dd] (zero past hd).
  if (hd % kNR != 0) std::fill(vp + (vPanels - 1) * ctx * kNR, vp + vPanels * ctx * kNR, 0.0f);
  for (int64_t j = 0; j < ctx; j++) {
    const float* kr = cacheRow(kv, kv.k, j, kvh, row);
    float* kd = kp + (j / kNR) * hd * kNR + (j % kNR);
    for (int64_t d = 0; d < hd; d++) kd[d * kNR] = kr[d];
    const float* vr = cacheRow(kv, kv.v, j, kvh, row);
    for (int64_t p = 0; p < vPanels; p++) {
      const int64_t n = std::min<int64_t>(kNR, hd - p * kNR);
      std::memcpy(vp + p * ctx * kNR + j * kNR, vr + p * kNR, static_cast<size_t>(n) * 4);
    }
  }
  gemmPackedTile(R, ctx, hd, qs, hd, kp, hd * kNR, S, ctxPad, false);
  // Causal softmax per row, normalized; row (t, g) sees keys 0..start+t0+t, the rest are zeroed so
  // the P·V product over all ctx keys ignores them.
  for (int64_t r = 0; r < R; r++) {
    float* sr = S + r * ctxPad;
    const int64_t n = start + t0 + r / G + 1;
    const float mx = rowMax(sr, n);
    const VecF mv = VecF::set1(mx);
    VecF sum = VecF::zero();
    int64_t j = 0;
    for (; j + kW <= n; j += kW) {
      const VecF e = expv(VecF::load(sr + j) - mv);
      e.store(sr + j);
      sum = sum + e;
    }
    float total = sum.sum();
    for (; j < n; j++) {
      sr[j] = std::exp(sr[j] - mx);
      total += sr[j];
    }
    const float invf = 1.0f / total;
    const VecF inv = VecF::set1(invf);
    for (j = 0; j + kW <= n; j += kW) (VecF::load(sr + j) * inv).store(sr + j);
    for (; j < n; j++) sr[j] *= invf;
    std::fill(sr + n, sr + ctx, 0.0f);
  }
  gemmPackedTile(R, hd, ctx, S, ctxPad, vp, ctx * kNR, o, hd, false);
  for (int64_t t = 0; t < nq; t++)
    for (int64_t g = 0; g < G; g++)
      std::memcpy(out + (t0 + t) * width + (kvh * G + g) * hd, o + (t * G + g) * hd, static_cast<size_t>(hd) * 4);
}

void prefillAttention(const PagedKv& kv, const float* q, float* out, int64_t T, int64_t start, int64_t nHeads,
                      float scale) {
  const int64_t G = nHeads / kv.nKv;
  // Tiles of up to 128 rows (queries × group heads), at least 2 tasks per thread when T allows.
  int64_t nq = std::max<int64_t>(1, 128 / G);
  while (nq > 8 && ((T + nq - 1) / nq) * kv.nKv < 2 * numThreads()) nq /= 2;
  const int64_t tiles = (T + nq - 1) / nq;
  // Later tiles see more keys: hand them out first so the short ones fill in at the end.
  parallelFor(tiles * kv.nKv, [&](int64_t task, int) {
    const int64_t tile = tiles - 1 - task / kv.nKv, kvh = task % kv.nKv;
    const int64_t t0 = tile * nq;
    prefillTile(kv, q, out, t0, std::min(nq, T - t0), start, nHeads, kvh, scale);
  });
}

}  // namespace

void pagedStore(const PagedKv& kv, const float* k, const float* v, int64_t T, int64_t start) {
  const int64_t hd = kv.headDim, width = kv.nKv * hd;
  for (int64_t t = 0; t < T; t++) {
    for (int64_t h = 0; h < kv.nKv; h++) {
      const int64_t off = kv.offset(start + t, h);
      const float* ks = k + t * width + h * hd;
      const float* vs = v + t * width + h * hd;
      if (kv.dtype == KvDtype::i8) {
        storeRowI8(kv.k, kv, start + t, h, ks);
        storeRowI8(kv.v, kv, start + t, h, vs);
      } else if (kv.dtype == KvDtype::f16) {
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
  const int64_t hd = kv.headDim, nKv = kv.nKv, G = nHeads / nKv;
  if (T > 1) {
    prefillAttention(kv, q, out, T, start, nHeads, scale);
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

const char* checkRagged(const RaggedAttention& a, char* buf, int bufLen) {
  const int32_t* qs = a.queryStart;
  if (qs[0] < 0) { std::snprintf(buf, bufLen, "paged_attention: query_start[0] = %d must be >= 0", qs[0]); return buf; }
  for (int64_t s = 0; s < a.seqs; s++) {
    const int64_t n = static_cast<int64_t>(qs[s + 1]) - qs[s], L = a.seqLens[s];
    if (n < 0 || qs[s + 1] > a.tokens) {
      std::snprintf(buf, bufLen, "paged_attention: query_start[%lld] = %d must lie in [query_start[%lld], tokens = %lld]",
                    static_cast<long long>(s + 1), qs[s + 1], static_cast<long long>(s), static_cast<long long>(a.tokens));
      return buf;
    }
    if (L < n) {
      std::snprintf(buf, bufLen, "paged_attention: seq_lens[%lld] = %lld is less than its %lld new tokens (seq_lens counts the new tokens too)",
                    static_cast<long long>(s), static_cast<long long>(L), static_cast<long long>(n));
      return buf;
    }
    if (L > a.maxBlocks * a.blockSize) {
      std::snprintf(buf, bufLen, "paged_attention: seq_lens[%lld] = %lld exceeds the block table (%lld blocks x %lld)", static_cast<long long>(s),
                    static_cast<long long>(L), static_cast<long long>(a.maxBlocks), static_cast<long long>(a.blockSize));
      return buf;
    }
    for (int64_t b = 0; b * a.blockSize < L; b++) {
      const int32_t blk = a.tables[s * a.maxBlocks + b];
      if (blk < 0 || blk >= a.numBlocks) {
        std::snprintf(buf, bufLen, "paged_attention: block_tables[%lld, %lld] = %d is not a block of the pool (0..%lld)", static_cast<long long>(s),
                      static_cast<long long>(b), blk, static_cast<long long>(a.numBlocks - 1));
        return buf;
      }
    }
  }
  return "";
}

void raggedPagedAttention(const RaggedAttention& a) {
  const int64_t H = a.heads, hd = a.headDim, nKv = a.kvHeads, G = H / nKv, width = H * hd;
  const int32_t* qs = a.queryStart;
  // padding tokens (outside every sequence's range) get zeros
  std::vector<char> covered(static_cast<size_t>(a.tokens), 0);
  for (int64_t s = 0; s < a.seqs; s++) for (int64_t t = qs[s]; t < qs[s + 1]; t++) covered[t] = 1;
  for (int64_t t = 0; t < a.tokens; t++) if (!covered[t]) std::fill(a.out + t * width, a.out + (t + 1) * width, 0.0f);

  auto pagesOf = [&](int64_t s) {
    PagedKv kv;
    kv.k = a.k; kv.v = a.v; kv.dtype = a.dtype; kv.blockSize = a.blockSize; kv.nKv = nKv; kv.headDim = hd;
    kv.table = a.tables + s * a.maxBlocks;
    return kv;
  };
  // Per-query work the GEMM tile path does not take: (sequence, token, key range).
  struct Item { int64_t s, t, lo, hi; };
  std::vector<Item> items;
  int64_t longest = 1;
  for (int64_t s = 0; s < a.seqs; s++) {
    const int64_t n = qs[s + 1] - qs[s], L = a.seqLens[s];
    if (n == 0) continue;
    if (n > 1 && a.window <= 0 && a.softcap <= 0.0f) {
      pagedAttention(pagesOf(s), a.q + qs[s] * width, a.out + qs[s] * width, n, L - n, H, a.scale);
      continue;
    }
    for (int64_t i = 0; i < n; i++) {
      const int64_t pos = L - n + i;
      const int64_t lo = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
      items.push_back({s, qs[s] + i, lo, pos + 1});
      longest = std::max(longest, pos + 1 - lo);
    }
  }
  if (items.empty()) return;
  // Key chunks (whole pages, >= 64 keys) so that items × kv heads × chunks gives every thread work.
  const int64_t want = std::max<int64_t>(1, (4 * numThreads() + static_cast<int64_t>(items.size()) * nKv - 1) /
                                                (static_cast<int64_t>(items.size()) * nKv));
  int64_t chunkLen = std::max<int64_t>((longest + want - 1) / want, 64);
  chunkLen = (chunkLen + a.blockSize - 1) / a.blockSize * a.blockSize;
  struct Task { int64_t item, kvh, j0, j1; };
  std::vector<Task> tasks;
  std::vector<int64_t> firstTask(items.size() * nKv + 1);
  for (size_t it = 0; it < items.size(); it++) {
    for (int64_t kvh = 0; kvh < nKv; kvh++) {
      firstTask[it * nKv + kvh] = static_cast<int64_t>(tasks.size());
      for (int64_t j0 = items[it].lo; j0 < items[it].hi; j0 += chunkLen)
        tasks.push_back({static_cast<int64_t>(it), kvh, j0, std::min(items[it].hi, j0 + chunkLen)});
    }
  }
  firstTask.back() = static_cast<int64_t>(tasks.size());
  const int64_t stride = G * (2 + hd);
  // kept across calls: a fresh buffer of this size is mmapped, and each call paid its page faults
  thread_local std::vector<float> partBuf;
  if (partBuf.size() < tasks.size() * stride) partBuf.resize(tasks.size() * stride);
  float* const part = partBuf.data();
  bool split = false;
  for (size_t w = 0; w + 1 < firstTask.size(); w++) split = split || firstTask[w + 1] - firstTask[w] > 1;
  parallelFor(static_cast<int64_t>(tasks.size()), [&](int64_t ti, int) {
    const Task& tk = tasks[ti];
    const Item& item = items[tk.item];
    float* p = part + ti * stride;
    attendRange(pagesOf(item.s), tk.kvh, a.q + item.t * width + tk.kvh * G * hd, G, tk.j0, tk.j1, a.scale, p, p + G, p + 2 * G,
                a.softcap);
    if (split) return;
    // one chunk per (query, kv head): out = o / l here, no merge job
    for (int64_t g = 0; g < G; g++) {
      float* o = a.out + item.t * width + (tk.kvh * G + g) * hd;
      const float inv = 1.0f / p[G + g];
      const float* src = p + 2 * G + g * hd;
      for (int64_t i = 0; i < hd; i++) o[i] = src[i] * inv;
    }
  });
  if (!split) return;
  // Merge the chunks: with M = max m_c, out = Σ_c e^(m_c − M)·o_c / Σ_c e^(m_c − M)·l_c.
  parallelFor(static_cast<int64_t>(items.size()) * nKv, [&](int64_t w, int) {
    const int64_t it = w / nKv, kvh = w % nKv;
    const int64_t c0 = firstTask[w], c1 = firstTask[w + 1];
    for (int64_t g = 0; g < G; g++) {
      float M = -std::numeric_limits<float>::infinity();
      for (int64_t c = c0; c < c1; c++) M = std::max(M, part[c * stride + g]);
      float* o = a.out + items[it].t * width + (kvh * G + g) * hd;
      std::fill(o, o + hd, 0.0f);
      float L = 0.0f;
      for (int64_t c = c0; c < c1; c++) {
        const float* p = part + c * stride;
        const float wgt = std::exp(p[g] - M);
        L += wgt * p[G + g];
        axpy(wgt, p + 2 * G + g * hd, o, hd);
      }
      const float inv = 1.0f / L;
      for (int64_t i = 0; i < hd; i++) o[i] *= inv;
    }
  });
}

void pagedWriteSlots(void* pool, KvDtype dtype, const float* rows, const int32_t* slots, int64_t tokens, int64_t kvHeads, int64_t headDim,
                     int64_t blockSize) {
  for (int64_t t = 0; t < tokens; t++) {
    const int64_t slot = slots[t];
    if (slot < 0) continue;
    const int64_t blk = slot / blockSize, off = slot % blockSize;
    for (int64_t h = 0; h < kvHeads; h++) {
      const float* src = rows + (t * kvHeads + h) * headDim;
      if (dtype == KvDtype::i8) {
        int8_t* tile = static_cast<int8_t*>(pool) + (blk * kvHeads + h) * blockSize * (headDim + 4);
        const float scale = quantizeRowI8(src, tile + off * headDim, headDim);
        std::memcpy(tile + blockSize * headDim + off * 4, &scale, 4);
        continue;
      }
      const int64_t at = ((blk * kvHeads + h) * blockSize + off) * headDim;
      if (dtype == KvDtype::f16) toHalfRow(src, static_cast<uint16_t*>(pool) + at, headDim);
      else std::memcpy(static_cast<float*>(pool) + at, src, static_cast<size_t>(headDim) * 4);
    }
  }
}

}  // namespace inferjit
