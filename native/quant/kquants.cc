// GGUF K-quant weights (Q4_K, Q5_K, Q6_K: 256-value super-blocks; layouts in qmatmul.h) for the
// weight-only matmul, with integer dot products as llama.cpp does: activations are quantized once per
// row to int8 super-blocks (BlockQ8K: one scale per 256 values, sums per 16 and 32 for the min terms),
// and a weight super-block contributes d·dx·Σ_j sc_j·(Σ q·x over sub-block j) − f·dm·dx·Σ_j m_j·Σx_j, all
// sums in int32, two float FMAs per super-block and 16 rows.
//
// The kernels read the X16 layout (16 rows interleaved so one vpdpbusd multiplies 16 rows × 4 values by a
// broadcast group of 4 activation bytes, as the Q4_0X16 kernels do). The plan's quant_linear rule
// packs K-quant weights into it once per weight version; a GGUF-layout weight (eager calls, MoE experts)
// is re-laid 16 rows at a time into per-thread scratch by the task that reads them, so both layouts
// share one kernel and give the same bits.
//
// Kernel families, fixed by the build's target (-march, like the rest of native/quant): AVX-512 with
// VNNI (vpdpbusd / vpdpwssd), AVX-512 without (vpmaddubsw + vpmaddwd: |q·x| pair sums fit int16 since
// q ≤ 63, |x| ≤ 127), AVX2 (the same on two 8-row halves), and a scalar loop over the same layout.
// A tile is RM activation rows × one 16-row group over all of K: decode (M ≤ 3) streams each weight
// byte once; larger M runs tiles of 8 rows (then 4, then the rest) against a group whose bytes stay in
// L1/L2 (8 rows measured 1.2× the GMAC/s of 4 on Zen 4).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../simd.h"
#include "../threadpool.h"
#include "qmatmul.h"

