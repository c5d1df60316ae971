// GPTQ's inverse-Hessian factor and column loop (gptq.h). The factor's dot products run in AVX-512
// double lanes (summed in another order than the TypeScript: the factor agrees to rounding, tested
// against it); the column loop keeps the TypeScript's order of summation per value, vectorized
// across columns (the compiler may fuse a product and its sum, so values can differ in the last bit).
#include "gptq.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../simd.h"
#include "../threadpool.h"
#include "fake_quant.h"

namespace inferjit {
namespace {

double dot(const double* a, const double* b, int64_t n) {
  int64_t k = 0;
  double s = 0.0;
#if defined(IJ_AVX512)
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (; k + 16 <= n; k += 16) {
    s0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k), _mm512_loadu_pd(b + k), s0);
    s1 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k + 8), _mm512_loadu_pd(b + k + 8), s1);
  }
  for (; k + 8 <= n; k += 8) s0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k), _mm512_loadu_pd(b + k), s0);
  s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
#endif
  for (; k < n; k++) s += a[k] * b[k];
  return s;
}

// Cholesky columns per diagonal block: the rows below a block run in parallel, each reading the
// block's rows (kept in cache across the rows of one thread).
constexpr int64_t kCholeskyBlock = 32;

}  // namespace

int64_t gptqInverseFactor(const double* H, int64_t K, double* U) {
  // M: the lower Cholesky factor of A = J H J (A[i][j] = H[K−1−i][K−1−j]), row by row
  std::vector<double> M(static_cast<size_t>(K * K), 0.0);
  auto A = [&](int64_t i, int64_t j) { return H[(K - 1 - i) * K + (K - 1 - j)]; };
  for (int64_t jb = 0; jb < K; jb += kCholeskyBlock) {
    const int64_t je = std::min(K, jb + kCholeskyBlock);
    for (int64_t i = jb; i < je; i++) {
      double* mi = M.data() + i * K;
      for (int64_t j = jb; j <= i; j++) {
        const double s = A(i, j) - dot(mi, M.data() + j * K, j);
        if (i == j) {
          if (!(s > 0.0)) return K - 1 - j;
          mi[i] = std::sqrt(s);
        } else {
          mi[j] = s / M[j * K + j];
        }
      }
    }
    parallelFor(K - je, [&](int64_t t, int) {
      const int64_t i = je + t;
      double* mi = M.data() + i * K;
      for (int64_t j = jb; j < je; j++) mi[j] = (A(i, j) - dot(mi, M.data() + j * K, j)) / M[j * K + j];
    });
  }
  // T[j][i] = (M⁻¹)[i][j]: column j of M⁻¹ by forward substitution, stored as a row; four columns
  // per task so each row of M is read from memory once for four of them
  std::vector<double> T(static_cast<size_t>(K * K), 0.0);
  parallelFor((K + 3) / 4, [&](int64_t g, int) {
    const int64_t j0 = 4 * g, j1 = std::min(K, j0 + 4);
    for (int64_t i = j0; i < K; i++) {
      const double* mi = M.data() + i * K;
      for (int64_t j = j0; j < j1 && j <= i; j++) {
        double* tj = T.data() + j * K;
        tj[i] = ((i == j ? 1.0 : 0.0) - dot(mi + j, tj + j, i - j)) / mi[i];
      }
    }
  });
  // U = J M⁻¹ J: U[i][j] = (M⁻¹)[K−1−i][K−1−j] = T[K−1−j][K−1−i]
  parallelFor(K, [&](int64_t i, int) {
    for (int64_t j = 0; j < K; j++) U[i * K + j] = j < i ? 0.0 : T[(K - 1 - j) * K + (K - 1 - i)];
  });
  return -1;
}

void gptqColumns(double* W, int64_t N, int64_t K, const double* U, const float* scales, int64_t groupSize, const int32_t* perm, int format,
                 int64_t block, float* codes) {
  const int64_t groups = K / groupSize;
  // one task per tile of rows: each row's error over the current block, then the tile's batched
  // update, which reads each value of U once for all the tile's rows
  constexpr int64_t kTile = 8;
  parallelFor((N + kTile - 1) / kTile, [&](int64_t tile, int) {
    const int64_t n0 = tile * kTile, rows = std::min(kTile, N - n0);
    std::vector<double> err(static_cast<size_t>(kTile * block));
    for (int64_t b0 = 0; b0 < K; b0 += block) {
      const int64_t b1 = std::min(K, b0 + block), nb = b1 - b0;
      for (int64_t r = 0; r < rows; r++) {
        double* w = W + (n0 + r) * K;
        const float* sc = scales + (n0 + r) * groups;
        float* c = codes + (n0 + r) * K;
        for (int64_t i = b0; i < b1; i++) {
          const int64_t col = perm[i];
          const double s = sc[col / groupSize], wi = w[i];
          const double q = fakeQuantCode(wi, s, format);
          c[col] = static_cast<float>(q);
          const double e = (wi - q * s) / U[i * K + i];
          err[r * block + (i - b0)] = e;
          const double* ui = U + i * K;
          for (int64_t j = i + 1; j < b1; j++) w[j] -= e * ui[j];
        }
      }
      // columns after the block: w[j] −= Σ_i err[i]·U[i][j], the sum over the block in order
      int64_t j = b1;
#if defined(IJ_AVX512)
      for (; j + 8 <= K; j += 8) {
        __m512d acc[kTile];
        for (int64_t r = 0; r < kTile; r++) acc[r] = _mm512_setzero_pd();
        for (int64_t i = 0; i < nb; i++) {
          const __m512d u = _mm512_loadu_pd(U + (b0 + i) * K + j);
          for (int64_t r = 0; r < kTile; r++) acc[r] = _mm512_add_pd(acc[r], _mm512_mul_pd(_mm512_set1_pd(err[r * block + i]), u));
        }
        for (int64_t r = 0; r < rows; r++) {
          double* w = W + (n0 + r) * K + j;
          _mm512_storeu_pd(w, _mm512_sub_pd(_mm512_loadu_pd(w), acc[r]));
        }
      }
#endif
      for (; j < K; j++) {
        for (int64_t r = 0; r < rows; r++) {
          double acc = 0.0;
          for (int64_t i = 0; i < nb; i++) acc += err[r * block + i] * U[(b0 + i) * K + j];
          W[(n0 + r) * K + j] -= acc;
        }
      }
    }
  });
}

}  // namespace inferjit
