// The plan executor's kernels on raw pointers (see kernels.h). Numerics follow the eager kernels in
// native/ops and native/attention (same SIMD exp/erf/sigmoid, two-pass norm statistics, online
// softmax attention on the GEMM microkernel), so a compiled plan and eager execution agree to
// float rounding.
#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {
namespace plan {
namespace {

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits [0, n) into at most 4·threads chunks of at least `grain` items and runs them on the pool.
template <typename F>
void parallelRange(int64_t n, int64_t grain, F&& fn) {
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

float scalarVia(VecF (*f)(VecF), float x) {
  float lanes[kW];
  f(VecF::set1(x)).store(lanes);
  return lanes[0];
}

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

namespace {

template <typename T>
void copyTyped(const T* src, T* dst, const std::vector<int64_t>& sh, const std::vector<int64_t>& s, const std::vector<int64_t>& d) {
  const int rank = static_cast<int>(sh.size());
  const int last = rank - 1;
  int64_t total = 1;
  for (int64_t x : sh) total *= x;
  const int64_t len = sh[last], rows = total / len;
  auto rowOffsets = [&](int64_t r, int skip, int64_t& so, int64_t& dof) {
    so = 0;
    dof = 0;
    for (int k = last - 1; k >= 0; k--) {
      if (k == skip) continue;
      const int64_t idx = r % sh[k];
      r /= sh[k];
      so += idx * s[k];
      dof += idx * d[k];
    }
  };
  if (s[last] == 1 && d[last] == 1) {
    parallelRange(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(len, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; r++) {
        int64_t so, dof;
        rowOffsets(r, -1, so, dof);
        std::memcpy(dst + dof, src + so, len * sizeof(T));
      }
    });
    return;
  }
  // A transpose: some dim j reads the source's contiguous dim while the destination's last dim is
  // contiguous. Tile (j, last) in 32×32 blocks so reads and writes both stay in a few cache lines.
  int j = -1;
  if (d[last] == 1)
    for (int k = 0; k < last; k++)
      if (s[k] == 1) j = k;
  if (j >= 0) {
    int64_t outer = 1;
    for (int k = 0; k < last; k++)
      if (k != j) outer *= sh[k];
    const int64_t A = sh[j], Bn = sh[last];
    const int64_t tilesA = ceilDiv(A, 32), tilesB = ceilDiv(Bn, 32);
    parallelRange(outer * tilesA, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; t++) {
        const int64_t o = t / tilesA, ta = t % tilesA;
        // offsets of the "other" dims (all but j and last)
        int64_t rem = o, so = 0, dof = 0;
        for (int k = last - 1; k >= 0; k--) {
          if (k == j) continue;
          const int64_t idx = rem % sh[k];
          rem /= sh[k];
          so += idx * s[k];
          dof += idx * d[k];
        }
        const int64_t a0 = ta * 32, a1 = std::min(A, a0 + 32);
        for (int64_t tb = 0; tb < tilesB; tb++) {
          const int64_t b0 = tb * 32, b1 = std::min(Bn, b0 + 32);
          for (int64_t a = a0; a < a1; a++) {
            T* yr = dst + dof + a * d[j];
            const T* xr = src + so + a;
            for (int64_t b = b0; b < b1; b++) yr[b] = xr[b * s[last]];
          }
        }
      }
    });
    return;
  }
  parallelRange(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(len, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      int64_t so, dof;
      rowOffsets(r, -1, so, dof);
      for (int64_t i = 0; i < len; i++) dst[dof + i * d[last]] = src[so + i * s[last]];
    }
  });
}

}  // namespace