namespace inferjit {

namespace {

inline float f16At(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return halfToFloat(h);
}

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of a Q4_K / Q5_K block.
inline void scaleMinK4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// One GGUF super-block in the common form w = d·sc_j·q − f·dm·m_j (q unsigned, j = value / sbLen).
struct Canon {
  uint16_t d = 0, dm = 0;  // f16 bits
  int8_t sc[16] = {};
  uint8_t m[16] = {};
  uint8_t q[kQKK] = {};
};

void canonOf(int format, const uint8_t* p, Canon& c) {
  if (format == kWQ6_K) {
    const uint8_t* ql = p;
    const uint8_t* qh = p + 128;
    std::memcpy(&c.d, p + 208, 2);
    c.dm = c.d;
    std::memcpy(c.sc, p + 192, 16);
    for (int h = 0; h < 2; h++) {
      for (int l = 0; l < 32; l++) {
        const uint8_t lo = ql[64 * h + l], lo2 = ql[64 * h + 32 + l], hb = qh[32 * h + l];
        c.q[128 * h + l] = static_cast<uint8_t>((lo & 0xF) | ((hb & 3) << 4));
        c.q[128 * h + 32 + l] = static_cast<uint8_t>((lo2 & 0xF) | (((hb >> 2) & 3) << 4));
        c.q[128 * h + 64 + l] = static_cast<uint8_t>((lo >> 4) | (((hb >> 4) & 3) << 4));
        c.q[128 * h + 96 + l] = static_cast<uint8_t>((lo2 >> 4) | (((hb >> 6) & 3) << 4));
      }
    }
    return;
  }
  std::memcpy(&c.d, p, 2);
  std::memcpy(&c.dm, p + 2, 2);
  const uint8_t* scales = p + 4;
  for (int j = 0; j < 8; j++) {
    int sc, m;
    scaleMinK4(j, scales, sc, m);
    c.sc[j] = static_cast<int8_t>(sc);
    c.m[j] = static_cast<uint8_t>(m);
  }
  const bool q5 = format == kWQ5_K;
  const uint8_t* qh = p + 16;
  const uint8_t* qs = p + (q5 ? 48 : 16);
  for (int g = 0; g < 4; g++) {
    for (int l = 0; l < 32; l++) {
      int lo = qs[32 * g + l] & 0xF, hi = qs[32 * g + l] >> 4;
      if (q5) {
        lo += ((qh[l] >> (2 * g)) & 1) << 4;
        hi += ((qh[l] >> (2 * g + 1)) & 1) << 4;
      }
      c.q[64 * g + l] = static_cast<uint8_t>(lo);
      c.q[64 * g + 32 + l] = static_cast<uint8_t>(hi);
    }
  }
}

int sourceFormatOf(int packed) { return packed - kWQ4_KX16 + kWQ4_K; }

// Layout constants of the X16 forms (qmatmul.h).
template <int F>
struct KP;
template <>
struct KP<kWQ4_KX16> {
  static constexpr int NSB = 8, SBL = 32, F = 1;
  static constexpr bool NIB = true, MINS = true;
  static constexpr int64_t S = 2368;
};
template <>
struct KP<kWQ5_KX16> {
  static constexpr int NSB = 8, SBL = 32, F = 1;
  static constexpr bool NIB = false, MINS = true;
  static constexpr int64_t S = 4416;
};
template <>
struct KP<kWQ6_KX16> {
  static constexpr int NSB = 16, SBL = 16, F = 32;
  static constexpr bool NIB = false, MINS = false;
  static constexpr int64_t S = 4416;
};
constexpr int kOffD = 0, kOffDm = 32, kOffSc = 64, kOffMin = 192, kOffQ = 320;

int64_t packedSuperBytes(int packed) { return packed == kWQ4_KX16 ? 2368 : 4416; }

// Writes the canonical super-block of row r (0..15) into packed super-block o.
void scatterCanon(int packed, const Canon& c, int r, uint8_t* o) {
  std::memcpy(o + kOffD + 2 * r, &c.d, 2);
  std::memcpy(o + kOffDm + 2 * r, &c.dm, 2);
  const int nsb = packed == kWQ6_KX16 ? 16 : 8;
  for (int j = 0; j < nsb; j++) {
    o[kOffSc + 32 * (j / 2) + 2 * r + (j & 1)] = static_cast<uint8_t>(c.sc[j]);
    if (packed != kWQ6_KX16) o[kOffMin + 32 * (j / 2) + 2 * r + (j & 1)] = c.m[j];
  }
  uint8_t* q = o + kOffQ;
  if (packed == kWQ4_KX16) {
    for (int j = 0; j < 8; j++)
      for (int i = 0; i < 4; i++)
        for (int t = 0; t < 4; t++)
          q[256 * j + 64 * i + 4 * r + t] = static_cast<uint8_t>(c.q[32 * j + 4 * i + t] | (c.q[32 * j + 16 + 4 * i + t] << 4));
  } else {
    for (int ch = 0; ch < 64; ch++)
      for (int t = 0; t < 4; t++) q[64 * ch + 4 * r + t] = c.q[4 * ch + t];
  }
}

// Reads row r's canonical super-block back from packed super-block o.
void gatherCanon(int packed, const uint8_t* o, int r, Canon& c) {
  std::memcpy(&c.d, o + kOffD + 2 * r, 2);
  std::memcpy(&c.dm, o + kOffDm + 2 * r, 2);
  const int nsb = packed == kWQ6_KX16 ? 16 : 8;
  for (int j = 0; j < nsb; j++) {
    c.sc[j] = static_cast<int8_t>(o[kOffSc + 32 * (j / 2) + 2 * r + (j & 1)]);
    c.m[j] = packed != kWQ6_KX16 ? o[kOffMin + 32 * (j / 2) + 2 * r + (j & 1)] : 0;
  }
  const uint8_t* q = o + kOffQ;
  if (packed == kWQ4_KX16) {
    for (int j = 0; j < 8; j++)
      for (int i = 0; i < 4; i++)
        for (int t = 0; t < 4; t++) {
          const uint8_t b = q[256 * j + 64 * i + 4 * r + t];
          c.q[32 * j + 4 * i + t] = b & 0xF;
          c.q[32 * j + 16 + 4 * i + t] = b >> 4;
        }
  } else {
    for (int ch = 0; ch < 64; ch++)
      for (int t = 0; t < 4; t++) c.q[4 * ch + t] = q[64 * ch + 4 * r + t];
  }
}

// Rows [n, n + count) (count ≤ 16) of a GGUF-layout weight as one X16 group, all super-blocks.
void packGroup(const WeightRef& src, int packed, int64_t n, int count, uint8_t* dst) {
  const int64_t nsb = src.K / kQKK, S = packedSuperBytes(packed);
  const size_t B = kquantBlockBytes(src.format);
  Canon c;
  for (int64_t b = 0; b < nsb; b++) {
    uint8_t* o = dst + b * S;
    std::memset(o, 0, static_cast<size_t>(S));
    for (int r = 0; r < count; r++) {
      canonOf(src.format, src.data + static_cast<size_t>((n + r) * nsb + b) * B, c);
      scatterCanon(packed, c, r, o);
    }
  }
}

// ---------------------------------------------------------------- kernels

#if defined(IJ_AVX512) || defined(IJ_AVX2)
// 16 int32 lanes (one per weight row of a group) and 16 floats: one zmm, or two ymm (rows 0-7, 8-15).
#if defined(IJ_AVX512)
struct IV { __m512i v; };
struct FV { __m512 v; };
inline IV ld64(const uint8_t* p) { return {_mm512_loadu_si512(p)}; }
inline IV set1b(int b) { return {_mm512_set1_epi8(static_cast<char>(b))}; }
inline IV zeroI() { return {_mm512_setzero_si512()}; }
inline IV bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return {_mm512_set1_epi32(v)};
}
inline IV vand(IV a, IV b) { return {_mm512_and_si512(a.v, b.v)}; }
inline IV srl16(IV a, int s) { return {_mm512_srli_epi16(a.v, s)}; }
inline IV add32(IV a, IV b) { return {_mm512_add_epi32(a.v, b.v)}; }
inline IV mul32(IV a, IV b) { return {_mm512_mullo_epi32(a.v, b.v)}; }
inline IV lowHalf16(IV a) { return {_mm512_srai_epi32(_mm512_slli_epi32(a.v, 16), 16)}; }
inline IV highHalf16(IV a) { return {_mm512_srai_epi32(a.v, 16)}; }
inline IV cvtS8(const uint8_t* p) { return {_mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))}; }
inline IV cvtU8(const uint8_t* p) { return {_mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))}; }
inline IV dpbusd(IV acc, IV w, IV x) {
#if defined(__AVX512VNNI__)
  return {_mm512_dpbusd_epi32(acc.v, w.v, x.v)};
#else
  return {_mm512_add_epi32(acc.v, _mm512_madd_epi16(_mm512_maddubs_epi16(w.v, x.v), _mm512_set1_epi16(1)))};
#endif
}
inline IV dpwssd(IV acc, IV a, IV b) {
#if defined(__AVX512VNNI__)
  return {_mm512_dpwssd_epi32(acc.v, a.v, b.v)};
#else
  return {_mm512_add_epi32(acc.v, _mm512_madd_epi16(a.v, b.v))};
#endif
}
inline FV zeroF() { return {_mm512_setzero_ps()}; }
inline FV set1f(float f) { return {_mm512_set1_ps(f)}; }
inline FV cvtF(IV a) { return {_mm512_cvtepi32_ps(a.v)}; }
inline FV ldh16(const uint8_t* p) { return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))}; }
inline FV mulF(FV a, FV b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline FV fmaF(FV a, FV b, FV c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline FV fnmaF(FV a, FV b, FV c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
inline void storeF(float* y, FV a, int valid) {
  const __mmask16 mask = valid >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << valid) - 1u);
  _mm512_mask_storeu_ps(y, mask, a.v);
}
#else
struct IV { __m256i a, b; };
struct FV { __m256 a, b; };
inline IV ld64(const uint8_t* p) {
  return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32))};
}
inline IV set1b(int b) { const __m256i v = _mm256_set1_epi8(static_cast<char>(b)); return {v, v}; }
inline IV zeroI() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
inline IV bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  const __m256i x = _mm256_set1_epi32(v);
  return {x, x};
}
inline IV vand(IV x, IV y) { return {_mm256_and_si256(x.a, y.a), _mm256_and_si256(x.b, y.b)}; }
inline IV srl16(IV x, int s) { return {_mm256_srli_epi16(x.a, s), _mm256_srli_epi16(x.b, s)}; }
inline IV add32(IV x, IV y) { return {_mm256_add_epi32(x.a, y.a), _mm256_add_epi32(x.b, y.b)}; }
inline IV mul32(IV x, IV y) { return {_mm256_mullo_epi32(x.a, y.a), _mm256_mullo_epi32(x.b, y.b)}; }
inline IV lowHalf16(IV x) {
  return {_mm256_srai_epi32(_mm256_slli_epi32(x.a, 16), 16), _mm256_srai_epi32(_mm256_slli_epi32(x.b, 16), 16)};
}
inline IV highHalf16(IV x) { return {_mm256_srai_epi32(x.a, 16), _mm256_srai_epi32(x.b, 16)}; }
inline IV cvtS8(const uint8_t* p) {
  return {_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))};
}
inline IV cvtU8(const uint8_t* p) {
  return {_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))};
}
inline IV dpbusd(IV acc, IV w, IV x) {
  const __m256i one = _mm256_set1_epi16(1);
  return {_mm256_add_epi32(acc.a, _mm256_madd_epi16(_mm256_maddubs_epi16(w.a, x.a), one)),
          _mm256_add_epi32(acc.b, _mm256_madd_epi16(_mm256_maddubs_epi16(w.b, x.b), one))};
}
inline IV dpwssd(IV acc, IV x, IV y) {
  return {_mm256_add_epi32(acc.a, _mm256_madd_epi16(x.a, y.a)), _mm256_add_epi32(acc.b, _mm256_madd_epi16(x.b, y.b))};
}
inline FV zeroF() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline FV set1f(float f) { const __m256 v = _mm256_set1_ps(f); return {v, v}; }
inline FV cvtF(IV x) { return {_mm256_cvtepi32_ps(x.a), _mm256_cvtepi32_ps(x.b)}; }
inline FV ldh16(const uint8_t* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))};
}
inline FV mulF(FV x, FV y) { return {_mm256_mul_ps(x.a, y.a), _mm256_mul_ps(x.b, y.b)}; }
inline FV fmaF(FV x, FV y, FV z) { return {_mm256_fmadd_ps(x.a, y.a, z.a), _mm256_fmadd_ps(x.b, y.b, z.b)}; }
inline FV fnmaF(FV x, FV y, FV z) { return {_mm256_fnmadd_ps(x.a, y.a, z.a), _mm256_fnmadd_ps(x.b, y.b, z.b)}; }
inline void storeF(float* y, FV x, int valid) {
  alignas(32) float t[16];
  _mm256_store_ps(t, x.a);
  _mm256_store_ps(t + 8, x.b);
  std::memcpy(y, t, sizeof(float) * static_cast<size_t>(std::min(valid, 16)));
}
#endif

