// Weight-only matmul kernels (layouts in qmatmul.h). Each task owns a range of output features
// (weight rows) and a range of input rows.
//   dense, few rows:  register tiles of RM input rows × RN weight rows run the whole K loop,
//                     converting f16/bf16 to fp32 in registers (decode reads each weight once).
//   dense, >= 16 rows: a register-blocked fp32 GEMM: x packed once per call, each task converts
//                     one panel of weight rows to fp32 (transposed in registers) and runs it
//                     against every packed row block.
//   GGUF-layout quantized: per 32-block, int8 dot in 8 int32 lanes via |w| · sign(x, w) (VNNI
//                     vpdpbusd, or AVX2 maddubs+madd), converted and scaled by d_x·d_w.
//   packed X16 quantized: one vpdpbusd serves 16 weight rows (4 k each) against a broadcast
//                     activation group; the 16 rows' scales apply as one vector per block.
//                     Activation rows stream two row groups at once (each broadcast activation
//                     group serves both): up to 8 rows with every dot in registers, more in tiles
//                     of 16 rows with both groups' unpacked weights in registers (9..16 rows read
//                     their activations block-major where the GEMM quantizes them itself); a
//                     group left alone runs tiles of up to 16 rows (its weights unpacked once),
//                     or AMX-INT8 tiles of 16 where the CPU and OS allow it.
#include "qmatmul.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <type_traits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>
#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {

float halfToFloat(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      uint32_t m = man;
      do { e++; m <<= 1; } while ((m & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (m & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

uint16_t floatToHalf(float f) {
#if defined(__F16C__)
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t man = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (man ? 0x200u : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    man |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t h = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) h++;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = sign | static_cast<uint32_t>(exp) << 10 | man >> 13;
  const uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return static_cast<uint16_t>(h);
#endif
}

static inline float bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

size_t weightDataBytes(int format, int64_t N, int64_t K) {
  const size_t n = static_cast<size_t>(N), k = static_cast<size_t>(K);
  switch (format) {
    case kWF32: return n * k * 4;
    case kWF16: case kWBF16: return n * k * 2;
    case kWQ8_0: return n * (k / kQK) * 34;
    case kWQ4_0: return n * (k / kQK) * 18;
    case kWI8: return n * k;
    case kWI4: return n * k / 2;
    case kWQ8_0X16: return ((n + kPackRows - 1) / kPackRows) * kPackRows * (k / kQK) * 34;
    case kWQ4_0X16: return ((n + kPackRows - 1) / kPackRows) * kPackRows * (k / kQK) * 18;
    case kWQ4_K: case kWQ5_K: case kWQ6_K: return n * (k / kQKK) * kquantBlockBytes(format);
    case kWQ4_KX16: case kWQ5_KX16: case kWQ6_KX16: return kquantPackedBytes(format, N, K);
    default: return 0;
  }
}

size_t weightScaleCount(int format, int64_t N, int64_t K, int group) {
  if (format == kWI8) return static_cast<size_t>(N);
  if (format == kWI4) return static_cast<size_t>(N * (K / group));
  return 0;
}

const char* checkWeight(int format, int64_t K, int group) {
  if (format < kWF32 || format > kWLastFormat) return "unknown weight format";
  if (format >= kWQ8_0 && K % kQK != 0) return "quantized weights need K to be a multiple of 32";
  if (isKQuant(format) && K % kQKK != 0) return "K-quant weights (Q4_K, Q5_K, Q6_K) need K to be a multiple of 256";
  if (format == kWI4 && (group != 32 && group != 64 && group != 128)) return "int4 group size must be 32, 64 or 128";
  if (format == kWI4 && K % group != 0) return "int4 weights need K to be a multiple of the group size";
  return nullptr;
}

void quantizeRowQ8(const float* x, int64_t K, BlockQ8* out) {
  const int64_t nb = K / kQK;
  for (int64_t b = 0; b < nb; b++) {
    const float* xb = x + b * kQK;
#if defined(IJ_AVX512)
    const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    // cvtps_epi32 rounds with the current mode (nearest even), as nearbyint does below.
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
    out[b].d = d;
    out[b].s = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q + 16), _mm512_cvtsepi32_epi8(q1));
#else
    VecF m = VecF::zero();
    for (int i = 0; i < kQK; i += kW) m = vmax(m, vabs(VecF::load(xb + i)));
    const float amax = m.max();
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = d;
    int32_t sum = 0;
    for (int i = 0; i < kQK; i++) {
      out[b].q[i] = static_cast<int8_t>(std::nearbyint(xb[i] * id));
      sum += out[b].q[i];
    }
    out[b].s = sum;
#endif
  }
}

void quantizeRowsQ8(const float* x, int64_t M, int64_t K, BlockQ8* out) {
  const int64_t nb = K / kQK;
  parallelFor(M, [&](int64_t m, int) { quantizeRowQ8(x + m * K, K, out + m * nb); });
}

void dequantRow(const WeightRef& w, int64_t r, float* out) {
  const int64_t K = w.K, nb = K / kQK;
  if (isKQuant(w.format)) {
    dequantRowK(w, r, out);
    return;
  }
  switch (w.format) {
    case kWF32: std::memcpy(out, reinterpret_cast<const float*>(w.data) + r * K, K * 4); return;
    case kWF16: {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(w.data) + r * K;
      for (int64_t k = 0; k < K; k++) out[k] = halfToFloat(p[k]);
      return;
    }
    case kWBF16: {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(w.data) + r * K;
      for (int64_t k = 0; k < K; k++) out[k] = bf16ToFloat(p[k]);
      return;
    }
    case kWQ8_0:
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* p = w.data + (r * nb + b) * 34;
        uint16_t dh;
        std::memcpy(&dh, p, 2);
        const float d = halfToFloat(dh);
        const int8_t* q = reinterpret_cast<const int8_t*>(p + 2);
        for (int j = 0; j < kQK; j++) out[b * kQK + j] = d * q[j];
      }
      return;
    case kWQ4_0: case kWI4:
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* qs;
        float d;
        if (w.format == kWQ4_0) {
          const uint8_t* p = w.data + (r * nb + b) * 18;
          uint16_t dh;
          std::memcpy(&dh, p, 2);
          d = halfToFloat(dh);
          qs = p + 2;
        } else {
          qs = w.data + r * (K / 2) + b * 16;
          d = w.scales[r * (K / w.group) + (b * kQK) / w.group];
        }
        for (int j = 0; j < 16; j++) {
          out[b * kQK + j] = d * static_cast<float>((qs[j] & 15) - 8);
          out[b * kQK + j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
        }
      }
      return;
    case kWI8: {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.data) + r * K;
      const float s = w.scales[r];
      for (int64_t k = 0; k < K; k++) out[k] = s * q[k];
      return;
    }
    case kWQ8_0X16: case kWQ4_0X16: {
      const bool q8 = w.format == kWQ8_0X16;
      const int64_t g = r / kPackRows, rr = r % kPackRows, S = q8 ? 544 : 288;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* p = w.data + (g * nb + b) * S;
        uint16_t dh;
        std::memcpy(&dh, p + 2 * rr, 2);
        const float d = halfToFloat(dh);
        for (int j = 0; j < 8; j++) {
          for (int i = 0; i < 4; i++) {
            if (q8) {
              out[b * kQK + 4 * j + i] = d * static_cast<float>(static_cast<int>(p[32 + 64 * j + 4 * rr + i]) - 128);
            } else if (j < 4) {
              const uint8_t byte = p[32 + 64 * j + 4 * rr + i];
              out[b * kQK + 4 * j + i] = d * static_cast<float>((byte & 15) - 8);
              out[b * kQK + 16 + 4 * j + i] = d * static_cast<float>((byte >> 4) - 8);
            }
          }
        }
      }
      return;
    }
  }
}

