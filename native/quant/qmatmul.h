// Weight-only matmul y = x·Wᵀ for every weight storage the LLM path runs: fp32, f16, bf16 (dense,
// fp32 activations, FMA in registers), GGUF Q8_0 / Q4_0 blocks read in place, and inferjit's INT8
// per-channel and INT4 group-wise formats (activations quantized to int8 per 32 values, integer dot
// products with AVX-512 VNNI / AVX2, one float scale multiply per 32-block).
//
// Weight layouts (W is [N, K], row n = output feature n; K % 32 == 0 for every quantized format):
//   F32   float[N][K]                       F16 / BF16  uint16 bits [N][K]
//   Q8_0  per row K/32 blocks of 34 bytes:  { f16 d; int8 q[32] }            w = d·q
//   Q4_0  per row K/32 blocks of 18 bytes:  { f16 d; uint8 qs[16] }          w[j] = d·((qs[j] & 15) − 8),
//                                                                            w[j+16] = d·((qs[j] >> 4) − 8)
//   I8    int8 q[N][K] + float scale[N]                                      w = scale[n]·q  (per channel)
//   I4    uint8 nibbles[N][K/2] in Q4_0's order within each 32-block
//         + float scale[N][K/group], group ∈ {32, 64, 128}                   w = scale[n][k/group]·(nib − 8)
//   Q8_0X16 / Q4_0X16  the GGUF blocks of 16 consecutive rows interleaved (made by packWeight at load,
//         so one VNNI instruction serves 16 rows). Rows are padded to a multiple of 16 (padded rows have
//         d = 0). Group g (rows 16g..16g+15), block b, at byte (g·K/32 + b)·S:
//           f16 d[16]                        the 16 rows' block scales
//           Q8_0X16 (S = 544): 8 chunks c of 64 bytes, byte 4r+i = q_r[4c+i] + 128 (stored unsigned)
//           Q4_0X16 (S = 288): 4 chunks c of 64 bytes, byte 4r+i = qs_r[4c+i] (low nibble: k = 4c+i,
//                              high nibble: k = 16+4c+i; value = nibble − 8)
//         so chunk c (Q8) or the low/high nibbles of chunk c (Q4: k-group c / 4+c) hold, in the 32-bit
//         lane of row r, the 4 weights of k-group j ∈ [0, 8) that meet activation bytes q[4j..4j+3].
//   GGUF K-quants (K % 256 == 0), per row K/256 super-blocks (native/quant/kquants.cc):
//   Q4_K  144 bytes: { f16 d; f16 dmin; uint8 scales[12]; uint8 qs[128] }: 8 sub-blocks of 32 with
//         6-bit scale sc_j and min m_j packed in scales[] (j < 4: sc = s[j] & 63, m = s[j+4] & 63; else
//         sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4);
//         w = d·sc_j·q − dmin·m_j; value 64c+l (l < 32) is the low nibble of qs[32c+l], 64c+32+l its high.
//   Q5_K  176 bytes: { f16 d; f16 dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128] }: as Q4_K with a
//         5th bit: bit 2c of qh[l] for value 64c+l, bit 2c+1 for 64c+32+l.
//   Q6_K  210 bytes: { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; f16 d }: 16 sub-blocks of 16,
//         w = d·scales[j]·(q − 32), q 6 bits; per half h (128 values): value 128h+32i+l (i < 4, l < 32)
//         takes its low 4 bits from ql[64h + l + 32(i&1)] (low nibble for i < 2, high for i >= 2) and
//         its top 2 bits from qh[32h+l] bits 2i..2i+1; its scale is scales[8h + l/16 + 2i].
//   Q4_KX16 / Q5_KX16 / Q6_KX16  the K-quant super-blocks of 16 consecutive rows re-laid for integer dots
//         (packWeight; kquants.cc). Every weight is w = d_r·sc_j·q − f·dm_r·m_j with q unsigned (Q4: 0..15,
//         Q5: 0..31, Q6: 0..63 = stored q + 32), sub-blocks j of 32 values (Q4/Q5, 8 per super-block) or
//         16 (Q6, 16 per super-block; m_j = sc_j and f = 32 there, else f = 1). Rows are padded to a multiple
//         of 16 (padded rows: all zero). Group g, super-block b at byte (g·K/256 + b)·S:
//           +0   f16 d[16]      +32  f16 dm[16]  (bit copies of the GGUF d / dmin; Q6: dm = d)
//           +64  int8 sc pairs: pair p (sub-blocks 2p, 2p+1) at +32p, bytes 2r / 2r+1 = row r's sc_2p / sc_2p+1
//           +192 (Q4/Q5) uint8 m pairs, same order (128 bytes)
//           +320 quants. Q4 (S = 2368): per sub-block j 256 bytes, 4 chunks i of 64, byte 4r+t: low nibble =
//                q of value 32j+4i+t, high nibble = value 32j+16+4i+t. Q5/Q6 (S = 4416): 64 chunks c of 64
//                bytes, byte 4r+t = q of value 4c+t.
//         so one vpdpbusd serves 16 rows × 4 values against a broadcast group of 4 activation bytes.
// K-quant activations (BlockQ8K), per 256 inputs: { float d; int16 bs16[16]; int16 bs32[8]; int8 q[256] },
// d = max|x|/127, bs16/bs32 = Σq per 16 / 32 values (the min terms: Σ_j m_j·Σq_j).
// Activation blocks (BlockQ8): { float d; int32 s; int8 q[32] } per 32 inputs, d = max|x|/127,
// s = Σq (llama.cpp's block_q8_1 with an fp32 scale and an integer sum: the packed kernels multiply
// unsigned weights w+o by signed activations and subtract o·s). Block-major scratch (xqFill for 9..16
// rows on packed weights, below) holds −8·Σq in s instead: qmatmul.cc kBlockMajorSumScale.
#pragma once
#include <cstddef>
#include <cstdint>