// RM activation rows × the 16 rows of one group, over nsbK super-blocks starting at `base`.
template <int F, int RM>
void kTile(const uint8_t* base, int64_t nsbK, const BlockQ8K* xk, int64_t ldx, float* y, int64_t ldy, int valid) {
  using P = KP<F>;
  FV acc[RM];
  for (int i = 0; i < RM; i++) acc[i] = zeroF();
  const IV m4 = set1b(15);
  for (int64_t b = 0; b < nsbK; b++) {
    const uint8_t* p = base + b * P::S;
    if constexpr (RM <= 2) {
      // decode streams the weights once: ask for the next super-block's bytes ahead of use
      for (int64_t c = 0; c < P::S; c += 64) _mm_prefetch(reinterpret_cast<const char*>(p + 2 * P::S + c), _MM_HINT_T0);
    }
    IV isum[RM];
    for (int i = 0; i < RM; i++) isum[i] = zeroI();
    for (int pr = 0; pr < P::NSB / 2; pr++) {
      const IV scp = cvtS8(p + kOffSc + 32 * pr);
      const IV sc[2] = {lowHalf16(scp), highHalf16(scp)};
      for (int h = 0; h < 2; h++) {
        const int j = 2 * pr + h;
        constexpr int NV = P::SBL / 4;  // weight vectors (4 values × 16 rows) per sub-block
        IV wv[NV];
        int xo[NV];  // activation offset of each vector within the super-block
        if constexpr (P::NIB) {
          for (int i = 0; i < 4; i++) {
            const IV raw = ld64(p + kOffQ + 256 * j + 64 * i);
            wv[i] = vand(raw, m4);
            wv[i + 4] = vand(srl16(raw, 4), m4);
            xo[i] = 32 * j + 4 * i;
            xo[i + 4] = 32 * j + 16 + 4 * i;
          }
        } else {
          for (int u = 0; u < NV; u++) {
            wv[u] = ld64(p + kOffQ + 64 * (j * NV + u));
            xo[u] = 4 * (j * NV + u);
          }
        }
        for (int i = 0; i < RM; i++) {
          const int8_t* q = xk[i * ldx + b].q;
          IV d0 = zeroI(), d1 = zeroI();
          for (int u = 0; u < NV; u += 2) {
            d0 = dpbusd(d0, wv[u], bcast32(q + xo[u]));
            d1 = dpbusd(d1, wv[u + 1], bcast32(q + xo[u + 1]));
          }
          isum[i] = add32(isum[i], mul32(add32(d0, d1), sc[h]));
        }
      }
    }
    // min terms: Σ_j m_j·Σq_j as int16 pairs (sub-blocks 2p, 2p+1) against the activation's pair sums
    IV mp[P::NSB / 2];
    for (int pr = 0; pr < P::NSB / 2; pr++) mp[pr] = P::MINS ? cvtU8(p + kOffMin + 32 * pr) : cvtS8(p + kOffSc + 32 * pr);
    const FV dv = ldh16(p + kOffD), dmv = mulF(ldh16(p + kOffDm), set1f(static_cast<float>(P::F)));
    for (int i = 0; i < RM; i++) {
      const BlockQ8K& a = xk[i * ldx + b];
      const int16_t* bs = P::MINS ? a.bs32 : a.bs16;
      IV ms = zeroI();
      for (int pr = 0; pr < P::NSB / 2; pr++) ms = dpwssd(ms, mp[pr], bcast32(bs + 2 * pr));
      const FV dx = set1f(a.d);
      acc[i] = fmaF(cvtF(isum[i]), mulF(dv, dx), acc[i]);
      acc[i] = fnmaF(cvtF(ms), mulF(dmv, dx), acc[i]);
    }
  }
  for (int i = 0; i < RM; i++) storeF(y + i * ldy, acc[i], valid);
}
#define IJ_KQ_SIMD 1
#else
// Portable loop over the same layout and the same integer sums.
template <int F, int RM>
void kTile(const uint8_t* base, int64_t nsbK, const BlockQ8K* xk, int64_t ldx, float* y, int64_t ldy, int valid) {
  using P = KP<F>;
  Canon c;
  for (int r = 0; r < valid; r++) {
    float acc[RM] = {};
    for (int64_t b = 0; b < nsbK; b++) {
      gatherCanon(F, base + b * P::S, r, c);
      const float d = halfToFloat(c.d), dm = halfToFloat(c.dm) * P::F;
      for (int i = 0; i < RM; i++) {
        const BlockQ8K& a = xk[i * ldx + b];
        int32_t isum = 0, ms = 0;
        for (int j = 0; j < P::NSB; j++) {
          int32_t s = 0;
          for (int t = 0; t < P::SBL; t++) s += static_cast<int32_t>(c.q[j * P::SBL + t]) * a.q[j * P::SBL + t];
          isum += s * c.sc[j];
          ms += (P::MINS ? static_cast<int32_t>(c.m[j]) * a.bs32[j] : static_cast<int32_t>(c.sc[j]) * a.bs16[j]);
        }
        acc[i] += static_cast<float>(isum) * (d * a.d) - static_cast<float>(ms) * (dm * a.d);
      }
    }
    for (int i = 0; i < RM; i++) y[i * ldy + r] = acc[i];
  }
}
#endif