int packedFormatOf(int format) {
  if (format == kWQ8_0) return kWQ8_0X16;
  if (format == kWQ4_0) return kWQ4_0X16;
  if (format == kWQ4_K) return kWQ4_KX16;
  if (format == kWQ5_K) return kWQ5_KX16;
  if (format == kWQ6_K) return kWQ6_KX16;
  return -1;
}

bool packedKernelsFast() {
#if defined(__AVX512VNNI__) && defined(IJ_AVX512)
  return true;
#else
  return false;
#endif
}

void packWeight(const WeightRef& src, uint8_t* dst) {
  if (isKQuant(src.format)) {
    packWeightK(src, dst);
    return;
  }
  const int64_t N = src.N, nb = src.K / kQK, groups = (N + kPackRows - 1) / kPackRows;
  const bool q8 = src.format == kWQ8_0;
  const int64_t S = q8 ? 544 : 288, srcBlock = q8 ? 34 : 18;
  parallelFor(groups, [&](int64_t g, int) {
    for (int64_t b = 0; b < nb; b++) {
      uint8_t* o = dst + (g * nb + b) * S;
      for (int r = 0; r < kPackRows; r++) {
        const int64_t n = g * kPackRows + r;
        if (n >= N) {  // padding row: scale 0, quants 0 (stored 128 for Q8)
          std::memset(o + 2 * r, 0, 2);
          for (int j = 0; j < (q8 ? 8 : 4); j++) std::memset(o + 32 + 64 * j + 4 * r, q8 ? 128 : 0, 4);
          continue;
        }
        const uint8_t* p = src.data + (n * nb + b) * srcBlock;
        std::memcpy(o + 2 * r, p, 2);
        for (int j = 0; j < (q8 ? 8 : 4); j++) {
          for (int i = 0; i < 4; i++) {
            o[32 + 64 * j + 4 * r + i] = q8 ? static_cast<uint8_t>(p[2 + 4 * j + i] ^ 0x80) : p[2 + 4 * j + i];
          }
        }
      }
    }
  });
}

