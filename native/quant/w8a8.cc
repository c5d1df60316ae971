// W8A8 (int8 × int8 → int32, AVX-512 VNNI) and FP8 E4M3 weight (converted to fp32 in registers)
// GEMM kernels; layouts and numerics in w8a8.h. Both are register-blocked: a tile of up to 3 (INT8)
// or 6 (FP8) rows of A × 4 groups of 16 output channels (64 columns) keeps its accumulators in zmm
// registers, so prefill reads each packed weight byte once per tile of rows and decode runs the same
// code with fewer rows. Work is split over the pool by 64-column tiles and chunks of rows.
#include "w8a8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {

namespace {

constexpr int kMR = 6;         // rows of A per register tile (FP8)
constexpr int kNG = 4;         // 16-channel groups per register tile (64 columns)
constexpr int64_t kRowChunk = 96;  // rows per task (a multiple of kMR): prefill splits into more tasks

thread_local std::vector<uint8_t> tAq;  // quantized activations (int8 + 128), rows padded to 4
thread_local std::vector<float> tAf;    // E4M3-rounded activations (fp8 with actFp8)
thread_local std::vector<float> tSa;    // per-row activation scales

// What every tile's epilogue needs.
struct Epilogue {
  const int32_t* colSum;
  const float* scales;
  const float* bias;
  const float* residual;
  int64_t ldr;
  float* out;
  int64_t N;
  const float* sa;  // per-row scales, or null (1)
  int act;
};

float rowAbsMax(const float* x, int64_t K) {
  int64_t k = 0;
  VecF m = VecF::zero();
  for (; k + kW <= K; k += kW) m = vmax(m, vabs(VecF::load(x + k)));
  if (k < K) m = vmax(m, vabs(VecF::loadPartial(x + k, static_cast<int>(K - k))));
  return m.max();
}

// Round half away from zero (the reference's roundSym) of fp32 values.
#if defined(IJ_AVX512)
inline __m512 roundHalfAway(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = copysignv(VecF::set1(1.0f), VecF(v)).v;
  return _mm512_mask_add_ps(t, up, t, one);
}
#endif

// q + 128 of row x (K values) into K4 = 4·ceil(K/4) bytes; returns the row's scale.
float quantizeRowI8(const float* x, int64_t K, int64_t K4, uint8_t* q) {
  const float s = rowAbsMax(x, K) / 127.0f;
  if (!(s > 0)) {
    std::memset(q, 128, static_cast<size_t>(K4));
    return 0.0f;
  }
  int64_t k = 0;
#if defined(IJ_AVX512)
  const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  const __m512i off = _mm512_set1_epi32(128);
  for (; k < K; k += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, K - k));
    const __mmask16 mk = n == 16 ? static_cast<__mmask16>(0xFFFF) : VecF::mask(n);
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(mk, x + k), vs);
    v = _mm512_min_ps(_mm512_max_ps(roundHalfAway(v), lo), hi);
    const __m512i qi = _mm512_add_epi32(_mm512_cvtps_epi32(v), off);
    _mm_mask_storeu_epi8(q + k, mk, _mm512_cvtepi32_epi8(qi));
  }
  k = K;
#endif
  for (; k < K; k++) {
    const float v = std::round(x[k] / s);
    q[k] = static_cast<uint8_t>(static_cast<int>(std::min(127.0f, std::max(-127.0f, v))) + 128);
  }
  for (int64_t p = K; p < K4; p++) q[p] = 128;
  return s;
}

// x rounded to E4M3 (round to nearest even, clamped to ±448) for |x| within range.
float roundE4M3(float x) {
  const float a = std::fabs(x);
  if (!(a > 0)) return 0.0f;
  if (a >= 448.0f) return std::copysign(448.0f, x);
  float r;
  if (a < 0.015625f) {
    r = std::nearbyint(a * 512.0f) * (1.0f / 512.0f);  // subnormals: a fixed step of 2^-9
  } else {
    uint32_t b;
    std::memcpy(&b, &a, 4);
    b = (b + 0x7FFFFu + ((b >> 20) & 1u)) & ~0xFFFFFu;  // keep 3 mantissa bits, ties to even
    std::memcpy(&r, &b, 4);
  }
  return std::copysign(std::min(r, 448.0f), x);
}

