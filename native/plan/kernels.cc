// The plan executor's kernels on raw pointers (see kernels.h). Strided copy, unary and binary
// instructions, reductions, norm rows, group norm, rotary, softmax, conv2d and attention call the
// cores the eager kernels use (native/ops/kernels_core.h), so those agree with eager execution bit
// for bit; what is plan-only (program interpretation, comparisons, pad, upsample, argmax, top_k,
// gather, cast) lives here.
#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../ops/kernels_core.h"
#include "../attention/attention_bf16.h"
#include "../gemm/gemm_bf16.h"  // bf16ToFloatScalar / floatToBf16 (round to nearest even)
#include "../quant/qmatmul.h"    // halfToFloat / floatToHalf (round to nearest even)
#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {
namespace plan {
namespace {

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int dtypeBytes(int dtype) {
  switch (dtype) {
    case kF32: case kI32: return 4;
    case kI64: return 8;
    case kF16: case kBF16: return 2;
    default: return 1;
  }
}

// ---------------------------------------------------------------------------------------------
// strided copy

void stridedCopy(const uint8_t* src, uint8_t* dst, int elemSize, std::vector<int64_t> shape, std::vector<int64_t> ss,
                 std::vector<int64_t> ds) {
  copyStrided(src, dst, elemSize, shape, ss, ds);
}

// ---------------------------------------------------------------------------------------------
// elementwise programs

namespace {

constexpr int64_t kChunk = 512;

void applyInstr(int op, const float* a, const float* b, const float* c, float* y, int64_t n) {
  if (op >= kt::kUnaryFirst && op <= kt::kUnaryLast) return unaryRow(op, a, y, n);
  if (op >= kt::kBinaryFirst && op <= kt::kBinaryLast) return binaryRow(op, a, 1, b, 1, y, n);
  switch (op) {
    case kt::kEqual: for (int64_t i = 0; i < n; i++) y[i] = a[i] == b[i] ? 1.0f : 0.0f; break;
    case kt::kLess: for (int64_t i = 0; i < n; i++) y[i] = a[i] < b[i] ? 1.0f : 0.0f; break;
    case kt::kGreater: for (int64_t i = 0; i < n; i++) y[i] = a[i] > b[i] ? 1.0f : 0.0f; break;
    case kt::kWhere: for (int64_t i = 0; i < n; i++) y[i] = a[i] != 0.0f ? b[i] : c[i]; break;
    default: break;
  }
}

thread_local std::vector<float> tRegs;

}  // namespace

void elementwise(const std::vector<EwInput>& inputs, const std::vector<EwInstr>& prog, void* out, int outDtype,
                 const std::vector<int64_t>& shape) {
  const int nIn = static_cast<int>(inputs.size());
  const int nRegs = nIn + static_cast<int>(prog.size());
  // Collapse the iteration space: drop size-1 dims, merge dims every operand walks contiguously.
  std::vector<int64_t> sh;
  std::vector<std::vector<int64_t>> st(nIn);
  for (size_t d = 0; d < shape.size(); d++) {
    if (shape[d] == 0) return;
    if (shape[d] == 1) continue;
    bool merge = !sh.empty();
    for (int i = 0; i < nIn && merge; i++) merge = st[i].back() == inputs[i].strides[d] * shape[d];
    if (merge) {
      sh.back() *= shape[d];
      for (int i = 0; i < nIn; i++) st[i].back() = inputs[i].strides[d];
    } else {
      sh.push_back(shape[d]);
      for (int i = 0; i < nIn; i++) st[i].push_back(inputs[i].strides[d]);
    }
  }
  if (sh.empty()) {
    sh.push_back(1);
    for (int i = 0; i < nIn; i++) st[i].push_back(0);
  }
  const int rank = static_cast<int>(sh.size());
  const int64_t inner = sh[rank - 1];
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; d++) rows *= sh[d];
  const int64_t perRow = ceilDiv(inner, kChunk);
  const int64_t outBytes = dtypeBytes(outDtype);

