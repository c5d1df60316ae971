// Raw-pointer kernel cores shared by the eager N-API kernels (native/ops, native/attention) and the
// plan executor (native/plan/kernels.cc): one definition each, so a compiled plan and eager
// execution run the same arithmetic. No N-API types; callers check sizes first.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../plan/kernel_table.gen.h"  // kt:: op codes (scripts/kernel-table.mjs)
#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {

// f applied to x through the vector path and read back from lane 0: scalar tails then round
// exactly as the vector body does.
inline float scalarVia(VecF (*f)(VecF), float x) {
  float lanes[kW];
  f(VecF::set1(x)).store(lanes);
  return lanes[0];
}

// Splits [0, n) into at most 4·threads chunks of at least `grain` items and runs them on the pool.
template <typename F>
inline void parallelSpans(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  const int64_t T = numThreads();
  const int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, n / std::max<int64_t>(grain, 1)), T * 4);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  parallelFor(chunks, [&](int64_t c, int) {
    const int64_t lo = n * c / chunks, hi = n * (c + 1) / chunks;
    if (lo < hi) fn(lo, hi);
  });
}


// ---- data movement (defined in movement.cc) ----
// dst[i] = src[i] over `shape` with element strides on both sides (any element size). Size-1 dims
// are dropped and adjacent dims merged; contiguous rows become memcpy, transposes are tiled.
void copyStrided(const uint8_t* src, uint8_t* dst, int elemSize, const std::vector<int64_t>& shape, const std::vector<int64_t>& srcStrides,
                 const std::vector<int64_t>& dstStrides);

// out[o, j] = x[o, idx[j]] for x [outer, size, inner] (any element size, i32/i64 indices; negative
// indices count from the end when allowNegative). False, with *badIndex set, on the first index out
// of range (nothing is written then).
bool gatherRows(const uint8_t* x, const void* indices, int indexBytes, int64_t count, uint8_t* out, int elemSize, int64_t outer,
                int64_t size, int64_t inner, bool allowNegative, int64_t* badIndex);

// ---- norms (defined in norm.cc) ----
// sum(v) with fp32 vector partial sums combined in double.
double sumOf(const float* v, int64_t n);
// sum((v - c)^2), likewise.
double sqDevOf(const float* v, int64_t n, float c);
// One row of layer norm (or RMS norm when rms): with a residual, sumOut = x + residual is written
// and normalized; then y = (s - mean)·inv·w + b (w, b optional), then adaLN modulation
// y·(1 + scale) + shift when scale is given (shift must be given with it).
void normRow(const float* x, const float* residual, float* sumOut, float* y, int64_t cols, bool rms, float eps,
             const float* w, const float* b, const float* shift, const float* scale);

// ---- elementwise and reductions (defined in elementwise.cc) ----
// One body per op for eager calls and plan programs. op is a kt::EwOp unary code; serial (callers
// split the range across the pool).
void unaryRow(int op, const float* x, float* y, int64_t n);
// y[i] = a[i·sa] op b[i·sb] for a kt::EwOp binary code (strides 0 broadcast, 1 vectorize, else scalar).
void binaryRow(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n);
// kt::ReduceOp over the middle axis of [outer, size, inner] (multithreaded).
void reduceAxis(int op, const float* x, float* y, int64_t outer, int64_t size, int64_t inner);

// ---- softmax (defined in elementwise.cc) ----
// softmax (or log_softmax) of x viewed as [outer, size, inner] along the middle axis.
void softmaxAxis(const float* x, float* y, int64_t outer, int64_t size, int64_t inner, bool logMode);

// Group norm over a contiguous [N, C, spatial] (a group's channels contiguous), weight/bias [C] or
// null; with a residual, sum = x + residual is written and normalized (add_group_norm).
// act (an Act code) is applied to the normalized value (GroupNorm + SiLU in one pass).
void groupNormNcs(const float* x, const float* residual, float* sum, const float* w, const float* b, float* y, int64_t N, int64_t C,
                  int64_t spatial, int64_t groups, float eps, int act = kActNone);
// Rotary embedding of contiguous rows [rows, d], row r at position r % seq, cos/sin [seq, half];
// pairs (i, i + half), or (2i, 2i + 1) when interleaved; dims >= 2·half pass through.
void rotaryRows(const float* x, const float* cos, const float* sin, float* y, int64_t rows, int64_t seq, int64_t d, int64_t half,
                bool interleaved);
// The same over strided x / y [outer, seq, d] (element strides of outer and seq, rows of d
// contiguous), row (o, s) at position s: a [heads, tokens, d] view of a [tokens, heads·d] projection
// is read and written in place of its layout, with no transposing copy.
void rotaryStrided(const float* x, const float* cos, const float* sin, float* y, int64_t outer, int64_t seq, int64_t d, int64_t half,
                   bool interleaved, int64_t xOuterStride, int64_t xSeqStride, int64_t yOuterStride, int64_t ySeqStride);