namespace {

// ---------------------------------------------------------------- dense (fp32 activations)

template <int F>
inline float elemW(const uint8_t* base, int64_t idx) {
  if constexpr (F == kWF32) return reinterpret_cast<const float*>(base)[idx];
  if constexpr (F == kWF16) return halfToFloat(reinterpret_cast<const uint16_t*>(base)[idx]);
  return bf16ToFloat(reinterpret_cast<const uint16_t*>(base)[idx]);
}

template <int F>
inline VecF loadW(const uint8_t* base, int64_t idx) {
  if constexpr (F == kWF32) {
    return VecF::load(reinterpret_cast<const float*>(base) + idx);
  } else {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(base) + idx;
#if defined(IJ_AVX512)
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (F == kWF16) return VecF(_mm512_cvtph_ps(h));
    else return VecF(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
#elif defined(IJ_AVX2)
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (F == kWF16) return VecF(_mm256_cvtph_ps(h));
    else return VecF(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
#else
    return VecF(elemW<F>(base, idx));
#endif
  }
}

template <int F, int RM, int RN>
void denseTile(const WeightRef& w, const float* x, int64_t m0, int64_t n0, float* y, int64_t ldy) {
  const int64_t K = w.K;
  VecF acc[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = VecF::zero();
  int64_t k = 0;
  for (; k + kW <= K; k += kW) {
    VecF wv[RN];
    for (int j = 0; j < RN; j++) wv[j] = loadW<F>(w.data, (n0 + j) * K + k);
    for (int i = 0; i < RM; i++) {
      const VecF xv = VecF::load(x + (m0 + i) * K + k);
      for (int j = 0; j < RN; j++) acc[i][j] = fmadd(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < RM; i++) {
    for (int j = 0; j < RN; j++) {
      float s = acc[i][j].sum();
      for (int64_t kk = k; kk < K; kk++) s += x[(m0 + i) * K + kk] * elemW<F>(w.data, (n0 + j) * K + kk);
      y[(m0 + i) * ldy + n0 + j] = s;
    }
  }
}

// ---------------------------------------------------------------- quantized (int8 activations)

// Unpacks weight block b of row n to 32 signed int8 values and its scale.
template <int F>
inline void unpackBlock(const WeightRef& w, int64_t n, int64_t b, int8_t* q, float* d) {
  const int64_t nb = w.K / kQK;
  if constexpr (F == kWQ8_0) {
    const uint8_t* p = w.data + (n * nb + b) * 34;
    uint16_t dh;
    std::memcpy(&dh, p, 2);
    *d = halfToFloat(dh);
    std::memcpy(q, p + 2, kQK);
  } else if constexpr (F == kWI8) {
    *d = 1.0f;
    std::memcpy(q, w.data + n * w.K + b * kQK, kQK);
  } else {
    const uint8_t* qs;
    if constexpr (F == kWQ4_0) {
      const uint8_t* p = w.data + (n * nb + b) * 18;
      uint16_t dh;
      std::memcpy(&dh, p, 2);
      *d = halfToFloat(dh);
      qs = p + 2;
    } else {
      qs = w.data + n * (w.K / 2) + b * 16;
      *d = w.scales[n * (w.K / w.group) + (b * kQK) / w.group];
    }
    for (int j = 0; j < 16; j++) {
      q[j] = static_cast<int8_t>((qs[j] & 15) - 8);
      q[j + 16] = static_cast<int8_t>((qs[j] >> 4) - 8);
    }
  }
}

inline float postScale(const WeightRef& w, int64_t n) { return w.format == kWI8 ? w.scales[n] : 1.0f; }

#if defined(__AVX2__)
template <int F>
inline __m256i loadBlock(const WeightRef& w, int64_t n, int64_t b, float* d) {
  const int64_t nb = w.K / kQK;
  if constexpr (F == kWQ8_0) {
    const uint8_t* p = w.data + (n * nb + b) * 34;
    uint16_t dh;
    std::memcpy(&dh, p, 2);
    *d = halfToFloat(dh);
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
  } else if constexpr (F == kWI8) {
    *d = 1.0f;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.data + n * w.K + b * kQK));
  } else {
    const uint8_t* qs;
    if constexpr (F == kWQ4_0) {
      const uint8_t* p = w.data + (n * nb + b) * 18;
      uint16_t dh;
      std::memcpy(&dh, p, 2);
      *d = halfToFloat(dh);
      qs = p + 2;
    } else {
      qs = w.data + n * (w.K / 2) + b * 16;
      *d = w.scales[n * (w.K / w.group) + (b * kQK) / w.group];
    }
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(raw, mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
  }
}

// Σ over 32 int8 pairs as 8 float lanes: |w| (unsigned) · (x with w's sign) (signed).
inline __m256 dotBlock(__m256i wabs, __m256i x, __m256i w) {
  const __m256i sx = _mm256_sign_epi8(x, w);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wabs, sx);
#else
  // |w|·|x| <= 128·127, so the pair sums of maddubs cannot saturate int16.
  const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, sx), _mm256_set1_epi16(1));
#endif
  return _mm256_cvtepi32_ps(s);
}

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

template <int F, int RM, int RN>
void quantTile(const WeightRef& w, const BlockQ8* xq, int64_t m0, int64_t n0, float* y, int64_t ldy) {
  const int64_t nb = w.K / kQK;
  __m256 acc[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    __m256i wq[RN], wa[RN];
    float wd[RN];
    for (int j = 0; j < RN; j++) {
      wq[j] = loadBlock<F>(w, n0 + j, b, &wd[j]);
      wa[j] = _mm256_sign_epi8(wq[j], wq[j]);
    }
    for (int i = 0; i < RM; i++) {
      const BlockQ8& a = xq[(m0 + i) * nb + b];
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q));
      for (int j = 0; j < RN; j++) {
        acc[i][j] = _mm256_fmadd_ps(dotBlock(wa[j], av, wq[j]), _mm256_set1_ps(a.d * wd[j]), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) y[(m0 + i) * ldy + n0 + j] = hsum256(acc[i][j]) * postScale(w, n0 + j);
}
#else
template <int F, int RM, int RN>
void quantTile(const WeightRef& w, const BlockQ8* xq, int64_t m0, int64_t n0, float* y, int64_t ldy) {
  const int64_t nb = w.K / kQK;
  float acc[RM][RN] = {};
  int8_t q[RN][kQK];
  float wd[RN];
  for (int64_t b = 0; b < nb; b++) {
    for (int j = 0; j < RN; j++) unpackBlock<F>(w, n0 + j, b, q[j], &wd[j]);
    for (int i = 0; i < RM; i++) {
      const BlockQ8& a = xq[(m0 + i) * nb + b];
      for (int j = 0; j < RN; j++) {
        int32_t s = 0;
        for (int t = 0; t < kQK; t++) s += static_cast<int32_t>(q[j][t]) * a.q[t];
        acc[i][j] += static_cast<float>(s) * a.d * wd[j];
      }
    }
  }
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) y[(m0 + i) * ldy + n0 + j] = acc[i][j] * postScale(w, n0 + j);
}
#endif


// ---------------------------------------------------------------- packed X16 (int8 activations)

inline int32_t loadI32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int F>
constexpr int64_t packedBlockBytes() { return F == kWQ8_0X16 ? 544 : 288; }
// The stored weights are w + o (unsigned); Σ(w + o)·x = Σw·x + o·s.
template <int F>
constexpr int32_t packedOffset() { return F == kWQ8_0X16 ? 128 : 8; }
// Block-major activations (packedBlockMajor) carry −8·Σq in s instead of Σq: the Q4 offset
// correction ready to broadcast from memory (a load, where broadcasting −8·s from a general register
// costs a vector ALU slot per row and block); Q8 scales it by 16.
constexpr int32_t kBlockMajorSumScale = -8;
// The dot's starting value −o·Σq of activation block a.
template <int F, bool BM>
inline int32_t packedCorrection(const BlockQ8& a) {
  if constexpr (BM) return F == kWQ8_0X16 ? a.s * (packedOffset<F>() / -kBlockMajorSumScale) : a.s;
  else return -packedOffset<F>() * a.s;
}

#if defined(__AVX512VNNI__) && defined(IJ_AVX512)
#ifndef IJ_PREFETCH_AHEAD
#define IJ_PREFETCH_AHEAD 8
#endif
constexpr int64_t kPrefetchAhead = IJ_PREFETCH_AHEAD;
// RM activation rows × the 16 rows of group g: per block, the 8 unsigned weight vectors (16 rows ×
// 4 k each) are loaded (and, for Q4, unpacked) once; each activation row then needs 8 vpdpbusd with
// a broadcast 4-byte group, an offset correction, and one scale FMA for all 16 rows.
template <int F, int RM, bool BM = false>
void packedTile(const WeightRef& w, const BlockQ8* xq, int64_t ldx, int64_t g, float* y, int64_t ldy, int valid, bool prefetch) {
  constexpr int64_t S = packedBlockBytes<F>();
  const int64_t nb = w.K / kQK;
  const uint8_t* base = w.data + g * nb * S;
  __m512 acc[RM];
  for (int i = 0; i < RM; i++) acc[i] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* p = base + b * S;
    if (prefetch) {
      for (int64_t c = 0; c < S; c += 64) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead * S + c), _MM_HINT_T0);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    __m512i wv[8];
    if constexpr (F == kWQ8_0X16) {
      for (int j = 0; j < 8; j++) wv[j] = _mm512_loadu_si512(p + 32 + 64 * j);
    } else {
      for (int j = 0; j < 4; j++) {
        const __m512i raw = _mm512_loadu_si512(p + 32 + 64 * j);
        wv[j] = _mm512_and_si512(raw, m4);
        wv[j + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
      }
    }
    for (int i = 0; i < RM; i++) {
      const BlockQ8& a = BM ? xq[b * RM + i] : xq[i * ldx + b];
      // The chain starts from the offset correction −o·Σq. Tiles of several rows have independent
      // chains per row; a single row splits its 8 steps over two chains so they overlap.
      const __m512i corr = _mm512_set1_epi32(packedCorrection<F, BM>(a));
      __m512i dot;
      if constexpr (RM >= 4) {
        dot = corr;
        for (int j = 0; j < 8; j++) dot = _mm512_dpbusd_epi32(dot, wv[j], _mm512_set1_epi32(loadI32(a.q + 4 * j)));
      } else {
        __m512i s0 = corr, s1 = _mm512_setzero_si512();
        for (int j = 0; j < 8; j += 2) {
          s0 = _mm512_dpbusd_epi32(s0, wv[j], _mm512_set1_epi32(loadI32(a.q + 4 * j)));
          s1 = _mm512_dpbusd_epi32(s1, wv[j + 1], _mm512_set1_epi32(loadI32(a.q + 4 * j + 4)));
        }
        dot = _mm512_add_epi32(s0, s1);
      }
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(a.d)), acc[i]);
    }
  }
  const __mmask16 mask = valid >= kPackRows ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << valid) - 1u);
  for (int i = 0; i < RM; i++) _mm512_mask_storeu_ps(y + i * ldy, mask, acc[i]);
}
// Decode-sized batches (1..8 activation rows): two groups at once, so each thread keeps two weight
// streams in flight (one stream alone leaves DRAM bandwidth unused on a core; a tile over one group
// at a time tops out near two thirds of it whatever its height). Per block and k-group j, the
// unpacked weights of both groups meet every row's broadcast activation group (one broadcast load
// per two vpdpbusd: 5..8 rows run 13-20% faster than packedTile's one group at a time on Zen 5);
// each row keeps its integer dots of both groups in registers until the block's scales apply.
// Past 8 rows the dots and accumulators spill: packedTile's 16-row tiles are faster there.
template <int F, int RM>
void packedTileX2(const WeightRef& w, const BlockQ8* xq, int64_t ldx, int64_t g, float* y, int64_t ldy, int valid1) {
  constexpr int64_t S = packedBlockBytes<F>();
  constexpr int32_t off = packedOffset<F>();
  const int64_t nb = w.K / kQK;
  const uint8_t* base0 = w.data + g * nb * S;
  const uint8_t* base1 = base0 + nb * S;
  __m512 acc0[RM], acc1[RM];
  for (int i = 0; i < RM; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int64_t b = 0; b < nb; b++) {
    __m512i d0[RM], d1[RM];
    for (int i = 0; i < RM; i++) d0[i] = d1[i] = _mm512_set1_epi32(-off * xq[i * ldx + b].s);
    const uint8_t* p0 = base0 + b * S;
    const uint8_t* p1 = base1 + b * S;
    for (int64_t c = 0; c < S; c += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(p0 + kPrefetchAhead * S + c), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p1 + kPrefetchAhead * S + c), _MM_HINT_T0);
    }
    if constexpr (F == kWQ8_0X16) {
      for (int j = 0; j < 8; j++) {
        const __m512i w0 = _mm512_loadu_si512(p0 + 32 + 64 * j), w1 = _mm512_loadu_si512(p1 + 32 + 64 * j);
        for (int i = 0; i < RM; i++) {
          const __m512i xb = _mm512_set1_epi32(loadI32(xq[i * ldx + b].q + 4 * j));
          d0[i] = _mm512_dpbusd_epi32(d0[i], w0, xb);
          d1[i] = _mm512_dpbusd_epi32(d1[i], w1, xb);
        }
      }
    } else {
      for (int j = 0; j < 4; j++) {
        const __m512i r0 = _mm512_loadu_si512(p0 + 32 + 64 * j), r1 = _mm512_loadu_si512(p1 + 32 + 64 * j);
        const __m512i l0 = _mm512_and_si512(r0, m4), l1 = _mm512_and_si512(r1, m4);
        const __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(r0, 4), m4), h1 = _mm512_and_si512(_mm512_srli_epi16(r1, 4), m4);
        for (int i = 0; i < RM; i++) {
          const int8_t* q = xq[i * ldx + b].q;
          const __m512i xl = _mm512_set1_epi32(loadI32(q + 4 * j)), xh = _mm512_set1_epi32(loadI32(q + 16 + 4 * j));
          d0[i] = _mm512_dpbusd_epi32(d0[i], l0, xl);
          d1[i] = _mm512_dpbusd_epi32(d1[i], l1, xl);
          d0[i] = _mm512_dpbusd_epi32(d0[i], h0, xh);
          d1[i] = _mm512_dpbusd_epi32(d1[i], h1, xh);
        }
      }
    }
    const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0)));
    const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1)));
    for (int i = 0; i < RM; i++) {
      const __m512 dx = _mm512_set1_ps(xq[i * ldx + b].d);
      acc0[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0[i]), _mm512_mul_ps(dw0, dx), acc0[i]);
      acc1[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1[i]), _mm512_mul_ps(dw1, dx), acc1[i]);
    }
  }
  const __mmask16 mask = valid1 >= kPackRows ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << valid1) - 1u);
  for (int i = 0; i < RM; i++) {
    _mm512_storeu_ps(y + i * ldy, acc0[i]);
    _mm512_mask_storeu_ps(y + i * ldy + kPackRows, mask, acc1[i]);
  }
}
// 9..16 activation rows × two groups: per block both groups' weights are unpacked once into 16
// registers, then each row runs its 8 k-groups against both (each broadcast activation group serves
// two vpdpbusd, as in packedTileX2, with half the broadcast loads of packedTile); the row
// accumulators live in memory (L1). RP rows run side by side through the k-groups: one row alone
// is two 8-long dpbusd chains (5-cycle latency), too few to fill the vector ports between its
// scaling steps; four rows (8 chains, 24 of the 32 zmm registers with the weights) ran the
// 16-row GEMM 10-15% faster on Emerald Rapids (not measured on Zen 5). Each output's integer dot
// and float operations are unchanged, so results are bit-identical to RP = 1. xq: row i's block b at xq[i·ldx + b], or block-major (BM) at
// xq[b·RM + i].
template <int F, int RM, bool BM, int RP = 4>
void packedTileX2Rows(const WeightRef& w, const BlockQ8* xq, int64_t ldx, int64_t g, float* y, int64_t ldy, int valid1) {
  constexpr int64_t S = packedBlockBytes<F>();
  const int64_t nb = w.K / kQK;
  const uint8_t* base0 = w.data + g * nb * S;
  const uint8_t* base1 = base0 + nb * S;
  __m512 acc0[RM], acc1[RM];
  for (int i = 0; i < RM; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* p0 = base0 + b * S;
    const uint8_t* p1 = base1 + b * S;
    for (int64_t c = 0; c < S; c += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(p0 + kPrefetchAhead * S + c), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p1 + kPrefetchAhead * S + c), _MM_HINT_T0);
    }
    __m512i w0[8], w1[8];
    if constexpr (F == kWQ8_0X16) {
      for (int j = 0; j < 8; j++) {
        w0[j] = _mm512_loadu_si512(p0 + 32 + 64 * j);
        w1[j] = _mm512_loadu_si512(p1 + 32 + 64 * j);
      }
    } else {
      for (int j = 0; j < 4; j++) {
        const __m512i r0 = _mm512_loadu_si512(p0 + 32 + 64 * j), r1 = _mm512_loadu_si512(p1 + 32 + 64 * j);
        w0[j] = _mm512_and_si512(r0, m4);
        w1[j] = _mm512_and_si512(r1, m4);
        w0[j + 4] = _mm512_and_si512(_mm512_srli_epi16(r0, 4), m4);
        w1[j + 4] = _mm512_and_si512(_mm512_srli_epi16(r1, 4), m4);
      }
    }
    const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0)));
    const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1)));
    // P rows side by side: 2·P independent dpbusd chains in flight
    auto rows = [&](auto pc, int i0) {
      constexpr int P = decltype(pc)::value;
      const BlockQ8* a[P];
      __m512i d0[P], d1[P];
      for (int r = 0; r < P; r++) {
        a[r] = BM ? &xq[b * RM + i0 + r] : &xq[(i0 + r) * ldx + b];
        d0[r] = d1[r] = _mm512_set1_epi32(packedCorrection<F, BM>(*a[r]));
      }
      for (int j = 0; j < 8; j++) {
        for (int r = 0; r < P; r++) {
          const __m512i xb = _mm512_set1_epi32(loadI32(a[r]->q + 4 * j));
          d0[r] = _mm512_dpbusd_epi32(d0[r], w0[j], xb);
          d1[r] = _mm512_dpbusd_epi32(d1[r], w1[j], xb);
        }
      }
      for (int r = 0; r < P; r++) {
        const __m512 dx = _mm512_set1_ps(a[r]->d);
        acc0[i0 + r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0[r]), _mm512_mul_ps(dw0, dx), acc0[i0 + r]);
        acc1[i0 + r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1[r]), _mm512_mul_ps(dw1, dx), acc1[i0 + r]);
      }
    };
    int i = 0;
    for (; i + RP <= RM; i += RP) rows(std::integral_constant<int, RP>(), i);
    for (; i < RM; i++) rows(std::integral_constant<int, 1>(), i);
  }
  const __mmask16 mask = valid1 >= kPackRows ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << valid1) - 1u);
  for (int i = 0; i < RM; i++) {
    _mm512_storeu_ps(y + i * ldy, acc0[i]);
    _mm512_mask_storeu_ps(y + i * ldy + kPackRows, mask, acc1[i]);
  }
}
#define IJ_HAVE_TILE_X2 1
// INFERJIT_QGEMM_ROWS_KERNEL=old runs packedTileX2Rows one activation row at a time (the kernel
// before rows were interleaved), for A/B timing in one process: read at every matmulWeights call.
std::atomic<bool> gRowsKernelOld{false};
// Up to this many activation rows run packedTileX2 (more: packedTile, one group at a time).
constexpr int64_t kTileX2MaxRows = 8;

