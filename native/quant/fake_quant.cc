// Weight fake quantization (fake_quant.h). The arithmetic mirrors numerics.ts operation for
// operation (double quotients and products, f32 stores) so native and TypeScript searches pick the
// same factors; int8 / int4 codes run 8 at a time in AVX-512 double lanes with the same operations,
// fp8 stays scalar. The searches call it once per candidate on weights of up to ~25M values.
#include "fake_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {
namespace {

// numerics.ts roundE4M3: 3 mantissa bits below the leading one, subnormal step 2^-9 below 2^-6,
// round to nearest even, clamped to ±448.
double roundE4M3(double x) {
  const double a = std::fabs(x);
  if (a == 0.0 || std::isnan(a)) return 0.0;
  if (a >= 448.0) return std::copysign(448.0, x);
  int ex = 0;
  std::frexp(a, &ex);  // a = m · 2^ex, m in [0.5, 1): floor(log2 a) = ex − 1
  const int e = std::max(ex - 1, -6);
  const double step = std::ldexp(1.0, e - 3);
  const double q = std::nearbyint(a / step) * step;
  return std::copysign(std::min(q, 448.0), x);
}

inline double code(double x, double scale, int format) {
  if (format == kFqInt8) return std::min(127.0, std::max(-127.0, std::round(x / scale)));
  if (format == kFqInt4) return std::min(7.0, std::max(-8.0, std::round(x / scale)));
  return roundE4M3(x / scale);
}

}  // namespace

double fakeQuantCode(double x, double scale, int format) { return scale > 0.0 ? code(x, scale, format) : 0.0; }

void fakeQuantWeight(const float* w, const double* colScale, int64_t N, int64_t K, int format, int64_t group, float* out, float* codes,
                     float* scales) {
  const int64_t g = format == kFqInt4 ? group : K;
  const int64_t groups = K / g;
  const double div = format == kFqInt8 ? 127.0 : format == kFqInt4 ? 7.0 : 448.0;
  parallelFor(N, [&](int64_t n, int) {
    thread_local std::vector<float> rowStore;
    if (rowStore.size() < static_cast<size_t>(K)) rowStore.resize(static_cast<size_t>(K));
    const float* wr = w + n * K;
    float* row = out ? out + n * K : rowStore.data();  // the scaled row, then (out) its dequantized values
    float* c = codes ? codes + n * K : nullptr;
    for (int64_t k = 0; k < K; k++) row[k] = colScale ? static_cast<float>(static_cast<double>(wr[k]) * colScale[k]) : wr[k];
    for (int64_t gi = 0; gi < groups; gi++) {
      const int64_t g0 = gi * g;
      float amax = 0.0f;
      for (int64_t k = g0; k < g0 + g; k++) amax = std::max(amax, std::fabs(row[k]));
      const float scale = static_cast<float>(static_cast<double>(amax) / div);
      if (scales) scales[n * groups + gi] = scale;
      if (!(scale > 0.0f)) {
        std::fill(row + g0, row + g0 + g, 0.0f);
        if (c) std::fill(c + g0, c + g0 + g, 0.0f);
        continue;
      }
      const double sc = scale;
      int64_t k = g0;
#if defined(IJ_AVX512)
      // int8 / int4, 8 values at a time with the same double arithmetic: q = x / sc exactly as the
      // scalar division, round half away from zero as sign(q)·floor(|q| + 0.5) (exact: |q| ≤ ~128,
      // far above 0.5's ulp), clamp, times sc, rounded to f32
      if (format != kFqFp8) {
        const __m512d scv = _mm512_set1_pd(sc), half = _mm512_set1_pd(0.5);
        const __m512d lo = _mm512_set1_pd(format == kFqInt8 ? -127.0 : -8.0), hi = _mm512_set1_pd(format == kFqInt8 ? 127.0 : 7.0);
        const __m512d signBit = _mm512_set1_pd(-0.0);
        for (; k + 8 <= g0 + g; k += 8) {
          const __m512d q = _mm512_div_pd(_mm512_cvtps_pd(_mm256_loadu_ps(row + k)), scv);
          const __m512d mag = _mm512_roundscale_pd(_mm512_add_pd(_mm512_andnot_pd(signBit, q), half), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
          const __m512d r = _mm512_min_pd(hi, _mm512_max_pd(lo, _mm512_or_pd(mag, _mm512_and_pd(signBit, q))));
          if (c) _mm256_storeu_ps(c + k, _mm512_cvtpd_ps(r));
          _mm256_storeu_ps(row + k, _mm512_cvtpd_ps(_mm512_mul_pd(r, scv)));
        }
      }
#endif
      for (; k < g0 + g; k++) {
        const double q = code(row[k], sc, format);
        if (c) c[k] = static_cast<float>(q);
        row[k] = static_cast<float>(q * sc);
      }
    }
  });
}

}  // namespace inferjit