// All M rows × one group: a group's super-blocks (37 KiB for K = 4096 in Q4) stay in L1/L2 while the
// activation tiles pass.
#ifndef IJ_KQ_RM
#define IJ_KQ_RM 8
#endif
template <int F>
void kGroup(const uint8_t* base, int64_t nsbK, int64_t M, const BlockQ8K* xk, float* y, int64_t ldy, int valid) {
  int64_t m = 0;
  for (; m + IJ_KQ_RM <= M; m += IJ_KQ_RM) kTile<F, IJ_KQ_RM>(base, nsbK, xk + m * nsbK, nsbK, y + m * ldy, ldy, valid);
  for (; m + 4 <= M; m += 4) kTile<F, 4>(base, nsbK, xk + m * nsbK, nsbK, y + m * ldy, ldy, valid);
  switch (M - m) {
    case 1: kTile<F, 1>(base, nsbK, xk + m * nsbK, nsbK, y + m * ldy, ldy, valid); break;
    case 2: kTile<F, 2>(base, nsbK, xk + m * nsbK, nsbK, y + m * ldy, ldy, valid); break;
    case 3: kTile<F, 3>(base, nsbK, xk + m * nsbK, nsbK, y + m * ldy, ldy, valid); break;
    default: break;
  }
}

void kGroupDyn(int packed, const uint8_t* base, int64_t nsbK, int64_t M, const BlockQ8K* xk, float* y, int64_t ldy,
               int valid) {
  switch (packed) {
    case kWQ4_KX16: kGroup<kWQ4_KX16>(base, nsbK, M, xk, y, ldy, valid); break;
    case kWQ5_KX16: kGroup<kWQ5_KX16>(base, nsbK, M, xk, y, ldy, valid); break;
    default: kGroup<kWQ6_KX16>(base, nsbK, M, xk, y, ldy, valid); break;
  }
}

