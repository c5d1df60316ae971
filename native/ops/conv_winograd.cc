// Winograd F(4×4, 3×3) convolution for 3×3 stride-1 convolutions (one group, dilation 1, any
// padding) on NCHW images: the VAE decoder's 32²..256² levels with 128..512 channels, where the
// direct kernel (conv_direct.cc) already runs near the FMA peak and the only lever left is fewer
// multiplies (36 per 16 outputs and channel pair instead of 144: 4× fewer).
//
// Each 4×4 output tile reads a 6×6 input tile d; with the transforms of Lavin & Gray (2015)
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
// the channel sum moves inside the product, so for each of the 36 positions ξ of the 6×6
// transformed tile it is one GEMM over the input channels:
//   M[ξ][tile][o] = Σ_c V[ξ][tile][c] · U[ξ][c][o],  V = Bᵀ d B (input), U = G g Gᵀ (weight).
// U is transformed once per weight (the plan does it at createPlan: conv2dWinogradPackWeight) into
// the packed GEMM's B panels (gemm.h: kNR columns of O per panel, one panel set per ξ), so the 36
// products run on the project's fp32 microkernel (gemmPackedTile). The price is memory: U holds
// 36/9 = 4× the weight (the SD VAE decoder's plan holds ~720 MiB more than without Winograd).
//
// Work item: a block of up to kTiles consecutive tiles (raster order over all images' tiles) and
// a range of output channels (split only when there are too few tile blocks to keep the threads
// busy). Per item, on one thread: the input transform of the block's tiles for all input channels
// (V, [tiles][36][C], vectorized over kLanes channels), the 36 GEMMs into M ([tiles][36][Ob]), and
// the output transform (vectorized over kLanes output channels) with the direct kernel's epilogue
// (bias + per-image channel bias, activation, + residual) before the store into NCHW out.
//
// F(2×2, 3×3) (4×4 input tiles, 16 positions, 2.25× fewer multiplies, cheaper transforms, a
// 16/9 weight instead of 36/9) is the same code with the other transforms (Wino<2>), selected by
// INFERJIT_CONV_WINOGRAD=2 at lowering; on the SD VAE decoder (bench/vae-ab.ts, 2 threads) F(4, 3)
// took 0.71× F(2, 3)'s time, so it is the default.
//
// Accuracy: the transforms' constants (4, 5, 8, 1/24, ...) amplify rounding; against the fp32
// direct convolution the largest error is ~1e-5 of the output's largest magnitude for F(4, 3) and
// ~3e-7 for F(2, 3) (test/backends/cpu/plan-conv-norm.test.ts; 2e-5 at the VAE's 512 channels).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common.h"
#include "../gemm/gemm.h"
#include "../simd.h"
#include "../threadpool.h"
#include "../transpose.h"
#include "kernels_core.h"

namespace inferjit {
namespace {

constexpr int kLanes = VecF::W;

// Tiles per work item: the block's V and M ([tiles][36][C or Ob]) stay in L2, and each U panel
// read from memory serves this many rows of the microkernel. INFERJIT_CONV_WINOGRAD_TILES tunes it.
const int64_t kTiles = [] {
  const char* e = std::getenv("INFERJIT_CONV_WINOGRAD_TILES");
  const int64_t v = e ? std::atoll(e) : 0;
  return v > 0 ? v : static_cast<int64_t>(4 * kMR);
}();

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// F(m×m, 3×3): output tile kM, input tile kA = kM + 2, kXi transformed positions; the 1-D
// transforms Bᵀ (inputRows), Aᵀ (outputRows) and G (Lavin & Gray's points 0, ±1, ±2, ∞ for
// F(4, 3); 0, ±1, ∞ for F(2, 3)).
template <int M>
struct Wino;
template <>
struct Wino<4> {
  static constexpr int kM = 4, kA = 6, kXi = 36;
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
  // r = Bᵀ d over 6 vectors (d strided by `st`), F(4, 3).
  static void inputRows(const VecF* d, int st, VecF* r, int rs) {
    const VecF d0 = d[0], d1 = d[st], d2 = d[2 * st], d3 = d[3 * st], d4 = d[4 * st], d5 = d[5 * st];
    const VecF four = VecF::set1(4.0f), five = VecF::set1(5.0f), two = VecF::set1(2.0f);
    const VecF t1 = d4 - four * d2;           // d4 - 4 d2
    const VecF t2 = d3 - four * d1;           // d3 - 4 d1
    const VecF t3 = d4 - d2;                  // d4 - d2
    const VecF t4 = two * (d3 - d1);          // 2 (d3 - d1)
    r[0] = fmadd(four, d0, d4 - five * d2);   // 4 d0 - 5 d2 + d4
    r[rs] = t1 + t2;                          // -4 d1 - 4 d2 + d3 + d4
    r[2 * rs] = t1 - t2;                      // 4 d1 - 4 d2 - d3 + d4
    r[3 * rs] = t3 + t4;                      // -2 d1 - d2 + 2 d3 + d4
    r[4 * rs] = t3 - t4;                      // 2 d1 - d2 - 2 d3 + d4
    r[5 * rs] = fmadd(four, d1, d5 - five * d3);  // 4 d1 - 5 d3 + d5
  }

