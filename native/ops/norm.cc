// Normalization kernels: layer_norm, rms_norm and group_norm (each optionally fused with a
// residual add that also writes the sum), softmax fused with an add (add_softmax: attention scores
// plus a mask/bias) and rotary position embedding. Statistics are two-pass (mean, then squared
// deviations) with fp32 vector partial sums combined in double.
#include <cmath>
#include <limits>
#include <vector>

#include "../common.h"
#include "../simd.h"
#include "../threadpool.h"
#include "kernels_core.h"
#include "registry.h"

namespace inferjit {
namespace {

template <typename F>
void parallelRows(int64_t rows, int64_t cols, F&& fn) {
  const int64_t T = numThreads();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
  const int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, rows / grain), T * 4);
  const int64_t step = (rows + chunks - 1) / std::max<int64_t>(chunks, 1);
  parallelFor(chunks, [&](int64_t c, int) {
    for (int64_t r = c * step; r < std::min(rows, (c + 1) * step); r++) fn(r);
  });
}

}  // namespace

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

void normRow(const float* x, const float* residual, float* sumOut, float* y, int64_t cols, bool rms, float eps,
             const float* w, const float* b, const float* shift, const float* scale) {
  const float* s = x;
  if (residual) {
    int64_t i = 0;
    for (; i + kW <= cols; i += kW) (VecF::load(x + i) + VecF::load(residual + i)).store(sumOut + i);
    for (; i < cols; i++) sumOut[i] = x[i] + residual[i];
    s = sumOut;
  }
  float mean = 0.0f, inv;
  if (rms) {
    inv = static_cast<float>(1.0 / std::sqrt(sqDevOf(s, cols, 0.0f) / static_cast<double>(cols) + eps));
  } else {
    mean = cols > 0 ? static_cast<float>(sumOf(s, cols) / static_cast<double>(cols)) : 0.0f;
    const double var = cols > 0 ? sqDevOf(s, cols, mean) / static_cast<double>(cols) : 0.0;
    inv = static_cast<float>(1.0 / std::sqrt(var + eps));
  }
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

namespace {

// norm(rms, x, residual, weight, bias, out, sumOut, rows, cols, eps)
Napi::Value Norm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool rms = flag(info[0]);
  auto x = viewOf<float>(env, info[1], "norm: x");
  auto res = viewOf<float>(env, info[2], "norm: residual", true);
  auto w = viewOf<float>(env, info[3], "norm: weight", true);
  auto b = viewOf<float>(env, info[4], "norm: bias", true);
  auto y = viewOf<float>(env, info[5], "norm: out");
  auto sum = viewOf<float>(env, info[6], "norm: sum", true);
  const int64_t rows = i64(info[7]), cols = i64(info[8]);
  const float eps = static_cast<float>(f64(info[9]));
  const size_t n = static_cast<size_t>(rows * cols);
  need(env, x.length == n && y.length == n, "norm: x/out sizes do not match rows*cols");
  need(env, !res || (res.length == n && sum && sum.length == n), "norm: residual needs a sum output of the same size");
  need(env, (!w || w.length == static_cast<size_t>(cols)) && (!b || b.length == static_cast<size_t>(cols)), "norm: weight/bias must have cols elements");
  parallelRows(rows, cols, [&](int64_t r) {
    normRow(x.data + r * cols, res.data ? res.data + r * cols : nullptr, sum.data ? sum.data + r * cols : nullptr, y.data + r * cols,
            cols, rms, eps, w.data, b.data, nullptr, nullptr);
  });
  return env.Undefined();
}

// s = x + r written out, returning sum(s): the residual add fused into the mean's pass.
double addSumOf(const float* x, const float* r, float* s, int64_t n) {
  VecF a = VecF::zero(), b = VecF::zero();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const VecF s0 = VecF::load(x + i) + VecF::load(r + i), s1 = VecF::load(x + i + kW) + VecF::load(r + i + kW);
    s0.store(s + i);
    s1.store(s + i + kW);
    a = a + s0;
    b = b + s1;
  }
  for (; i + kW <= n; i += kW) {
    const VecF s0 = VecF::load(x + i) + VecF::load(r + i);
    s0.store(s + i);
    a = a + s0;
  }
  double acc = (a + b).sum();
  for (; i < n; i++) {
    s[i] = x[i] + r[i];
    acc += s[i];
  }
  return acc;
}

// Group norm over [N, C, spatial] with a group's channels contiguous; one task per (sample, group).
// With a residual, each group's x + r goes to `sum` in the pass that accumulates the mean and is
// normalized from there (group_norm when res is null, add_group_norm otherwise).
}  // namespace

