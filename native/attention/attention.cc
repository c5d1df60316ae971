// Fused scaled-dot-product attention, flash-attention style: each task owns (batch, head, block
// of BQ queries) and walks the keys in blocks of BK, keeping a running max and sum per query
// (online softmax) so the [Lq × Lk] score matrix never exists; only a BQ×BK tile does.
// K and V are packed once per call into GEMM panels (Kᵀ panels over keys, V panels over Dv) so
// both tile products (S = Q·Kᵀ and O += P·V) run on the GEMM microkernel.
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../common.h"
#include "../gemm/gemm.h"
#include "../ops/kernels_core.h"
#include "../threadpool.h"

namespace inferjit {
namespace {

constexpr int64_t kBQ = 64;
constexpr int64_t kBK = 256;  // a multiple of kNR so key blocks start on a panel boundary
static_assert(kBK % kNR == 0, "key blocks must align with packed panels");

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Scratch {
  std::vector<float> s, o, m, l;
};
thread_local Scratch tScratch;

// One query row of a key block: see flashAttention. sr holds the bk raw scores q·k, the first
// nLive visible. Scales them, applies the mask (already offset to this row and the block's first
// key, element stride ms3), folds the block into the running max m and sum l (rescaling the
// output row when the max grows) and leaves exp(s - m) in sr. False (sr zeroed): nothing visible.
bool attnBlockRow(float* sr, int64_t bk, int64_t nLive, float scale, const uint8_t* maskB, const float* maskF, int64_t ms3,
                  float& m, float& l, float* orow, int64_t Dv) {
  const float negInf = -std::numeric_limits<float>::infinity();
  const VecF scv = VecF::set1(scale);
  int64_t j = 0;
  for (; j + kW <= nLive; j += kW) (VecF::load(sr + j) * scv).store(sr + j);
  for (; j < nLive; j++) sr[j] *= scale;
  for (j = nLive; j < bk; j++) sr[j] = negInf;
  if (maskB) {
    for (j = 0; j < nLive; j++)
      if (!maskB[j * ms3]) sr[j] = negInf;
  } else if (maskF && ms3 == 1) {
    for (j = 0; j + kW <= nLive; j += kW) (VecF::load(sr + j) + VecF::load(maskF + j)).store(sr + j);
    for (; j < nLive; j++) sr[j] += maskF[j];
  } else if (maskF) {
    for (j = 0; j < nLive; j++) sr[j] += maskF[j * ms3];
  }
  VecF mv = VecF::set1(negInf);
  j = 0;
  for (; j + kW <= bk; j += kW) mv = vmax(mv, VecF::load(sr + j));
  float mx = mv.max();
  for (; j < bk; j++) mx = std::max(mx, sr[j]);
  const float mOld = m;
  const float mNew = std::max(mOld, mx);
  if (mNew == negInf) {  // nothing visible yet: contributes nothing
    std::fill(sr, sr + bk, 0.0f);
    return false;
  }
  const VecF mb = VecF::set1(mNew);
  VecF sum = VecF::zero();
  j = 0;
  for (; j + kW <= bk; j += kW) {
    VecF p = expv(VecF::load(sr + j) - mb);
    p.store(sr + j);
    sum = sum + p;
  }
  float s = sum.sum();
  for (; j < bk; j++) {
    sr[j] = scalarVia(expv, sr[j] - mNew);
    s += sr[j];
  }
  if (mOld != mNew && mOld != negInf) {
    const float corr = scalarVia(expv, mOld - mNew);
    l *= corr;
    const VecF cv = VecF::set1(corr);
    int64_t t = 0;
    for (; t + kW <= Dv; t += kW) (VecF::load(orow + t) * cv).store(orow + t);
    for (; t < Dv; t++) orow[t] *= corr;
  }
  l += s;
  m = mNew;
  return true;
}

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
  const int64_t kPanels = ceilDiv(Lk, kNR), vPanels = ceilDiv(Dv, kNR);
  const int64_t kHead = kPanels * D * kNR, vHead = vPanels * Lk * kNR;
  const int64_t heads = B * Hkv;
  if (kpBuf.size() < static_cast<size_t>(heads * kHead)) kpBuf.resize(static_cast<size_t>(heads * kHead));
  if (vpBuf.size() < static_cast<size_t>(heads * vHead)) vpBuf.resize(static_cast<size_t>(heads * vHead));
  float* kp = kpBuf.data();
  float* vp = vpBuf.data();
  parallelFor(heads * (kPanels + vPanels), [&](int64_t t, int) {
    const int64_t hd = t / (kPanels + vPanels), p = t % (kPanels + vPanels);
    const int64_t b = hd / Hkv, h = hd % Hkv;
    if (p < kPanels) {
      packBPanel(a.k + b * a.ks[0] + h * a.ks[1], a.ks[2], true, D, Lk, p, kp + hd * kHead + p * D * kNR);
    } else {
      const int64_t pv = p - kPanels;
      packBPanel(a.v + b * a.vs[0] + h * a.vs[1], a.vs[2], false, Lk, Dv, pv, vp + hd * vHead + pv * Lk * kNR);
    }
  });

