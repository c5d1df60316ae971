// The plan executor's kernels on raw pointers (see kernels.h). Strided copy, norm rows, softmax,
// conv2d and attention call the cores the eager kernels use (native/ops/kernels_core.h), so those
// agree with eager execution bit for bit; elementwise programs and reductions are plan-specific
// and follow the same SIMD exp/erf/sigmoid.
#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../ops/kernels_core.h"
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

enum Op : int {
  kNeg = 0, kAbs, kRelu, kExp, kLog, kSqrt, kRsqrt, kTanh, kSigmoid, kSilu, kGelu, kGeluTanh, kErf, kSin, kCos,
  kAdd = 20, kSub, kMul, kDiv, kMax, kMin, kPow,
  kEqual = 40, kLess, kGreater,
  kWhere = 60,
};

constexpr int64_t kChunk = 512;

template <typename VF, typename SF>
inline void mapU(const float* x, float* y, int64_t n, VF vf, SF sf) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) vf(VecF::load(x + i)).store(y + i);
  for (; i < n; i++) y[i] = sf(x[i]);
}
template <typename SF>
inline void mapS(const float* x, float* y, int64_t n, SF sf) {
  for (int64_t i = 0; i < n; i++) y[i] = sf(x[i]);
}
template <typename VF, typename SF>
inline void mapB(const float* a, const float* b, float* y, int64_t n, VF vf, SF sf) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) vf(VecF::load(a + i), VecF::load(b + i)).store(y + i);
  for (; i < n; i++) y[i] = sf(a[i], b[i]);
}

