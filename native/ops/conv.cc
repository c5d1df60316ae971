// conv2d (NCHW, groups, stride, padding, dilation) as im2col + the packed GEMM: per image and
// group, out[Og, P] = W[Og, Cg·kh·kw] · col[Cg·kh·kw, P] with the bias as a per-row epilogue.
// 1×1 stride-1 convolutions skip im2col (the input already is the column matrix); patch-embedding
// convolutions (stride == kernel, no padding) take a copy loop without bounds checks.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../common.h"
#include "../gemm/gemm.h"
#include "../threadpool.h"
#include "kernels_core.h"
#include "ops.h"
#include "registry.h"

namespace inferjit {
namespace {

// col[(c·kh + i)·kw + j][p - p0] for output pixels p in [p0, p1) of one image's channel group.
void im2col(const float* x, const Conv2dArgs& s, int64_t Wo, int64_t cg, int64_t p0, int64_t p1, float* col) {
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

// conv2d(x, weight, bias, out, [N, C, H, W], [O, kh, kw], [sh, sw, ph, pw, dh, dw], groups, act)
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = viewOf<float>(env, info[0], "conv2d: x");
  auto w = viewOf<float>(env, info[1], "conv2d: weight");
  auto b = viewOf<float>(env, info[2], "conv2d: bias", true);
  auto y = viewOf<float>(env, info[3], "conv2d: out");
  auto xs = ints(env, info[4]);
  auto ws = ints(env, info[5]);
  auto geo = ints(env, info[6]);
  const int64_t groups = i64(info[7]);
  const int act = static_cast<int>(i64(info[8]));
  need(env, xs.size() == 4 && ws.size() == 3 && geo.size() == 6 && groups >= 1, "conv2d: bad arguments");
  Conv2dArgs s;
  s.x = x.data; s.w = w.data; s.bias = b.data; s.out = y.data;
  s.N = xs[0]; s.C = xs[1]; s.H = xs[2]; s.W = xs[3]; s.O = ws[0]; s.kh = ws[1]; s.kw = ws[2];
  s.sh = geo[0]; s.sw = geo[1]; s.ph = geo[2]; s.pw = geo[3]; s.dh = geo[4]; s.dw = geo[5];
  s.groups = groups; s.act = act;
  const int64_t Ho = (s.H + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
  const int64_t Wo = (s.W + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
  need(env, s.C % groups == 0 && s.O % groups == 0 && Ho > 0 && Wo > 0, "conv2d: bad geometry");
  const int64_t K = s.C / groups * s.kh * s.kw;
  need(env, x.length == static_cast<size_t>(s.N * s.C * s.H * s.W), "conv2d: x size does not match");
  need(env, w.length == static_cast<size_t>(s.O * K), "conv2d: weight size does not match");
  need(env, y.length == static_cast<size_t>(s.N * s.O * Ho * Wo), "conv2d: out size does not match");
  need(env, !b || b.length == static_cast<size_t>(s.O), "conv2d: bias size does not match");
  std::vector<float> col;
  conv2dNchw(s, col);
  return env.Undefined();
}

}  // namespace

void conv2dNchw(const Conv2dArgs& s, std::vector<float>& col) {
  const int64_t Ho = (s.H + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
  const int64_t Wo = (s.W + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
  const int64_t cg = s.C / s.groups, og = s.O / s.groups, K = cg * s.kh * s.kw, P = Ho * Wo;
  const bool pointwise = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
  // Column chunks keep the im2col buffer under ~32 MB however large the image.
  const int64_t chunk = pointwise ? P : std::max<int64_t>(1, std::min<int64_t>(P, (8 << 20) / std::max<int64_t>(K, 1)));
  if (!pointwise && col.size() < static_cast<size_t>(K * chunk)) col.resize(static_cast<size_t>(K * chunk));
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
        im2col(xg, s, Wo, cg, p0, p1, col.data());
        gemm(og, p1 - p0, K, wg, K, false, col.data(), p1 - p0, false, nullptr, yg + p0, P, epi, one);
      }
    }
  }
}

void registerConv(Napi::Env env, Napi::Object exports) { exports.Set("conv2d", Napi::Function::New(env, Conv2d)); }

void registerOps(Napi::Env env, Napi::Object exports) {
  registerElementwise(env, exports);
  registerNorm(env, exports);
  registerMovement(env, exports);
  registerConv(env, exports);
}

}  // namespace inferjit