  const int64_t group = Hq / Hkv;
  const int64_t bq = std::min(kBQ, Lq);
  const int64_t qBlocks = ceilDiv(Lq, bq);
  const int64_t diag = Lk - Lq;
  const float negInf = -std::numeric_limits<float>::infinity();
  const float scale = a.scale;
  const uint8_t* maskB = a.maskIsBool ? static_cast<const uint8_t*>(a.mask) : nullptr;
  const float* maskF = a.maskIsBool ? nullptr : static_cast<const float*>(a.mask);
  const int64_t* ms = a.maskStrides;
  parallelFor(B * Hq * qBlocks, [&](int64_t task, int) {
    const int64_t qb = task % qBlocks, bh = task / qBlocks;
    const int64_t h = bh % Hq, b = bh / Hq;
    const int64_t hk = b * Hkv + h / group;
    const int64_t i0 = qb * bq, rows = std::min(bq, Lq - i0);
    const float* qblk = a.q + b * a.qs[0] + h * a.qs[1] + i0 * a.qs[2];
    Scratch& sc = tScratch;
    sc.s.resize(static_cast<size_t>(bq * kBK));
    sc.o.assign(static_cast<size_t>(bq * Dv), 0.0f);
    sc.m.assign(static_cast<size_t>(bq), negInf);
    sc.l.assign(static_cast<size_t>(bq), 0.0f);
    float* S = sc.s.data();
    float* O = sc.o.data();
    const int64_t kEnd = a.causal ? std::min(Lk, std::max<int64_t>(0, i0 + rows + diag)) : Lk;
    for (int64_t j0 = 0; j0 < kEnd; j0 += kBK) {
      const int64_t bk = std::min(kBK, kEnd - j0);
      gemmPackedTile(rows, bk, D, qblk, a.qs[2], kp + hk * kHead + (j0 / kNR) * D * kNR, D * kNR, S, kBK, false);
      bool anyLive = false;
      for (int64_t r = 0; r < rows; r++) {
        float* sr = S + r * kBK;
        const int64_t i = i0 + r;
        const int64_t jLim = a.causal ? std::min(j0 + bk, std::max<int64_t>(j0, i + diag + 1)) : j0 + bk;
        const int64_t nLive = jLim - j0;
        const int64_t base = b * ms[0] + h * ms[1] + i * ms[2] + j0 * ms[3];
        anyLive |= attnBlockRow(sr, bk, nLive, scale, maskB ? maskB + base : nullptr, maskF ? maskF + base : nullptr, ms[3], sc.m[r],
                                sc.l[r], O + r * Dv, Dv);
      }
      if (anyLive) gemmPackedTile(rows, Dv, bk, S, kBK, vp + hk * vHead + j0 * kNR, Lk * kNR, O, Dv, true);
    }
    for (int64_t r = 0; r < rows; r++) {
      float* dst = a.out + b * a.os[0] + h * a.os[1] + (i0 + r) * a.os[2];
      const float l = sc.l[r];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const float* orow = O + r * Dv;
      for (int64_t t = 0; t < Dv; t++) dst[t] = orow[t] * inv;
    }
  });
}

void registerAttention(Napi::Env env, Napi::Object exports) { exports.Set("sdpa", Napi::Function::New(env, Sdpa)); }

}  // namespace inferjit