thread_local std::vector<uint8_t> tKGroup;
thread_local std::vector<BlockQ8K> tKX;

}  // namespace

bool isKQuant(int format) { return format >= kWQ4_K && format <= kWQ6_KX16; }
bool isKQuantPacked(int format) { return format >= kWQ4_KX16 && format <= kWQ6_KX16; }

size_t kquantBlockBytes(int format) {
  switch (format) {
    case kWQ4_K: return 144;
    case kWQ5_K: return 176;
    case kWQ6_K: return 210;
    default: return 0;
  }
}

size_t kquantPackedBytes(int format, int64_t N, int64_t K) {
  const size_t groups = static_cast<size_t>((N + kPackRows - 1) / kPackRows);
  return groups * static_cast<size_t>(K / kQKK) * static_cast<size_t>(packedSuperBytes(format));
}

const char* kquantIsa() {
#if defined(IJ_KQ_SIMD) && defined(IJ_AVX512) && defined(__AVX512VNNI__)
  return "avx512-vnni";
#elif defined(IJ_KQ_SIMD) && defined(IJ_AVX512)
  return "avx512";
#elif defined(IJ_KQ_SIMD)
  return "avx2";
#else
  return "scalar";
#endif
}

void dequantRowK(const WeightRef& w, int64_t r, float* out) {
  const int64_t nsb = w.K / kQKK;
  Canon c;
  const bool packed = isKQuantPacked(w.format);
  const int src = packed ? sourceFormatOf(w.format) : w.format;
  const int sbl = src == kWQ6_K ? 16 : 32;
  const float f = src == kWQ6_K ? 32.0f : 1.0f;
  for (int64_t b = 0; b < nsb; b++) {
    if (packed) {
      gatherCanon(w.format, w.data + static_cast<size_t>((r / kPackRows) * nsb + b) * packedSuperBytes(w.format),
                  static_cast<int>(r % kPackRows), c);
    } else {
      canonOf(w.format, w.data + static_cast<size_t>(r * nsb + b) * kquantBlockBytes(w.format), c);
    }
    const float d = halfToFloat(c.d), dm = halfToFloat(c.dm);
    for (int k = 0; k < kQKK; k++) {
      const int j = k / sbl;
      const float m = src == kWQ6_K ? static_cast<float>(c.sc[j]) : static_cast<float>(c.m[j]);
      out[b * kQKK + k] = d * static_cast<float>(c.sc[j]) * static_cast<float>(c.q[k]) - f * dm * m;
    }
  }
}

