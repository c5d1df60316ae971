// conv2d (NCHW, groups, stride, padding, dilation) as im2col + the packed GEMM: per image and
// group, out[Og, P] = W[Og, Cg·kh·kw] · col[Cg·kh·kw, P] with the bias as a per-row epilogue.
// 1×1 stride-1 convolutions skip im2col (the input already is the column matrix); patch-embedding
// convolutions (stride == kernel, no padding) take a copy loop without bounds checks.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common.h"
#include "../gemm/gemm.h"
#include "../gemm/gemm_bf16.h"
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

// INFERJIT_CONV=im2col selects the explicit im2col + GEMM path below (for A/B measurements).
static const bool kConvIm2col = [] { const char* e = std::getenv("INFERJIT_CONV"); return e && std::strcmp(e, "im2col") == 0; }();

void conv2dNchw(const Conv2dArgs& s, std::vector<float>& col) {
  if (!kConvIm2col) {
    Conv2dFusedArgs f;
    static_cast<Conv2dArgs&>(f) = s;
    conv2dImplicit(f);
    return;
  }
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

// ---- implicit GEMM ---------------------------------------------------------------------------
// out[O, cols] = W[O, K] · col[K, cols] where the columns are output pixels (of one image, or of
// several images side by side when one image has too few to keep the threads busy) and col is
// never materialized: each 32-column B panel is gathered straight from x, once per call, in the
// layout the GEMM microkernels read. W is the GEMM's A and the asm microkernel reads it in place,
// so the weight needs no packing at all in fp32 (a bf16 plan converts A blocks inside gemmBf16).
// Compared with im2col + gemm this saves the col write and its re-read by the B packing, and the
// epilogue (bias, the per-image channel bias, activation, residual) runs on the tile in registers.

namespace {

// 64-byte aligned scratch, grown only. Plans run one at a time (plan.cc's lock) and the eager
// entry point runs on the JS thread, so one buffer per role has a single user.
struct AlignedScratch {
  void* p = nullptr;
  size_t bytes = 0;
  ~AlignedScratch() { std::free(p); }
  void* get(size_t n) {
    if (n > bytes) {
      std::free(p);
      bytes = (n + 63) / 64 * 64;
      p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
};
AlignedScratch gPanels, gWide;
thread_local std::vector<float> tRowsF32;

struct ConvGeo {
  int64_t Ho, Wo, P, cg, og, K;
};

// One run of consecutive output pixels on one output row of one image.
struct Segment {
  const float* img;  // x at the image's first channel of the current group
  int64_t oy, ox0, len, j0;
};

// Column panel [q0, q0 + nc) of the pixels of images [n0, ...) (column q is pixel q % P of image
// n0 + q / P) as segments of consecutive pixels on one output row.
int segmentsOf(const Conv2dArgs& s, const ConvGeo& g, const float* xg, int64_t n0, int64_t q0, int nc, Segment* seg) {
  int count = 0;
  for (int64_t j = 0; j < nc;) {
    const int64_t q = q0 + j, n = n0 + q / g.P, p = q % g.P;
    const int64_t oy = p / g.Wo, ox = p % g.Wo;
    const int64_t len = std::min<int64_t>(nc - j, g.Wo - ox);
    seg[count++] = Segment{xg + n * s.C * s.H * s.W, oy, ox, len, j};
    j += len;
  }
  return count;
}

// dst[k·32 + j] = im2col(x)[k][q0 + j] for k in [0, K), zero for j >= nc (the fp32 panel layout).
void gatherPanel(const Conv2dArgs& s, const ConvGeo& g, const Segment* seg, int nseg, int nc, float* dst) {
  const int64_t khw = s.kh * s.kw;
  for (int64_t k = 0; k < g.K; k++) {
    const int64_t c = k / khw, ki = (k / s.kw) % s.kh, kj = k % s.kw;
    float* row = dst + k * kNR;
    for (int t = 0; t < nseg; t++) {
      const Segment& sg = seg[t];
      float* o = row + sg.j0;
      const int64_t iy = sg.oy * s.sh - s.ph + ki * s.dh;
      if (iy < 0 || iy >= s.H) {
        std::memset(o, 0, sg.len * sizeof(float));
        continue;
      }
      const float* xr = sg.img + (c * s.H + iy) * s.W;
      const int64_t ix0 = sg.ox0 * s.sw - s.pw + kj * s.dw;
      if (s.sw == 1) {
        // valid t: 0 <= ix0 + t < W
        const int64_t a = std::clamp<int64_t>(-ix0, 0, sg.len), b = std::clamp<int64_t>(s.W - ix0, a, sg.len);
        if (a > 0) std::memset(o, 0, a * sizeof(float));
        std::memcpy(o + a, xr + ix0 + a, (b - a) * sizeof(float));
        if (b < sg.len) std::memset(o + b, 0, (sg.len - b) * sizeof(float));
      } else {
        for (int64_t t2 = 0; t2 < sg.len; t2++) {
          const int64_t ix = ix0 + t2 * s.sw;
          o[t2] = (ix >= 0 && ix < s.W) ? xr[ix] : 0.0f;
        }
      }
    }
    if (nc < kNR) std::memset(row + nc, 0, (kNR - nc) * sizeof(float));
  }
}

// Round to nearest even bf16 (the rounding packBBf16 applies to weights).
inline uint32_t bf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// An fp32 panel [K][32] into the bf16 pair layout of gemm_bf16.h: pair row q holds, per column j,
// bf16(row 2q) in the low half and bf16(row 2q + 1) in the high half of one 32-bit word; rows past
// K (up to Kp) are zero.
void panelToBf16(const float* src, int64_t K, int64_t Kp, uint16_t* dst) {
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  for (int64_t q = 0; q < Kp / 2; q++) {
    const int64_t k0 = 2 * q, k1 = 2 * q + 1;
    const float* r0 = k0 < K ? src + k0 * kNR : nullptr;
    const float* r1 = k1 < K ? src + k1 * kNR : nullptr;
    uint32_t* o = d + q * kBf16NR;
    for (int j = 0; j < kBf16NR; j++) o[j] = (r0 ? bf16Bits(r0[j]) : 0u) | ((r1 ? bf16Bits(r1[j]) : 0u) << 16);
  }
}

// The pixels-as-rows form (a pre-packed weight, groups == 1): A[q][k] = im2col(x)[k][q] for the
// N·P output pixels q (rows) as a row-major patch matrix, C[q][o] = A · Wᵀ on the weight's panels,
// then out[n][o][p] = act(C[q][o] + bias[o] + chanBias[n][o]) + residual[n][o][p] while transposing.
void convPixelRows(const Conv2dFusedArgs& s, const ConvGeo& g) {
  const int64_t K = g.K, O = s.O, rowsAll = s.N * g.P, khw = s.kh * s.kw;
  // Row chunks keep the patch matrix under ~32 MB however large the batch.
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(rowsAll, (8 << 20) / std::max<int64_t>(K, 1)));
  float* A = static_cast<float*>(gPanels.get(static_cast<size_t>(chunk * K) * 4));
  float* C = static_cast<float*>(gWide.get(static_cast<size_t>(chunk * O) * 4));
  GemmBatch one;
  Epilogue none;
  for (int64_t r0 = 0; r0 < rowsAll; r0 += chunk) {
    const int64_t rows = std::min(chunk, rowsAll - r0);
    parallelFor(rows, [&](int64_t i, int) {
      const int64_t q = r0 + i, n = q / g.P, p = q % g.P, oy = p / g.Wo, ox = p % g.Wo;
      const float* img = s.x + n * s.C * s.H * s.W;
      float* row = A + i * K;
      for (int64_t c = 0; c < s.C; c++) {
        for (int64_t ki = 0; ki < s.kh; ki++) {
          float* o = row + c * khw + ki * s.kw;
          const int64_t iy = oy * s.sh - s.ph + ki * s.dh;
          if (iy < 0 || iy >= s.H) {
            for (int64_t kj = 0; kj < s.kw; kj++) o[kj] = 0.0f;
            continue;
          }
          const float* xr = img + (c * s.H + iy) * s.W;
          for (int64_t kj = 0; kj < s.kw; kj++) {
            const int64_t ix = ox * s.sw - s.pw + kj * s.dw;
            o[kj] = (ix >= 0 && ix < s.W) ? xr[ix] : 0.0f;
          }
        }
      }
    });
    if (s.packedWBf16) {
      gemmBf16(rows, O, K, A, K, false, *s.packedWBf16, C, O, none, one, static_cast<Bf16Kernel>(s.bf16Kernel));
    } else {
      gemm(rows, O, K, A, K, false, nullptr, 0, false, s.packedW, C, O, none, one);
    }
    // Transpose back with the epilogue, in blocks of rows (pixels of one image are consecutive).
    const int64_t rb = 16, blocks = (rows + rb - 1) / rb;
    parallelFor(blocks, [&](int64_t bi, int) {
      float lane[kW];
      for (int64_t i = bi * rb; i < std::min(rows, (bi + 1) * rb); i++) {
        const int64_t q = r0 + i, n = q / g.P, p = q % g.P;
        const float* cr = C + i * O;
        const float* cb = s.chanBias ? s.chanBias + n * s.chanBiasStride : nullptr;
        for (int64_t o0 = 0; o0 < O; o0 += kW) {
          const int64_t w = std::min<int64_t>(kW, O - o0);
          for (int64_t j = 0; j < w; j++) lane[j] = cr[o0 + j] + (s.bias ? s.bias[o0 + j] : 0.0f) + (cb ? cb[o0 + j] : 0.0f);
          for (int64_t j = w; j < kW; j++) lane[j] = 0.0f;
          if (s.act != kActNone) activateDyn(s.act, VecF::load(lane)).store(lane);
          for (int64_t j = 0; j < w; j++) {
            const int64_t at = (n * O + o0 + j) * g.P + p;
            s.out[at] = lane[j] + (s.residual ? s.residual[at] : 0.0f);
          }
        }
      }
    });
  }
}

}  // namespace

void conv2dImplicit(const Conv2dFusedArgs& s) {
  ConvGeo g;
  g.Ho = (s.H + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
  g.Wo = (s.W + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
  g.P = g.Ho * g.Wo;
  g.cg = s.C / s.groups;
  g.og = s.O / s.groups;
  g.K = g.cg * s.kh * s.kw;
  // bf16 panels are 32 columns wide, like the fp32 ones in AVX-512 builds (the only ones with bf16)
  const bool bf16 = s.bf16Kernel != 0 && kNR == kBf16NR;
  if (g.P <= 0 || s.N <= 0 || g.og <= 0) return;
  // The direct kernel's partial sums live in out between channel blocks, so a residual that
  // overlaps out (an in-place epilogue) keeps the implicit GEMM.
  const size_t outBytes = static_cast<size_t>(s.N * s.O * g.P) * sizeof(float);
  const bool residualOverlaps = s.residual && reinterpret_cast<const char*>(s.residual) < reinterpret_cast<const char*>(s.out) + outBytes &&
                                reinterpret_cast<const char*>(s.out) < reinterpret_cast<const char*>(s.residual) + outBytes;
  // Winograd adds the residual to rows of out it has just written: no overlap either.
  if (s.winograd != 0 && s.bf16Kernel == 0 && !s.packedW && conv2dWinogradApplies(s) && !residualOverlaps) return conv2dWinograd(s);
  if (s.direct && s.bf16Kernel == 0 && !s.packedW && conv2dDirectApplies(s) && !residualOverlaps) return conv2dDirect(s);
  if ((s.packedW || s.packedWBf16) && s.groups == 1) return convPixelRows(s, g);
  // Images side by side when one image has under 16 panels (the deep 8×8 and 4×4 UNet levels):
  // the GEMM then has enough columns to split across threads; its result goes through a wide
  // buffer that the epilogue pass scatters back per image.
  const bool wide = s.N > 1 && g.P < 16 * kNR;
  const int64_t imgsPer = wide ? s.N : 1;
  const int64_t colsAll = imgsPer * g.P;
  // Column chunks (multiples of 32) keep the packed panels under ~32 MB however large the image.
  const int64_t Kp = (g.K + kBf16KAlign - 1) / kBf16KAlign * kBf16KAlign;
  const int64_t perCol = bf16 ? Kp / 2 : g.K;  // 4-byte words per column
  const int64_t chunk = std::max<int64_t>(kNR, std::min<int64_t>((colsAll + kNR - 1) / kNR * kNR, (8 << 20) / std::max<int64_t>(perCol, 1) / kNR * kNR));
  void* panels = gPanels.get(static_cast<size_t>(chunk * perCol) * 4);
  float* wideOut = wide ? static_cast<float*>(gWide.get(static_cast<size_t>(g.og * colsAll) * 4)) : nullptr;
  std::vector<float> biasSum(bf16 || s.chanBias ? static_cast<size_t>(g.og) : 0);
  GemmBatch one;
  for (int64_t n0 = 0; n0 < s.N; n0 += imgsPer) {
    for (int64_t gi = 0; gi < s.groups; gi++) {
      const float* xg = s.x + gi * g.cg * s.H * s.W;
      const float* wg = s.w + gi * g.og * g.K;
      Epilogue epi;
      if (!wide) {
        const float* b = s.bias ? s.bias + gi * g.og : nullptr;
        if (s.chanBias) {
          const float* cb = s.chanBias + n0 * s.chanBiasStride + gi * g.og;
          for (int64_t o = 0; o < g.og; o++) biasSum[o] = (b ? b[o] : 0.0f) + cb[o];
          b = biasSum.data();
        }
        epi.bias = b;
        epi.biasPerRow = true;
        epi.act = s.act;
        epi.residual = s.residual ? s.residual + (n0 * s.O + gi * g.og) * g.P : nullptr;
        epi.ldr = g.P;
      }
      for (int64_t q0 = 0; q0 < colsAll; q0 += chunk) {
        const int64_t q1 = std::min(colsAll, q0 + chunk), cols = q1 - q0, np = (cols + kNR - 1) / kNR;
        parallelFor(np, [&](int64_t p, int) {
          Segment seg[kNR];
          const int nc = static_cast<int>(std::min<int64_t>(kNR, cols - p * kNR));
          const int nseg = segmentsOf(s, g, xg, n0, q0 + p * kNR, nc, seg);
          if (!bf16) {
            gatherPanel(s, g, seg, nseg, nc, static_cast<float*>(panels) + p * g.K * kNR);
          } else {
            std::vector<float>& tmp = tRowsF32;
            if (tmp.size() < static_cast<size_t>(g.K * kNR)) tmp.resize(static_cast<size_t>(g.K * kNR));
            gatherPanel(s, g, seg, nseg, nc, tmp.data());
            panelToBf16(tmp.data(), g.K, Kp, static_cast<uint16_t*>(panels) + p * Kp * kBf16NR);
          }
        });
        float* c = wide ? wideOut + q0 : s.out + (n0 * s.O + gi * g.og) * g.P + q0;
        const int64_t ldc = wide ? colsAll : g.P;
        Epilogue e = epi;
        if (e.residual) e.residual += q0;
        if (!bf16) {
          PackedB pb;
          pb.K = g.K; pb.N = cols; pb.panels = np; pb.data = static_cast<float*>(panels);
          gemm(g.og, cols, g.K, wg, g.K, false, nullptr, 0, false, &pb, c, ldc, e, one);
          pb.data = nullptr;  // the scratch is not the PackedB's to free
        } else {
          PackedBf16 pb;
          pb.K = g.K; pb.N = cols; pb.Kp = Kp; pb.panels = np; pb.data = static_cast<uint16_t*>(panels);
          gemmBf16(g.og, cols, g.K, wg, g.K, false, pb, c, ldc, e, one, static_cast<Bf16Kernel>(s.bf16Kernel));
          pb.data = nullptr;
        }
      }
      if (wide) {
        // Scatter [og, N·P] back to [N, O, P] with the epilogue: + bias + channel bias, act, + residual.
        parallelFor(imgsPer * g.og, [&](int64_t t, int) {
          const int64_t n = n0 + t / g.og, o = t % g.og, ch = gi * g.og + o;
          const float add = (s.bias ? s.bias[ch] : 0.0f) + (s.chanBias ? s.chanBias[n * s.chanBiasStride + ch] : 0.0f);
          const float* src = wideOut + o * colsAll + (n - n0) * g.P;
          float* dst = s.out + (n * s.O + ch) * g.P;
          const float* res = s.residual ? s.residual + (n * s.O + ch) * g.P : nullptr;
          const VecF av = VecF::set1(add);
          int64_t i = 0;
          for (; i + kW <= g.P; i += kW) {
            VecF v = activateDyn(s.act, VecF::load(src + i) + av);
            if (res) v = v + VecF::load(res + i);
            v.store(dst + i);
          }
          if (i < g.P) {
            float lane[kW] = {};
            for (int64_t j = i; j < g.P; j++) lane[j - i] = src[j];
            VecF v = activateDyn(s.act, VecF::load(lane) + av);
            v.store(lane);
            for (int64_t j = i; j < g.P; j++) dst[j] = lane[j - i] + (res ? res[j] : 0.0f);
          }
        });
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