  parallelSpans(rows * perRow, 4, [&](int64_t lo, int64_t hi) {
    if (tRegs.size() < static_cast<size_t>(nRegs * kChunk)) tRegs.resize(static_cast<size_t>(nRegs * kChunk));
    float* regs = tRegs.data();
    const float* rp[64];
    std::vector<int64_t> off(nIn);
    for (int64_t t = lo; t < hi; t++) {
      const int64_t row = t / perRow, j0 = (t % perRow) * kChunk;
      const int64_t n = std::min(kChunk, inner - j0);
      std::fill(off.begin(), off.end(), 0);
      int64_t rem = row;
      for (int d = rank - 2; d >= 0; d--) {
        const int64_t idx = rem % sh[d];
        rem /= sh[d];
        for (int i = 0; i < nIn; i++) off[i] += idx * st[i][d];
      }
      for (int i = 0; i < nIn; i++) {
        const int64_t s = st[i][rank - 1];
        const int64_t base = off[i] + j0 * s;
        float* buf = regs + i * kChunk;
        if (inputs[i].dtype == kF32) {
          const float* p = static_cast<const float*>(inputs[i].data) + base;
          if (s == 1) {
            rp[i] = p;
            continue;
          }
          if (s == 0) std::fill(buf, buf + n, *p);
          else for (int64_t j = 0; j < n; j++) buf[j] = p[j * s];
        } else {  // bool condition
          const uint8_t* p = static_cast<const uint8_t*>(inputs[i].data) + base;
          for (int64_t j = 0; j < n; j++) buf[j] = p[j * s] ? 1.0f : 0.0f;
        }
        rp[i] = buf;
      }
      const int64_t outPos = row * inner + j0;
      for (size_t k = 0; k < prog.size(); k++) {
        const EwInstr& ins = prog[k];
        const bool lastF32 = k + 1 == prog.size() && outDtype == kF32;
        float* dst = lastF32 ? static_cast<float*>(out) + outPos : regs + (nIn + k) * kChunk;
        applyInstr(ins.op, rp[ins.args[0]], ins.args[1] >= 0 ? rp[ins.args[1]] : nullptr, ins.args[2] >= 0 ? rp[ins.args[2]] : nullptr, dst, n);
        rp[nIn + k] = dst;
      }
      if (outDtype != kF32) {
        const float* r = rp[nRegs - 1];
        uint8_t* o = static_cast<uint8_t*>(out) + outPos * outBytes;
        for (int64_t j = 0; j < n; j++) o[j] = r[j] != 0.0f ? 1 : 0;  // bool (comparisons)
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// norms

void norm(const NormArgs& a) {
  const int64_t cols = a.cols;
  parallelSpans(a.rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const int64_t n = r / std::max<int64_t>(a.rowsPerSample, 1);
      normRow(a.x + r * cols, a.residual ? a.residual + r * cols : nullptr, a.residual ? a.sumOut + r * cols : nullptr, a.out + r * cols,
              cols, a.rms, a.eps, a.weight, a.bias, a.shift ? a.shift + n * a.shiftStride : nullptr,
              a.scale ? a.scale + n * a.scaleStride : nullptr);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// softmax

void softmax(const float* x, float* y, int64_t outer, int64_t size, int64_t inner, bool logMode) {
  softmaxAxis(x, y, outer, size, inner, logMode);
}

// ---------------------------------------------------------------------------------------------
// attention (native/attention/attention.cc)

namespace {
// K/V panels: packed on the calling thread's behalf, reused (grown only) across calls. Plans run
// one at a time (plan.cc's lock), so these buffers have a single user.
std::vector<float> gKPanels, gVPanels;
}  // namespace

void attention(const AttnArgs& a) { flashAttention(a, gKPanels, gVPanels); }

// ---------------------------------------------------------------------------------------------
// conv2d

namespace {
std::vector<float> gCol;  // im2col buffer, reused across calls (plans run one at a time)
}  // namespace

void conv2d(const ConvArgs& s) { conv2dNchw(s, gCol); }

// ---------------------------------------------------------------------------------------------
// gather and cast

void gather(const uint8_t* x, const void* indices, int indexBytes, int64_t count, uint8_t* out, int elemSize, int64_t outer,
            int64_t size, int64_t inner, bool allowNegative, const char* op) {
  int64_t v = 0;
  if (!gatherRows(x, indices, indexBytes, count, out, elemSize, outer, size, inner, allowNegative, &v)) {
    throw KernelError{std::string(op) + (allowNegative ? ": index " : ": id ") + std::to_string(v) + " is out of range for " +
                      (allowNegative ? "an axis of size " : "a vocabulary of ") + std::to_string(size) + (allowNegative ? "" : " rows")};
  }
}

namespace {

double readAt(const void* p, int dt, int64_t i) {
  switch (dt) {
    case kF32: return static_cast<const float*>(p)[i];
    case kI32: return static_cast<const int32_t*>(p)[i];
    case kI64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case kBool: case kU8: return static_cast<const uint8_t*>(p)[i];
    case kI8: return static_cast<const int8_t*>(p)[i];
    case kF16: return halfToFloat(static_cast<const uint16_t*>(p)[i]);
    case kBF16: return bf16ToFloatScalar(static_cast<const uint16_t*>(p)[i]);
    default: return 0.0;
  }
}
// Truncated toward zero and clamped to [lo, hi]; NaN -> 0. Exact: lo and hi are integers a double holds.
inline double saturate(double v, double lo, double hi) { return v != v ? 0.0 : v <= lo ? lo : v >= hi ? hi : std::trunc(v); }
void writeAt(void* p, int dt, int64_t i, double v) {
  switch (dt) {
    case kF32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    // float -> int truncates toward zero and saturates at the type's range, NaN -> 0 (as the
    // reference kernel, src/tensor/dtype.ts writeElement; a plain C cast is undefined there)
    case kI32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(saturate(v, -2147483648.0, 2147483647.0)); break;
    case kI64: static_cast<int64_t*>(p)[i] = v != v ? 0 : v >= 9223372036854775808.0 ? INT64_MAX : v <= -9223372036854775808.0 ? INT64_MIN : static_cast<int64_t>(v); break;
    case kBool: static_cast<uint8_t*>(p)[i] = v != 0.0 ? 1 : 0; break;  // NaN is true, as in C++ and PyTorch
    case kU8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(saturate(v, 0.0, 255.0)); break;
    case kI8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(saturate(v, -128.0, 127.0)); break;
    // f16/bf16 round once, from the float (the value was a float before it was widened to double)
    case kF16: static_cast<uint16_t*>(p)[i] = floatToHalf(static_cast<float>(v)); break;
    case kBF16: static_cast<uint16_t*>(p)[i] = floatToBf16(static_cast<float>(v)); break;
    default: break;
  }
}

}  // namespace

void cast(const void* x, int from, void* y, int to, int64_t n) {
  if (from == to) {
    std::memcpy(y, x, static_cast<size_t>(n) * dtypeBytes(from));
    return;
  }
  auto isInteger = [](int dt) { return dt == kI64 || dt == kI32 || dt == kI8 || dt == kU8 || dt == kBool; };
  if (isInteger(from) && isInteger(to)) {  // integer -> integer straight from the integer, wrapping exactly
    parallelSpans(n, 16384, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; i++) {
        int64_t v = 0;
        switch (from) {
          case kI64: v = static_cast<const int64_t*>(x)[i]; break;
          case kI32: v = static_cast<const int32_t*>(x)[i]; break;
          case kI8: v = static_cast<const int8_t*>(x)[i]; break;
          default: v = static_cast<const uint8_t*>(x)[i]; break;  // u8, bool
        }
        switch (to) {
          case kI64: static_cast<int64_t*>(y)[i] = v; break;
          case kI32: static_cast<int32_t*>(y)[i] = static_cast<int32_t>(v); break;
          case kBool: static_cast<uint8_t*>(y)[i] = v != 0; break;
          case kU8: static_cast<uint8_t*>(y)[i] = static_cast<uint8_t>(v); break;
          case kI8: static_cast<int8_t*>(y)[i] = static_cast<int8_t>(v); break;
          default: break;
        }
      }
    });
    return;
  }
  parallelSpans(n, 16384, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) writeAt(y, to, i, readAt(x, from, i));
  });
}

// ---------------------------------------------------------------------------------------------
// pad, upsample

void pad(const uint8_t* x, uint8_t* out, int elemSize, int dtype, int mode, const std::vector<int64_t>& inShape,
         const std::vector<int64_t>& pads, double value) {
  const int rank = static_cast<int>(inShape.size());
  std::vector<int64_t> outShape(rank), inStrides(rank);
  int64_t acc = 1;
  for (int d = rank - 1; d >= 0; d--) {
    outShape[d] = inShape[d] + pads[2 * d] + pads[2 * d + 1];
    inStrides[d] = acc;
    acc *= inShape[d];
  }
  // Per dim: the source coordinate of each output coordinate, -1 where the constant goes.
  std::vector<std::vector<int64_t>> src(rank);
  for (int d = 0; d < rank; d++) {
    const int64_t dim = inShape[d], b = pads[2 * d];
    src[d].resize(outShape[d]);
    for (int64_t o = 0; o < outShape[d]; o++) {
      int64_t i = o - b;
      if (i < 0 || i >= dim) {
        if (mode == kt::kPadConstant) i = -1;
        else if (mode == kt::kPadReplicate) i = i < 0 ? 0 : dim - 1;
        else i = i < 0 ? -i : 2 * (dim - 1) - i;  // reflect (edge not repeated)
      }
      src[d][o] = i;
    }
  }
  uint8_t fill[8] = {0};
  const float fv = static_cast<float>(value);
  cast(&fv, kF32, fill, dtype, 1);
  const int64_t es = elemSize;
  if (rank == 0) {
    std::memcpy(out, x, es);
    return;
  }
  const int64_t len = outShape[rank - 1];
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; d++) rows *= outShape[d];
  if (len == 0 || rows == 0) return;
  const std::vector<int64_t>& last = src[rank - 1];
  parallelSpans(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(len * es, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      uint8_t* o = out + r * len * es;
      int64_t rem = r, off = 0;
      bool constant = false;
      for (int d = rank - 2; d >= 0; d--) {
        const int64_t idx = src[d][rem % outShape[d]];
        rem /= outShape[d];
        if (idx < 0) constant = true;
        else off += idx * inStrides[d];
      }
      if (constant) {
        for (int64_t j = 0; j < len; j++) std::memcpy(o + j * es, fill, es);
        continue;
      }
      const uint8_t* row = x + off * es;
      const int64_t b = pads[2 * (rank - 1)], dim = inShape[rank - 1];
      for (int64_t j = 0; j < b && j < len; j++) {
        if (last[j] < 0) std::memcpy(o + j * es, fill, es);
        else std::memcpy(o + j * es, row + last[j] * es, es);
      }
      if (dim > 0) std::memcpy(o + b * es, row, dim * es);  // the interior is one contiguous run
      for (int64_t j = b + dim; j < len; j++) {
        if (last[j] < 0) std::memcpy(o + j * es, fill, es);
        else std::memcpy(o + j * es, row + last[j] * es, es);
      }
    }
  });
}

void upsampleNearest(const uint8_t* x, uint8_t* out, int elemSize, int64_t planes, int64_t H, int64_t W, int64_t sh, int64_t sw) {
  const int64_t OH = H * sh, OW = W * sw, es = elemSize, rowBytes = OW * es;
  if (planes * OH * OW == 0) return;
  // One task per source row: widen it once, then copy it sh times.
  parallelSpans(planes * H, std::max<int64_t>(1, 16384 / std::max<int64_t>(rowBytes * sh, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; t++) {
      const uint8_t* in = x + t * W * es;
      uint8_t* o = out + t * sh * rowBytes;  // plane p, source row y -> output rows y·sh ..
      if (es == 4) {
        const uint32_t* s = reinterpret_cast<const uint32_t*>(in);
        uint32_t* d = reinterpret_cast<uint32_t*>(o);
        for (int64_t q = 0; q < W; q++)
          for (int64_t k = 0; k < sw; k++) d[q * sw + k] = s[q];
      } else {
        for (int64_t q = 0; q < W; q++)
          for (int64_t k = 0; k < sw; k++) std::memcpy(o + (q * sw + k) * es, in + q * es, es);
      }
      for (int64_t k = 1; k < sh; k++) std::memcpy(o + k * rowBytes, o, rowBytes);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// argmax, top_k

void argmax(const float* x, int64_t* out, int64_t outer, int64_t size, int64_t inner) {
  parallelSpans(outer * inner, std::max<int64_t>(1, 8192 / std::max<int64_t>(size, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; t++) {
      const int64_t o = t / inner, i = t % inner;
      const float* col = x + o * size * inner + i;
      // strict '>' keeps the first index on ties; the first NaN wins and ends the scan
      int64_t best = 0;
      float bv = col[0];
      for (int64_t k = 1; k < size && bv == bv; k++) {
        const float v = col[k * inner];
        if (v > bv || v != v) {
          best = k;
          bv = v;
        }
      }
      out[t] = best;
    }
  });
}

void topK(const float* x, float* values, int64_t* indices, int64_t outer, int64_t size, int64_t inner, int64_t k, bool largest,
          bool sorted) {
  if (k == 0) return;
  parallelSpans(outer * inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(size, 1)), [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> order(size);
    std::vector<float> col(size);
    for (int64_t t = lo; t < hi; t++) {
      const int64_t o = t / inner, i = t % inner;
      for (int64_t j = 0; j < size; j++) {
        col[j] = x[(o * size + j) * inner + i];
        order[j] = j;
      }
      // total order: NaN above every number, then by value, then the lower index first
      auto before = [&](int64_t p, int64_t q) {
        const float a = col[p], b = col[q];
        const bool na = a != a, nb = b != b;
        int c;
        if (na || nb) c = na && nb ? 0 : na ? 1 : -1;
        else c = a == b ? 0 : a > b ? 1 : -1;
        if (!largest) c = -c;
        return c != 0 ? c > 0 : p < q;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      if (!sorted) std::sort(order.begin(), order.begin() + k);
      for (int64_t j = 0; j < k; j++) {
        const int64_t dst = (o * k + j) * inner + i;
        values[dst] = col[order[j]];
        indices[dst] = order[j];
      }
    }
  });
}

}  // namespace plan

// ---------------------------------------------------------------------------------------------
// Kernel bodies by name (declared in kernel_table.gen.h): each takes its decoded descriptor and
// calls the kernel above, or the eager kernels' core it shares.

namespace kt {
namespace {
template <typename T>
T* as(uint8_t* p) { return reinterpret_cast<T*>(p); }
}  // namespace

using namespace plan;

void runCopy(const CopyDesc& d, const plan::KernelContext& ctx) {
  stridedCopy(d.src, d.dst, static_cast<int>(d.elemSize), d.shape.vec(), d.srcStrides.vec(), d.dstStrides.vec());
}

void runElementwise(const ElementwiseDesc& d, const plan::KernelContext& ctx) {
  std::vector<EwInput> ins(d.nIn);
  for (int64_t i = 0; i < d.nIn; i++) {
    ins[i].data = d.inputs[i];
    ins[i].dtype = static_cast<int>(d.inDtypes[i]);
    ins[i].strides.assign(d.inStrides.begin() + i * d.rank, d.inStrides.begin() + (i + 1) * d.rank);
  }
  elementwise(ins, *ctx.prog, d.out, static_cast<int>(d.outDtype), d.shape.vec());
}

void runGemm(const GemmDesc& d, const plan::KernelContext& ctx) {
  Epilogue epi;
  epi.bias = as<float>(d.bias);
  epi.act = static_cast<int>(d.act);
  epi.residual = as<float>(d.residual);
  epi.ldr = d.ldr;
  epi.alpha = static_cast<float>(d.alpha);
  GemmBatch batch;
  batch.count = d.count;
  if (d.nOffsets > 0) {
    batch.aOffsets = d.aOffsets.data;
    batch.bOffsets = d.bOffsets.data;
    batch.cOffsets = d.cOffsets.data;
    batch.rOffsets = d.rOffsets.data;
  }
  float* A = as<float>(d.a);
  float* C = as<float>(d.out);
  if (ctx.packedBf16) {
    // B is one shared packed weight (the lowering packs only unbatched B operands)
    gemmBf16(d.M, d.N, d.K, A, d.lda, d.transA != 0, *ctx.packedBf16, C, d.ldc, epi, batch, ctx.bf16Kernel);
  } else if (ctx.packedF16) {
    gemmF16(d.M, d.N, d.K, A, d.lda, d.transA != 0, *ctx.packedF16, C, d.ldc, epi, batch);
  } else {
    gemm(d.M, d.N, d.K, A, d.lda, d.transA != 0, ctx.packed ? nullptr : as<float>(d.b), d.ldb, d.transB != 0, ctx.packed, C, d.ldc, epi, batch);
  }
}

void runNorm(const NormDesc& d, const plan::KernelContext& ctx) {
  NormArgs a;
  a.x = as<float>(d.x);
  a.residual = as<float>(d.residual);
  a.weight = as<float>(d.weight);
  a.bias = as<float>(d.bias);
  a.shift = as<float>(d.shift);
  a.scale = as<float>(d.scale);
  a.out = as<float>(d.out);
  a.sumOut = as<float>(d.sum);
  a.rms = d.rms != 0;
  a.rows = d.rows;
  a.cols = d.cols;
  a.rowsPerSample = d.rowsPerSample;
  a.shiftStride = d.shiftStride;
  a.scaleStride = d.scaleStride;
  a.eps = static_cast<float>(d.eps);
  norm(a);
}

void runSoftmax(const SoftmaxDesc& d, const plan::KernelContext& ctx) {
  softmax(as<float>(d.x), as<float>(d.out), d.outer, d.size, d.inner, d.log != 0);
}

void runReduce(const ReduceDesc& d, const plan::KernelContext& ctx) {
  reduceAxis(static_cast<int>(d.op), as<float>(d.x), as<float>(d.out), d.outer, d.size, d.inner);
}

void runAttention(const AttentionDesc& d, const plan::KernelContext& ctx) {
  if (d.bf16 != 0) {
    // the same operands and strided views as the fp32 kernel below
    AttentionProblem pr;
    pr.q = as<float>(d.q);
    pr.k = as<float>(d.k);
    pr.v = as<float>(d.v);
    if (d.maskIsBool != 0) pr.maskB = d.mask;
    else pr.maskF = as<float>(d.mask);
    for (int j = 0; j < 4; j++) pr.maskStrides[j] = d.maskStrides[j];
    pr.out = as<float>(d.out);
    pr.B = d.B; pr.Hq = d.Hq; pr.Hkv = d.Hkv; pr.Lq = d.Lq; pr.Lk = d.Lk; pr.D = d.D; pr.Dv = d.Dv;
    for (int j = 0; j < 3; j++) {
      pr.qs[j] = d.qStrides[j];
      pr.ks[j] = d.kStrides[j];
      pr.vs[j] = d.vStrides[j];
      pr.os[j] = d.outStrides[j];
    }
    pr.causal = d.causal != 0;
    pr.scale = static_cast<float>(d.scale);
    attentionBf16(pr, ctx.bf16Kernel);
    return;
  }
  AttnArgs a;
  a.q = as<float>(d.q);
  a.k = as<float>(d.k);
  a.v = as<float>(d.v);
  a.mask = d.mask;
  a.out = as<float>(d.out);
  a.B = d.B; a.Hq = d.Hq; a.Hkv = d.Hkv; a.Lq = d.Lq; a.Lk = d.Lk; a.D = d.D; a.Dv = d.Dv;
  a.causal = d.causal != 0;
  a.maskIsBool = d.maskIsBool != 0;
  for (int j = 0; j < 3; j++) {
    a.qs[j] = d.qStrides[j];
    a.ks[j] = d.kStrides[j];
    a.vs[j] = d.vStrides[j];
    a.os[j] = d.outStrides[j];
  }
  for (int j = 0; j < 4; j++) a.maskStrides[j] = d.maskStrides[j];
  a.scale = static_cast<float>(d.scale);
  attention(a);
}

void runConv2d(const Conv2dDesc& d, const plan::KernelContext& ctx) {
  ConvArgs a;
  a.x = as<float>(d.x);
  a.w = as<float>(d.weight);
  a.bias = as<float>(d.bias);
  a.out = as<float>(d.out);
  a.N = d.N; a.C = d.C; a.H = d.H; a.W = d.W; a.O = d.O; a.kh = d.kh; a.kw = d.kw;
  a.sh = d.sh; a.sw = d.sw; a.ph = d.ph; a.pw = d.pw; a.dh = d.dh; a.dw = d.dw; a.groups = d.groups;
  a.act = static_cast<int>(d.act);
  conv2d(a);
}

void runConv2dFused(const Conv2dFusedDesc& d, const plan::KernelContext& ctx) {
  Conv2dFusedArgs a;
  a.x = as<float>(d.x);
  a.w = as<float>(d.weight);
  a.bias = as<float>(d.bias);
  a.out = as<float>(d.out);
  a.N = d.N; a.C = d.C; a.H = d.H; a.W = d.W; a.O = d.O; a.kh = d.kh; a.kw = d.kw;
  a.sh = d.sh; a.sw = d.sw; a.ph = d.ph; a.pw = d.pw; a.dh = d.dh; a.dw = d.dw; a.groups = d.groups;
  a.act = static_cast<int>(d.act);
  a.chanBias = as<float>(d.chanBias);
  a.chanBiasStride = d.chanBiasStride;
  a.residual = as<float>(d.residual);
  // bf16 is set by the lowering only in bf16 plans, whose kernel the plan resolved for this CPU
  a.bf16Kernel = d.bf16 != 0 ? static_cast<int>(ctx.bf16Kernel) : 0;
  a.packedW = ctx.packed;  // the lowering packs the weight (Wᵀ panels) for the pixels-as-rows form
  a.packedWBf16 = ctx.packedBf16;
  a.direct = d.direct == 1;
  // direct == 2 / 3: Winograd F(4×4, 3×3) / F(2×2, 3×3), on the weight createPlan transformed
  // into the kernel's scratch (plan.cc)
  a.winograd = d.direct == 2 ? 4 : d.direct == 3 ? 2 : 0;
  a.winogradW = reinterpret_cast<const float*>(ctx.scratch);
  conv2dImplicit(a);
}

void runGather(const GatherDesc& d, const plan::KernelContext& ctx) {
  gather(d.x, d.indices, static_cast<int>(d.indexBytes), d.count, d.out, static_cast<int>(d.elemSize), d.outer, d.size, d.inner,
         d.allowNegative != 0, d.embedding != 0 ? "embedding" : "gather");
}

void runCast(const CastDesc& d, const plan::KernelContext& ctx) {
  cast(d.x, static_cast<int>(d.from), d.out, static_cast<int>(d.to), d.n);
}

void runPad(const PadDesc& d, const plan::KernelContext& ctx) {
  pad(d.x, d.out, static_cast<int>(d.elemSize), static_cast<int>(d.dtype), static_cast<int>(d.mode), d.inShape.vec(), d.pads.vec(), d.value);
}

void runGroupNorm(const GroupNormDesc& d, const plan::KernelContext& ctx) {
  groupNormNcs(as<float>(d.x), as<float>(d.residual), as<float>(d.sum), as<float>(d.weight), as<float>(d.bias), as<float>(d.out), d.N, d.C, d.spatial, d.groups,
               static_cast<float>(d.eps));
}

void runGroupNormAct(const GroupNormActDesc& d, const plan::KernelContext& ctx) {
  groupNormNcs(as<float>(d.x), as<float>(d.residual), as<float>(d.sum), as<float>(d.weight), as<float>(d.bias), as<float>(d.out), d.N, d.C, d.spatial, d.groups,
               static_cast<float>(d.eps), static_cast<int>(d.act));
}

void runUpsampleNearest2d(const UpsampleNearest2dDesc& d, const plan::KernelContext& ctx) {
  upsampleNearest(d.x, d.out, static_cast<int>(d.elemSize), d.planes, d.H, d.W, d.sh, d.sw);
}

void runRotary(const RotaryDesc& d, const plan::KernelContext& ctx) {
  rotaryStrided(as<float>(d.x), as<float>(d.cos), as<float>(d.sin), as<float>(d.out), d.outer, d.seq, d.d, d.half, d.interleaved != 0,
                d.xStrides[0], d.xStrides[1], d.outStrides[0], d.outStrides[1]);
}

void runArgmax(const ArgmaxDesc& d, const plan::KernelContext& ctx) {
  argmax(as<float>(d.x), as<int64_t>(d.out), d.outer, d.size, d.inner);
}

void runTopK(const TopKDesc& d, const plan::KernelContext& ctx) {
  topK(as<float>(d.x), as<float>(d.values), as<int64_t>(d.indices), d.outer, d.size, d.inner, d.k, d.largest != 0, d.sorted != 0);
}

}  // namespace kt
}  // namespace inferjit