  // y = Aᵀ m over 6 vectors (m strided by `st`), F(4, 3).
  static void outputRows(const VecF* m, int st, VecF* y, int ys) {
    const VecF m0 = m[0], m1 = m[st], m2 = m[2 * st], m3 = m[3 * st], m4 = m[4 * st], m5 = m[5 * st];
    const VecF s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    y[0] = m0 + s12 + s34;
    y[ys] = fmadd(VecF::set1(2.0f), d34, d12);
    y[2 * ys] = fmadd(VecF::set1(4.0f), s34, s12);
    y[3 * ys] = fmadd(VecF::set1(8.0f), d34, d12) + m5;
  }
};
template <>
struct Wino<2> {
  static constexpr int kM = 2, kA = 4, kXi = 16;
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  // r = Bᵀ d over 4 vectors, F(2, 3)
  static void inputRows(const VecF* d, int st, VecF* r, int rs) {
    const VecF d0 = d[0], d1 = d[st], d2 = d[2 * st], d3 = d[3 * st];
    r[0] = d0 - d2;
    r[rs] = d1 + d2;
    r[2 * rs] = d2 - d1;
    r[3 * rs] = d1 - d3;
  }
  // y = Aᵀ m over 4 vectors, F(2, 3)
  static void outputRows(const VecF* m, int st, VecF* y, int ys) {
    const VecF m1 = m[st], m2 = m[2 * st];
    y[0] = m[0] + m1 + m2;
    y[ys] = m1 - m2 - m[3 * st];
  }
};

struct Geo {
  int64_t Ho, Wo, tilesY, tilesX, tilesImg, tilesAll;
};

// dst[x·kLanes + l] = src[l·lds + x] for l < lanes, x < cols: kLanes channel rows as columns of
// channel vectors (lanes >= `lanes` are left as they are).
inline void stageColumns(const float* src, int64_t lds, int lanes, int64_t cols, float* dst) {
#if defined(IJ_AVX512)
  for (int64_t x = 0; x < cols; x += 16) transposeBlock16(src + x, lds, lanes, static_cast<int>(std::min<int64_t>(16, cols - x)), dst + x * kLanes, kLanes);
#else
  for (int l = 0; l < lanes; l++)
    for (int64_t x = 0; x < cols; x++) dst[x * kLanes + l] = src[l * lds + x];
#endif
}
// The inverse: dst[l·ldd + x] = src[x·kLanes + l] for l < lanes, x < cols.
inline void unstageColumns(const float* src, int64_t cols, int lanes, float* dst, int64_t ldd) {
#if defined(IJ_AVX512)
  for (int64_t x = 0; x < cols; x += 16) transposeBlock16(src + x * kLanes, kLanes, static_cast<int>(std::min<int64_t>(16, cols - x)), lanes, dst + x, ldd);
#else
  for (int l = 0; l < lanes; l++)
    for (int64_t x = 0; x < cols; x++) dst[l * ldd + x] = src[x * kLanes + l];
#endif
}

// A run of consecutive tiles of one tile row of one image, within a block.
struct Run {
  int64_t n, ty, tx0, len;
};
inline Run runAt(const Geo& g, int64_t q, int64_t left) {
  const int64_t n = q / g.tilesImg, t = q % g.tilesImg, tx0 = t % g.tilesX;
  return Run{n, t / g.tilesX, tx0, std::min(left, g.tilesX - tx0)};
}

// V[i][ξ][c] (leading dims: 36·C per tile, C per ξ: a tile's 36 stores land in one region) for tiles [q0, q0 + nt). Per group of
// kLanes channels and run of tiles, the run's 6 input rows are staged as channel vectors (a
// transpose of the contiguous rows, zero outside the image), then each tile's 36 vectors are
// transformed and stored. `stage` holds kA·(4·nt + 2)·kLanes floats.
template <int TM>
void inputTransform(const Conv2dFusedArgs& s, const Geo& g, int64_t q0, int64_t nt, float* V, float* stage) {
  using W = Wino<TM>;
  constexpr int kM = W::kM, kA = W::kA, kXi = W::kXi;
  VecF dv[kXi], r[kXi];
  const int64_t plane = s.H * s.W;
  for (int64_t c0 = 0; c0 < s.C; c0 += kLanes) {
    const int cl = static_cast<int>(std::min<int64_t>(kLanes, s.C - c0));
    for (int64_t i = 0; i < nt;) {
      const Run run = runAt(g, q0 + i, nt - i);
      const int64_t ix0 = run.tx0 * kM - s.pw, wR = kM * run.len + kA - kM;
      // columns x with 0 <= ix0 + x < W
      const int64_t xa = std::clamp<int64_t>(-ix0, 0, wR), xb = std::clamp<int64_t>(s.W - ix0, xa, wR);
      const float* src = s.x + (run.n * s.C + c0) * plane;
      for (int y = 0; y < kA; y++) {
        const int64_t iy = run.ty * kM - s.ph + y;
        float* row = stage + y * wR * kLanes;
        if (iy < 0 || iy >= s.H || cl < kLanes) {
          std::memset(row, 0, static_cast<size_t>(wR * kLanes) * sizeof(float));
          if (iy < 0 || iy >= s.H) continue;
        } else {
          if (xa > 0) std::memset(row, 0, static_cast<size_t>(xa * kLanes) * sizeof(float));
          if (xb < wR) std::memset(row + xb * kLanes, 0, static_cast<size_t>((wR - xb) * kLanes) * sizeof(float));
        }
        stageColumns(src + iy * s.W + ix0 + xa, plane, cl, xb - xa, row + xa * kLanes);
      }
      for (int64_t j = 0; j < run.len; j++) {
        for (int y = 0; y < kA; y++)
          for (int x = 0; x < kA; x++) dv[y * kA + x] = VecF::load(stage + (y * wR + j * kM + x) * kLanes);
        // columns: r[y][x] = Σ_k Bᵀ[y][k] d[k][x]; rows: v[y][x] = Σ_k Bᵀ[x][k] r[y][k]
        for (int x = 0; x < kA; x++) W::inputRows(dv + x, kA, r + x, kA);
        for (int y = 0; y < kA; y++) W::inputRows(r + y * kA, 1, dv + y * kA, 1);
        float* dst = V + (i + j) * kXi * s.C + c0;
        if (cl == kLanes) {
          for (int p = 0; p < kXi; p++) dv[p].store(dst + p * s.C);
        } else {
          for (int p = 0; p < kXi; p++) dv[p].storePartial(dst + p * s.C, cl);
        }
      }
      i += run.len;
    }
  }
}

// out for tiles [q0, q0 + nt) and output channels [o0, o0 + ob) from M[i][ξ][o - o0]. Per group
// of kLanes channels and run of tiles, the tiles' 4 output rows (after bias, channel bias and
// activation) are staged as channel vectors, transposed back into the channels' rows of out, and
// the residual added there (out must not overlap the residual). `stage`: kM·4·nt·kLanes floats.
template <int TM>
void outputTransform(const Conv2dFusedArgs& s, const Geo& g, int64_t q0, int64_t nt, int64_t o0, int64_t ob, const float* M, float* stage) {
  using W = Wino<TM>;
  constexpr int kM = W::kM, kA = W::kA, kXi = W::kXi;
  VecF mv[kXi], t[kM * kA], yv[kM * kM];
  const int64_t P = g.Ho * g.Wo;
  for (int64_t oo = 0; oo < ob; oo += kLanes) {
    const int cl = static_cast<int>(std::min<int64_t>(kLanes, ob - oo));
    const int64_t o = o0 + oo;
    VecF bias = VecF::zero();
    if (s.bias) bias = cl == kLanes ? VecF::load(s.bias + o) : VecF::loadPartial(s.bias + o, cl);
    for (int64_t i = 0; i < nt;) {
      const Run run = runAt(g, q0 + i, nt - i);
      const int64_t oy0 = run.ty * kM, ox0 = run.tx0 * kM, wR = kM * run.len;
      const int rows = static_cast<int>(std::min<int64_t>(kM, g.Ho - oy0));
      const int64_t valid = std::min(wR, g.Wo - ox0);
      VecF add = bias;
      if (s.chanBias) {
        const float* cb = s.chanBias + run.n * s.chanBiasStride + o;
        add = add + (cl == kLanes ? VecF::load(cb) : VecF::loadPartial(cb, cl));
      }
      for (int64_t j = 0; j < run.len; j++) {
        const float* src = M + (i + j) * kXi * ob + oo;
        if (cl == kLanes) {
          for (int p = 0; p < kXi; p++) mv[p] = VecF::load(src + p * ob);
        } else {
          for (int p = 0; p < kXi; p++) mv[p] = VecF::loadPartial(src + p * ob, cl);
        }
        // columns: t[a][x] = Σ_k Aᵀ[a][k] m[k][x]; rows: y[a][b] = Σ_k Aᵀ[b][k] t[a][k]
        for (int x = 0; x < kA; x++) W::outputRows(mv + x, kA, t + x, kA);
        for (int a = 0; a < kM; a++) W::outputRows(t + a * kA, 1, yv + a * kM, 1);
        for (int a = 0; a < kM; a++) {
          for (int b = 0; b < kM; b++) {
            VecF v = yv[a * kM + b] + add;
            if (s.act != kActNone) v = activateDyn(s.act, v);
            v.store(stage + (a * wR + j * kM + b) * kLanes);
          }
        }
      }
      for (int a = 0; a < rows; a++) {
        const int64_t at = (run.n * s.O + o) * P + (oy0 + a) * g.Wo + ox0;
        unstageColumns(stage + a * wR * kLanes, valid, cl, s.out + at, P);
        if (!s.residual) continue;
        for (int l = 0; l < cl; l++) {
          float* d = s.out + at + l * P;
          const float* rr = s.residual + at + l * P;
          int64_t x = 0;
          for (; x + kLanes <= valid; x += kLanes) (VecF::load(d + x) + VecF::load(rr + x)).store(d + x);
          for (; x < valid; x++) d[x] += rr[x];
        }
      }
      i += run.len;
    }
  }
}

std::vector<float> gWeight;  // the per-call weight transform when no pre-transformed one is given

}  // namespace

bool conv2dWinogradApplies(const Conv2dArgs& s) {
  return s.groups == 1 && s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.ph >= 0 && s.pw >= 0;
}

namespace {

template <int TM>
void packWeight(const float* w, int64_t C, int64_t O, float* dst) {
  using W = Wino<TM>;
  constexpr int kA = W::kA, kXi = W::kXi;
  const auto& G = W::G;  // in double: u = G g Gᵀ is rounded to fp32 once
  const int64_t panels = ceilDiv(O, kNR), xiStride = panels * C * kNR;
  parallelFor(panels, [&](int64_t p, int) {
    for (int xi = 0; xi < kXi; xi++) std::memset(dst + xi * xiStride + p * C * kNR, 0, static_cast<size_t>(C * kNR) * sizeof(float));
    for (int64_t o = p * kNR; o < std::min<int64_t>(O, (p + 1) * kNR); o++) {
      for (int64_t c = 0; c < C; c++) {
        const float* g = w + (o * C + c) * 9;
        double t[kA][3];  // G g
        for (int i = 0; i < kA; i++)
          for (int b = 0; b < 3; b++) t[i][b] = G[i][0] * g[b] + G[i][1] * g[3 + b] + G[i][2] * g[6 + b];
        for (int i = 0; i < kA; i++) {
          for (int j = 0; j < kA; j++) {
            const double u = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
            dst[(i * kA + j) * xiStride + (p * C + c) * kNR + o % kNR] = static_cast<float>(u);
          }
        }
      }
    }
  });
}

template <int TM>
void run(const Conv2dFusedArgs& s) {
  using W = Wino<TM>;
  constexpr int kM = W::kM, kA = W::kA, kXi = W::kXi;
  Geo g;
  g.Ho = s.H + 2 * s.ph - 2;
  g.Wo = s.W + 2 * s.pw - 2;
  if (g.Ho <= 0 || g.Wo <= 0 || s.N <= 0 || s.O <= 0) return;
  g.tilesY = ceilDiv(g.Ho, kM);
  g.tilesX = ceilDiv(g.Wo, kM);
  g.tilesImg = g.tilesY * g.tilesX;
  g.tilesAll = s.N * g.tilesImg;
  const float* U = s.winogradW;
  if (!U) {
    gWeight.resize(static_cast<size_t>(conv2dWinogradWeightFloats(s.C, s.O, TM)));
    packWeight<TM>(s.w, s.C, s.O, gWeight.data());
    U = gWeight.data();
  }
  const int64_t panels = ceilDiv(s.O, kNR), xiStrideU = panels * s.C * kNR;
  // Tile blocks of about kTiles, evened out; output channels split (in whole panels) only when
  // the blocks alone give the threads under ~4 items each.
  const int64_t T = numThreads();
  const int64_t blocks = ceilDiv(g.tilesAll, kTiles);
  const int64_t tb = ceilDiv(g.tilesAll, blocks);
  int64_t oSplit = 1;
  if (blocks < 4 * T) oSplit = std::min<int64_t>(ceilDiv(4 * T, blocks), std::max<int64_t>(1, panels * kNR / 128));
  const int64_t obPanels = ceilDiv(panels, oSplit), ob = obPanels * kNR;
  const int64_t oBlocks = ceilDiv(panels, obPanels);
  parallelFor(blocks * oBlocks, [&](int64_t task, int) {
    const int64_t bi = task / oBlocks, oi = task % oBlocks;
    const int64_t q0 = bi * tb, nt = std::min(tb, g.tilesAll - q0);
    const int64_t o0 = oi * ob, obw = std::min(ob, s.O - o0);
    thread_local std::vector<float> V, M, stage;
    if (V.size() < static_cast<size_t>(kXi * nt * s.C)) V.resize(static_cast<size_t>(kXi * tb * s.C));
    if (M.size() < static_cast<size_t>(kXi * nt * obw)) M.resize(static_cast<size_t>(kXi * tb * ob));
    if (stage.size() < static_cast<size_t>(kA * (kM * tb + kA) * kLanes)) stage.resize(static_cast<size_t>(kA * (kM * tb + kA) * kLanes));
    inputTransform<TM>(s, g, q0, nt, V.data(), stage.data());
    for (int xi = 0; xi < kXi; xi++) {
      gemmPackedTile(nt, obw, s.C, V.data() + xi * s.C, kXi * s.C, U + xi * xiStrideU + o0 * s.C, s.C * kNR, M.data() + xi * obw,
                     kXi * obw, false);
    }
    outputTransform<TM>(s, g, q0, nt, o0, obw, M.data(), stage.data());
  });
}

}  // namespace

int64_t conv2dWinogradWeightFloats(int64_t C, int64_t O, int m) { return static_cast<int64_t>(m + 2) * (m + 2) * ceilDiv(O, kNR) * C * kNR; }

void conv2dWinogradPackWeight(const float* w, int64_t C, int64_t O, int m, float* dst) {
  if (m == 2) packWeight<2>(w, C, O, dst);
  else packWeight<4>(w, C, O, dst);
}

void conv2dWinograd(const Conv2dFusedArgs& s) {
  if (s.winograd == 2) run<2>(s);
  else run<4>(s);
}

}  // namespace inferjit
