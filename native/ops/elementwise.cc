// Elementwise unary and binary (NumPy broadcasting) kernels, softmax/log_softmax along an axis,
// and sum/mean/max/min over one contiguous block of axes, all fp32 and multithreaded. The per-op
// bodies (unaryRow, binaryRow, reduceAxis, softmaxAxis) are the ones the plan executor's kernels
// call too (kernels_core.h); op codes are kt:: (generated from scripts/kernel-table.mjs).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../common.h"
#include "../simd.h"
#include "../threadpool.h"
#include "kernels_core.h"
#include "ops.h"
#include "registry.h"

namespace inferjit {
namespace {

// Splits [0, n) into chunks of at least `grain` elements and runs them on the pool.
template <typename F>
void parallelRange(int64_t n, int64_t grain, F&& fn) {
  const int64_t T = numThreads();
  int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, n / std::max<int64_t>(grain, 1)), T * 4);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t step = (n + chunks - 1) / chunks;
  parallelFor(chunks, [&](int64_t c, int) {
    const int64_t lo = c * step, hi = std::min(n, lo + step);
    if (lo < hi) fn(lo, hi);
  });
}

// ---- unary ----
// Codes are kt::EwOp (scripts/kernel-table.mjs UNARY), shared with the plan's elementwise programs.

template <typename VF, typename SF>
inline void mapRow(const float* x, float* y, int64_t n, VF vf, SF sf) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) vf(VecF::load(x + i)).store(y + i);
  for (; i < n; i++) y[i] = sf(x[i]);
}
template <typename SF>
inline void mapScalar(const float* x, float* y, int64_t n, SF sf) {
  for (int64_t i = 0; i < n; i++) y[i] = sf(x[i]);
}

}  // namespace

void unaryRow(int op, const float* x, float* y, int64_t n) {
  switch (op) {
    case kt::kNeg: mapRow(x, y, n, [](VecF v) { return VecF::zero() - v; }, [](float v) { return -v; }); break;
    case kt::kAbs: mapRow(x, y, n, [](VecF v) { return vabs(v); }, [](float v) { return std::fabs(v); }); break;
    case kt::kRelu: mapRow(x, y, n, activate<kActRelu>, [](float v) { return v > 0 ? v : 0.0f; }); break;
    case kt::kExp: mapRow(x, y, n, expv, [](float v) { return scalarVia(expv, v); }); break;
    case kt::kSqrt: mapRow(x, y, n, [](VecF v) {
#if defined(IJ_AVX512)
      return VecF(_mm512_sqrt_ps(v.v));
#elif defined(IJ_AVX2)
      return VecF(_mm256_sqrt_ps(v.v));
#else
      return VecF(std::sqrt(v.v));
#endif
    }, [](float v) { return std::sqrt(v); }); break;
    case kt::kRsqrt: mapScalar(x, y, n, [](float v) { return 1.0f / std::sqrt(v); }); break;
    case kt::kSigmoid: mapRow(x, y, n, sigmoidv, [](float v) { return scalarVia(sigmoidv, v); }); break;
    case kt::kSilu: mapRow(x, y, n, activate<kActSilu>, [](float v) { return scalarVia(activate<kActSilu>, v); }); break;
    case kt::kGelu: mapRow(x, y, n, activate<kActGelu>, [](float v) { return scalarVia(activate<kActGelu>, v); }); break;
    case kt::kGeluTanh: mapRow(x, y, n, activate<kActGeluTanh>, [](float v) { return scalarVia(activate<kActGeluTanh>, v); }); break;
    case kt::kLog: mapScalar(x, y, n, [](float v) { return std::log(v); }); break;
    case kt::kTanh: mapScalar(x, y, n, [](float v) { return std::tanh(v); }); break;
    case kt::kErf: mapScalar(x, y, n, [](float v) { return std::erf(v); }); break;
    case kt::kSin: mapScalar(x, y, n, [](float v) { return std::sin(v); }); break;
    case kt::kCos: mapScalar(x, y, n, [](float v) { return std::cos(v); }); break;
    default: break;
  }
}