#else
// Portable loop over the same layout (builds without AVX-512 VNNI; the engine does not pack there).
template <int F, int RM, bool BM = false>
void packedTile(const WeightRef& w, const BlockQ8* xq, int64_t ldx, int64_t g, float* y, int64_t ldy, int valid, bool) {
  constexpr int64_t S = packedBlockBytes<F>();
  const int64_t nb = w.K / kQK;
  const uint8_t* base = w.data + g * nb * S;
  for (int i = 0; i < RM; i++) {
    for (int r = 0; r < valid; r++) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* p = base + b * S;
        const BlockQ8& a = BM ? xq[b * RM + i] : xq[i * ldx + b];
        uint16_t dh;
        std::memcpy(&dh, p + 2 * r, 2);
        int32_t dot = 0;
        for (int j = 0; j < 8; j++) {
          for (int t = 0; t < 4; t++) {
            int32_t wq;
            if constexpr (F == kWQ8_0X16) wq = p[32 + 64 * j + 4 * r + t];
            else wq = j < 4 ? (p[32 + 64 * j + 4 * r + t] & 15) : (p[32 + 64 * (j - 4) + 4 * r + t] >> 4);
            dot += wq * a.q[4 * j + t];
          }
        }
        dot += packedCorrection<F, BM>(a);
        acc += static_cast<float>(dot) * (halfToFloat(dh) * a.d);
      }
      y[i * ldy + r] = acc;
    }
  }
}
#endif

