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

// dot(a + r·lda, b) over n values for R rows at once (rows lda apart): b is read once for all of them
template <int R>
void dotRows(const double* a, int64_t lda, const double* b, int64_t n, double* out) {
  int64_t k = 0;
  double s[R] = {};
#if defined(IJ_AVX512)
  __m512d v[R];
  for (int r = 0; r < R; r++) v[r] = _mm512_setzero_pd();
  for (; k + 8 <= n; k += 8) {
    const __m512d bv = _mm512_loadu_pd(b + k);
    for (int r = 0; r < R; r++) v[r] = _mm512_fmadd_pd(_mm512_loadu_pd(a + r * lda + k), bv, v[r]);
  }
  for (int r = 0; r < R; r++) s[r] = _mm512_reduce_add_pd(v[r]);
#endif
  for (; k < n; k++) for (int r = 0; r < R; r++) s[r] += a[r * lda + k] * b[k];
  for (int r = 0; r < R; r++) out[r] = s[r];
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
    // the rows below, eight per task: each row of the block is read once for the eight
    constexpr int64_t kRows = 8;
    parallelFor((K - je + kRows - 1) / kRows, [&](int64_t t, int) {
      const int64_t i0 = je + kRows * t, rows = std::min(kRows, K - i0);
      double* m0 = M.data() + i0 * K;
      double s[kRows];
      for (int64_t j = jb; j < je; j++) {
        if (rows == kRows) dotRows<kRows>(m0, K, M.data() + j * K, j, s);
        else for (int64_t r = 0; r < rows; r++) s[r] = dot(m0 + r * K, M.data() + j * K, j);
        for (int64_t r = 0; r < rows; r++) m0[r * K + j] = (A(i0 + r, j) - s[r]) / M[j * K + j];
      }
    });
  }
  // T[j][i] = (M⁻¹)[i][j]: column j of M⁻¹ by forward substitution, stored as a row (zero before
  // index j). Sixteen columns per task, four per dotRows from the quartet's first column (the zeros
  // before each column's start add nothing), so each row of M is read from memory once for sixteen.
  std::vector<double> T(static_cast<size_t>(K * K), 0.0);
  constexpr int64_t kColumns = 16;
  parallelFor((K + kColumns - 1) / kColumns, [&](int64_t g, int) {
    const int64_t j0 = kColumns * g, j1 = std::min(K, j0 + kColumns);
    double s[4];
    for (int64_t i = j0; i < K; i++) {
      const double* mi = M.data() + i * K;
      for (int64_t c0 = j0; c0 < j1; c0 += 4) {
        if (c0 + 4 <= j1 && i >= c0 + 3) {
          double* t0 = T.data() + c0 * K;
          dotRows<4>(t0 + c0, K, mi + c0, i - c0, s);
          for (int64_t r = 0; r < 4; r++) t0[r * K + i] = ((i == c0 + r ? 1.0 : 0.0) - s[r]) / mi[i];
          continue;
        }
        for (int64_t j = c0; j < std::min(j1, c0 + 4) && j <= i; j++) {
          double* tj = T.data() + j * K;
          tj[i] = ((i == j ? 1.0 : 0.0) - dot(mi + j, tj + j, i - j)) / mi[i];
        }
      }
    }
  });
  // U = J M⁻¹ J: U[i][j] = (M⁻¹)[K−1−i][K−1−j] = T[K−1−j][K−1−i], in 16 × 16 tiles (a plain
  // transposing loop misses the cache on every read)
  constexpr int64_t kTile = 16;
  parallelFor((K + kTile - 1) / kTile, [&](int64_t ib, int) {
    const int64_t i0 = ib * kTile, i1 = std::min(K, i0 + kTile);
    for (int64_t j0 = 0; j0 < K; j0 += kTile) {
      const int64_t j1 = std::min(K, j0 + kTile);
      for (int64_t i = i0; i < i1; i++) {
        for (int64_t j = j0; j < j1; j++) U[i * K + j] = j < i ? 0.0 : T[(K - 1 - j) * K + (K - 1 - i)];
      }
    }
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
