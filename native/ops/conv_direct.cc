// Direct 3×3 convolution (stride 1, dilation 1, one group, any padding) for NCHW images wide
// enough to fill vector registers along an output row: the VAE decoder's 32²..256² levels, where
// the implicit GEMM gathers 9× its input into panels and runs at a fraction of the FMA rate.
//
// Work item: 4 output rows of one image, in groups of 384 output channels. Per block of 128 input
// channels the rows' 6 input rows are copied into a zero-padded scratch (layout below), so the
// inner loop has no bounds checks; then for each tile of NV·16 output pixels and each block of NO
// output channels, a register tile acc[NO][NV] accumulates
//   acc[o][v] += w[o][c][ki][kj] · scratch[c][ki][x0 + 16v + kj .. + 16]
// (weights broadcast from the OIHW weight read in place, input vectors loaded unaligned). The
// first channel block starts from zero, later ones from the partial sums in out; the last applies
// the epilogue (bias + per-image channel bias, activation, + residual) before its store.
//
// Scratch layout (per thread): [cb][4 + KH - 1][Wp] floats, Wp = roundUp(Wo, lanes) + KW - 1;
// column j of row (c, r) holds x[n][c0 + c][y0 - ph + r][j - pw], zero outside the image (whole
// rows of zeros above and below it). Output pixel (y0 + r, ox) reads rows r .. r + KH - 1,
// columns ox .. ox + KW - 1.
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "../common.h"
#include "../simd.h"
#include "../threadpool.h"
#include "kernels_core.h"