void applyInstr(int op, const float* a, const float* b, const float* c, float* y, int64_t n) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  switch (op) {
    case kNeg: mapU(a, y, n, [](VecF v) { return VecF::zero() - v; }, [](float v) { return -v; }); break;
    case kAbs: mapU(a, y, n, [](VecF v) { return vabs(v); }, [](float v) { return std::fabs(v); }); break;
    case kRelu: mapU(a, y, n, activate<kActRelu>, [](float v) { return v > 0 ? v : 0.0f; }); break;
    case kExp: mapU(a, y, n, expv, [](float v) { return scalarVia(expv, v); }); break;
    case kLog: mapS(a, y, n, [](float v) { return std::log(v); }); break;
    case kSqrt: mapS(a, y, n, [](float v) { return std::sqrt(v); }); break;
    case kRsqrt: mapS(a, y, n, [](float v) { return 1.0f / std::sqrt(v); }); break;
    case kTanh: mapS(a, y, n, [](float v) { return std::tanh(v); }); break;
    case kSigmoid: mapU(a, y, n, sigmoidv, [](float v) { return scalarVia(sigmoidv, v); }); break;
    case kSilu: mapU(a, y, n, activate<kActSilu>, [](float v) { return scalarVia(activate<kActSilu>, v); }); break;
    case kGelu: mapU(a, y, n, activate<kActGelu>, [](float v) { return scalarVia(activate<kActGelu>, v); }); break;
    case kGeluTanh: mapU(a, y, n, activate<kActGeluTanh>, [](float v) { return scalarVia(activate<kActGeluTanh>, v); }); break;
    case kErf: mapS(a, y, n, [](float v) { return std::erf(v); }); break;
    case kSin: mapS(a, y, n, [](float v) { return std::sin(v); }); break;
    case kCos: mapS(a, y, n, [](float v) { return std::cos(v); }); break;
    case kAdd: mapB(a, b, y, n, [](VecF p, VecF q) { return p + q; }, [](float p, float q) { return p + q; }); break;
    case kSub: mapB(a, b, y, n, [](VecF p, VecF q) { return p - q; }, [](float p, float q) { return p - q; }); break;
    case kMul: mapB(a, b, y, n, [](VecF p, VecF q) { return p * q; }, [](float p, float q) { return p * q; }); break;
    case kDiv: mapB(a, b, y, n, [](VecF p, VecF q) { return p / q; }, [](float p, float q) { return p / q; }); break;
    // NaN propagates like Math.max/min (the reference).
    case kMax: for (int64_t i = 0; i < n; i++) y[i] = (a[i] != a[i] || b[i] != b[i]) ? nan : (a[i] > b[i] ? a[i] : b[i]); break;
    case kMin: for (int64_t i = 0; i < n; i++) y[i] = (a[i] != a[i] || b[i] != b[i]) ? nan : (a[i] < b[i] ? a[i] : b[i]); break;
    case kPow: for (int64_t i = 0; i < n; i++) y[i] = std::pow(a[i], b[i]); break;
    case kEqual: for (int64_t i = 0; i < n; i++) y[i] = a[i] == b[i] ? 1.0f : 0.0f; break;
    case kLess: for (int64_t i = 0; i < n; i++) y[i] = a[i] < b[i] ? 1.0f : 0.0f; break;
    case kGreater: for (int64_t i = 0; i < n; i++) y[i] = a[i] > b[i] ? 1.0f : 0.0f; break;
    case kWhere: for (int64_t i = 0; i < n; i++) y[i] = a[i] != 0.0f ? b[i] : c[i]; break;
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
// softmax and reductions

void softmax(const float* x, float* y, int64_t outer, int64_t size, int64_t inner, bool logMode) {
  softmaxAxis(x, y, outer, size, inner, logMode);
}

void reduce(int op, const float* x, float* y, int64_t outer, int64_t size, int64_t inner) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool sum = op == 0 || op == 1;
  const float init = op == 2 ? -std::numeric_limits<float>::infinity() : op == 3 ? std::numeric_limits<float>::infinity() : 0.0f;
  const float scale = op == 1 ? 1.0f / static_cast<float>(size) : 1.0f;
  if (inner == 1) {
    parallelSpans(outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(size, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; o++) {
        const float* r = x + o * size;
        if (sum) {
          y[o] = static_cast<float>(sumOf(r, size)) * scale;
        } else {
          float m = init;
          bool sawNan = false;
          for (int64_t i = 0; i < size; i++) {
            const float v = r[i];
            sawNan |= v != v;
            m = op == 2 ? (v > m ? v : m) : (v < m ? v : m);
          }
          y[o] = sawNan ? nan : m;
        }
      }
    });
    return;
  }
  parallelSpans(outer, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; o++) {
      float* acc = y + o * inner;
      std::fill(acc, acc + inner, init);
      for (int64_t k = 0; k < size; k++) {
        const float* r = x + (o * size + k) * inner;
        if (sum) {
          for (int64_t j = 0; j < inner; j++) acc[j] += r[j];
        } else if (op == 2) {
          for (int64_t j = 0; j < inner; j++) acc[j] = (r[j] != r[j] || acc[j] != acc[j]) ? nan : (r[j] > acc[j] ? r[j] : acc[j]);
        } else {
          for (int64_t j = 0; j < inner; j++) acc[j] = (r[j] != r[j] || acc[j] != acc[j]) ? nan : (r[j] < acc[j] ? r[j] : acc[j]);
        }
      }
      if (scale != 1.0f)
        for (int64_t j = 0; j < inner; j++) acc[j] *= scale;
    }
  });
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
  std::vector<int64_t> pos(count);
  for (int64_t j = 0; j < count; j++) {
    const int64_t v = indexBytes == 8 ? static_cast<const int64_t*>(indices)[j] : static_cast<const int32_t*>(indices)[j];
    if (v < -size || v >= size || (!allowNegative && v < 0)) {
      throw KernelError{std::string(op) + (allowNegative ? ": index " : ": id ") + std::to_string(v) + " is out of range for " +
                        (allowNegative ? "an axis of size " : "a vocabulary of ") + std::to_string(size) + (allowNegative ? "" : " rows")};
    }
    pos[j] = v < 0 ? v + size : v;
  }
  const size_t rowBytes = static_cast<size_t>(inner) * elemSize;
  const int64_t rows = outer * count;
  parallelSpans(rows, std::max<int64_t>(1, static_cast<int64_t>(65536 / std::max<size_t>(rowBytes, 1))), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const int64_t o = r / count, j = r % count;
      std::memcpy(out + r * rowBytes, x + (o * size + pos[j]) * rowBytes, rowBytes);
    }
  });
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

}  // namespace plan
}  // namespace inferjit