namespace {

Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int op = static_cast<int>(i64(info[0]));
  auto x = viewOf<float>(env, info[1], "unary: x");
  auto y = viewOf<float>(env, info[2], "unary: out");
  need(env, x.length == y.length, "unary: x and out differ in size");
  need(env, op >= kt::kUnaryFirst && op <= kt::kUnaryLast, "unary: unknown op");
  parallelRange(static_cast<int64_t>(x.length), 1 << 14, [&](int64_t lo, int64_t hi) { unaryRow(op, x.data + lo, y.data + lo, hi - lo); });
  return env.Undefined();
}

// ---- binary with broadcasting ----
// Codes are kt::EwOp (scripts/kernel-table.mjs BINARY), shared with the plan's elementwise programs.
constexpr int kAdd = kt::kAdd, kSub = kt::kSub, kMul = kt::kMul, kDiv = kt::kDiv, kMax = kt::kMaximum, kMin = kt::kMinimum, kPow = kt::kPow;

template <int OP>
inline VecF bop(VecF a, VecF b) {
  if constexpr (OP == kAdd) return a + b;
  if constexpr (OP == kSub) return a - b;
  if constexpr (OP == kMul) return a * b;
  if constexpr (OP == kDiv) return a / b;
  if constexpr (OP == kMax) return vmax(a, b);
  if constexpr (OP == kMin) return vmin(a, b);
  return a;
}
template <int OP>
inline float sop(float a, float b) {
  if constexpr (OP == kAdd) return a + b;
  if constexpr (OP == kSub) return a - b;
  if constexpr (OP == kMul) return a * b;
  if constexpr (OP == kDiv) return a / b;
  // NaN propagates like Math.max/min (the reference) and torch.maximum/minimum.
  if constexpr (OP == kMax) return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : (a > b ? a : b);
  if constexpr (OP == kMin) return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : (a < b ? a : b);
  if constexpr (OP == kPow) return std::pow(a, b);
  return a;
}

// One innermost row: a and b each step by 0 (broadcast) or 1.
template <int OP>
void row(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) {
  int64_t i = 0;
  constexpr bool vec = OP != kPow && OP != kMax && OP != kMin;
  if constexpr (vec) {
    if (sa == 1 && sb == 1) {
      for (; i + kW <= n; i += kW) bop<OP>(VecF::load(a + i), VecF::load(b + i)).store(y + i);
    } else if (sa == 1 && sb == 0) {
      const VecF bv = VecF::set1(*b);
      for (; i + kW <= n; i += kW) bop<OP>(VecF::load(a + i), bv).store(y + i);
    } else if (sa == 0 && sb == 1) {
      const VecF av = VecF::set1(*a);
      for (; i + kW <= n; i += kW) bop<OP>(av, VecF::load(b + i)).store(y + i);
    }
  }
  for (; i < n; i++) y[i] = sop<OP>(a[i * sa], b[i * sb]);
}

template <int OP>
void binaryND(const float* a, const float* b, float* y, const std::vector<int64_t>& shape, const std::vector<int64_t>& sa,
              const std::vector<int64_t>& sb) {
  const int rank = static_cast<int>(shape.size());
  const int64_t inner = shape[rank - 1];
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; d++) rows *= shape[d];
  const int64_t total = rows * inner;
  if (total == 0) return;
  // Parallel over rows, or over chunks of a single long row.
  if (rows == 1) {
    parallelRange(inner, 1 << 14, [&](int64_t lo, int64_t hi) {
      row<OP>(a + lo * sa[rank - 1], sa[rank - 1], b + lo * sb[rank - 1], sb[rank - 1], y + lo, hi - lo);
    });
    return;
  }
  parallelRange(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(inner, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      int64_t rem = r, oa = 0, ob = 0;
      for (int d = rank - 2; d >= 0; d--) {
        const int64_t idx = rem % shape[d];
        rem /= shape[d];
        oa += idx * sa[d];
        ob += idx * sb[d];
      }
      row<OP>(a + oa, sa[rank - 1], b + ob, sb[rank - 1], y + r * inner, inner);
    }
  });
}