float quantizeRowE4M3(const float* x, int64_t K, float* out) {
  const float s = rowAbsMax(x, K) / 448.0f;
  if (!(s > 0)) {
    std::fill(out, out + K, 0.0f);
    return 0.0f;
  }
  int64_t k = 0;
#if defined(IJ_AVX512)
  const __m512 vs = _mm512_set1_ps(s);
  for (; k + 16 <= K; k += 16) {
    const __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + k), vs);
    const __m512 a = _mm512_abs_ps(v);
    __m512i b = _mm512_castps_si512(a);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 20), _mm512_set1_epi32(1));
    b = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFFF), lsb));
    b = _mm512_and_si512(b, _mm512_set1_epi32(static_cast<int>(~0xFFFFFu)));
    const __m512 normal = _mm512_castsi512_ps(b);
    const __m512 sub = _mm512_mul_ps(_mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(512.0f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                     _mm512_set1_ps(1.0f / 512.0f));
    const __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.015625f), _CMP_LT_OQ);
    __m512 r = _mm512_mask_mov_ps(normal, small, sub);
    r = _mm512_min_ps(r, _mm512_set1_ps(448.0f));
    _mm512_storeu_ps(out + k, copysignv(VecF(r), VecF(v)).v);
  }
#endif
  for (; k < K; k++) out[k] = roundE4M3(x[k] / s);
  return s;
}

// One output group's epilogue: lanes [n, n + cnt) of row m from the float accumulator v.
inline void finish(const Epilogue& e, int64_t m, int64_t n, VecF v) {
  // 16 lanes per group: on a build with narrower vectors the group comes in kW-wide pieces
  static_assert(kW8GroupRows % kW == 0, "a group must be a multiple of the vector width");
  const int cnt = static_cast<int>(std::min<int64_t>(kW, e.N - n));
  if (cnt <= 0) return;
  VecF sc = VecF::load(e.scales + n);
  if (e.sa) sc = sc * VecF::set1(e.sa[m]);
  VecF y = e.bias ? fmadd(v, sc, VecF::loadPartial(e.bias + n, cnt)) : v * sc;
  y = activateDyn(e.act, y);
  if (e.residual) y = y + VecF::loadPartial(e.residual + m * e.ldr + n, cnt);
  float* o = e.out + m * e.N + n;
  if (cnt == kW) y.store(o);
  else y.storePartial(o, cnt);
}

#if defined(IJ_AVX512) && defined(__AVX512VNNI__)
#define IJ_W8A8_VNNI 1

// acc[m][g] += the k-quads [j0, j1) of rows m (activations q + 128, rows ldq apart) against group
// g's packed weights (groups gs bytes apart): per quad, one 4-byte broadcast per row and one
// vpdpbusd per (row, group).
template <int MR, int NG>
__attribute__((always_inline)) inline void dotQuads(const uint8_t* ap, int64_t ldq, const uint8_t* wp, int64_t gs, int64_t j0, int64_t j1,
                                                    __m512i (&acc)[MR][NG]) {
  for (int64_t j = j0; j < j1; j++) {
    __m512i b[NG];
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++) b[g] = _mm512_loadu_si512(wp + g * gs + j * 64);
#pragma GCC unroll 8
    for (int m = 0; m < MR; m++) {
      int32_t quad;
      std::memcpy(&quad, ap + m * ldq + 4 * j, 4);
      const __m512i av = _mm512_set1_epi32(quad);
#pragma GCC unroll 8
      for (int g = 0; g < NG; g++) acc[m][g] = _mm512_dpbusd_epi32(acc[m][g], av, b[g]);
    }
  }
}

// Every accumulator of an MR × NG register tile set to v (the tiles' loops unroll over both).
template <int MR, int NG, typename V>
inline void fillTile(V (&acc)[MR][NG], V v) {
#pragma GCC unroll 8
  for (int m = 0; m < MR; m++)
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++) acc[m][g] = v;
}

// The epilogue of an MR × NG tile of fp32 sums: rows m0.., channel groups g0...
template <int MR, int NG>
inline void finishTile(const Epilogue& e, int64_t m0, int64_t g0, const __m512 (&acc)[MR][NG]) {
#pragma GCC unroll 8
  for (int m = 0; m < MR; m++)
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++) finish(e, m0 + m, (g0 + g) * kW8GroupRows, VecF(acc[m][g]));
}

