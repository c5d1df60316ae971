// GGUF K-quant weights (Q4_K, Q5_K, Q6_K: 256-value super-blocks, layouts in qmatmul.h) for the
// weight-only matmul. Below 16 input rows (decode) a task dequantizes one weight row at a time into
// a per-thread fp32 buffer and runs it against every input row with vector FMAs (VecF: AVX-512,
// AVX2 or scalar, as the build targets): bound by reading the weight bytes, which it reads once.
// From 16 rows on (prefill) matmulWeights runs the register-blocked fp32 GEMM of qmatmul.cc, whose
// tasks dequantize one panel of weight rows each (dequantRowK) instead of converting f16/bf16.
// An integer-dot (VNNI) path with activations quantized per super-block, as llama.cpp does, would
// be faster still; it is not written yet.
#include <cstring>
#include <vector>

#include "../simd.h"
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

void dequantQ4K(const uint8_t* p, float* y) {
  const float d = f16At(p), dmin = f16At(p + 2);
  const uint8_t* scales = p + 4;
  const uint8_t* qs = p + 16;
  for (int c = 0; c < 4; c++) {
    int sc1, m1, sc2, m2;
    scaleMinK4(2 * c, scales, sc1, m1);
    scaleMinK4(2 * c + 1, scales, sc2, m2);
    const float d1 = d * sc1, o1 = dmin * m1, d2 = d * sc2, o2 = dmin * m2;
    for (int l = 0; l < 32; l++) y[64 * c + l] = d1 * (qs[32 * c + l] & 0xF) - o1;
    for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d2 * (qs[32 * c + l] >> 4) - o2;
  }
}

void dequantQ5K(const uint8_t* p, float* y) {
  const float d = f16At(p), dmin = f16At(p + 2);
  const uint8_t* scales = p + 4;
  const uint8_t* qh = p + 16;
  const uint8_t* qs = p + 48;
  for (int c = 0; c < 4; c++) {
    int sc1, m1, sc2, m2;
    scaleMinK4(2 * c, scales, sc1, m1);
    scaleMinK4(2 * c + 1, scales, sc2, m2);
    const float d1 = d * sc1, o1 = dmin * m1, d2 = d * sc2, o2 = dmin * m2;
    const int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
    for (int l = 0; l < 32; l++) y[64 * c + l] = d1 * ((qs[32 * c + l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - o1;
    for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d2 * ((qs[32 * c + l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - o2;
  }
}

void dequantQ6K(const uint8_t* p, float* y) {
  const uint8_t* ql = p;
  const uint8_t* qh = p + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192);
  const float d = f16At(p + 208);
  for (int h = 0; h < 2; h++) {
    const uint8_t* l8 = ql + 64 * h;
    const uint8_t* h8 = qh + 32 * h;
    const int8_t* s = sc + 8 * h;
    float* o = y + 128 * h;
    for (int l = 0; l < 32; l++) {
      const int is = l / 16;
      const int q1 = ((l8[l] & 0xF) | (((h8[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((l8[l + 32] & 0xF) | (((h8[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((l8[l] >> 4) | (((h8[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((l8[l + 32] >> 4) | (((h8[l] >> 6) & 3) << 4)) - 32;
      o[l] = d * s[is] * q1;
      o[l + 32] = d * s[is + 2] * q2;
      o[l + 64] = d * s[is + 4] * q3;
      o[l + 96] = d * s[is + 6] * q4;
    }
  }
}

thread_local std::vector<float> tKRow;

inline float dotF32(const float* a, const float* b, int64_t K) {
  VecF acc0 = VecF::zero(), acc1 = VecF::zero();
  int64_t k = 0;
  for (; k + 2 * kW <= K; k += 2 * kW) {
    acc0 = fmadd(VecF::load(a + k), VecF::load(b + k), acc0);
    acc1 = fmadd(VecF::load(a + k + kW), VecF::load(b + k + kW), acc1);
  }
  for (; k + kW <= K; k += kW) acc0 = fmadd(VecF::load(a + k), VecF::load(b + k), acc0);
  float s = (acc0 + acc1).sum();
  for (; k < K; k++) s += a[k] * b[k];
  return s;
}

}  // namespace

bool isKQuant(int format) { return format == kWQ4_K || format == kWQ5_K || format == kWQ6_K; }

size_t kquantBlockBytes(int format) {
  switch (format) {
    case kWQ4_K: return 144;
    case kWQ5_K: return 176;
    case kWQ6_K: return 210;
    default: return 0;
  }
}

void dequantRowK(const WeightRef& w, int64_t r, float* out) {
  const int64_t nb = w.K / kQKK;
  const size_t S = kquantBlockBytes(w.format);
  const uint8_t* row = w.data + static_cast<size_t>(r) * nb * S;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* p = row + b * S;
    float* y = out + b * kQKK;
    if (w.format == kWQ4_K) dequantQ4K(p, y);
    else if (w.format == kWQ5_K) dequantQ5K(p, y);
    else dequantQ6K(p, y);
  }
}

void kquantRange(const WeightRef& w, int64_t M, const float* x, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const int64_t K = w.K;
  std::vector<float>& row = tKRow;
  if (row.size() < static_cast<size_t>(K)) row.resize(static_cast<size_t>(K));
  for (int64_t n = n0; n < n1; n++) {
    dequantRowK(w, n, row.data());
    for (int64_t m = 0; m < M; m++) y[m * ldy + n] = dotF32(x + m * K, row.data(), K);
  }
}

}  // namespace inferjit