// Merges adjacent dims whose strides stay affine for both inputs, so the common cases become a
// single long row (same shape) or rows × broadcast-row (bias add).
void collapse(std::vector<int64_t>& shape, std::vector<int64_t>& sa, std::vector<int64_t>& sb) {
  std::vector<int64_t> s2, a2, b2;
  for (size_t d = 0; d < shape.size(); d++) {
    if (shape[d] == 1) continue;
    if (!s2.empty() && a2.back() == sa[d] * shape[d] && b2.back() == sb[d] * shape[d]) {
      s2.back() *= shape[d];
      a2.back() = sa[d];
      b2.back() = sb[d];
    } else {
      s2.push_back(shape[d]);
      a2.push_back(sa[d]);
      b2.push_back(sb[d]);
    }
  }
  if (s2.empty()) {
    s2.push_back(1);
    a2.push_back(0);
    b2.push_back(0);
  }
  shape.swap(s2);
  sa.swap(a2);
  sb.swap(b2);
}

}  // namespace

void binaryRow(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) {
  switch (op) {
    case kAdd: row<kAdd>(a, sa, b, sb, y, n); break;
    case kSub: row<kSub>(a, sa, b, sb, y, n); break;
    case kMul: row<kMul>(a, sa, b, sb, y, n); break;
    case kDiv: row<kDiv>(a, sa, b, sb, y, n); break;
    case kMax: row<kMax>(a, sa, b, sb, y, n); break;
    case kMin: row<kMin>(a, sa, b, sb, y, n); break;
    case kPow: row<kPow>(a, sa, b, sb, y, n); break;
    default: break;
  }
}

namespace {

Napi::Value BinaryOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int op = static_cast<int>(i64(info[0]));
  auto a = viewOf<float>(env, info[1], "binary: a");
  auto b = viewOf<float>(env, info[2], "binary: b");
  auto y = viewOf<float>(env, info[3], "binary: out");
  auto shape = ints(env, info[4]);
  auto sa = ints(env, info[5]);
  auto sb = ints(env, info[6]);
  need(env, sa.size() == shape.size() && sb.size() == shape.size(), "binary: strides must match the output rank");
  int64_t n = 1, ea = 1, eb = 1;
  for (size_t d = 0; d < shape.size(); d++) {
    n *= shape[d];
    if (shape[d] > 0) {
      ea += (shape[d] - 1) * sa[d];
      eb += (shape[d] - 1) * sb[d];
    }
  }
  need(env, static_cast<size_t>(n) == y.length, "binary: out size does not match the shape");
  if (n == 0) return env.Undefined();
  need(env, static_cast<size_t>(ea) <= a.length && static_cast<size_t>(eb) <= b.length, "binary: strides exceed an input");
  collapse(shape, sa, sb);
  switch (op) {
    case kAdd: binaryND<kAdd>(a.data, b.data, y.data, shape, sa, sb); break;
    case kSub: binaryND<kSub>(a.data, b.data, y.data, shape, sa, sb); break;
    case kMul: binaryND<kMul>(a.data, b.data, y.data, shape, sa, sb); break;
    case kDiv: binaryND<kDiv>(a.data, b.data, y.data, shape, sa, sb); break;
    case kMax: binaryND<kMax>(a.data, b.data, y.data, shape, sa, sb); break;
    case kMin: binaryND<kMin>(a.data, b.data, y.data, shape, sa, sb); break;
    case kPow: binaryND<kPow>(a.data, b.data, y.data, shape, sa, sb); break;
    default: need(env, false, "binary: unknown op");
  }
  return env.Undefined();
}

// ---- softmax ----

// One contiguous row (inner == 1): max, exp and sum in one pass over a kept copy, then scale.
void softmaxRow(const float* x, float* y, int64_t n, bool logMode) {
  VecF mv = VecF::set1(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kW <= n; i += kW) mv = vmax(mv, VecF::load(x + i));
  float m = mv.max();
  for (; i < n; i++) m = std::max(m, x[i]);
  // All -inf: -inf - -inf is NaN, as in the reference (and PyTorch).
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

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = viewOf<float>(env, info[0], "softmax: x");
  auto y = viewOf<float>(env, info[1], "softmax: out");
  const int64_t outer = i64(info[2]), size = i64(info[3]), inner = i64(info[4]);
  const bool logMode = flag(info[5]);
  need(env, static_cast<size_t>(outer * size * inner) == x.length && x.length == y.length, "softmax: sizes do not match");
  softmaxAxis(x.data, y.data, outer, size, inner, logMode);
  return env.Undefined();
}

}  // namespace