template <int MR, int NG>
void tileI8(const uint8_t* aq, int64_t ldq, const uint8_t* w, int64_t Kq, int64_t m0, int64_t g0, const Epilogue& e) {
  __m512i acc[MR][NG];
  fillTile<MR, NG>(acc, _mm512_setzero_si512());
  const int64_t gs = Kq * 64;
  const uint8_t* wp = w + g0 * gs;
  const uint8_t* ap = aq + m0 * ldq;
  dotQuads<MR, NG>(ap, ldq, wp, gs, 0, Kq, acc);
#pragma GCC unroll 8
  for (int m = 0; m < MR; m++) {
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++) {
      const int64_t n = (g0 + g) * kW8GroupRows;
      const __m512i exact = _mm512_sub_epi32(acc[m][g], _mm512_loadu_si512(e.colSum + n));
      finish(e, m0 + m, n, VecF(_mm512_cvtepi32_ps(exact)));
    }
  }
}

// Per-group activation scales (W8GemmArgs::group): per 32-value block, int32 dots start from the
// block's −128·Σw (so they come out exact), then float(dot)·sa[m][b] joins an fp32 accumulator.
// Int and float accumulators both live in registers, so a tile is 3 rows × 4 groups (24 of the 32
// zmm registers; each weight vector serves 3 rows instead of 6).
template <int MR, int NG>
void tileI8G(const uint8_t* aq, int64_t ldq, const float* sa, int64_t nbk, const uint8_t* w, const int32_t* blockSum, int64_t Np,
             int64_t Kq, int64_t m0, int64_t g0, const Epilogue& e) {
  __m512 accf[MR][NG];
  fillTile<MR, NG>(accf, _mm512_setzero_ps());
  const int64_t gs = Kq * 64;
  const uint8_t* wp = w + g0 * gs;
  const uint8_t* ap = aq + m0 * ldq;
  constexpr int64_t kQuads = kW8ActGroup / 4;
  for (int64_t blk = 0; blk < nbk; blk++) {
    __m512i acc[MR][NG];
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++) {
      const __m512i c = _mm512_loadu_si512(blockSum + blk * Np + (g0 + g) * kW8GroupRows);
#pragma GCC unroll 8
      for (int m = 0; m < MR; m++) acc[m][g] = c;
    }
    dotQuads<MR, NG>(ap, ldq, wp, gs, blk * kQuads, std::min(Kq, (blk + 1) * kQuads), acc);
#pragma GCC unroll 8
    for (int m = 0; m < MR; m++) {
      const __m512 s = _mm512_set1_ps(sa[(m0 + m) * nbk + blk]);
#pragma GCC unroll 8
      for (int g = 0; g < NG; g++) accf[m][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][g]), s, accf[m][g]);
    }
  }
  finishTile<MR, NG>(e, m0, g0, accf);
}

// E4M3 bits of 2 consecutive k (32 bytes: k's 16 channels, then k+1's) as 2 × 16 floats (value·2^-8).
inline void e4m3x32(const uint8_t* p, __m512& lo, __m512& hi) {
  __m512i u = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  u = _mm512_slli_epi16(u, 7);  // exponent and mantissa into fp16's place; the sign lands on bit 14
  u = _mm512_add_epi16(u, _mm512_and_si512(u, _mm512_set1_epi16(0x4000)));  // bit 14 → bit 15
  lo = _mm512_cvtph_ps(_mm512_castsi512_si256(u));
  hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(u, 1));
}
inline __m512 e4m3x16(const uint8_t* p) {
  __m256i u = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  u = _mm256_slli_epi16(u, 7);
  u = _mm256_add_epi16(u, _mm256_and_si256(u, _mm256_set1_epi16(0x4000)));
  return _mm512_cvtph_ps(u);
}

