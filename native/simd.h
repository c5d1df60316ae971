// The SIMD layer: one float vector type `VecF` chosen at compile time (AVX-512, AVX2+FMA, or
// scalar), plus vectorized exp/erf/sigmoid used by activations, softmax and attention. Kernels
// are written once against VecF; `kIsa` names the path that was compiled in.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace inferjit {

// Asks for the cache line holding p in L1. Written as a volatile asm statement, not _mm_prefetch:
// GCC 12 deduces that a function whose only effect is a prefetch builtin is const and deletes calls
// to it (a void const call does nothing), so a helper that only prefetches vanished from the
// binary without a word (found in paged attention's page prefetcher).
inline void prefetchLine(const void* p) {
#if defined(__x86_64__)
  __asm__ volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 3);
#endif
}

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define IJ_AVX512 1
constexpr const char* kIsa = "avx512";
struct VecF {
  static constexpr int W = 16;
  __m512 v;
  VecF() = default;
  VecF(__m512 x) : v(x) {}
  static VecF load(const float* p) { return _mm512_loadu_ps(p); }
  static VecF set1(float x) { return _mm512_set1_ps(x); }
  static VecF zero() { return _mm512_setzero_ps(); }
  // First n (< W) lanes; the rest read as zero and are never touched in memory.
  static VecF loadPartial(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void storePartial(float* p, int n) const { _mm512_mask_storeu_ps(p, mask(n), v); }
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  float sum() const { return _mm512_reduce_add_ps(v); }
  float max() const { return _mm512_reduce_max_ps(v); }
};
inline VecF operator+(VecF a, VecF b) { return _mm512_add_ps(a.v, b.v); }
inline VecF operator-(VecF a, VecF b) { return _mm512_sub_ps(a.v, b.v); }
inline VecF operator*(VecF a, VecF b) { return _mm512_mul_ps(a.v, b.v); }
inline VecF operator/(VecF a, VecF b) { return _mm512_div_ps(a.v, b.v); }
inline VecF fmadd(VecF a, VecF b, VecF c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }  // a*b+c
inline VecF vmax(VecF a, VecF b) { return _mm512_max_ps(a.v, b.v); }
inline VecF vmin(VecF a, VecF b) { return _mm512_min_ps(a.v, b.v); }
inline VecF vabs(VecF a) { return _mm512_abs_ps(a.v); }
inline VecF copysignv(VecF mag, VecF sgn) {
  const __m512i m = _mm512_set1_epi32(0x80000000);
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(m, _mm512_castps_si512(mag.v)),
                                             _mm512_and_si512(m, _mm512_castps_si512(sgn.v))));
}
// 2^n for integral-valued float n in [-126, 127].
inline VecF pow2i(VecF n) {
  __m512i i = _mm512_cvtps_epi32(n.v);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23));
}
// exp's special cases on the original input x: 0 below lo, +inf above hi, NaN stays NaN.
inline VecF expSpecial(VecF v, VecF x, float lo, float hi) {
  __m512 r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x.v, _mm512_set1_ps(lo), _CMP_NLT_UQ), v.v);
  r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x.v, _mm512_set1_ps(hi), _CMP_GT_OQ), _mm512_set1_ps(__builtin_inff()));
  return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x.v, x.v, _CMP_UNORD_Q), x.v);
}
inline VecF roundv(VecF a) { return _mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

#elif defined(__AVX2__) && defined(__FMA__)
#define IJ_AVX2 1
constexpr const char* kIsa = "avx2";
struct VecF {
  static constexpr int W = 8;
  __m256 v;
  VecF() = default;
  VecF(__m256 x) : v(x) {}
  static VecF load(const float* p) { return _mm256_loadu_ps(p); }
  static VecF set1(float x) { return _mm256_set1_ps(x); }
  static VecF zero() { return _mm256_setzero_ps(); }
  static VecF loadPartial(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void storePartial(float* p, int n) const { _mm256_maskstore_ps(p, mask(n), v); }
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  float sum() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  float max() const {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};
inline VecF operator+(VecF a, VecF b) { return _mm256_add_ps(a.v, b.v); }
inline VecF operator-(VecF a, VecF b) { return _mm256_sub_ps(a.v, b.v); }
inline VecF operator*(VecF a, VecF b) { return _mm256_mul_ps(a.v, b.v); }
inline VecF operator/(VecF a, VecF b) { return _mm256_div_ps(a.v, b.v); }
inline VecF fmadd(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
inline VecF vmax(VecF a, VecF b) { return _mm256_max_ps(a.v, b.v); }
inline VecF vmin(VecF a, VecF b) { return _mm256_min_ps(a.v, b.v); }
inline VecF vabs(VecF a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v); }
inline VecF copysignv(VecF mag, VecF sgn) {
  const __m256 m = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(m, mag.v), _mm256_and_ps(m, sgn.v));
}
inline VecF pow2i(VecF n) {
  __m256i i = _mm256_cvtps_epi32(n.v);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23));
}
inline VecF expSpecial(VecF v, VecF x, float lo, float hi) {
  __m256 r = _mm256_and_ps(_mm256_cmp_ps(x.v, _mm256_set1_ps(lo), _CMP_NLT_UQ), v.v);
  r = _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x.v, _mm256_set1_ps(hi), _CMP_GT_OQ));
  return _mm256_blendv_ps(r, x.v, _mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
}
inline VecF roundv(VecF a) { return _mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

#else
constexpr const char* kIsa = "scalar";
struct VecF {
  static constexpr int W = 1;
  float v;
  VecF() = default;
  VecF(float x) : v(x) {}
  static VecF load(const float* p) { return *p; }
  static VecF set1(float x) { return x; }
  static VecF zero() { return 0.0f; }
  static VecF loadPartial(const float* p, int n) { return n > 0 ? *p : 0.0f; }
  void store(float* p) const { *p = v; }
  void storePartial(float* p, int n) const { if (n > 0) *p = v; }
  float sum() const { return v; }
  float max() const { return v; }
};
inline VecF operator+(VecF a, VecF b) { return a.v + b.v; }
inline VecF operator-(VecF a, VecF b) { return a.v - b.v; }
inline VecF operator*(VecF a, VecF b) { return a.v * b.v; }
inline VecF operator/(VecF a, VecF b) { return a.v / b.v; }
inline VecF fmadd(VecF a, VecF b, VecF c) { return std::fma(a.v, b.v, c.v); }
inline VecF vmax(VecF a, VecF b) { return a.v > b.v ? a.v : b.v; }
inline VecF vmin(VecF a, VecF b) { return a.v < b.v ? a.v : b.v; }
inline VecF vabs(VecF a) { return std::fabs(a.v); }
inline VecF copysignv(VecF mag, VecF sgn) { return std::copysign(mag.v, sgn.v); }
inline VecF pow2i(VecF n) { return std::ldexp(1.0f, static_cast<int>(n.v)); }
inline VecF expSpecial(VecF v, VecF x, float lo, float hi) {
  return x.v != x.v ? x.v : x.v < lo ? 0.0f : x.v > hi ? __builtin_inff() : v.v;
}
inline VecF roundv(VecF a) { return std::nearbyint(a.v); }
#endif

constexpr int kW = VecF::W;

// exp(x): x = n·ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial (max rel. error
// ~2 ulp on the reduced range); inputs are clamped to [-87.3, 88.7] so 2^n stays a normal float
// inputs below the clamp (masked scores, -inf) give exactly 0, above it +inf, and NaN stays NaN.
// exp(x) = 2^n · p(r): returns p(r) and sets n = round(x·log2 e), with r = x - n·ln2 reduced in two
// steps (Cody-Waite) to keep it exact to fp32 and p a degree-6 polynomial. The caller scales by 2^n.
inline VecF expReduced(VecF x, VecF& n) {
  n = roundv(x * VecF::set1(1.44269504088896341f));
  VecF r = fmadd(n, VecF::set1(-0.693359375f), x);
  r = fmadd(n, VecF::set1(2.12194440e-4f), r);
  VecF p = VecF::set1(1.0f / 720.0f);
  p = fmadd(p, r, VecF::set1(1.0f / 120.0f));
  p = fmadd(p, r, VecF::set1(1.0f / 24.0f));
  p = fmadd(p, r, VecF::set1(1.0f / 6.0f));
  p = fmadd(p, r, VecF::set1(0.5f));
  p = fmadd(p, r, VecF::set1(1.0f));
  return fmadd(p, r, VecF::set1(1.0f));
}

inline VecF expv(VecF x0) {
  VecF x = x0;
  x = vmin(vmax(x, VecF::set1(-87.33654f)), VecF::set1(88.72283f));
  VecF n;
  const VecF p = expReduced(x, n);
  // n can reach 128 at the top clamp; split the scale in two so 2^n never overflows the exponent.
  VecF half = roundv(n * VecF::set1(0.5f));
  return expSpecial(p * pow2i(half) * pow2i(n - half), x0, -87.33654f, 88.72283f);
}

inline VecF sigmoidv(VecF x) { return VecF::set1(1.0f) / (VecF::set1(1.0f) + expv(VecF::zero() - x)); }

// erf(x) as a rational minimax approximation on [-4, 4] (outside, erf is ±1 in fp32); the
// coefficients are the ones Eigen and TensorFlow use, abs. error ~1e-7.
inline VecF erfv(VecF a) {
  VecF x = vmin(vmax(a, VecF::set1(-4.0f)), VecF::set1(4.0f));
  VecF x2 = x * x;
  VecF p = fmadd(x2, VecF::set1(-2.72614225801306e-10f), VecF::set1(2.77068142495902e-08f));
  p = fmadd(x2, p, VecF::set1(-2.10102402082508e-06f));
  p = fmadd(x2, p, VecF::set1(-5.69250639462346e-05f));
  p = fmadd(x2, p, VecF::set1(-7.34990630326855e-04f));
  p = fmadd(x2, p, VecF::set1(-2.95459980854025e-03f));
  p = fmadd(x2, p, VecF::set1(-1.60960333262415e-02f));
  p = p * x;
  VecF q = fmadd(x2, VecF::set1(-1.45660718464996e-05f), VecF::set1(-2.13374055278905e-04f));
  q = fmadd(x2, q, VecF::set1(-1.68282697438203e-03f));
  q = fmadd(x2, q, VecF::set1(-7.37332916720468e-03f));
  q = fmadd(x2, q, VecF::set1(-1.42647390514189e-02f));
  return p / q;
}

// Activation codes shared with the JS side (src/backends/cpu/addon.ts ACTIVATIONS).
enum Act : int { kActNone = 0, kActRelu = 1, kActGelu = 2, kActGeluTanh = 3, kActSilu = 4 };

template <int A>
inline VecF activate(VecF x) {
  if constexpr (A == kActRelu) return vmax(x, VecF::zero());
  if constexpr (A == kActGelu) return VecF::set1(0.5f) * x * (VecF::set1(1.0f) + erfv(x * VecF::set1(0.70710678118654752f)));
  // 0.5·x·(1 + tanh(u)) == x·sigmoid(2u): one exp instead of a tanh.
  if constexpr (A == kActGeluTanh) {
    VecF u = x * fmadd(x * x, VecF::set1(0.044715f * 1.5957691216057308f), VecF::set1(1.5957691216057308f));
    return x * sigmoidv(u);
  }
  if constexpr (A == kActSilu) return x * sigmoidv(x);
  return x;
}

inline VecF activateDyn(int act, VecF x) {
  switch (act) {
    case kActRelu: return activate<kActRelu>(x);
    case kActGelu: return activate<kActGelu>(x);
    case kActGeluTanh: return activate<kActGeluTanh>(x);
    case kActSilu: return activate<kActSilu>(x);
    default: return x;
  }
}

// Whether the CPU we run on has what this binary was compiled for.
inline bool cpuSupportsBuild(const char** missing) {
#if defined(IJ_AVX512)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl")) {
    *missing = "AVX-512 (F/BW/DQ/VL)";
    return false;
  }
#elif defined(IJ_AVX2)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    *missing = "AVX2+FMA";
    return false;
  }
#endif
  (void)missing;
  return true;
}

}  // namespace inferjit