void groupNormNcs(const float* x, const float* res, float* sum, const float* w, const float* b, float* y,
                  int64_t N, int64_t C, int64_t spatial, int64_t G, float eps, int act) {
  const int64_t cg = C / G, per = cg * spatial;
  parallelFor(N * G, [&](int64_t t, int) {
    const int64_t g = t % G;
    const float* s = x + t * per;
    double total;
    if (res) {
      total = addSumOf(s, res + t * per, sum + t * per, per);
      s = sum + t * per;
    } else {
      total = sumOf(s, per);
    }
    float* o = y + t * per;
    const float mean = per > 0 ? static_cast<float>(total / static_cast<double>(per)) : 0.0f;
    const double var = per > 0 ? sqDevOf(s, per, mean) / static_cast<double>(per) : 0.0;
    const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (int64_t c = 0; c < cg; c++) {
      const int64_t ch = g * cg + c;
      // Per channel: y = (x - mean) * (inv * w) + b, folded into one scale and shift.
      const float sc = inv * (w ? w[ch] : 1.0f);
      const float sh = (b ? b[ch] : 0.0f) - mean * sc;
      const VecF scv = VecF::set1(sc), shv = VecF::set1(sh);
      const float* sr = s + c * spatial;
      float* orow = o + c * spatial;
      int64_t i = 0;
      if (act == kActNone) {
        for (; i + kW <= spatial; i += kW) fmadd(VecF::load(sr + i), scv, shv).store(orow + i);
        for (; i < spatial; i++) orow[i] = sr[i] * sc + sh;
      } else {
        // The activation while the value is in a register (GroupNorm + SiLU: one pass, not two).
        for (; i + kW <= spatial; i += kW) activateDyn(act, fmadd(VecF::load(sr + i), scv, shv)).store(orow + i);
        if (i < spatial) {  // the tail through one padded vector, so it gets the same approximation
          float lane[kW] = {};
          for (int64_t j = i; j < spatial; j++) lane[j - i] = sr[j];
          activateDyn(act, fmadd(VecF::load(lane), scv, shv)).store(lane);
          for (int64_t j = i; j < spatial; j++) orow[j] = lane[j - i];
        }
      }
    }
  });
}

namespace {

// groupNorm(x, weight, bias, out, N, C, spatial, groups, eps): channels of a group are contiguous.
Napi::Value GroupNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = viewOf<float>(env, info[0], "groupNorm: x");
  auto w = viewOf<float>(env, info[1], "groupNorm: weight", true);
  auto b = viewOf<float>(env, info[2], "groupNorm: bias", true);
  auto y = viewOf<float>(env, info[3], "groupNorm: out");
  const int64_t N = i64(info[4]), C = i64(info[5]), spatial = i64(info[6]), G = i64(info[7]);
  const float eps = static_cast<float>(f64(info[8]));
  need(env, G > 0 && C % G == 0, "groupNorm: channels must divide into groups");
  need(env, x.length == static_cast<size_t>(N * C * spatial) && y.length == x.length, "groupNorm: sizes do not match");
  need(env, (!w || w.length == static_cast<size_t>(C)) && (!b || b.length == static_cast<size_t>(C)), "groupNorm: weight/bias must have C elements");
  groupNormNcs(x.data, nullptr, nullptr, w.data, b.data, y.data, N, C, spatial, G, eps);
  return env.Undefined();
}

// addGroupNorm(x, residual, weight, bias, out, sum, N, C, spatial, groups, eps): sum = x + residual,
// out = group_norm(sum).
Napi::Value AddGroupNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = viewOf<float>(env, info[0], "addGroupNorm: x");
  auto r = viewOf<float>(env, info[1], "addGroupNorm: residual");
  auto w = viewOf<float>(env, info[2], "addGroupNorm: weight", true);
  auto b = viewOf<float>(env, info[3], "addGroupNorm: bias", true);
  auto y = viewOf<float>(env, info[4], "addGroupNorm: out");
  auto sum = viewOf<float>(env, info[5], "addGroupNorm: sum");
  const int64_t N = i64(info[6]), C = i64(info[7]), spatial = i64(info[8]), G = i64(info[9]);
  const float eps = static_cast<float>(f64(info[10]));
  need(env, G > 0 && C % G == 0, "addGroupNorm: channels must divide into groups");
  need(env, x.length == static_cast<size_t>(N * C * spatial) && y.length == x.length && r.length == x.length && sum.length == x.length,
       "addGroupNorm: x, residual, out and sum must all have N*C*spatial elements");
  need(env, (!w || w.length == static_cast<size_t>(C)) && (!b || b.length == static_cast<size_t>(C)), "addGroupNorm: weight/bias must have C elements");
  groupNormNcs(x.data, r.data, sum.data, w.data, b.data, y.data, N, C, spatial, G, eps);
  return env.Undefined();
}