template <int MR, int NG>
void tileF8(const float* a, int64_t lda, const uint8_t* w, int64_t K, int64_t m0, int64_t g0, const Epilogue& e) {
  __m512 acc[MR][NG];
  fillTile<MR, NG>(acc, _mm512_setzero_ps());
  const int64_t gs = K * 16;
  const uint8_t* wp = w + g0 * gs;
  const float* ap = a + m0 * lda;
  int64_t k = 0;
  for (; k + 2 <= K; k += 2) {
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++) {
      __m512 w0, w1;
      e4m3x32(wp + g * gs + k * 16, w0, w1);
#pragma GCC unroll 8
      for (int m = 0; m < MR; m++) {
        acc[m][g] = _mm512_fmadd_ps(_mm512_set1_ps(ap[m * lda + k]), w0, acc[m][g]);
        acc[m][g] = _mm512_fmadd_ps(_mm512_set1_ps(ap[m * lda + k + 1]), w1, acc[m][g]);
      }
    }
  }
  if (k < K) {
#pragma GCC unroll 8
    for (int g = 0; g < NG; g++) {
      const __m512 w0 = e4m3x16(wp + g * gs + k * 16);
#pragma GCC unroll 8
      for (int m = 0; m < MR; m++) acc[m][g] = _mm512_fmadd_ps(_mm512_set1_ps(ap[m * lda + k]), w0, acc[m][g]);
    }
  }
  finishTile<MR, NG>(e, m0, g0, acc);
}
#endif

#if !defined(IJ_W8A8_VNNI)
// Portable loops over the same layouts (builds without AVX-512 VNNI).
float e4m3Value(uint8_t b) {
  const int e = (b >> 3) & 15, mant = b & 7;
  const float v = e == 0 ? std::ldexp(static_cast<float>(mant), -9) : std::ldexp(1.0f + mant / 8.0f, e - 7);
  return (b & 0x80 ? -v : v) * (1.0f / 256.0f);  // the packer's scales carry the 256
}

void tileI8Scalar(const uint8_t* aq, int64_t ldq, const uint8_t* w, int64_t Kq, int64_t m0, int mr, int64_t g0, int ng, const Epilogue& e) {
  for (int m = 0; m < mr; m++) {
    for (int g = 0; g < ng; g++) {
      float v[kW8GroupRows];
      for (int r = 0; r < kW8GroupRows; r++) {
        int32_t acc = 0;
        for (int64_t j = 0; j < Kq * 4; j++) acc += static_cast<int32_t>(aq[(m0 + m) * ldq + j]) * static_cast<int8_t>(w[((g0 + g) * Kq + j / 4) * 64 + 4 * r + j % 4]);
        v[r] = static_cast<float>(acc - e.colSum[(g0 + g) * kW8GroupRows + r]);
      }
      for (int r = 0; r < kW8GroupRows; r += kW) finish(e, m0 + m, (g0 + g) * kW8GroupRows + r, VecF::load(v + r));
    }
  }
}

void tileI8GScalar(const uint8_t* aq, int64_t ldq, const float* sa, int64_t nbk, const uint8_t* w, const int32_t* blockSum, int64_t Np,
                   int64_t Kq, int64_t m0, int mr, int64_t g0, int ng, const Epilogue& e) {
  for (int m = 0; m < mr; m++) {
    for (int g = 0; g < ng; g++) {
      float v[kW8GroupRows];
      for (int r = 0; r < kW8GroupRows; r++) {
        const int64_t n = (g0 + g) * kW8GroupRows + r;
        float acc = 0.0f;
        for (int64_t blk = 0; blk < nbk; blk++) {
          int32_t dot = blockSum[blk * Np + n];
          const int64_t j1 = std::min(Kq * 4, (blk + 1) * kW8ActGroup);
          for (int64_t j = blk * kW8ActGroup; j < j1; j++) dot += static_cast<int32_t>(aq[(m0 + m) * ldq + j]) * static_cast<int8_t>(w[((g0 + g) * Kq + j / 4) * 64 + 4 * r + j % 4]);
          acc = std::fma(static_cast<float>(dot), sa[(m0 + m) * nbk + blk], acc);
        }
        v[r] = acc;
      }
      for (int r = 0; r < kW8GroupRows; r += kW) finish(e, m0 + m, (g0 + g) * kW8GroupRows + r, VecF::load(v + r));
    }
  }
}