namespace inferjit {
namespace {

constexpr int kLanes = VecF::W;
constexpr int KH = 3, KW = 3;
// Register tile: NV vectors of output pixels × NO output channels, NO·NV accumulators (24 of
// AVX-512's 32 registers; 12 of AVX2's 16): 4 × 6, or 2 × 12 for rows of at most 32 pixels.
constexpr int kNV = 4;
constexpr int blockO(int nv) { return (nv <= 2 ? 12 : 6) / (kLanes == 16 ? 1 : 2); }
constexpr int kNO = blockO(1);
// Input channels per scratch copy, and output channels per pass over the input channels (a
// multiple of every blockO). Each (group, block) pass copies the block's input rows once and
// round-trips the group's partial sums through out; at 256-pixel rows the group's partial sums
// (1.5 MB) outgrow L2, yet on Zen 5 (a C++ harness over the VAE's shapes timing process CPU time
// per call, 2 threads: robust to the shared machine's load) 128 × 384 ran 1-5% faster than
// 64 × 192, which ran 1-5% faster than the earlier 32 × 96: fewer passes beat L2 residency here.
constexpr int kChanBlock = 128;
constexpr int64_t kOutGroup = 384;
// Output rows per work item: a channel block's weights are read once for all of them, and their
// input rows are copied once (rows + 2 instead of 3 per output row).
constexpr int64_t kRowBlock = 4;

struct TileEpilogue {
  const float* bias;      // at o0, or null
  const float* chanBias;  // at image n, o0, or null
  const float* residual;  // at the tile's first output, or null
  int64_t ldr;            // residual/out channel stride (Ho·Wo)
  int act;
};

template <int NO, int NV>
void directTile(const float* rows, int64_t Wp, int64_t ldc, int cb, const float* w, int64_t K, float* out, int64_t ldo, int nlast, bool first,
                const TileEpilogue* epi) {
  VecF acc[NO][NV];
  for (int i = 0; i < NO; i++) {
    for (int v = 0; v < NV; v++) {
      const float* o = out + i * ldo + v * kLanes;
      acc[i][v] = first ? VecF::zero() : (v == NV - 1 && nlast < kLanes ? VecF::loadPartial(o, nlast) : VecF::load(o));
    }
  }
  for (int c = 0; c < cb; c++) {
    const float* r = rows + c * ldc;
    const float* wc = w + c * KH * KW;
#pragma GCC unroll 3
    for (int ki = 0; ki < KH; ki++) {
#pragma GCC unroll 3
      for (int kj = 0; kj < KW; kj++) {
        VecF in[NV];
        for (int v = 0; v < NV; v++) in[v] = VecF::load(r + ki * Wp + kj + v * kLanes);
        for (int i = 0; i < NO; i++) {
          const VecF b = VecF::set1(wc[i * K + ki * KW + kj]);
          for (int v = 0; v < NV; v++) acc[i][v] = fmadd(b, in[v], acc[i][v]);
        }
      }
    }
  }
  for (int i = 0; i < NO; i++) {
    if (epi) {
      const VecF add = VecF::set1((epi->bias ? epi->bias[i] : 0.0f) + (epi->chanBias ? epi->chanBias[i] : 0.0f));
      for (int v = 0; v < NV; v++) {
        VecF y = acc[i][v] + add;
        if (epi->act != kActNone) y = activateDyn(epi->act, y);
        if (epi->residual) {
          const float* rr = epi->residual + i * epi->ldr + v * kLanes;
          y = y + (v == NV - 1 && nlast < kLanes ? VecF::loadPartial(rr, nlast) : VecF::load(rr));
        }
        acc[i][v] = y;
      }
    }
    for (int v = 0; v < NV; v++) {
      float* o = out + i * ldo + v * kLanes;
      if (v == NV - 1 && nlast < kLanes) acc[i][v].storePartial(o, nlast);
      else acc[i][v].store(o);
    }
  }
}

using TileFn = void (*)(const float*, int64_t, int64_t, int, const float*, int64_t, float*, int64_t, int, bool, const TileEpilogue*);

// kTiles[nv - 1][no - 1]: every tile size that full and remainder tiles need.
template <int NV, int... NO>
constexpr std::array<TileFn, sizeof...(NO)> tileRow(std::integer_sequence<int, NO...>) { return {&directTile<NO + 1, NV>...}; }
template <int... NV>
constexpr std::array<std::array<TileFn, kNO>, sizeof...(NV)> tileTable(std::integer_sequence<int, NV...>) {
  return {tileRow<NV + 1>(std::make_integer_sequence<int, kNO>{})...};
}
constexpr auto kTiles = tileTable(std::make_integer_sequence<int, kNV>{});

}  // namespace

bool conv2dDirectApplies(const Conv2dArgs& s) {
  return s.groups == 1 && s.kh == KH && s.kw == KW && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.ph >= 0 && s.pw >= 0;
}

void conv2dDirect(const Conv2dFusedArgs& s) {
  const int64_t Ho = s.H + 2 * s.ph - KH + 1, Wo = s.W + 2 * s.pw - KW + 1;
  if (Ho <= 0 || Wo <= 0 || s.N <= 0 || s.O <= 0) return;
  const int64_t K = s.C * KH * KW, P = Ho * Wo;
  const int64_t Wp = (Wo + kLanes - 1) / kLanes * kLanes + KW - 1;
  const int64_t tileW = kNV * kLanes;
  const int64_t rowBlocks = (Ho + kRowBlock - 1) / kRowBlock;
  const int64_t scratchRows = kRowBlock + KH - 1, ldc = scratchRows * Wp;
  parallelFor(s.N * rowBlocks, [&](int64_t task, int) {
    const int64_t n = task / rowBlocks, y0 = task % rowBlocks * kRowBlock, rows = std::min<int64_t>(kRowBlock, Ho - y0);
    thread_local std::vector<float> scratch;
    if (scratch.size() < static_cast<size_t>(kChanBlock * ldc)) scratch.resize(static_cast<size_t>(kChanBlock * ldc));
    const float* img = s.x + n * s.C * s.H * s.W;
    for (int64_t og = 0; og < s.O; og += kOutGroup) {
      const int64_t ogEnd = std::min(s.O, og + kOutGroup);
      for (int64_t c0 = 0; c0 < s.C; c0 += kChanBlock) {
        const int cb = static_cast<int>(std::min<int64_t>(kChanBlock, s.C - c0));
        // input rows y0 - ph .. y0 - ph + rows + KH - 2 of channels c0 .. c0 + cb, zero-padded
        for (int c = 0; c < cb; c++) {
          for (int64_t r = 0; r < rows + KH - 1; r++) {
            float* dst = scratch.data() + c * ldc + r * Wp;
            const int64_t iy = y0 - s.ph + r;
            if (iy < 0 || iy >= s.H) {
              std::memset(dst, 0, Wp * sizeof(float));
              continue;
            }
            std::memset(dst, 0, s.pw * sizeof(float));
            std::memcpy(dst + s.pw, img + ((c0 + c) * s.H + iy) * s.W, s.W * sizeof(float));
            std::memset(dst + s.pw + s.W, 0, (Wp - s.pw - s.W) * sizeof(float));
          }
        }
        const bool first = c0 == 0, last = c0 + cb == s.C;
        for (int64_t r = 0; r < rows; r++) {
          const int64_t oy = y0 + r;
          for (int64_t x0 = 0; x0 < Wo; x0 += tileW) {
            const int64_t width = std::min(tileW, Wo - x0);
            const int nv = static_cast<int>((width + kLanes - 1) / kLanes);
            const int nlast = static_cast<int>(width - (nv - 1) * kLanes);
            const int nob = blockO(nv);
            for (int64_t o0 = og; o0 < ogEnd; o0 += nob) {
              const int no = static_cast<int>(std::min<int64_t>(nob, ogEnd - o0));
              const int64_t at = (n * s.O + o0) * P + oy * Wo + x0;
              TileEpilogue epi{s.bias ? s.bias + o0 : nullptr, s.chanBias ? s.chanBias + n * s.chanBiasStride + o0 : nullptr,
                               s.residual ? s.residual + at : nullptr, P, s.act};
              kTiles[nv - 1][no - 1](scratch.data() + r * Wp + x0, Wp, ldc, cb, s.w + o0 * K + c0 * KH * KW, K, s.out + at, P, nlast, first,
                                     last ? &epi : nullptr);
            }
          }
        }
      }
    }
  });
}

}  // namespace inferjit