// ---- conv2d (defined in conv.cc) ----
// NCHW conv2d with groups, stride, padding, dilation and a fused activation, as im2col + GEMM.
struct Conv2dArgs {
  const float* x;
  const float* w;
  const float* bias;  // may be null
  float* out;
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups;
  int act;
};
// `col` is the im2col scratch, grown as needed (callers may keep it across calls).
void conv2dNchw(const Conv2dArgs& a, std::vector<float>& col);

// conv2d as an implicit GEMM (conv.cc): out[n, o, p] = act(W[o, :] · im2col(x[n])[:, p] + bias[o]
// + chanBias[n·chanBiasStride + o]) + residual[n, o, p]. The im2col columns are packed straight
// from x into the GEMM's B-panel layout (fp32 panels, or bf16 pair panels when bf16Kernel != 0),
// and W is the GEMM's A, read in place (fp32) or converted per block (bf16). chanBias (a per-image
// channel vector: SD's timestep embedding) and residual ([N, O, Ho, Wo]) may be null.
struct PackedB;
struct PackedBf16;
// With a pre-packed weight (packedW: fp32 panels of Wᵀ [K, O]; packedWBf16: bf16 ones; groups == 1)
// the roles swap: out[pixels, O] = im2col(x)ᵀ · Wᵀ, the pixels' patches as row-major A rows and the
// weight streaming from its panels, then transposed back to NCHW with the epilogue. That is the
// better GEMM when the images are small and the channels many (SD's 16×16 .. 4×4 levels).
struct Conv2dFusedArgs : Conv2dArgs {
  const PackedB* packedW = nullptr;
  const PackedBf16* packedWBf16 = nullptr;
  const float* chanBias = nullptr;
  int64_t chanBiasStride = 0;  // 0: one vector for every image
  const float* residual = nullptr;
  int bf16Kernel = 0;  // 0: fp32; else a resolved inferjit::Bf16Kernel (1 avx512, 2 amx)
  bool direct = false;  // fp32 3×3 stride-1 convolutions: the direct kernel (conv_direct.cc) instead of the implicit GEMM
  int winograd = 0;  // ... or Winograd F(m×m, 3×3) (conv_winograd.cc) with m = 4 or 2, fp32, groups == 1
  const float* winogradW = nullptr;  // the weight as conv2dWinogradPackWeight left it (null: transformed per call)
};
void conv2dImplicit(const Conv2dFusedArgs& a);
// Direct 3×3 stride-1 convolution (native/ops/conv_direct.cc); conv2dImplicit runs it when direct is set and it applies.
bool conv2dDirectApplies(const Conv2dArgs& s);
void conv2dDirect(const Conv2dFusedArgs& s);
// Winograd F(m×m, 3×3) convolution, m = 4 or 2 (native/ops/conv_winograd.cc), for the same shapes
// (groups 1); conv2dImplicit runs it when winograd (= m) is set and it applies. The weight
// [O, C, 3, 3] transformed once into conv2dWinogradWeightFloats(C, O, m) floats (the packed GEMM's
// B panels per transformed position).
bool conv2dWinogradApplies(const Conv2dArgs& s);
int64_t conv2dWinogradWeightFloats(int64_t C, int64_t O, int m);
void conv2dWinogradPackWeight(const float* w, int64_t C, int64_t O, int m, float* dst);
void conv2dWinograd(const Conv2dFusedArgs& s);

// ---- attention (defined in native/attention/attention.cc) ----
// Flash-style scaled-dot-product attention. Operands are addressed by element strides (batch,
// head, position; the last dim is contiguous), so [B, H, L, D] and [B, L, H, D] layouts (and
// permuted views of either) run without copies. Hq is a multiple of Hkv (grouped-query heads).
struct AttnArgs {
  const float* q;
  const float* k;
  const float* v;
  const void* mask = nullptr;  // f32 (added to the scores) or bool (false hides the key)
  bool maskIsBool = false;
  int64_t maskStrides[4] = {0, 0, 0, 0};
  float* out;
  int64_t B, Hq, Hkv, Lq, Lk, D, Dv;
  int64_t qs[3], ks[3], vs[3], os[3];
  float scale;
  bool causal;
};
// kpBuf / vpBuf receive K and V packed into GEMM panels, grown as needed (callers may keep them).
void flashAttention(const AttnArgs& a, std::vector<float>& kpBuf, std::vector<float>& vpBuf);

}  // namespace inferjit