void tileF8Scalar(const float* a, int64_t lda, const uint8_t* w, int64_t K, int64_t m0, int mr, int64_t g0, int ng, const Epilogue& e) {
  for (int m = 0; m < mr; m++) {
    for (int g = 0; g < ng; g++) {
      float v[kW8GroupRows];
      for (int r = 0; r < kW8GroupRows; r++) {
        float acc = 0;
        for (int64_t k = 0; k < K; k++) acc += a[(m0 + m) * lda + k] * e4m3Value(w[((g0 + g) * K + k) * 16 + r]);
        v[r] = acc;
      }
      for (int r = 0; r < kW8GroupRows; r += kW) finish(e, m0 + m, (g0 + g) * kW8GroupRows + r, VecF::load(v + r));
    }
  }
}
#endif

// Runs tile(mr, ng, m0, g0) over every (row block, 64-column tile) on the pool. A column tile's
// row chunks are consecutive tasks, so a thread usually finds that tile's weights (K·64 bytes) still
// in its L2 for the next chunk; chunk-major order streamed all of N's weights from L3/DRAM once per
// chunk (the 5632-wide gate/up GEMM at 128 rows ran at 0.6× the rate of the 2048-wide ones).
template <int MRows = kMR, typename Tile>
void forTiles(int64_t M, int64_t N, Tile&& tile) {
  static_assert(kRowChunk % MRows == 0, "row chunks hold whole register tiles");
  const int64_t groups = (N + kW8GroupRows - 1) / kW8GroupRows;
  const int64_t colTiles = (groups + kNG - 1) / kNG;
  const int64_t chunks = (M + kRowChunk - 1) / kRowChunk;
  parallelFor(colTiles * chunks, [&](int64_t t, int) {
    const int64_t g0 = (t / chunks) * kNG, chunk = t % chunks;
    const int ng = static_cast<int>(std::min<int64_t>(kNG, groups - g0));
    const int64_t m1 = std::min(M, (chunk + 1) * kRowChunk);
    for (int64_t m0 = chunk * kRowChunk; m0 < m1; m0 += MRows) tile(static_cast<int>(std::min<int64_t>(MRows, m1 - m0)), ng, m0, g0);
  });
}

// Calls f(Rows, Groups) with the register tile's height and width as compile-time constants
// (std::integral_constant), for a tile of mr ≤ MaxRows rows and ng ≤ 4 groups: the tiles' loops
// unroll over both.
template <int R>
using RowsC = std::integral_constant<int, R>;
template <int R, typename F>
void withGroups(int ng, F& f) {
  switch (ng) {
    case 1: f(RowsC<R>(), RowsC<1>()); break;
    case 2: f(RowsC<R>(), RowsC<2>()); break;
    case 3: f(RowsC<R>(), RowsC<3>()); break;
    default: f(RowsC<R>(), RowsC<4>()); break;
  }
}
template <int MaxRows, int R = 1, typename F>
void dispatchTile(int mr, int ng, F&& f) {
  if constexpr (R < MaxRows) {
    if (mr > R) return dispatchTile<MaxRows, R + 1>(mr, ng, f);
  }
  withGroups<R>(ng, f);
}

// Rows per INT8 register tile, per-token (tileI8) and per-group (tileI8G) alike. 6 rows × 4 groups
// (24 accumulators) measured 1.4-1.6× slower than 3 × 4 at 128 rows on Zen 4 (bench/quant.ts --gemm:
// q/o 3.3-3.8 → 1.7-2.8 ms, gate/up 7.5-8.7 → 5.1-5.6, down 7.2-9.5 → 5.1-5.9); FP8 keeps 6 rows
// (its E4M3 → fp32 conversion of a weight vector is shared by more rows).
constexpr int kI8MR = 3;

Epilogue epilogueOf(const W8GemmArgs& p, const float* sa) {
  return Epilogue{p.colSum, p.scales, p.bias, p.residual, p.ldr, p.out, p.N, sa, p.act};
}

}  // namespace

const char* w8a8Isa() {
#if defined(IJ_W8A8_VNNI)
  return "avx512-vnni";
#else
  return "scalar";
#endif
}

