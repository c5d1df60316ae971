// W8A8 and FP8 GEMM: y = act(x·Wᵀ·scales + bias) + residual with 8-bit weights and per-output-channel
// scales, the kernels behind the plan's w8a8_gemm and fp8_gemm (native/plan/w8a8_gemm.cc).
//
// INT8 (W8A8): each row of x is quantized to int8 with its own dynamic absmax scale
//   sa[m] = max_k |x[m][k]| / 127,  q[m][k] = clamp(round_half_away(x[m][k] / sa[m]), ±127)
// (the division and rounding in fp32, exactly as the TypeScript reference of the w8_linear op).
// Products accumulate in int32 with AVX-512 VNNI vpdpbusd, which multiplies UNSIGNED bytes by
// signed bytes: activations are stored as q + 128 and the packer's column sums remove the offset,
//   Σ_k (q+128)·w = Σ_k q·w + colSum[n],  colSum[n] = 128·Σ_k w[n][k].
// The epilogue is y = float(acc − colSum)·(sa[m]·scales[n]) (+ bias as one fused multiply-add),
// then activation and residual. With per-group activation scales (W8GemmArgs::group) each row has a
// scale per 32 values instead, and each block's dot is scaled into an fp32 accumulator.
//
// Packed weight layouts (made once at plan lowering by src/backends/cpu/plan/rules/w8a8.ts; rows are
// padded to Np = 16·ceil(N/16) with zero weights, zero scales and zero column sums):
//   INT8  Kq = ceil(K/4) k-quads; group g (rows 16g..16g+15), quad j at byte (g·Kq + j)·64:
//         byte 4r+i = w[16g+r][4j+i] (0 for k ≥ K), so one vpdpbusd of a broadcast 4-byte activation
//         quad against these 64 bytes adds 4 products to each of the group's 16 row accumulators.
//   FP8   E4M3 bits ("fn": max 448, no infinities); group g, column k at byte (g·K + k)·16:
//         byte r = bits of w[16g+r][k]. A 16-byte load is one k for 16 output channels; it becomes
//         16 floats in registers (E4M3 → fp16 by shifting the bits into place, which scales every
//         value, subnormals included, by 2^-8; then vcvtph2ps), so the packer's scales are the
//         weight scales times 256. There is no FP8 arithmetic on CPUs: the products run in fp32.
//         With fp8 activations, each row of x is first rounded to E4M3 under its own absmax scale
//         (sa[m] = max|x| / 448, round to nearest even), and sa[m] joins the epilogue's scale.
#pragma once
#include <cstdint>

namespace inferjit {

constexpr int kW8GroupRows = 16;

struct W8GemmArgs {
  const float* a = nullptr;  // [M][lda] f32
  int64_t lda = 0;
  const uint8_t* weight = nullptr;  // packed (layout above)
  const int32_t* colSum = nullptr;  // INT8 only: [Np]
  const float* scales = nullptr;    // [Np]
  const float* bias = nullptr;      // [N] or null
  const float* residual = nullptr;  // [M][ldr] or null
  int64_t ldr = 0;
  float* out = nullptr;  // [M][N] contiguous
  int64_t M = 0, N = 0, K = 0;
  int act = 0;            // simd.h Act
  bool actFp8 = false;    // FP8 only: round activations to E4M3 per row
  // INT8 only: values per activation scale. 0: one scale per row (above). kW8ActGroup: one per 32
  // values of a row (sa[m][b] = max over the block / 127; a last partial block of K % 32), each
  // block's int32 dot scaled into an fp32 accumulator, y = (Σ_b float(dot_b)·sa[m][b])·scales[n]
  // (+ bias); colSum then holds −128·Σ_{k in block b} w[n][k] at [b·Np + n] (one row of Np per block).
  int group = 0;
};

constexpr int kW8ActGroup = 32;

// Runs on the thread pool (parallel over 64-column tiles and row chunks).
void w8a8Gemm(const W8GemmArgs& args);
void fp8Gemm(const W8GemmArgs& args);

// The path compiled in ("avx512-vnni", "avx512", "scalar"), for describe() and benchmarks.
const char* w8a8Isa();

}  // namespace inferjit