// ---------------------------------------------------------------- AMX-INT8 (prefill)
// Selected at run time (cpuid AMX-TILE + AMX-INT8 and the kernel granting this process the tile
// state; INFERJIT_LLM_AMX=0 turns it off), for packed weights and at least 16 activation rows.
// Per group, the 16 rows' weights are first materialized as signed int8 B tiles (8 k-groups × 16
// rows × 4, exactly the packed chunk layout) in per-thread scratch, once for all activation rows.
// Then per 16 activation rows and per block: C = A (16 rows × 32 int8, read in place from the
// BlockQ8 array) · B with tdpbssd, stored, and scaled into 16 fp32 row accumulators (one zmm per
// activation row holds its 16 outputs): 16·16·32 multiply-adds per tile instruction instead of 8
// vpdpbusd per activation row.
#if defined(__x86_64__) && defined(IJ_AVX512)
#define IJ_HAVE_AMX 1
#define IJ_TGT_AMX_INT8 __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,f16c")))

struct alignas(64) AmxConfig {
  uint8_t palette = 1;
  uint8_t startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

bool amxInt8Usable() {
  static const bool ok = [] {
    if (const char* env = std::getenv("INFERJIT_LLM_AMX")) {
      if (std::strcmp(env, "0") == 0) return false;
    }
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 24)) || !(d & (1u << 25))) return false;  // AMX-TILE, AMX-INT8
    // Linux hands out the 8 KiB tile state on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return false;
    return true;
  }();
  return ok;
}

thread_local std::vector<uint8_t> tAmxB;
thread_local int32_t tAmxC[2][16 * 16] __attribute__((aligned(64)));

// Signed B tiles of group g, block after block (512 bytes each).
template <int F>
IJ_TGT_AMX_INT8 void amxMaterialize(const WeightRef& w, int64_t g, uint8_t* dst) {
  constexpr int64_t S = packedBlockBytes<F>();
  const int64_t nb = w.K / kQK;
  const uint8_t* base = w.data + g * nb * S;
  const __m512i m4 = _mm512_set1_epi8(15), x80 = _mm512_set1_epi8(static_cast<char>(0x80)), eight = _mm512_set1_epi8(8);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* p = base + b * S + 32;
    uint8_t* o = dst + b * 512;
    if constexpr (F == kWQ8_0X16) {
      for (int j = 0; j < 8; j++) _mm512_store_si512(o + 64 * j, _mm512_xor_si512(_mm512_loadu_si512(p + 64 * j), x80));
    } else {
      for (int j = 0; j < 4; j++) {
        const __m512i raw = _mm512_loadu_si512(p + 64 * j);
        _mm512_store_si512(o + 64 * j, _mm512_sub_epi8(_mm512_and_si512(raw, m4), eight));
        _mm512_store_si512(o + 64 * (j + 4), _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(raw, 4), m4), eight));
      }
    }
  }
}

// Rows [m0, m0+16) × group g. bt: the group's B tiles; xq: BlockQ8 rows (row stride nb blocks).
template <int F>
IJ_TGT_AMX_INT8 void amxTile16(const WeightRef& w, const uint8_t* bt, const BlockQ8* xq, int64_t g, float* y, int64_t ldy,
                               int valid) {
  constexpr int64_t S = packedBlockBytes<F>();
  const int64_t nb = w.K / kQK;
  const uint8_t* base = w.data + g * nb * S;
  __m512 acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
  const int64_t aStride = nb * static_cast<int64_t>(sizeof(BlockQ8));
  // Two C tiles and buffers alternate between blocks so a block's tile product need not wait for
  // the previous block's scaling to read its buffer. (Issuing block b+1's product explicitly
  // before block b's scaling measured no faster: out-of-order execution already overlaps them.)
  auto product = [&](int64_t b) IJ_TGT_AMX_INT8 {
    if (b & 1) {
      _tile_zero(1);
      _tile_loadd(2, xq[b].q, aStride);
      _tile_loadd(3, bt + b * 512, 64);
      _tile_dpbssd(1, 2, 3);
      _tile_stored(1, tAmxC[1], 64);
    } else {
      _tile_zero(0);
      _tile_loadd(2, xq[b].q, aStride);
      _tile_loadd(3, bt + b * 512, 64);
      _tile_dpbssd(0, 2, 3);
      _tile_stored(0, tAmxC[0], 64);
    }
  };
  for (int64_t b = 0; b < nb; b++) {
    product(b);
    const int32_t* cbuf = tAmxC[b & 1];
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + b * S)));
    for (int i = 0; i < 16; i++) {
      const __m512 c = _mm512_cvtepi32_ps(_mm512_load_si512(cbuf + 16 * i));
      acc[i] = _mm512_fmadd_ps(c, _mm512_mul_ps(dw, _mm512_set1_ps(xq[i * nb + b].d)), acc[i]);
    }
  }
  const __mmask16 mask = valid >= kPackRows ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << valid) - 1u);
  for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(y + i * ldy, mask, acc[i]);
}

IJ_TGT_AMX_INT8 void amxConfigure() {
  AmxConfig cfg;
  cfg.colsb[0] = cfg.colsb[1] = 64;  // C: 16 rows × 16 int32
  cfg.rows[0] = cfg.rows[1] = 16;
  cfg.colsb[2] = 32;                 // A: 16 rows × 32 int8 (one block)
  cfg.rows[2] = 16;
  cfg.colsb[3] = 64;                 // B: 8 k-groups × 16 rows × 4 int8
  cfg.rows[3] = 8;
  _tile_loadconfig(&cfg);
}

// Groups covering rows [n0, n1) for M >= 16 rows on AMX; the last M % 16 rows on the VNNI tiles.
template <int F>
void packedRangeAmx(const WeightRef& w, int64_t M, const BlockQ8* xq, float* y, int64_t ldy, int64_t n0, int64_t n1);
#endif

// Whether M activation rows run the packed kernels from block-major activations (xq[b·M + i]: the M
// rows' blocks b side by side, one sequential stream per group pass instead of M strided ones): the
// 16-row tiles past packedTileX2's rows, where AMX does not take them.
bool packedBlockMajor(int64_t M) {
#if defined(IJ_HAVE_TILE_X2)
  if (M <= kTileX2MaxRows || M > kPackRows) return false;
#if defined(IJ_HAVE_AMX)
  if (M == kPackRows && amxInt8Usable()) return false;
#endif
  return true;
#else
  (void)M;
  return false;
#endif
}

