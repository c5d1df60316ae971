// AMX-BF16 block kernel: C (32 rows × 32 columns, fp32) += A (bf16 rows) · B (packed-bf16 panel,
// whose pair rows are exactly AMX's VNNI B layout, see gemm_bf16.h). Tile registers: tmm0..3 hold
// the 2×2 C tiles (16×16 fp32 each), tmm4/5 the two 16-row A tiles (16×32 bf16), tmm6/7 the two
// 16-column B tiles (16 pair rows × 16 columns × 2). One K step of 32 is 4 tile loads and 4
// tdpbf16ps (16·16·32 multiply-adds each).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gemm_bf16.h"

#define IJ_TGT_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl")))

namespace inferjit {
namespace amx {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

thread_local float tC[32 * 32];  // C staging for partial tiles (rows < 16 or < 32 columns)

IJ_TGT_AMX void panelProduct(int rows, int64_t Kp, const uint16_t* a, int64_t lda, const uint16_t* bp, int nc, float* c, int64_t ldc,
                             bool accumulate) {
  const bool two = rows > 16;
  const bool direct = (rows == 16 || rows == 32) && nc == 32;
  float* cs = direct ? c : tC;
  const int64_t cStride = direct ? ldc * 4 : 32 * 4;
  if (accumulate) {
    if (!direct) {
      std::memset(tC, 0, sizeof(tC));
      for (int r = 0; r < rows; r++) std::memcpy(tC + r * 32, c + r * ldc, static_cast<size_t>(nc) * 4);
    }
    _tile_loadd(0, cs, cStride);
    _tile_loadd(1, cs + 16, cStride);
    if (two) {
      _tile_loadd(2, cs + 16 * (cStride / 4), cStride);
      _tile_loadd(3, cs + 16 * (cStride / 4) + 16, cStride);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const int64_t aStride = lda * 2;
  if (two) {
    for (int64_t k = 0; k < Kp; k += 32) {
      _tile_loadd(4, a + k, aStride);
      _tile_loadd(5, a + 16 * lda + k, aStride);
      _tile_loadd(6, bp + k * 32, 128);
      _tile_loadd(7, bp + k * 32 + 32, 128);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  } else {
    for (int64_t k = 0; k < Kp; k += 32) {
      _tile_loadd(4, a + k, aStride);
      _tile_loadd(6, bp + k * 32, 128);
      _tile_loadd(7, bp + k * 32 + 32, 128);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
    }
  }
  _tile_stored(0, cs, cStride);
  _tile_stored(1, cs + 16, cStride);
  if (two) {
    _tile_stored(2, cs + 16 * (cStride / 4), cStride);
    _tile_stored(3, cs + 16 * (cStride / 4) + 16, cStride);
  }
  if (!direct)
    for (int r = 0; r < rows; r++) std::memcpy(c + r * ldc, tC + r * 32, static_cast<size_t>(nc) * 4);
}

}  // namespace

// Every tile is 16 rows × 64 bytes. The configuration is per-thread state that other AMX users in
// the process (e.g. a peer runtime's int8 kernels running on the same thread) may change, so it
// is loaded at the start of every task rather than cached in a flag.
// A static object, not a stack one: GCC 12's _tile_loadconfig tells the compiler it reads only the
// first 8 bytes, so stores to a local config's row/column fields can be dropped as dead.
const TileConfig kTileConfig = [] {
  TileConfig cfg;
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  return cfg;
}();

IJ_TGT_AMX void configureTiles() {
  __asm__ volatile("" ::: "memory");
  _tile_loadconfig(&kTileConfig);
}

void blockProduct(int rows, int64_t Kp, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t panelStride, int64_t q0, int64_t p0,
                  int64_t p1, int64_t N, float* c, int64_t ldc, bool accumulate) {
  for (int64_t p = p0; p < p1; p++) {
    const int64_t j0 = p * kBf16NR;
    const int nc = static_cast<int>(std::min<int64_t>(kBf16NR, N - j0));
    panelProduct(rows, Kp, a, lda, b + p * panelStride + q0 * 64, nc, c + j0, ldc, accumulate);
  }
}

}  // namespace amx
}  // namespace inferjit