// ---- add_softmax: softmax(x + addend) along one axis, the addend broadcast to x ----

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// y[i] = x[i] + a[i·ak] for one contiguous row, returning the row's max: the add is fused into the
// max pass. ak is 1 (addend varies along the axis), 0 (constant along it) or any other stride.
float addMaxRow(const float* x, const float* a, int64_t ak, float* y, int64_t n) {
  VecF mv = VecF::set1(kNegInf);
  int64_t i = 0;
  if (ak == 1) {
    for (; i + kW <= n; i += kW) {
      const VecF s = VecF::load(x + i) + VecF::load(a + i);
      s.store(y + i);
      mv = vmax(mv, s);
    }
  } else if (ak == 0) {
    const VecF av = VecF::set1(a[0]);
    for (; i + kW <= n; i += kW) {
      const VecF s = VecF::load(x + i) + av;
      s.store(y + i);
      mv = vmax(mv, s);
    }
  }
  float m = mv.max();
  for (; i < n; i++) {
    y[i] = x[i] + a[i * ak];
    m = std::max(m, y[i]);
  }
  return m;
}

// y = exp(y - m) / sum(exp(y - m)) in place. The tail runs as one vector padded with -inf (exp
// gives 0 there). A max of ±inf or NaN makes every weight NaN, as in the reference (-inf - -inf).
void expNormalizeRow(float* y, int64_t n, float m) {
  const VecF mb = VecF::set1(m);
  VecF sv = VecF::zero(), sv2 = VecF::zero();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const VecF e0 = expv(VecF::load(y + i) - mb), e1 = expv(VecF::load(y + i + kW) - mb);
    e0.store(y + i);
    e1.store(y + i + kW);
    sv = sv + e0;
    sv2 = sv2 + e1;
  }
  for (; i + kW <= n; i += kW) {
    const VecF e = expv(VecF::load(y + i) - mb);
    e.store(y + i);
    sv = sv + e;
  }
  if (i < n) {
    float t[kW];
    for (int j = 0; j < kW; j++) t[j] = i + j < n ? y[i + j] : kNegInf;
    const VecF e = expv(VecF::load(t) - mb);
    e.store(t);
    sv = sv + e;
    for (int64_t j = i; j < n; j++) y[j] = t[j - i];
  }
  float s = (sv + sv2).sum();
  if (!std::isfinite(m)) s = std::numeric_limits<float>::quiet_NaN();
  const float inv = 1.0f / s;
  const VecF iv = VecF::set1(inv);
  for (i = 0; i + kW <= n; i += kW) (VecF::load(y + i) * iv).store(y + i);
  for (; i < n; i++) y[i] *= inv;
}

// addSoftmax(x, addend, out, shape, addendStrides, axis): x and out contiguous with `shape`; the
// addend is read through `addendStrides` (0 where it broadcasts). Rows (all indices but `axis`)
// are split across the pool; a strided axis (trailing dims > 1) is gathered into per-chunk scratch.
Napi::Value AddSoftmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = viewOf<float>(env, info[0], "addSoftmax: x");
  auto a = viewOf<float>(env, info[1], "addSoftmax: addend");
  auto y = viewOf<float>(env, info[2], "addSoftmax: out");
  const std::vector<int64_t> shape = ints(env, info[3]), as = ints(env, info[4]);
  const int64_t rank = static_cast<int64_t>(shape.size()), axis = i64(info[5]);
  need(env, rank >= 1 && static_cast<int64_t>(as.size()) == rank && axis >= 0 && axis < rank, "addSoftmax: shape, strides and axis do not agree");
  int64_t total = 1, aLast = 0;
  std::vector<int64_t> xs(rank);
  for (int64_t d = rank - 1; d >= 0; d--) {
    xs[d] = total;
    total *= shape[d];
    if (shape[d] > 0) aLast += (shape[d] - 1) * as[d];
  }
  need(env, x.length == static_cast<size_t>(total) && y.length == x.length, "addSoftmax: x/out sizes do not match the shape");
  if (total == 0) return env.Undefined();
  need(env, static_cast<size_t>(aLast) < a.length, "addSoftmax: addend strides exceed the addend");
  const int64_t size = shape[axis], inner = xs[axis], ak = as[axis], rows = total / size;
  const int64_t T = numThreads();
  const int64_t grain = std::max<int64_t>(1, 4096 / size);
  const int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, rows / grain), T * 4);
  const int64_t step = (rows + chunks - 1) / chunks;
  parallelFor(chunks, [&](int64_t c, int) {
    std::vector<float> scratch(inner == 1 ? 0 : size);
    for (int64_t t = c * step; t < std::min(rows, (c + 1) * step); t++) {
      // Offsets of row t: its index over every dim but the axis, last dim fastest.
      int64_t rem = t, xo = 0, ao = 0;
      for (int64_t d = rank - 1; d >= 0; d--) {
        if (d == axis) continue;
        const int64_t idx = rem % shape[d];
        rem /= shape[d];
        xo += idx * xs[d];
        ao += idx * as[d];
      }
      if (inner == 1) {
        float* yr = y.data + xo;
        expNormalizeRow(yr, size, addMaxRow(x.data + xo, a.data + ao, ak, yr, size));
      } else {
        float m = kNegInf;
        for (int64_t k = 0; k < size; k++) {
          scratch[k] = x.data[xo + k * inner] + a.data[ao + k * ak];
          m = std::max(m, scratch[k]);
        }
        expNormalizeRow(scratch.data(), size, m);
        for (int64_t k = 0; k < size; k++) y.data[xo + k * inner] = scratch[k];
      }
    }
  });
  return env.Undefined();
}