// Groups covering rows [n0, n1) for all M rows: group outer, so a group's weights stay in L1 while
// the activation rows pass over them. xq row-major (row i's block b at xq[i·nb + b]) or, with
// blockMajor (packedBlockMajor(M) rows only), at xq[b·M + i].
template <int F>
void packedRange(const WeightRef& w, int64_t M, const BlockQ8* xq, float* y, int64_t ldy, int64_t n0, int64_t n1,
                 bool blockMajor = false) {
  const int64_t nb = w.K / kQK;
#if defined(IJ_HAVE_AMX)
  if (!blockMajor && M >= 16 && amxInt8Usable()) {
    packedRangeAmx<F>(w, M, xq, y, ldy, n0, n1);
    return;
  }
#endif
  for (int64_t g = n0 / kPackRows; g * kPackRows < n1; g++) {
    const int valid = static_cast<int>(std::min<int64_t>(kPackRows, n1 - g * kPackRows));
    float* yg = y + g * kPackRows;
#if defined(IJ_HAVE_TILE_X2)
    if (M <= kTileX2MaxRows && valid == kPackRows && (g + 1) * kPackRows < n1) {
      const int valid1 = static_cast<int>(std::min<int64_t>(kPackRows, n1 - (g + 1) * kPackRows));
      switch (M) {
#define IJ_X2(R) \
  case R: packedTileX2<F, R>(w, xq, nb, g, yg, ldy, valid1); break;
        IJ_X2(1) IJ_X2(2) IJ_X2(3) IJ_X2(4) IJ_X2(5) IJ_X2(6) IJ_X2(7)
#undef IJ_X2
        default: packedTileX2<F, 8>(w, xq, nb, g, yg, ldy, valid1); break;
      }
      g++;
      continue;
    }
    // More rows: two groups at once as well, the unpacked weights of both in registers, 16 rows
    // at a time (the pair's weights stay in L1/L2 for the later row tiles); a last tile of up to 8
    // rows runs packedTileX2
    if (M > kTileX2MaxRows && valid == kPackRows && (g + 1) * kPackRows < n1) {
      const int valid1 = static_cast<int>(std::min<int64_t>(kPackRows, n1 - (g + 1) * kPackRows));
      if (blockMajor) {  // M in 9..16: one tile
        switch (M) {
#define IJ_X2R(R) \
  case R: \
    if (gRowsKernelOld.load(std::memory_order_relaxed)) packedTileX2Rows<F, R, true, 1>(w, xq, 1, g, yg, ldy, valid1); \
    else packedTileX2Rows<F, R, true>(w, xq, 1, g, yg, ldy, valid1); \
    break;
          IJ_X2R(9) IJ_X2R(10) IJ_X2R(11) IJ_X2R(12) IJ_X2R(13) IJ_X2R(14) IJ_X2R(15) IJ_X2R(16)
#undef IJ_X2R
          default: break;
        }
      } else {
        int64_t m = 0;
        for (; m + 16 <= M; m += 16) packedTileX2Rows<F, 16, false>(w, xq + m * nb, nb, g, yg + m * ldy, ldy, valid1);
        const BlockQ8* xm = xq + m * nb;
        float* ym = yg + m * ldy;
        switch (M - m) {
#define IJ_X2(R) \
  case R: packedTileX2<F, R>(w, xm, nb, g, ym, ldy, valid1); break;
#define IJ_X2R(R) \
  case R: packedTileX2Rows<F, R, false>(w, xm, nb, g, ym, ldy, valid1); break;
          IJ_X2(1) IJ_X2(2) IJ_X2(3) IJ_X2(4) IJ_X2(5) IJ_X2(6) IJ_X2(7) IJ_X2(8)
          IJ_X2R(9) IJ_X2R(10) IJ_X2R(11) IJ_X2R(12) IJ_X2R(13) IJ_X2R(14) IJ_X2R(15)
#undef IJ_X2
#undef IJ_X2R
          default: break;
        }
      }
      g++;
      continue;
    }
#endif
    // Up to 16 rows run as one tile, so a group's weights are read and unpacked once (a second
    // pass over them restarts the hardware prefetcher's stream); the first tile over a group
    // prefetches its weights ahead, later ones find them in L1.
    if (blockMajor) {  // M in 9..16: one tile
      switch (M) {
#define IJ_PT(R) \
  case R: packedTile<F, R, true>(w, xq, 1, g, yg, ldy, valid, true); break;
        IJ_PT(9) IJ_PT(10) IJ_PT(11) IJ_PT(12) IJ_PT(13) IJ_PT(14) IJ_PT(15) IJ_PT(16)
#undef IJ_PT
        default: break;
      }
      continue;
    }
    int64_t m = 0;
    for (; m + 16 <= M; m += 16) packedTile<F, 16>(w, xq + m * nb, nb, g, yg + m * ldy, ldy, valid, m == 0);
    switch (M - m) {
#define IJ_PT(R) \
  case R: packedTile<F, R>(w, xq + m * nb, nb, g, yg + m * ldy, ldy, valid, m == 0); break;
      IJ_PT(1) IJ_PT(2) IJ_PT(3) IJ_PT(4) IJ_PT(5) IJ_PT(6) IJ_PT(7) IJ_PT(8)
      IJ_PT(9) IJ_PT(10) IJ_PT(11) IJ_PT(12) IJ_PT(13) IJ_PT(14) IJ_PT(15)
#undef IJ_PT
      default: break;
    }
  }
}

#if defined(IJ_HAVE_AMX)
template <int F>
void packedRangeAmx(const WeightRef& w, int64_t M, const BlockQ8* xq, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const int64_t nb = w.K / kQK;
  std::vector<uint8_t>& bt = tAmxB;
  if (bt.size() < static_cast<size_t>(nb * 512 + 64)) bt.resize(static_cast<size_t>(nb * 512 + 64));
  uint8_t* b64 = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(bt.data()) + 63) & ~uintptr_t(63));
  amxConfigure();  // per task: other AMX users on this thread load their own configurations
  const int64_t m16 = M / 16 * 16;
  for (int64_t g = n0 / kPackRows; g * kPackRows < n1; g++) {
    const int valid = static_cast<int>(std::min<int64_t>(kPackRows, n1 - g * kPackRows));
    float* yg = y + g * kPackRows;
    amxMaterialize<F>(w, g, b64);
    for (int64_t m = 0; m < m16; m += 16) amxTile16<F>(w, b64, xq + m * nb, g, yg + m * ldy, ldy, valid);
    int64_t m = m16;
    for (; m + 8 <= M; m += 8) packedTile<F, 8>(w, xq + m * nb, nb, g, yg + m * ldy, ldy, valid, false);
    switch (M - m) {
#define IJ_PT(R) \
  case R: packedTile<F, R>(w, xq + m * nb, nb, g, yg + m * ldy, ldy, valid, false); break;
      IJ_PT(1) IJ_PT(2) IJ_PT(3) IJ_PT(4) IJ_PT(5) IJ_PT(6) IJ_PT(7)
#undef IJ_PT
      default: break;
    }
  }
}
#endif

// ---------------------------------------------------------------- dense GEMM (prefill)

// Rows [n0, n0+nr) of a dense weight as fp32, row-major [nr][K].
void denseRowsF32(const WeightRef& w, int64_t n0, int64_t nr, float* dst) {
  const int64_t K = w.K;
  if (w.format == kWF32) {
    std::memcpy(dst, reinterpret_cast<const float*>(w.data) + n0 * K, static_cast<size_t>(nr * K) * 4);
    return;
  }
  for (int64_t r = 0; r < nr; r++) {
    const int64_t base = (n0 + r) * K;
    float* o = dst + r * K;
    int64_t k = 0;
    if (w.format == kWF16) {
      for (; k + kW <= K; k += kW) loadW<kWF16>(w.data, base + k).store(o + k);
      for (; k < K; k++) o[k] = elemW<kWF16>(w.data, base + k);
    } else {
      for (; k + kW <= K; k += kW) loadW<kWBF16>(w.data, base + k).store(o + k);
      for (; k < K; k++) o[k] = elemW<kWBF16>(w.data, base + k);
    }
  }
}

constexpr int kRN = 4;

template <int F, int RN>
inline void tileDispatch(const WeightRef& w, int64_t rm, const float* x, const BlockQ8* xq, int64_t m0, int64_t n0,
                         float* y, int64_t ldy) {
  constexpr bool Q = F >= kWQ8_0;
  switch (rm) {
#define IJ_TILE(R)                                        \
  case R:                                                 \
    if constexpr (Q) quantTile<F, R, RN>(w, xq, m0, n0, y, ldy); \
    else denseTile<F, R, RN>(w, x, m0, n0, y, ldy);       \
    break;
    IJ_TILE(1)
    IJ_TILE(2)
    IJ_TILE(3)
    IJ_TILE(4)
#undef IJ_TILE
  }
}

