// Fused scaled-dot-product attention, flash-attention style, computed transposed: each task owns
// (batch, head, block of kNR queries) and walks the keys in blocks of kBK, keeping a running max
// and sum per query (online softmax) so the [Lq × Lk] score matrix never exists.
// Why transposed: with the queries of a task as ONE packed GEMM panel (kNR columns), the score
// tile Sᵀ = K·Qᵀ [keys × queries] that the microkernel writes is itself a packed B panel, so the
// second product Oᵀ = Vᵀ·P needs no packing of P; the softmax runs down the columns, one vector
// lane per query, with no horizontal reductions. K and Vᵀ are packed once per call into GEMM
// A micro-panels (per kv head and key block), Q per task into one B panel.
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../common.h"
#include "../gemm/gemm.h"
#include "../ops/kernels_core.h"
#include "../threadpool.h"
#include "../transpose.h"

namespace inferjit {
namespace {

constexpr int64_t kBK = 256;   // keys per block: an Sᵀ tile is kBK × kNR floats (32 KB, L1)
constexpr int kNV = kNR / kW;   // vectors per panel row
static_assert(kNR == kNV * kW, "a panel row is a whole number of vectors");

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// exp for softmax weights (arguments <= 0 or -inf; NaN propagates). On AVX-512 the 2^n scaling
// is one vscalefps, which also takes care of the underflow range that expv's general path
// (any argument, overflow to inf) checks by hand: half the instructions of expv, same polynomial.
inline VecF softmaxExp(VecF x) {
#if defined(IJ_AVX512)
  x = vmax(VecF::set1(-104.0f), x);  // exp(-104) is 0 in fp32; max(c, NaN) keeps the NaN
  VecF n;
  const VecF p = expReduced(x, n);
  return _mm512_scalef_ps(p.v, n.v);
#else
  return expv(x);
#endif
}

struct Scratch {
  std::vector<float> qp, st, ot;
};
thread_local Scratch tScratch;

// sdpa(q, k, v, mask, maskIsBool, maskStrides[4], out, [B, Hq, Hkv, Lq, Lk, D, Dv], scale, causal)
Napi::Value Sdpa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto q = viewOf<float>(env, info[0], "sdpa: q");
  auto k = viewOf<float>(env, info[1], "sdpa: k");
  auto v = viewOf<float>(env, info[2], "sdpa: v");
  const bool hasMask = !(info[3].IsNull() || info[3].IsUndefined());
  const bool maskIsBool = flag(info[4]);
  View<float> maskF;
  View<uint8_t> maskB;
  if (hasMask) {
    if (maskIsBool) maskB = viewOf<uint8_t>(env, info[3], "sdpa: mask");
    else maskF = viewOf<float>(env, info[3], "sdpa: mask");
  }
  auto ms = ints(env, info[5]);
  auto out = viewOf<float>(env, info[6], "sdpa: out");
  auto dims = ints(env, info[7]);
  const float scale = static_cast<float>(f64(info[8]));
  const bool causal = flag(info[9]);
  need(env, dims.size() == 7 && ms.size() == 4, "sdpa: bad arguments");
  const int64_t B = dims[0], Hq = dims[1], Hkv = dims[2], Lq = dims[3], Lk = dims[4], D = dims[5], Dv = dims[6];
  need(env, Hkv > 0 && Hq % Hkv == 0, "sdpa: Hq must be a multiple of Hkv");
  need(env, q.length == static_cast<size_t>(B * Hq * Lq * D), "sdpa: q size does not match");
  need(env, k.length == static_cast<size_t>(B * Hkv * Lk * D), "sdpa: k size does not match");
  need(env, v.length == static_cast<size_t>(B * Hkv * Lk * Dv), "sdpa: v size does not match");
  need(env, out.length == static_cast<size_t>(B * Hq * Lq * Dv), "sdpa: out size does not match");
  if (hasMask) {
    const int64_t extent = 1 + (B - 1) * ms[0] + (Hq - 1) * ms[1] + (Lq - 1) * ms[2] + (Lk - 1) * ms[3];
    const size_t len = maskIsBool ? maskB.length : maskF.length;
    need(env, B * Hq * Lq * Lk == 0 || static_cast<size_t>(extent) <= len, "sdpa: mask strides exceed the mask");
  }
  AttnArgs a;
  a.q = q.data;
  a.k = k.data;
  a.v = v.data;
  a.mask = !hasMask ? nullptr : maskIsBool ? static_cast<const void*>(maskB.data) : static_cast<const void*>(maskF.data);
  a.maskIsBool = maskIsBool;
  for (int d = 0; d < 4; d++) a.maskStrides[d] = ms[d];
  a.out = out.data;
  a.B = B; a.Hq = Hq; a.Hkv = Hkv; a.Lq = Lq; a.Lk = Lk; a.D = D; a.Dv = Dv;
  // Contiguous [B, H, L, D] operands.
  const int64_t qs[3] = {Hq * Lq * D, Lq * D, D}, ks[3] = {Hkv * Lk * D, Lk * D, D}, vs[3] = {Hkv * Lk * Dv, Lk * Dv, Dv},
                os[3] = {Hq * Lq * Dv, Lq * Dv, Dv};
  for (int d = 0; d < 3; d++) {
    a.qs[d] = qs[d];
    a.ks[d] = ks[d];
    a.vs[d] = vs[d];
    a.os[d] = os[d];
  }
  a.scale = scale;
  a.causal = causal;
  std::vector<float> kpBuf, vpBuf;
  flashAttention(a, kpBuf, vpBuf);
  return env.Undefined();
}

}  // namespace