namespace inferjit {

enum WeightFormat : int {
  kWF32 = 0, kWF16 = 1, kWBF16 = 2, kWQ8_0 = 3, kWQ4_0 = 4, kWI8 = 5, kWI4 = 6, kWQ8_0X16 = 7, kWQ4_0X16 = 8,
  kWQ4_K = 9, kWQ5_K = 10, kWQ6_K = 11, kWQ4_KX16 = 12, kWQ5_KX16 = 13, kWQ6_KX16 = 14
};
constexpr int kWLastFormat = kWQ6_KX16;
constexpr int kQK = 32;
constexpr int kQKK = 256;  // K-quant super-block
constexpr int kPackRows = 16;  // rows interleaved by the X16 formats
inline bool isPacked(int format) { return format == kWQ8_0X16 || format == kWQ4_0X16 || format >= kWQ4_KX16; }

struct WeightRef {
  int format = kWF32;
  const uint8_t* data = nullptr;
  const float* scales = nullptr;  // I8: [N]; I4: [N][K/group]
  int64_t N = 0, K = 0;
  int group = 32;
  bool quantized() const { return format >= kWQ8_0; }
};

struct BlockQ8 {
  float d;
  int32_t s;
  int8_t q[kQK];
};

struct BlockQ8K {
  float d;
  int16_t bs16[16];
  int16_t bs32[8];
  int8_t q[kQKK];
};

// Bytes of `data` and floats of `scales` a weight of this format and shape needs.
size_t weightDataBytes(int format, int64_t N, int64_t K);
size_t weightScaleCount(int format, int64_t N, int64_t K, int group);
// Checks format/shape/group; returns nullptr or a message.
const char* checkWeight(int format, int64_t K, int group);

// x[M][K] -> M·K/32 blocks (row-major). Single-threaded per call; callers parallelize over rows.
void quantizeRowQ8(const float* x, int64_t K, BlockQ8* out);
void quantizeRowsQ8(const float* x, int64_t M, int64_t K, BlockQ8* out);

// y[m][n] (row stride ldy) = Σ_k x[m][k]·W[n][k] for rows n in [n0, n1), m in [0, M). Single-threaded.
// xq must hold x quantized (quantizeRowsQ8) when W is quantized; x (fp32) when W is dense.
// Packed formats: n0 and n1 are multiples of 16 (or n1 = N).
void matmulRange(const WeightRef& w, int64_t M, const float* x, const BlockQ8* xq, float* y, int64_t ldy, int64_t n0,
                 int64_t n1);

// Packs a Q8_0 / Q4_0 weight into its X16 layout (dst: weightDataBytes(packed format, N, K) bytes).
// Runs on the pool. Returns the packed format, or -1 when `src` has no packed layout.
int packedFormatOf(int format);
void packWeight(const WeightRef& src, uint8_t* dst);
// Whether the packed kernels are the fast path on this build (AVX-512 VNNI; AMX-INT8 for 16+
// activation rows when available at run time); elsewhere they run a portable loop and the
// engine keeps the GGUF layout.
bool packedKernelsFast();

// A per-column epilogue: y = act(y + bias) + residual (bias [N] or null, residual rows ldr apart or
// null, act an Act code of simd.h). matmulWeights applies it in the task that computed each tile,
// so a layer with a bias or a residual costs no second pass (and no second pool job).
struct MatmulEpilogue {
  const float* bias = nullptr;
  const float* residual = nullptr;
  int64_t ldr = 0;
  int act = 0;
  bool active() const { return bias != nullptr || residual != nullptr || act != 0; }
};

// Several weights sharing one input (Q/K/V, gate/up) in one parallel job on the pool; epilogues
// (one per weight, or null) are applied in the same job. With xq null and xqFill given (M·K/32
// blocks, non-K-quant weights of one K), the job's first tasks quantize x into xqFill (scratch: the
// kernels choose its order, rows or, for 9..16 rows on packed Q4_0/Q8_0 weights, blocks of all rows).
void matmulWeights(const WeightRef* ws, int count, int64_t M, const float* x, const BlockQ8* xq, float* const* ys,
                   const MatmulEpilogue* epilogues = nullptr, BlockQ8* xqFill = nullptr);

// Row r of W as fp32 (embedding lookup).
void dequantRow(const WeightRef& w, int64_t r, float* out);

// K-quants (kquants.cc). isKQuant: the GGUF layouts and their X16 forms. kquantBlockBytes: bytes per
// 256-value super-block of one row in the GGUF layouts (0 otherwise). dequantRowK: row r as fp32 (either
// layout). kquantRange: rows [n0, n1) of y[m][n] = Σ_k x[m][k]·W[n][k] from fp32 x, quantizing x itself
// (single-threaded); kquantRangeQ: the same from x already quantized (quantizeRowsQ8K, row stride K/256
// blocks). Both run the integer-dot kernels; a GGUF-layout weight is re-laid 16 rows at a time in
// per-thread scratch. Packed formats: n0 a multiple of 16.
bool isKQuant(int format);
bool isKQuantPacked(int format);
size_t kquantBlockBytes(int format);
size_t kquantPackedBytes(int format, int64_t N, int64_t K);
void dequantRowK(const WeightRef& w, int64_t r, float* out);
void kquantRange(const WeightRef& w, int64_t M, const float* x, float* y, int64_t ldy, int64_t n0, int64_t n1);
void kquantRangeQ(const WeightRef& w, int64_t M, const BlockQ8K* xk, float* y, int64_t ldy, int64_t n0, int64_t n1);
void quantizeRowQ8K(const float* x, int64_t K, BlockQ8K* out);
void quantizeRowsQ8K(const float* x, int64_t M, int64_t K, BlockQ8K* out);
void packWeightK(const WeightRef& src, uint8_t* dst);
// Which kernel family the K-quant dots compiled to: "avx512-vnni", "avx512", "avx2" or "scalar".
const char* kquantIsa();

float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);

}  // namespace inferjit