template <int F>
void rangeImpl(const WeightRef& w, int64_t M, const float* x, const BlockQ8* xq, float* y, int64_t ldy, int64_t n0,
               int64_t n1) {
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t rm = std::min<int64_t>(4, M - m0);
    int64_t n = n0;
    for (; n + kRN <= n1; n += kRN) tileDispatch<F, kRN>(w, rm, x, xq, m0, n, y, ldy);
    for (; n < n1; n++) tileDispatch<F, 1>(w, rm, x, xq, m0, n, y, ldy);
  }
}

}  // namespace

void matmulRange(const WeightRef& w, int64_t M, const float* x, const BlockQ8* xq, float* y, int64_t ldy, int64_t n0,
                 int64_t n1) {
  switch (w.format) {
    case kWF32: rangeImpl<kWF32>(w, M, x, xq, y, ldy, n0, n1); break;
    case kWF16: rangeImpl<kWF16>(w, M, x, xq, y, ldy, n0, n1); break;
    case kWBF16: rangeImpl<kWBF16>(w, M, x, xq, y, ldy, n0, n1); break;
    case kWQ8_0: rangeImpl<kWQ8_0>(w, M, x, xq, y, ldy, n0, n1); break;
    case kWQ4_0: rangeImpl<kWQ4_0>(w, M, x, xq, y, ldy, n0, n1); break;
    case kWI8: rangeImpl<kWI8>(w, M, x, xq, y, ldy, n0, n1); break;
    case kWI4: rangeImpl<kWI4>(w, M, x, xq, y, ldy, n0, n1); break;
    case kWQ8_0X16: packedRange<kWQ8_0X16>(w, M, xq, y, ldy, n0, n1); break;
    case kWQ4_0X16: packedRange<kWQ4_0X16>(w, M, xq, y, ldy, n0, n1); break;
    case kWQ4_K: case kWQ5_K: case kWQ6_K: case kWQ4_KX16: case kWQ5_KX16: case kWQ6_KX16:
      kquantRange(w, M, x, y, ldy, n0, n1);
      break;
  }
}

namespace {

// Below this many input rows a dense weight runs the register-tile GEMV above (weights read once,
// converted in registers); from it on, a GEMM: x is packed once per call into micro-panels of kDMR
// rows (shared by every task), each task converts one panel of kDNR weight rows to fp32 in
// transposed (k-major) order into per-thread scratch, and a kDMR × kDNR register tile runs the
// whole K loop for every micro-panel. Converting in the task keeps f16/bf16 weights as stored
// (decode reads them) and costs one pass over a weight panel per call, against M multiply-adds
// per weight value.
constexpr int64_t kDenseGemmMinRows = 16;
constexpr int kDNR = 2 * kW;
constexpr int kDMR = kW == 16 ? 14 : kW == 8 ? 6 : 4;

thread_local std::vector<float> tPackedX, tPanelW;

// x rows [mp·kDMR, +kDMR) as dst[k·kDMR + i] (zero past M).
void packXPanel(const float* x, int64_t M, int64_t K, int64_t mp, float* dst) {
  const int64_t m0 = mp * kDMR;
  const int rows = static_cast<int>(std::min<int64_t>(kDMR, M - m0));
  for (int64_t k = 0; k < K; k++) {
    for (int i = 0; i < rows; i++) dst[k * kDMR + i] = x[(m0 + i) * K + k];
    for (int i = rows; i < kDMR; i++) dst[k * kDMR + i] = 0.0f;
  }
}

#if defined(IJ_AVX512)
// 16×16 fp32 transpose in registers (r[i] = row i on entry, column i on exit).
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
  }
}
#endif

// Weight rows [n0, n0+kDNR) as dst[k·kDNR + j] (fp32, zero past N).

template <int F>
void packWPanel(const WeightRef& w, int64_t n0, float* dst) {
  const int64_t K = w.K;
  const int rows = static_cast<int>(std::min<int64_t>(kDNR, w.N - n0));
  int64_t k = 0;
#if defined(IJ_AVX512)
  if (rows == kDNR) {
    for (; k + 16 <= K; k += 16) {
      for (int h = 0; h < 2; h++) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
          // 32 row streams are more than the hardware prefetcher follows: ask ~512 bytes ahead.
          _mm_prefetch(reinterpret_cast<const char*>(w.data) + ((n0 + 16 * h + i) * K + k) * (F == kWF32 ? 4 : 2) + 512, _MM_HINT_T0);
          r[i] = loadW<F>(w.data, (n0 + 16 * h + i) * K + k).v;
        }
        transpose16(r);
        for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (k + i) * kDNR + 16 * h, r[i]);
      }
    }
  }
#endif
  for (; k < K; k++) {
    for (int j = 0; j < rows; j++) dst[k * kDNR + j] = elemW<F>(w.data, (n0 + j) * K + k);
    for (int j = rows; j < kDNR; j++) dst[k * kDNR + j] = 0.0f;
  }
}

// y[i][j] (i < mr, j < nc) = Σ_k a[k·kDMR + i] · b[k·kDNR + j].
template <int MR>
void denseMicro(int64_t K, const float* __restrict a, const float* __restrict b, float* y, int64_t ldy, int nc) {
  VecF acc[MR][2];
  for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = VecF::zero();
  for (int64_t k = 0; k < K; k++) {
    const VecF b0 = VecF::load(b + k * kDNR), b1 = VecF::load(b + k * kDNR + kW);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      const VecF av = VecF::set1(a[k * kDMR + i]);
      acc[i][0] = fmadd(av, b0, acc[i][0]);
      acc[i][1] = fmadd(av, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < MR; i++) {
    float* yr = y + i * ldy;
    if (nc >= kDNR) {
      acc[i][0].store(yr);
      acc[i][1].store(yr + kW);
    } else {
      if (nc >= kW) {
        acc[i][0].store(yr);
        if (nc > kW) acc[i][1].storePartial(yr + kW, nc - kW);
      } else if (nc > 0) {
        acc[i][0].storePartial(yr, nc);
      }
    }
  }
}

template <int F>
void denseGemmTask(const WeightRef& w, int64_t M, const float* xp, int64_t n0, float* y) {
  const int64_t K = w.K;
  std::vector<float>& panel = tPanelW;
  if (panel.size() < static_cast<size_t>(K * kDNR)) panel.resize(static_cast<size_t>(K * kDNR));
  packWPanel<F>(w, n0, panel.data());
  const int nc = static_cast<int>(std::min<int64_t>(kDNR, w.N - n0));
  for (int64_t m0 = 0, mp = 0; m0 < M; m0 += kDMR, mp++) {
    const float* a = xp + mp * K * kDMR;
    float* yt = y + m0 * w.N + n0;
    switch (std::min<int64_t>(kDMR, M - m0)) {
#define IJ_DM(R) \
  case R: denseMicro<R>(K, a, panel.data(), yt, w.N, nc); break;
      IJ_DM(1) IJ_DM(2) IJ_DM(3) IJ_DM(4)
#if defined(IJ_AVX512) || defined(IJ_AVX2)
      IJ_DM(5) IJ_DM(6)
#endif
#if defined(IJ_AVX512)
      IJ_DM(7) IJ_DM(8) IJ_DM(9) IJ_DM(10) IJ_DM(11) IJ_DM(12) IJ_DM(13) IJ_DM(14)
#endif
#undef IJ_DM
      default: break;
    }
  }
}

void denseGemm(const WeightRef* ws, int count, int64_t M, const float* x, float* const* ys) {
  const int64_t K = ws[0].K;
  const int64_t mPanels = (M + kDMR - 1) / kDMR;
  std::vector<float>& xp = tPackedX;
  if (xp.size() < static_cast<size_t>(mPanels * K * kDMR)) xp.resize(static_cast<size_t>(mPanels * K * kDMR));
  float* xpd = xp.data();
  parallelFor(mPanels, [&](int64_t mp, int) { packXPanel(x, M, K, mp, xpd + mp * K * kDMR); });
  std::vector<int64_t> firstTask(count + 1, 0);
  for (int i = 0; i < count; i++) firstTask[i + 1] = firstTask[i] + (ws[i].N + kDNR - 1) / kDNR;
  parallelFor(firstTask[count], [&](int64_t t, int) {
    int i = 0;
    while (t >= firstTask[i + 1]) i++;
    const WeightRef& w = ws[i];
    const int64_t n0 = (t - firstTask[i]) * kDNR;
    switch (w.format) {
      case kWF32: denseGemmTask<kWF32>(w, M, xpd, n0, ys[i]); break;
      case kWF16: denseGemmTask<kWF16>(w, M, xpd, n0, ys[i]); break;
      default: denseGemmTask<kWBF16>(w, M, xpd, n0, ys[i]); break;
    }
  });
}

}  // namespace