void flashAttention(const AttnArgs& a, std::vector<float>& kpBuf, std::vector<float>& vpBuf) {
  const int64_t B = a.B, Hq = a.Hq, Hkv = a.Hkv, Lq = a.Lq, Lk = a.Lk, D = a.D, Dv = a.Dv;
  if (B * Hq * Lq * Dv == 0) return;
  if (Lk == 0) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < Lq; i++) std::fill_n(a.out + b * a.os[0] + h * a.os[1] + i * a.os[2], Dv, 0.0f);
    return;
  }
  // K [keys × D] and Vᵀ [Dv × keys] as A micro-panels, per kv head and key block (a block's
  // tiles are laid out for its own row count, so every product below uses whole blocks).
  const int64_t kBlocks = ceilDiv(Lk, kBK);
  const int64_t kBlockFloats = packedATileFloats(kBK, D), vBlockFloats = packedATileFloats(Dv, kBK);
  const int64_t kHead = kBlocks * kBlockFloats, vHead = kBlocks * vBlockFloats;
  const int64_t heads = B * Hkv;
  if (kpBuf.size() < static_cast<size_t>(heads * kHead)) kpBuf.resize(static_cast<size_t>(heads * kHead));
  if (vpBuf.size() < static_cast<size_t>(heads * vHead)) vpBuf.resize(static_cast<size_t>(heads * vHead));
  float* kp = kpBuf.data();
  float* vp = vpBuf.data();
  parallelFor(heads * kBlocks * 2, [&](int64_t t, int) {
    const int64_t hd = t / (2 * kBlocks), kb = (t / 2) % kBlocks;
    const int64_t b = hd / Hkv, h = hd % Hkv, j0 = kb * kBK, nb = std::min(kBK, Lk - j0);
    if (t % 2 == 0) packATiles(a.k + b * a.ks[0] + h * a.ks[1] + j0 * a.ks[2], a.ks[2], false, nb, 0, D, kp + hd * kHead + kb * kBlockFloats);
    else packATiles(a.v + b * a.vs[0] + h * a.vs[1], a.vs[2], true, Dv, j0, nb, vp + hd * vHead + kb * vBlockFloats);
  });

  const int64_t group = Hq / Hkv;
  const int64_t qBlocks = ceilDiv(Lq, kNR);
  const int64_t diag = Lk - Lq;  // causal: query i sees keys j <= i + diag
  const float negInf = -std::numeric_limits<float>::infinity();
  const VecF scale = VecF::set1(a.scale);
  const bool unitScale = a.scale == 1.0f;
  const uint8_t* maskB = a.maskIsBool ? static_cast<const uint8_t*>(a.mask) : nullptr;
  const float* maskF = a.maskIsBool ? nullptr : static_cast<const float*>(a.mask);
  const int64_t* ms = a.maskStrides;
  parallelFor(B * Hq * qBlocks, [&](int64_t task, int) {
    const int64_t qb = task % qBlocks, bh = task / qBlocks;
    const int64_t h = bh % Hq, b = bh / Hq;
    const int64_t hk = b * Hkv + h / group;
    const int64_t i0 = qb * kNR, rows = std::min<int64_t>(kNR, Lq - i0);
    Scratch& sc = tScratch;
    sc.qp.resize(static_cast<size_t>(D * kNR));
    sc.st.resize(static_cast<size_t>(kBK * kNR));
    sc.ot.resize(static_cast<size_t>(Dv * kNR));
    float* qp = sc.qp.data();
    float* st = sc.st.data();
    float* ot = sc.ot.data();
    // Qᵀ as one B panel: qp[d·kNR + c] = q[i0 + c][d], zero columns past the last query.
    packBPanel(a.q + b * a.qs[0] + h * a.qs[1] + i0 * a.qs[2], a.qs[2], true, D, rows, 0, qp);
    // The softmax scale goes into Q (D·kNR products per task instead of a pass over kBK·kNR scores).
    if (!unitScale)
      for (int64_t i = 0; i < D * kNR; i += kW) (VecF::load(qp + i) * scale).store(qp + i);
    VecF m[kNV], l[kNV];
    for (int v = 0; v < kNV; v++) {
      m[v] = VecF::set1(negInf);
      l[v] = VecF::zero();
    }
    const int64_t kEnd = a.causal ? std::min(Lk, std::max<int64_t>(0, i0 + rows + diag)) : Lk;
    bool started = false;
    for (int64_t j0 = 0; j0 < kEnd; j0 += kBK) {
      const int64_t kb = j0 / kBK, nb = std::min(kBK, Lk - j0);
      gemmPanel(nb, D, kp + hk * kHead + kb * kBlockFloats, qp, st, kNR, kNR, false);  // st[key][query]
      // Mask, and the block's max per query (column).
      VecF bm[kNV];
      for (int v = 0; v < kNV; v++) bm[v] = VecF::set1(negInf);
      for (int64_t r = 0; r < nb; r++) {
        float* sr = st + r * kNR;
        const int64_t j = j0 + r;
        if (a.causal) {  // queries c < j - diag - i0 do not see key j
          const int64_t hidden = std::min<int64_t>(kNR, j - diag - i0);
          for (int64_t c = 0; c < hidden; c++) sr[c] = negInf;
        }
        if (maskB || maskF) {
          const int64_t base = b * ms[0] + h * ms[1] + i0 * ms[2] + j * ms[3];
          for (int64_t c = 0; c < rows; c++) {
            if (maskB) {
              if (!maskB[base + c * ms[2]]) sr[c] = negInf;
            } else {
              sr[c] += maskF[base + c * ms[2]];
            }
          }
        }
        for (int v = 0; v < kNV; v++) bm[v] = vmax(bm[v], VecF::load(sr + v * kW));
      }
      // Online softmax per column: new max, the factor for what was summed so far, exp and sums.
      // A column with nothing visible yet keeps max -inf; subtracting -FLT_MAX instead keeps its
      // exps (and the factor) at exactly 0 rather than NaN.
      VecF safe[kNV], corr[kNV], sum[kNV];
      for (int v = 0; v < kNV; v++) {
        const VecF mNew = vmax(m[v], bm[v]);
        safe[v] = vmax(mNew, VecF::set1(-std::numeric_limits<float>::max()));
        corr[v] = softmaxExp(m[v] - safe[v]);
        m[v] = mNew;
        sum[v] = VecF::zero();
      }
      for (int64_t r = 0; r < nb; r++) {
        float* sr = st + r * kNR;
        for (int v = 0; v < kNV; v++) {
          const VecF p = softmaxExp(VecF::load(sr + v * kW) - safe[v]);
          p.store(sr + v * kW);
          sum[v] = sum[v] + p;
        }
      }
      for (int v = 0; v < kNV; v++) l[v] = l[v] * corr[v] + sum[v];
      if (started)
        for (int64_t d = 0; d < Dv; d++)
          for (int v = 0; v < kNV; v++) (VecF::load(ot + d * kNR + v * kW) * corr[v]).store(ot + d * kNR + v * kW);
      gemmPanel(Dv, nb, vp + hk * vHead + kb * vBlockFloats, st, ot, kNR, kNR, started);  // ot[dv][query]
      started = true;
    }
    float* dst = a.out + b * a.os[0] + h * a.os[1] + i0 * a.os[2];
    if (!started) {  // causal rows before the first key: nothing visible
      for (int64_t r = 0; r < rows; r++) std::fill_n(dst + r * a.os[2], Dv, 0.0f);
      return;
    }
    VecF inv[kNV];
    for (int v = 0; v < kNV; v++) {
      alignas(64) float lv[kW];
      l[v].store(lv);
      for (int c = 0; c < kW; c++) lv[c] = lv[c] > 0.0f ? 1.0f / lv[c] : 0.0f;  // fully masked queries give zeros
      inv[v] = VecF::load(lv);
    }
    for (int64_t d = 0; d < Dv; d++)
      for (int v = 0; v < kNV; v++) (VecF::load(ot + d * kNR + v * kW) * inv[v]).store(ot + d * kNR + v * kW);
    transposeCopy(ot, kNR, Dv, rows, dst, a.os[2]);
  });
}

void registerAttention(Napi::Env env, Napi::Object exports) { exports.Set("sdpa", Napi::Function::New(env, Sdpa)); }

}  // namespace inferjit
