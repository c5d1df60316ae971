// In-register 16×16 fp32 transpose (AVX-512), shared by the GEMM packers and attention's output.
#pragma once
#include <algorithm>

#include "simd.h"

namespace inferjit {

#if defined(IJ_AVX512)
// On return r[c] holds what was column c (lane i = old row i). Three shuffle stages: pairs and
// quads inside 128-bit lanes, then 128-bit lanes across registers.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // u[4i + j], 128-bit lane L, holds column 4L + j of rows 4i..4i+3.
  for (int j = 0; j < 4; j++) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[4 + j] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}

// dst[c·ldd + i] = src[i·lds + c] for i < rows, c < cols (both <= 16): one transposed block.
inline void transposeBlock16(const float* src, int64_t lds, int rows, int cols, float* dst, int64_t ldd) {
  const __mmask16 colMask = static_cast<__mmask16>((1u << cols) - 1), rowMask = static_cast<__mmask16>((1u << rows) - 1);
  __m512 r[16];
  for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(colMask, src + i * lds) : _mm512_setzero_ps();
  transpose16(r);
  for (int c = 0; c < cols; c++) _mm512_mask_storeu_ps(dst + c * ldd, rowMask, r[c]);
}
#endif

// dst[c·ldd + i] = src[i·lds + c] for i < rows, c < cols (any sizes).
inline void transposeCopy(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
#if defined(IJ_AVX512)
  for (int64_t i = 0; i < rows; i += 16)
    for (int64_t c = 0; c < cols; c += 16)
      transposeBlock16(src + i * lds + c, lds, static_cast<int>(std::min<int64_t>(16, rows - i)), static_cast<int>(std::min<int64_t>(16, cols - c)),
                       dst + c * ldd + i, ldd);
#else
  for (int64_t i = 0; i < rows; i++)
    for (int64_t c = 0; c < cols; c++) dst[c * ldd + i] = src[i * lds + c];
#endif
}

}  // namespace inferjit