thread_local std::vector<BlockQ8K> tMatmulXk;

namespace {
// Rows [m0, m1) × columns [n0, n1) of y (rows ldy apart) through epilogue e.
void applyEpilogue(const MatmulEpilogue& e, float* y, int64_t ldy, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t m = m0; m < m1; m++) {
    float* yr = y + m * ldy;
    const float* rr = e.residual ? e.residual + m * e.ldr : nullptr;
    int64_t n = n0;
    for (; n + kW <= n1; n += kW) {
      VecF v = VecF::load(yr + n);
      if (e.bias) v = v + VecF::load(e.bias + n);
      v = activateDyn(e.act, v);
      if (rr) v = v + VecF::load(rr + n);
      v.store(yr + n);
    }
    if (n < n1) {
      const int rem = static_cast<int>(n1 - n);
      VecF v = VecF::loadPartial(yr + n, rem);
      if (e.bias) v = v + VecF::loadPartial(e.bias + n, rem);
      v = activateDyn(e.act, v);
      if (rr) v = v + VecF::loadPartial(rr + n, rem);
      v.storePartial(yr + n, rem);
    }
  }
}
}  // namespace

void matmulWeights(const WeightRef* ws, int count, int64_t M, const float* x, const BlockQ8* xq, float* const* ys,
                   const MatmulEpilogue* epilogues, BlockQ8* xqFill) {
  bool allDense = x != nullptr, anyK = false;
  for (int i = 0; i < count; i++) {
    allDense = allDense && !ws[i].quantized() && ws[i].K == ws[0].K;
    anyK = anyK || isKQuant(ws[i].format);
  }
  if (allDense && M >= kDenseGemmMinRows) {
    denseGemm(ws, count, M, x, ys);
    for (int i = 0; epilogues && i < count; i++) {
      if (epilogues[i].active()) parallelFor(M, [&](int64_t m, int) { applyEpilogue(epilogues[i], ys[i], ws[i].N, m, m + 1, 0, ws[i].N); });
    }
    return;
  }
  // K-quant weights read x quantized once per call into int8 super-blocks (BlockQ8K)
  const BlockQ8K* xk = nullptr;
  if (anyK && x) {
    std::vector<BlockQ8K>& buf = tMatmulXk;
    const int64_t nsb = ws[0].K / kQKK;
    if (buf.size() < static_cast<size_t>(M * nsb)) buf.resize(static_cast<size_t>(M * nsb));
    quantizeRowsQ8K(x, M, ws[0].K, buf.data());
    xk = buf.data();
  }
  // Tasks: (weight, block of output rows, block of input rows). Small row blocks keep a task's
  // weight slice in L2 while its input rows stream past; decode (M = 1) gets many small tasks so
  // the two cores finish together. Blocks are multiples of 16 rows (the packed groups).
  const int64_t nc = 32, mc = M <= 4 ? M : 64;
  const int64_t mBlocks = (M + mc - 1) / mc;
  std::vector<int64_t> firstTask(count + 1, 0);
  for (int i = 0; i < count; i++) firstTask[i + 1] = firstTask[i] + ((ws[i].N + nc - 1) / nc) * mBlocks;
  // xqFill: x is quantized into it by the same pool job (one job per call, not two). Tasks are
  // claimed in index order, so the first nQ tasks (one row each) are all claimed, by running
  // threads, before any GEMM task is: a GEMM task waits for them without a barrier job.
  const int64_t nQ = (xqFill && !xq && x && !anyK) ? M : 0;
  if (nQ) xq = xqFill;
  const int64_t nbx = ws[0].K / kQK;
  // Q4_0/Q8_0 packed weights past the two-group tiles read block-major activations (written so by
  // the quantizing tasks; packedBlockMajor)
  bool blockMajor = nQ && packedBlockMajor(M);
#if defined(IJ_HAVE_TILE_X2)
  {
    const char* v = std::getenv("INFERJIT_QGEMM_ROWS_KERNEL");
    gRowsKernelOld.store(v && std::strcmp(v, "old") == 0, std::memory_order_relaxed);
  }
#endif
  for (int i = 0; blockMajor && i < count; i++) blockMajor = ws[i].format == kWQ4_0X16 || ws[i].format == kWQ8_0X16;
  std::atomic<int64_t> quantized{0};
  parallelFor(nQ + firstTask[count], [&](int64_t tq, int) {
    if (tq < nQ) {
      if (blockMajor) {
        for (int64_t b = 0; b < nbx; b++) {
          BlockQ8* o = xqFill + b * M + tq;
          quantizeRowQ8(x + tq * ws[0].K + b * kQK, kQK, o);
          o->s *= kBlockMajorSumScale;
        }
      } else {
        quantizeRowQ8(x + tq * ws[0].K, ws[0].K, xqFill + tq * nbx);
      }
      quantized.fetch_add(1, std::memory_order_release);
      return;
    }
    if (nQ) {
      for (int spin = 0; quantized.load(std::memory_order_acquire) != nQ; spin++) {
        // a row's quantizer may be descheduled (a busy machine): stop burning its core
        if ((spin & 255) == 255) std::this_thread::yield();
#if defined(__x86_64__)
        else __builtin_ia32_pause();
#endif
      }
    }
    const int64_t t = tq - nQ;
    int i = 0;
    while (t >= firstTask[i + 1]) i++;
    const int64_t local = t - firstTask[i];
    const int64_t nBlock = local / mBlocks, mBlock = local % mBlocks;
    const WeightRef& w = ws[i];
    const int64_t n0 = nBlock * nc, n1 = std::min(w.N, n0 + nc);
    const int64_t m0 = mBlock * mc, m1 = std::min(M, m0 + mc);
    const int64_t nb = w.K / kQK;
    if (blockMajor) {
      if (w.format == kWQ4_0X16) packedRange<kWQ4_0X16>(w, M, xq, ys[i], w.N, n0, n1, true);
      else packedRange<kWQ8_0X16>(w, M, xq, ys[i], w.N, n0, n1, true);
    } else if (xk && isKQuant(w.format)) {
      kquantRangeQ(w, m1 - m0, xk + m0 * (w.K / kQKK), ys[i] + m0 * w.N, w.N, n0, n1);
    } else {
      matmulRange(w, m1 - m0, x ? x + m0 * w.K : nullptr, xq ? xq + m0 * nb : nullptr, ys[i] + m0 * w.N, w.N, n0, n1);
    }
    if (epilogues && epilogues[i].active()) applyEpilogue(epilogues[i], ys[i], w.N, m0, m1, n0, n1);
  });
}

}  // namespace inferjit
