// fp32 GEMM: C = epilogue(op(A) · op(B)) with packed panels and a register-blocked microkernel.
//
// Packed-B layout (PackedB): the N columns are cut into panels of kNR columns; panel p holds
// rows k = 0..K-1 of columns [p·kNR, p·kNR + kNR) as kNR consecutive floats per k, i.e.
// data[(p·K + k)·kNR + j] = B[k][p·kNR + j], zero-padded past N. The layout does not depend on the
// cache blocking, so a weight is packed once and reused by every call (and by GEMV, M = 1).
// Packed-A (per thread, per call): micro-panels of kMR rows, data[(i/kMR·kc + k)·kMR + i%kMR].
#pragma once
#include <cstdint>
#include <memory>

#include "../simd.h"

namespace inferjit {

#if defined(IJ_AVX512)
constexpr int kMR = 14, kNR = 32;  // 28 zmm accumulators + 2 B vectors + broadcasts folded into FMAs
#elif defined(IJ_AVX2)
constexpr int kMR = 6, kNR = 16;   // 12 ymm accumulators + 2 B vectors + 1 broadcast
#else
constexpr int kMR = 4, kNR = 2;
#endif

// Applied to each output tile while it is still in registers, after the last K block.
struct Epilogue {
  const float* bias = nullptr;
  bool biasPerRow = false;  // false: bias[n] (linear); true: bias[m] (conv2d as W·im2col)
  int act = kActNone;
  const float* residual = nullptr;  // same layout as C (leading dimension ldr)
  int64_t ldr = 0;
  float alpha = 1.0f;  // scales the product before bias (attention scores)
};

struct PackedB {
  int64_t K = 0, N = 0, panels = 0;
  float* data = nullptr;
  ~PackedB();
  size_t bytes() const { return static_cast<size_t>(panels * K * kNR) * sizeof(float); }
};

// Packs B ([K, N] row-major with leading dim ldb, or when transB, stored as [N, K]).
std::unique_ptr<PackedB> packB(const float* b, int64_t ldb, bool transB, int64_t K, int64_t N);

struct GemmBatch {
  int64_t count = 1;
  const int64_t* aOffsets = nullptr;  // element offsets per batch (null: 0)
  const int64_t* bOffsets = nullptr;  // ignored when B is pre-packed (one B for all)
  const int64_t* cOffsets = nullptr;
  const int64_t* rOffsets = nullptr;  // residual offsets
};

// C[M, N] (ldc) = epi(op(A)[M, K] · op(B)[K, N]) for every batch. A is [M, K] (lda) or, when transA,
// stored as [K, M]. Exactly one of `b` (raw, packed per call) and `packed` is given.
void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool transA, const float* b, int64_t ldb,
          bool transB, const PackedB* packed, float* c, int64_t ldc, const Epilogue& epi, const GemmBatch& batch);

// Packs panel p of B (see the layout above) into dst (K·kNR floats). Single-threaded.
void packBPanel(const float* b, int64_t ldb, bool transB, int64_t K, int64_t N, int64_t p, float* dst);

// Single-threaded tile product for kernels that run their own parallel loop (attention):
// C[M, N] (ldc) = or += A[M, K] (row-major, lda) · B, B given as packed panels where panel p
// starts at b + p·panelStride and row k of a panel at +k·kNR.
void gemmPackedTile(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b, int64_t panelStride,
                    float* c, int64_t ldc, bool accumulate);

// Row-tile micro-panels of packed A (the layout the microkernel reads): rows [0, M) × columns
// [k0, k0+kc) of op(A) (A [M, K] with leading dim lda, or when transA stored as [K, M]).
// packedATileFloats(M, kc) floats at dst. Single-threaded.
int64_t packedATileFloats(int64_t M, int64_t kc);
void packATiles(const float* a, int64_t lda, bool transA, int64_t M, int64_t k0, int64_t kc, float* dst);

// C[M, nc] (ldc) = or += packed A (M × kc, from packATiles) · one packed B panel (kc rows of kNR
// floats; the first nc <= kNR columns are stored). Single-threaded, for kernels with their own
// parallel loop that keep both operands packed (attention).
void gemmPanel(int64_t M, int64_t kc, const float* aTiles, const float* bPanel, float* c, int64_t ldc, int nc, bool accumulate);

}  // namespace inferjit