// rotary(x, cos, sin, out, rows, seq, d, half, interleaved); row r sits at position r % seq.
Napi::Value Rotary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = viewOf<float>(env, info[0], "rotary: x");
  auto cs = viewOf<float>(env, info[1], "rotary: cos");
  auto sn = viewOf<float>(env, info[2], "rotary: sin");
  auto y = viewOf<float>(env, info[3], "rotary: out");
  const int64_t rows = i64(info[4]), seq = i64(info[5]), d = i64(info[6]), half = i64(info[7]);
  const bool interleaved = flag(info[8]);
  need(env, x.length == static_cast<size_t>(rows * d) && y.length == x.length, "rotary: sizes do not match");
  need(env, 2 * half <= d && cs.length == static_cast<size_t>(seq * half) && sn.length == cs.length, "rotary: cos/sin sizes do not match");
  rotaryRows(x.data, cs.data, sn.data, y.data, rows, seq, d, half, interleaved);
  return env.Undefined();
}

}  // namespace

void rotaryRows(const float* x, const float* cs, const float* sn, float* y, int64_t rows, int64_t seq, int64_t d, int64_t half,
                bool interleaved) {
  if (rows == 0) return;
  rotaryStrided(x, cs, sn, y, rows / seq, seq, d, half, interleaved, seq * d, d, seq * d, d);
}

void rotaryStrided(const float* x, const float* cs, const float* sn, float* y, int64_t outer, int64_t seq, int64_t d, int64_t half,
                   bool interleaved, int64_t xOuterStride, int64_t xSeqStride, int64_t yOuterStride, int64_t ySeqStride) {
  parallelRows(outer * seq, d, [&](int64_t r) {
    const int64_t o = r / seq, p = r % seq;
    const float* xr = x + o * xOuterStride + p * xSeqStride;
    float* yr = y + o * yOuterStride + p * ySeqStride;
    const float* c = cs + p * half;
    const float* s = sn + p * half;
    if (!interleaved) {
      int64_t i = 0;
      for (; i + kW <= half; i += kW) {
        const VecF x1 = VecF::load(xr + i), x2 = VecF::load(xr + half + i);
        const VecF cv = VecF::load(c + i), sv = VecF::load(s + i);
        (x1 * cv - x2 * sv).store(yr + i);
        (x2 * cv + x1 * sv).store(yr + half + i);
      }
      for (; i < half; i++) {
        const float x1 = xr[i], x2 = xr[half + i];
        yr[i] = x1 * c[i] - x2 * s[i];
        yr[half + i] = x2 * c[i] + x1 * s[i];
      }
    } else {
      for (int64_t i = 0; i < half; i++) {
        const float x1 = xr[2 * i], x2 = xr[2 * i + 1];
        yr[2 * i] = x1 * c[i] - x2 * s[i];
        yr[2 * i + 1] = x2 * c[i] + x1 * s[i];
      }
    }
    for (int64_t i = 2 * half; i < d; i++) yr[i] = xr[i];
  });
}

void registerNorm(Napi::Env env, Napi::Object exports) {
  exports.Set("norm", Napi::Function::New(env, Norm));
  exports.Set("groupNorm", Napi::Function::New(env, GroupNorm));
  exports.Set("addGroupNorm", Napi::Function::New(env, AddGroupNorm));
  exports.Set("addSoftmax", Napi::Function::New(env, AddSoftmax));
  exports.Set("rotary", Napi::Function::New(env, Rotary));
}

}  // namespace inferjit