void quantizeRowQ8K(const float* x, int64_t K, BlockQ8K* out) {
  for (int64_t b = 0; b < K / kQKK; b++) {
    const float* xb = x + b * kQKK;
    BlockQ8K& o = out[b];
    VecF mx = VecF::zero();
    for (int i = 0; i < kQKK; i += kW) mx = vmax(mx, vabs(VecF::load(xb + i)));
    const float amax = mx.max();
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    o.d = d;
#if defined(IJ_AVX512)
    // cvtps_epi32 rounds to nearest even, as nearbyint below
    const __m512 vid = _mm512_set1_ps(id);
    for (int s = 0; s < 16; s++) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * s), vid));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q + 16 * s), _mm512_cvtsepi32_epi8(q));
      o.bs16[s] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
#else
    for (int s = 0; s < 16; s++) {
      int sum = 0;
      for (int t = 0; t < 16; t++) {
        // nearest, ties to even, as the other activation quantizers
        const int q = static_cast<int>(std::nearbyint(xb[16 * s + t] * id));
        o.q[16 * s + t] = static_cast<int8_t>(q);
        sum += q;
      }
      o.bs16[s] = static_cast<int16_t>(sum);
    }
#endif
    for (int s = 0; s < 8; s++) o.bs32[s] = static_cast<int16_t>(o.bs16[2 * s] + o.bs16[2 * s + 1]);
  }
}

