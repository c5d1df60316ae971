// Raw-pointer kernels the plan executor runs between two JS calls: no N-API types, no argument
// parsing, every size already checked when the plan was built. GEMM and the thread pool are the
// shared ones (gemm/, threadpool.h), as are the kernel cores of native/ops/kernels_core.h; the
// rest are written in kernels.cc against the same SIMD layer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../gemm/gemm.h"
#include "../gemm/gemm_bf16.h"
#include "../ops/kernels_core.h"
#include "kernel_table.gen.h"

namespace inferjit {
namespace plan {

// Element dtypes and op codes: kt:: (kernel_table.gen.h, generated from scripts/kernel-table.mjs).
using kt::kF32; using kt::kI32; using kt::kI64; using kt::kBool; using kt::kI8; using kt::kU8; using kt::kF16; using kt::kBF16;
int dtypeBytes(int dtype);

// What a kernel needs besides its descriptor: the packed GEMM weight it reads (one of the three, or
// none), the bf16 kernel the plan resolved, and an elementwise kernel's program (decoded once).
struct EwInstr;
struct SubPlanRunner;
struct KernelContext {
  const PackedB* packed = nullptr;
  const PackedBf16* packedBf16 = nullptr;
  const PackedF16* packedF16 = nullptr;
  Bf16Kernel bf16Kernel = Bf16Kernel::kAuto;
  const std::vector<EwInstr>* prog = nullptr;
  // control flow (cond, while_loop): the plan's sub-plans, and the kernel's own scratch memory
  const SubPlanRunner* subPlans = nullptr;
  uint8_t* scratch = nullptr;
};

// ---- control flow (control_flow.cc) ----
// Runs sub-plan `index` of the current plan over the given input and output pointers, on the
// calling thread, under the run lock the outer plan already holds (plan.cc implements it).
struct SubPlanRunner {
  virtual ~SubPlanRunner() = default;
  virtual void run(int64_t index, const std::vector<uint8_t*>& inputs, const std::vector<uint8_t*>& outputs) const = 0;
};
// Scratch bytes a while_loop kernel needs: two buffers per carried value (the loop swaps them, so
// the body never writes a buffer it reads) and the condition's one-byte result.
int64_t whileLoopScratchBytes(const int64_t* operandBytes, int64_t nCarried);

// A kernel failure that must surface as a JS error (bad index, ...). Thrown only from the calling
// thread, before or after a parallel section, never from inside one.
struct KernelError {
  std::string message;
};

// dst[i] = src[i] over `shape` with element strides on both sides (any element size). Adjacent dims
// are merged, contiguous rows become memcpy, transposes are tiled.
void stridedCopy(const uint8_t* src, uint8_t* dst, int elemSize, std::vector<int64_t> shape, std::vector<int64_t> srcStrides,
                 std::vector<int64_t> dstStrides);

// ---- elementwise programs ----
// Instruction codes are kt::EwOp: unary and binary ops run the eager kernels' bodies (unaryRow,
// binaryRow); comparisons and where exist only here.
struct EwInstr {
  int op;
  int args[3];
};
struct EwInput {
  const void* data;
  int dtype;                      // kF32 or kBool (conditions)
  std::vector<int64_t> strides;   // element strides over the output shape (0: broadcast)
};
void elementwise(const std::vector<EwInput>& inputs, const std::vector<EwInstr>& prog, void* out, int outDtype,
                 const std::vector<int64_t>& shape);

// ---- norms ----
// Row-wise layer/RMS norm over `cols`, optionally after a residual add (sum written to sumOut) and
// followed by adaLN modulation y·(1 + scale[n]) + shift[n], n = row / rowsPerSample.
struct NormArgs {
  const float* x = nullptr;
  const float* residual = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;
  const float* shift = nullptr;
  const float* scale = nullptr;
  float* out = nullptr;
  float* sumOut = nullptr;
  int64_t rows = 0, cols = 0, rowsPerSample = 1;
  int64_t shiftStride = 0, scaleStride = 0;  // elements between samples' rows of shift / scale
  float eps = 1e-5f;
  bool rms = false;
};
void norm(const NormArgs& a);

void softmax(const float* x, float* y, int64_t outer, int64_t size, int64_t inner, bool logMode);

// ---- attention ----
using AttnArgs = inferjit::AttnArgs;  // native/ops/kernels_core.h
void attention(const AttnArgs& a);

// ---- conv2d (NCHW) as im2col + GEMM ----
using ConvArgs = inferjit::Conv2dArgs;  // native/ops/kernels_core.h
void conv2d(const ConvArgs& a);

// out[o, j] = x[o, idx[j]] for x [outer, size, inner] (any element size, i32/i64 indices).
// Throws KernelError naming the first bad index.
void gather(const uint8_t* x, const void* indices, int indexBytes, int64_t count, uint8_t* out, int elemSize, int64_t outer,
            int64_t size, int64_t inner, bool allowNegative, const char* op);

// ---- movement and selection ----
// out = x padded by pads [b0, e0, b1, e1, ...] (kt::PadMode; constant mode fills `value` converted
// to dtype). x is contiguous with inShape; any element size.
void pad(const uint8_t* x, uint8_t* out, int elemSize, int dtype, int mode, const std::vector<int64_t>& inShape,
         const std::vector<int64_t>& pads, double value);
// out[p, y, x] = x[p, y / sh, x / sw] for contiguous [planes, H, W] (any element size).
void upsampleNearest(const uint8_t* x, uint8_t* out, int elemSize, int64_t planes, int64_t H, int64_t W, int64_t sh, int64_t sw);
// i64 index of the largest value along the middle axis of f32 [outer, size, inner]; the first on
// ties, and NaN counts as the largest (torch.argmax).
void argmax(const float* x, int64_t* out, int64_t outer, int64_t size, int64_t inner);
// The k largest (or smallest) along the middle axis: values and i64 indices [outer, k, inner].
// NaN ranks above every number, ties keep the lower index first; unsorted keeps index order.
void topK(const float* x, float* values, int64_t* indices, int64_t outer, int64_t size, int64_t inner, int64_t k, bool largest,
          bool sorted);

// Elementwise dtype conversion (float -> int truncates; f16 and bf16 writes round to nearest even).
void cast(const void* x, int from, void* y, int to, int64_t n);

}  // namespace plan
}  // namespace inferjit