// Per-group activation scales: each row quantized per block of kW8ActGroup values (the last block
// K % 32 values), scales at s[m·nbk + b]; the k-quad padding past K is 128 (zero).
void w8a8GemmGroups(const W8GemmArgs& p) {
  const int64_t M = p.M, K = p.K, Kq = (K + 3) / 4, ldq = Kq * 4, nbk = (K + kW8ActGroup - 1) / kW8ActGroup;
  const int64_t Np = (p.N + kW8GroupRows - 1) / kW8GroupRows * kW8GroupRows;
  std::vector<uint8_t>& aq = tAq;
  std::vector<float>& sa = tSa;
  aq.resize(static_cast<size_t>(M * ldq));
  sa.resize(static_cast<size_t>(M * nbk));
  uint8_t* q = aq.data();
  float* s = sa.data();
  parallelFor(M, [&](int64_t m, int) {
    const float* x = p.a + m * p.lda;
    uint8_t* qm = q + m * ldq;
    for (int64_t b = 0; b < nbk; b++) {
      const int64_t k0 = b * kW8ActGroup, n = std::min<int64_t>(kW8ActGroup, K - k0);
      s[m * nbk + b] = quantizeRowI8(x + k0, n, n, qm + k0);
    }
    for (int64_t k = K; k < ldq; k++) qm[k] = 128;
  });
  const Epilogue e = epilogueOf(p, nullptr);
  forTiles<kI8MR>(M, p.N, [&](int mr, int ng, int64_t m0, int64_t g0) {
#if defined(IJ_W8A8_VNNI)
    dispatchTile<kI8MR>(mr, ng, [&](auto R, auto G) { tileI8G<decltype(R)::value, decltype(G)::value>(q, ldq, s, nbk, p.weight, p.colSum, Np, Kq, m0, g0, e); });
#else
    tileI8GScalar(q, ldq, s, nbk, p.weight, p.colSum, Np, Kq, m0, mr, g0, ng, e);
#endif
  });
}

void w8a8Gemm(const W8GemmArgs& p) {
  if (p.group == kW8ActGroup) return w8a8GemmGroups(p);
  const int64_t M = p.M, K = p.K, Kq = (K + 3) / 4, ldq = Kq * 4;
  std::vector<uint8_t>& aq = tAq;
  std::vector<float>& sa = tSa;
  aq.resize(static_cast<size_t>(M * ldq));
  sa.resize(static_cast<size_t>(M));
  uint8_t* q = aq.data();
  float* s = sa.data();
  parallelFor(M, [&](int64_t m, int) { s[m] = quantizeRowI8(p.a + m * p.lda, K, ldq, q + m * ldq); });
  const Epilogue e = epilogueOf(p, s);
  forTiles<kI8MR>(M, p.N, [&](int mr, int ng, int64_t m0, int64_t g0) {
#if defined(IJ_W8A8_VNNI)
    dispatchTile<kI8MR>(mr, ng, [&](auto R, auto G) { tileI8<decltype(R)::value, decltype(G)::value>(q, ldq, p.weight, Kq, m0, g0, e); });
#else
    tileI8Scalar(q, ldq, p.weight, Kq, m0, mr, g0, ng, e);
#endif
  });
}

void fp8Gemm(const W8GemmArgs& p) {
  const int64_t M = p.M, K = p.K;
  const float* a = p.a;
  int64_t lda = p.lda;
  const float* s = nullptr;
  if (p.actFp8) {
    std::vector<float>& af = tAf;
    std::vector<float>& sa = tSa;
    af.resize(static_cast<size_t>(M * K));
    sa.resize(static_cast<size_t>(M));
    float* dst = af.data();
    float* sp = sa.data();
    parallelFor(M, [&](int64_t m, int) { sp[m] = quantizeRowE4M3(p.a + m * p.lda, K, dst + m * K); });
    a = dst;
    lda = K;
    s = sp;
  }
  const Epilogue e = epilogueOf(p, s);
  forTiles(M, p.N, [&](int mr, int ng, int64_t m0, int64_t g0) {
#if defined(IJ_W8A8_VNNI)
    dispatchTile<kMR>(mr, ng, [&](auto R, auto G) { tileF8<decltype(R)::value, decltype(G)::value>(a, lda, p.weight, K, m0, g0, e); });
#else
    tileF8Scalar(a, lda, p.weight, K, m0, mr, g0, ng, e);
#endif
  });
}

}  // namespace inferjit