void softmaxAxis(const float* x, float* y, int64_t outer, int64_t size, int64_t inner, bool logMode) {
  if (inner == 1) {
    parallelRange(outer, std::max<int64_t>(1, 4096 / std::max<int64_t>(size, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; o++) softmaxRow(x + o * size, y + o * size, size, logMode);
    });
    return;
  }
  // Strided axis: gather each column into a contiguous buffer.
  parallelRange(outer * inner, 64, [&](int64_t lo, int64_t hi) {
    std::vector<float> in(size), out(size);
    for (int64_t t = lo; t < hi; t++) {
      const int64_t o = t / inner, j = t % inner;
      const float* xb = x + o * size * inner + j;
      for (int64_t k = 0; k < size; k++) in[k] = xb[k * inner];
      softmaxRow(in.data(), out.data(), size, logMode);
      float* yb = y + o * size * inner + j;
      for (int64_t k = 0; k < size; k++) yb[k * inner] = out[k];
    }
  });
}

// Reductions over one contiguous block of axes: x viewed as [outer, size, inner], op kt::ReduceOp.
void reduceAxis(int op, const float* x, float* y, int64_t outer, int64_t size, int64_t inner) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float init = op == kt::kReduceMax ? -std::numeric_limits<float>::infinity() : op == kt::kReduceMin ? std::numeric_limits<float>::infinity() : 0.0f;
  const float scale = op == kt::kReduceMean ? 1.0f / static_cast<float>(size) : 1.0f;
  if (inner == 1) {
    parallelRange(outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(size, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; o++) {
        const float* r = x + o * size;
        int64_t i = 0;
        if (op == kt::kReduceSum || op == kt::kReduceMean) {
          // Four vector accumulators: shorter rounding chains and more ILP than one.
          VecF s0 = VecF::zero(), s1 = VecF::zero(), s2 = VecF::zero(), s3 = VecF::zero();
          for (; i + 4 * kW <= size; i += 4 * kW) {
            s0 = s0 + VecF::load(r + i);
            s1 = s1 + VecF::load(r + i + kW);
            s2 = s2 + VecF::load(r + i + 2 * kW);
            s3 = s3 + VecF::load(r + i + 3 * kW);
          }
          for (; i + kW <= size; i += kW) s0 = s0 + VecF::load(r + i);
          double s = static_cast<double>(((s0 + s1) + (s2 + s3)).sum());
          for (; i < size; i++) s += r[i];
          y[o] = static_cast<float>(s) * scale;
        } else {
          float m = init;
          bool sawNan = false;
          for (; i < size; i++) {
            const float v = r[i];
            sawNan |= v != v;
            m = op == kt::kReduceMax ? (v > m ? v : m) : (v < m ? v : m);
          }
          y[o] = sawNan ? nan : m;
        }
      }
    });
    return;
  }
  // Reduce over a middle axis: accumulate whole inner rows (contiguous, vectorizes).
  parallelRange(outer, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; o++) {
      float* acc = y + o * inner;
      std::fill(acc, acc + inner, init);
      for (int64_t k = 0; k < size; k++) {
        const float* r = x + (o * size + k) * inner;
        if (op == kt::kReduceSum || op == kt::kReduceMean) {
          for (int64_t j = 0; j < inner; j++) acc[j] += r[j];
        } else if (op == kt::kReduceMax) {
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

namespace {

Napi::Value ReduceOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int op = static_cast<int>(i64(info[0]));
  auto x = viewOf<float>(env, info[1], "reduce: x");
  auto y = viewOf<float>(env, info[2], "reduce: out");
  const int64_t outer = i64(info[3]), size = i64(info[4]), inner = i64(info[5]);
  need(env, static_cast<size_t>(outer * size * inner) == x.length && static_cast<size_t>(outer * inner) == y.length,
       "reduce: sizes do not match");
  need(env, op >= kt::kReduceSum && op <= kt::kReduceMin, "reduce: unknown op");
  reduceAxis(op, x.data, y.data, outer, size, inner);
  return env.Undefined();
}

}  // namespace

void registerElementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("binary", Napi::Function::New(env, BinaryOp));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("reduce", Napi::Function::New(env, ReduceOp));
}

}  // namespace inferjit