void stridedCopy(const uint8_t* src, uint8_t* dst, int elemSize, std::vector<int64_t> shape, std::vector<int64_t> ss,
                 std::vector<int64_t> ds) {
  std::vector<int64_t> sh, s, d;
  for (size_t i = 0; i < shape.size(); i++) {
    if (shape[i] == 0) return;
    if (shape[i] == 1) continue;
    if (!sh.empty() && s.back() == ss[i] * shape[i] && d.back() == ds[i] * shape[i]) {
      sh.back() *= shape[i];
      s.back() = ss[i];
      d.back() = ds[i];
    } else {
      sh.push_back(shape[i]);
      s.push_back(ss[i]);
      d.push_back(ds[i]);
    }
  }
  if (sh.empty()) {
    std::memcpy(dst, src, elemSize);
    return;
  }
  switch (elemSize) {
    case 1: copyTyped(reinterpret_cast<const uint8_t*>(src), reinterpret_cast<uint8_t*>(dst), sh, s, d); break;
    case 2: copyTyped(reinterpret_cast<const uint16_t*>(src), reinterpret_cast<uint16_t*>(dst), sh, s, d); break;
    case 4: copyTyped(reinterpret_cast<const uint32_t*>(src), reinterpret_cast<uint32_t*>(dst), sh, s, d); break;
    default: copyTyped(reinterpret_cast<const uint64_t*>(src), reinterpret_cast<uint64_t*>(dst), sh, s, d); break;
  }
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

  parallelRange(rows * perRow, 4, [&](int64_t lo, int64_t hi) {
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

namespace {

double sumOf(const float* v, int64_t n) {
  VecF a = VecF::zero(), b = VecF::zero();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    a = a + VecF::load(v + i);
    b = b + VecF::load(v + i + kW);
  }
  for (; i + kW <= n; i += kW) a = a + VecF::load(v + i);
  double s = (a + b).sum();
  for (; i < n; i++) s += v[i];
  return s;
}
double sqDevOf(const float* v, int64_t n, float c) {
  const VecF cv = VecF::set1(c);
  VecF a = VecF::zero(), b = VecF::zero();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    VecF d0 = VecF::load(v + i) - cv, d1 = VecF::load(v + i + kW) - cv;
    a = fmadd(d0, d0, a);
    b = fmadd(d1, d1, b);
  }
  for (; i + kW <= n; i += kW) {
    VecF d = VecF::load(v + i) - cv;
    a = fmadd(d, d, a);
  }
  double s = (a + b).sum();
  for (; i < n; i++) s += static_cast<double>(v[i] - c) * (v[i] - c);
  return s;
}

}  // namespace

void norm(const NormArgs& a) {
  const int64_t cols = a.cols;
  parallelRange(a.rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const float* xr = a.x + r * cols;
      const float* s = xr;
      if (a.residual) {
        float* sr = a.sumOut + r * cols;
        const float* rr = a.residual + r * cols;
        int64_t i = 0;
        for (; i + kW <= cols; i += kW) (VecF::load(xr + i) + VecF::load(rr + i)).store(sr + i);
        for (; i < cols; i++) sr[i] = xr[i] + rr[i];
        s = sr;
      }
      float mean = 0.0f, inv;
      if (a.rms) {
        inv = static_cast<float>(1.0 / std::sqrt(sqDevOf(s, cols, 0.0f) / static_cast<double>(cols) + a.eps));
      } else {
        mean = cols > 0 ? static_cast<float>(sumOf(s, cols) / static_cast<double>(cols)) : 0.0f;
        const double var = cols > 0 ? sqDevOf(s, cols, mean) / static_cast<double>(cols) : 0.0;
        inv = static_cast<float>(1.0 / std::sqrt(var + a.eps));
      }
      float* y = a.out + r * cols;
      const float* w = a.weight;
      const float* b = a.bias;
      const int64_t n = r / std::max<int64_t>(a.rowsPerSample, 1);
      const float* shift = a.shift ? a.shift + n * a.shiftStride : nullptr;
      const float* scale = a.scale ? a.scale + n * a.scaleStride : nullptr;
      const VecF mv = VecF::set1(mean), iv = VecF::set1(inv), one = VecF::set1(1.0f);
      int64_t i = 0;
      for (; i + kW <= cols; i += kW) {
        VecF v = (VecF::load(s + i) - mv) * iv;
        if (w) v = v * VecF::load(w + i);
        if (b) v = v + VecF::load(b + i);
        if (scale) v = v * (VecF::load(scale + i) + one) + VecF::load(shift + i);
        v.store(y + i);
      }
      for (; i < cols; i++) {
        float v = (s[i] - mean) * inv;
        if (w) v *= w[i];
        if (b) v += b[i];
        if (scale) v = v * (scale[i] + 1.0f) + shift[i];
        y[i] = v;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// softmax and reductions

namespace {

void softmaxRow(const float* x, float* y, int64_t n, bool logMode) {
  VecF mv = VecF::set1(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kW <= n; i += kW) mv = vmax(mv, VecF::load(x + i));
  float m = mv.max();
  for (; i < n; i++) m = std::max(m, x[i]);
  const VecF mb = VecF::set1(m);
  VecF sv = VecF::zero();
  float s = 0.0f;
  i = 0;
  if (!logMode) {
    for (; i + kW <= n; i += kW) {
      VecF e = expv(VecF::load(x + i) - mb);
      e.store(y + i);
      sv = sv + e;
    }
    s = sv.sum();
    for (; i < n; i++) {
      y[i] = scalarVia(expv, x[i] - m);
      s += y[i];
    }
    if (m != m || std::isinf(m)) s = std::numeric_limits<float>::quiet_NaN();
    const VecF inv = VecF::set1(1.0f / s);
    i = 0;
    for (; i + kW <= n; i += kW) (VecF::load(y + i) * inv).store(y + i);
    for (; i < n; i++) y[i] *= 1.0f / s;
  } else {
    for (; i + kW <= n; i += kW) sv = sv + expv(VecF::load(x + i) - mb);
    s = sv.sum();
    for (; i < n; i++) s += scalarVia(expv, x[i] - m);
    const float shift = m + std::log(s);
    const VecF sh = VecF::set1(shift);
    i = 0;
    for (; i + kW <= n; i += kW) (VecF::load(x + i) - sh).store(y + i);
    for (; i < n; i++) y[i] = x[i] - shift;
  }
}

}  // namespace

void softmax(const float* x, float* y, int64_t outer, int64_t size, int64_t inner, bool logMode) {
  if (inner == 1) {
    parallelRange(outer, std::max<int64_t>(1, 4096 / std::max<int64_t>(size, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; o++) softmaxRow(x + o * size, y + o * size, size, logMode);
    });
    return;
  }
  parallelRange(outer * inner, 64, [&](int64_t lo, int64_t hi) {
    std::vector<float> in(size), res(size);
    for (int64_t t = lo; t < hi; t++) {
      const int64_t o = t / inner, j = t % inner;
      const float* xb = x + o * size * inner + j;
      for (int64_t k = 0; k < size; k++) in[k] = xb[k * inner];
      softmaxRow(in.data(), res.data(), size, logMode);
      float* yb = y + o * size * inner + j;
      for (int64_t k = 0; k < size; k++) yb[k * inner] = res[k];
    }
  });
}

void reduce(int op, const float* x, float* y, int64_t outer, int64_t size, int64_t inner) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool sum = op == 0 || op == 1;
  const float init = op == 2 ? -std::numeric_limits<float>::infinity() : op == 3 ? std::numeric_limits<float>::infinity() : 0.0f;
  const float scale = op == 1 ? 1.0f / static_cast<float>(size) : 1.0f;
  if (inner == 1) {
    parallelRange(outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(size, 1)), [&](int64_t lo, int64_t hi) {
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
  parallelRange(outer, 1, [&](int64_t lo, int64_t hi) {
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
// attention (flash style, as native/attention/attention.cc, with strided operands)

namespace {

constexpr int64_t kBQ = 64;
constexpr int64_t kBK = 256;
static_assert(kBK % kNR == 0, "key blocks must align with packed panels");

struct AttnScratch {
  std::vector<float> s, o, m, l;
};
thread_local AttnScratch tAttn;
// K/V panels: packed on the calling thread's behalf, reused (grown only) across calls.
std::vector<float> gKPanels, gVPanels;

}  // namespace

void attention(const AttnArgs& a) {
  const int64_t B = a.B, Hq = a.Hq, Hkv = a.Hkv, Lq = a.Lq, Lk = a.Lk, D = a.D, Dv = a.Dv;
  if (B * Hq * Lq * Dv == 0) return;
  if (Lk == 0) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < Lq; i++) std::fill_n(a.out + b * a.os[0] + h * a.os[1] + i * a.os[2], Dv, 0.0f);
    return;
  }
  const int64_t kPanels = ceilDiv(Lk, kNR), vPanels = ceilDiv(Dv, kNR);
  const int64_t kHead = kPanels * D * kNR, vHead = vPanels * Lk * kNR;
  const int64_t heads = B * Hkv;
  // Plans run one at a time (plan.cc's lock), so these buffers have a single user.
  if (gKPanels.size() < static_cast<size_t>(heads * kHead)) gKPanels.resize(static_cast<size_t>(heads * kHead));
  if (gVPanels.size() < static_cast<size_t>(heads * vHead)) gVPanels.resize(static_cast<size_t>(heads * vHead));
  float* kp = gKPanels.data();
  float* vp = gVPanels.data();
  parallelFor(heads * (kPanels + vPanels), [&](int64_t t, int) {
    const int64_t hd = t / (kPanels + vPanels), p = t % (kPanels + vPanels);
    const int64_t b = hd / Hkv, h = hd % Hkv;
    if (p < kPanels) {
      packBPanel(a.k + b * a.ks[0] + h * a.ks[1], a.ks[2], true, D, Lk, p, kp + hd * kHead + p * D * kNR);
    } else {
      const int64_t pv = p - kPanels;
      packBPanel(a.v + b * a.vs[0] + h * a.vs[1], a.vs[2], false, Lk, Dv, pv, vp + hd * vHead + pv * Lk * kNR);
    }
  });

  const int64_t group = Hq / Hkv;
  const int64_t bq = std::min(kBQ, Lq);
  const int64_t qBlocks = ceilDiv(Lq, bq);
  const int64_t diag = Lk - Lq;
  const float negInf = -std::numeric_limits<float>::infinity();
  const float scale = a.scale;
  const uint8_t* maskB = a.maskIsBool ? static_cast<const uint8_t*>(a.mask) : nullptr;
  const float* maskF = a.maskIsBool ? nullptr : static_cast<const float*>(a.mask);
  const int64_t* ms = a.maskStrides;
  parallelFor(B * Hq * qBlocks, [&](int64_t task, int) {
    const int64_t qb = task % qBlocks, bh = task / qBlocks;
    const int64_t h = bh % Hq, b = bh / Hq;
    const int64_t hk = b * Hkv + h / group;
    const int64_t i0 = qb * bq, rows = std::min(bq, Lq - i0);
    const float* qblk = a.q + b * a.qs[0] + h * a.qs[1] + i0 * a.qs[2];
    AttnScratch& sc = tAttn;
    sc.s.resize(static_cast<size_t>(bq * kBK));
    sc.o.assign(static_cast<size_t>(bq * Dv), 0.0f);
    sc.m.assign(static_cast<size_t>(bq), negInf);
    sc.l.assign(static_cast<size_t>(bq), 0.0f);
    float* S = sc.s.data();
    float* O = sc.o.data();
    const int64_t kEnd = a.causal ? std::min(Lk, std::max<int64_t>(0, i0 + rows + diag)) : Lk;
    const VecF scv = VecF::set1(scale);
    for (int64_t j0 = 0; j0 < kEnd; j0 += kBK) {
      const int64_t bk = std::min(kBK, kEnd - j0);
      gemmPackedTile(rows, bk, D, qblk, a.qs[2], kp + hk * kHead + (j0 / kNR) * D * kNR, D * kNR, S, kBK, false);
      bool anyLive = false;
      for (int64_t r = 0; r < rows; r++) {
        float* sr = S + r * kBK;
        const int64_t i = i0 + r;
        const int64_t jLim = a.causal ? std::min(j0 + bk, std::max<int64_t>(j0, i + diag + 1)) : j0 + bk;
        const int64_t nLive = jLim - j0;
        int64_t j = 0;
        for (; j + kW <= nLive; j += kW) (VecF::load(sr + j) * scv).store(sr + j);
        for (; j < nLive; j++) sr[j] *= scale;
        for (j = nLive; j < bk; j++) sr[j] = negInf;
        if (a.mask) {
          const int64_t base = b * ms[0] + h * ms[1] + i * ms[2];
          if (maskB) {
            for (j = 0; j < nLive; j++)
              if (!maskB[base + (j0 + j) * ms[3]]) sr[j] = negInf;
          } else if (ms[3] == 1) {
            const float* mr = maskF + base + j0;
            for (j = 0; j + kW <= nLive; j += kW) (VecF::load(sr + j) + VecF::load(mr + j)).store(sr + j);
            for (; j < nLive; j++) sr[j] += mr[j];
          } else {
            for (j = 0; j < nLive; j++) sr[j] += maskF[base + (j0 + j) * ms[3]];
          }
        }
        VecF mv = VecF::set1(negInf);
        j = 0;
        for (; j + kW <= bk; j += kW) mv = vmax(mv, VecF::load(sr + j));
        float mx = mv.max();
        for (; j < bk; j++) mx = std::max(mx, sr[j]);
        const float mOld = sc.m[r];
        const float mNew = std::max(mOld, mx);
        if (mNew == negInf) {
          std::fill(sr, sr + bk, 0.0f);
          continue;
        }
        anyLive = true;
        const VecF mb = VecF::set1(mNew);
        VecF sum = VecF::zero();
        j = 0;
        for (; j + kW <= bk; j += kW) {
          VecF p = expv(VecF::load(sr + j) - mb);
          p.store(sr + j);
          sum = sum + p;
        }
        float s = sum.sum();
        for (; j < bk; j++) {
          sr[j] = scalarVia(expv, sr[j] - mNew);
          s += sr[j];
        }
        if (mOld != mNew && mOld != negInf) {
          const float corr = scalarVia(expv, mOld - mNew);
          sc.l[r] *= corr;
          const VecF cv = VecF::set1(corr);
          float* orow = O + r * Dv;
          int64_t t = 0;
          for (; t + kW <= Dv; t += kW) (VecF::load(orow + t) * cv).store(orow + t);
          for (; t < Dv; t++) orow[t] *= corr;
        }
        sc.l[r] += s;
        sc.m[r] = mNew;
      }
      if (anyLive) gemmPackedTile(rows, Dv, bk, S, kBK, vp + hk * vHead + j0 * kNR, Lk * kNR, O, Dv, true);
    }
    for (int64_t r = 0; r < rows; r++) {
      float* dst = a.out + b * a.os[0] + h * a.os[1] + (i0 + r) * a.os[2];
      const float l = sc.l[r];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const float* orow = O + r * Dv;
      for (int64_t t = 0; t < Dv; t++) dst[t] = orow[t] * inv;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// conv2d

namespace {

std::vector<float> gCol;  // im2col buffer, reused across calls (plans run one at a time)

void im2col(const float* x, const ConvArgs& s, int64_t Ho, int64_t Wo, int64_t cg, int64_t p0, int64_t p1, float* col) {
  const int64_t np = p1 - p0, rowsK = cg * s.kh * s.kw;
  const bool patch = s.sh == s.kh && s.sw == s.kw && s.ph == 0 && s.pw == 0 && s.dh == 1 && s.dw == 1;
  parallelFor(rowsK, [&](int64_t r, int) {
    const int64_t c = r / (s.kh * s.kw), ki = (r / s.kw) % s.kh, kj = r % s.kw;
    const float* xc = x + c * s.H * s.W;
    float* out = col + r * np;
    for (int64_t p = p0; p < p1;) {
      const int64_t oy = p / Wo, ox0 = p % Wo;
      const int64_t ox1 = std::min<int64_t>(Wo, ox0 + (p1 - p));
      const int64_t iy = oy * s.sh - s.ph + ki * s.dh;
      float* o = out + (p - p0);
      if (patch) {
        const float* xr = xc + iy * s.W + kj;
        for (int64_t ox = ox0; ox < ox1; ox++) o[ox - ox0] = xr[ox * s.sw];
      } else if (iy < 0 || iy >= s.H) {
        std::memset(o, 0, (ox1 - ox0) * sizeof(float));
      } else {
        const float* xr = xc + iy * s.W;
        for (int64_t ox = ox0; ox < ox1; ox++) {
          const int64_t ix = ox * s.sw - s.pw + kj * s.dw;
          o[ox - ox0] = (ix >= 0 && ix < s.W) ? xr[ix] : 0.0f;
        }
      }
      p += ox1 - ox0;
    }
  });
}

}  // namespace

void conv2d(const ConvArgs& s) {
  const int64_t Ho = (s.H + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
  const int64_t Wo = (s.W + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
  const int64_t cg = s.C / s.groups, og = s.O / s.groups, K = cg * s.kh * s.kw, P = Ho * Wo;
  const bool pointwise = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
  const int64_t chunk = pointwise ? P : std::max<int64_t>(1, std::min<int64_t>(P, (8 << 20) / std::max<int64_t>(K, 1)));
  if (!pointwise && gCol.size() < static_cast<size_t>(K * chunk)) gCol.resize(static_cast<size_t>(K * chunk));
  GemmBatch one;
  for (int64_t n = 0; n < s.N; n++) {
    for (int64_t g = 0; g < s.groups; g++) {
      const float* xg = s.x + (n * s.C + g * cg) * s.H * s.W;
      const float* wg = s.w + g * og * K;
      float* yg = s.out + (n * s.O + g * og) * P;
      Epilogue epi;
      epi.bias = s.bias ? s.bias + g * og : nullptr;
      epi.biasPerRow = true;
      epi.act = s.act;
      if (pointwise) {
        gemm(og, P, K, wg, K, false, xg, P, false, nullptr, yg, P, epi, one);
        continue;
      }
      for (int64_t p0 = 0; p0 < P; p0 += chunk) {
        const int64_t p1 = std::min(P, p0 + chunk);
        im2col(xg, s, Ho, Wo, cg, p0, p1, gCol.data());
        gemm(og, p1 - p0, K, wg, K, false, gCol.data(), p1 - p0, false, nullptr, yg + p0, P, epi, one);
      }
    }
  }
}

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
  parallelRange(rows, std::max<int64_t>(1, static_cast<int64_t>(65536 / std::max<size_t>(rowBytes, 1))), [&](int64_t lo, int64_t hi) {
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
    default: return 0.0;
  }
}
void writeAt(void* p, int dt, int64_t i, double v) {
  switch (dt) {
    case kF32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    // float -> int truncates toward zero; out-of-range values wrap like a C cast through int64
    case kI32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(static_cast<int64_t>(std::trunc(v))); break;
    case kI64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(std::trunc(v)); break;
    case kBool: static_cast<uint8_t*>(p)[i] = v != 0.0 ? 1 : 0; break;
    case kU8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(static_cast<int64_t>(std::trunc(v))); break;
    case kI8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(static_cast<int64_t>(std::trunc(v))); break;
    default: break;
  }
}

}  // namespace

void cast(const void* x, int from, void* y, int to, int64_t n) {
  if (from == to) {
    std::memcpy(y, x, static_cast<size_t>(n) * dtypeBytes(from));
    return;
  }
  if (from == kI64 && to != kF32) {  // integer narrowing straight from the integer, wrapping exactly
    parallelRange(n, 16384, [&](int64_t lo, int64_t hi) {
      const int64_t* s = static_cast<const int64_t*>(x);
      for (int64_t i = lo; i < hi; i++) {
        switch (to) {
          case kI32: static_cast<int32_t*>(y)[i] = static_cast<int32_t>(s[i]); break;
          case kBool: static_cast<uint8_t*>(y)[i] = s[i] != 0; break;
          case kU8: static_cast<uint8_t*>(y)[i] = static_cast<uint8_t>(s[i]); break;
          case kI8: static_cast<int8_t*>(y)[i] = static_cast<int8_t>(s[i]); break;
          default: break;
        }
      }
    });
    return;
  }
  parallelRange(n, 16384, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) writeAt(y, to, i, readAt(x, from, i));
  });
}

}  // namespace plan
}  // namespace inferjit