void quantizeRowsQ8K(const float* x, int64_t M, int64_t K, BlockQ8K* out) {
  const int64_t nsb = K / kQKK;
  parallelFor(M, [&](int64_t m, int) { quantizeRowQ8K(x + m * K, K, out + m * nsb); });
}

void packWeightK(const WeightRef& src, uint8_t* dst) {
  const int packed = src.format - kWQ4_K + kWQ4_KX16;
  const int64_t groups = (src.N + kPackRows - 1) / kPackRows;
  const size_t groupBytes = static_cast<size_t>(src.K / kQKK * packedSuperBytes(packed));
  parallelFor(groups, [&](int64_t g, int) {
    const int count = static_cast<int>(std::min<int64_t>(kPackRows, src.N - g * kPackRows));
    packGroup(src, packed, g * kPackRows, count, dst + g * groupBytes);
  });
}

void kquantRangeQ(const WeightRef& w, int64_t M, const BlockQ8K* xk, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const int64_t nsb = w.K / kQKK;
  if (isKQuantPacked(w.format)) {
    const int64_t S = packedSuperBytes(w.format);
    for (int64_t n = n0; n < n1; n += kPackRows) {
      const int valid = static_cast<int>(std::min<int64_t>(kPackRows, n1 - n));
      kGroupDyn(w.format, w.data + static_cast<size_t>((n / kPackRows) * nsb * S), nsb, M, xk, y + n, ldy, valid);
    }
    return;
  }
  // GGUF layout: re-lay 16 rows at a time (any n0), then the same kernels
  const int packed = w.format - kWQ4_K + kWQ4_KX16;
  std::vector<uint8_t>& buf = tKGroup;
  const size_t bytes = static_cast<size_t>(nsb * packedSuperBytes(packed));
  if (buf.size() < bytes) buf.resize(bytes);
  for (int64_t n = n0; n < n1; n += kPackRows) {
    const int valid = static_cast<int>(std::min<int64_t>(kPackRows, n1 - n));
    packGroup(w, packed, n, valid, buf.data());
    kGroupDyn(packed, buf.data(), nsb, M, xk, y + n, ldy, valid);
  }
}

void kquantRange(const WeightRef& w, int64_t M, const float* x, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const int64_t nsb = w.K / kQKK;
  std::vector<BlockQ8K>& xk = tKX;
  if (xk.size() < static_cast<size_t>(M * nsb)) xk.resize(static_cast<size_t>(M * nsb));
  for (int64_t m = 0; m < M; m++) quantizeRowQ8K(x + m * w.K, w.K, xk.data() + m * nsb);
  kquantRangeQ(w, M, xk.data(), y, ldy, n0, n1);
}

}  // namespace inferjit
