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
  if (B * Hq * Lq * Dv == 0) return env.Undefined();
  if (Lk == 0) {
    std::fill(out.data, out.data + out.length, 0.0f);
    return env.Undefined();
  }

  // Pack K (as Kᵀ panels over keys: D rows each) and V (panels over Dv: Lk rows each) per kv head.
  const int64_t kPanels = ceilDiv(Lk, kNR), vPanels = ceilDiv(Dv, kNR);
  const int64_t kHead = kPanels * D * kNR, vHead = vPanels * Lk * kNR;
  std::vector<float> kp(static_cast<size_t>(B * Hkv * kHead)), vp(static_cast<size_t>(B * Hkv * vHead));
  const int64_t heads = B * Hkv;
  parallelFor(heads * (kPanels + vPanels), [&](int64_t t, int) {
    const int64_t hd = t / (kPanels + vPanels), p = t % (kPanels + vPanels);
    if (p < kPanels) {
      packBPanel(k.data + hd * Lk * D, D, true, D, Lk, p, kp.data() + hd * kHead + p * D * kNR);
    } else {
      const int64_t pv = p - kPanels;
      packBPanel(v.data + hd * Lk * Dv, Dv, false, Lk, Dv, pv, vp.data() + hd * vHead + pv * Lk * kNR);
    }
  });

  const int64_t group = Hq / Hkv;
  const int64_t bq = std::min(kBQ, Lq);
  const int64_t qBlocks = ceilDiv(Lq, bq);
  const int64_t diag = Lk - Lq;  // causal: query i sees key j iff j <= i + diag
  const float negInf = -std::numeric_limits<float>::infinity();
  parallelFor(B * Hq * qBlocks, [&](int64_t task, int) {
    const int64_t qb = task % qBlocks, bh = task / qBlocks;
    const int64_t h = bh % Hq, b = bh / Hq;
    const int64_t hk = b * Hkv + h / group;
    const int64_t i0 = qb * bq, rows = std::min(bq, Lq - i0);
    const float* qblk = q.data + (bh * Lq + i0) * D;
    float* oblk = out.data + (bh * Lq + i0) * Dv;
    Scratch& sc = tScratch;
    sc.s.resize(static_cast<size_t>(bq * kBK));
    sc.o.assign(static_cast<size_t>(bq * Dv), 0.0f);
    sc.m.assign(static_cast<size_t>(bq), negInf);
    sc.l.assign(static_cast<size_t>(bq), 0.0f);
    float* S = sc.s.data();
    float* O = sc.o.data();
    // Causal: keys past the last row's diagonal are never visible to this block.
    const int64_t kEnd = causal ? std::min(Lk, std::max<int64_t>(0, i0 + rows + diag)) : Lk;
    const VecF scv = VecF::set1(scale);
    for (int64_t j0 = 0; j0 < kEnd; j0 += kBK) {
      const int64_t bk = std::min(kBK, kEnd - j0);
      gemmPackedTile(rows, bk, D, qblk, D, kp.data() + hk * kHead + (j0 / kNR) * D * kNR, D * kNR, S, kBK, false);
      bool anyLive = false;
      for (int64_t r = 0; r < rows; r++) {
        float* sr = S + r * kBK;
        const int64_t i = i0 + r;
        // Visible keys of this row within the block: [j0, jLim).
        const int64_t jLim = causal ? std::min(j0 + bk, std::max<int64_t>(j0, i + diag + 1)) : j0 + bk;
        const int64_t nLive = jLim - j0;
        int64_t j = 0;
        for (; j + kW <= nLive; j += kW) (VecF::load(sr + j) * scv).store(sr + j);
        for (; j < nLive; j++) sr[j] *= scale;
        for (j = nLive; j < bk; j++) sr[j] = negInf;
        if (hasMask) {
          const int64_t base = b * ms[0] + h * ms[1] + i * ms[2];
          if (maskIsBool) {
            for (j = 0; j < nLive; j++)
              if (!maskB.data[base + (j0 + j) * ms[3]]) sr[j] = negInf;
          } else if (ms[3] == 1) {
            const float* mr = maskF.data + base + j0;
            for (j = 0; j + kW <= nLive; j += kW) (VecF::load(sr + j) + VecF::load(mr + j)).store(sr + j);
            for (; j < nLive; j++) sr[j] += mr[j];
          } else {
            for (j = 0; j < nLive; j++) sr[j] += maskF.data[base + (j0 + j) * ms[3]];
          }
        }
        VecF mv = VecF::set1(negInf);
        j = 0;
        for (; j + kW <= bk; j += kW) mv = vmax(mv, VecF::load(sr + j));
        float mx = mv.max();
        for (; j < bk; j++) mx = std::max(mx, sr[j]);
        const float mOld = sc.m[r];
        const float mNew = std::max(mOld, mx);
        if (mNew == negInf) {  // nothing visible yet: contributes nothing
          std::fill(sr, sr + bk, 0.0f);
          continue;
        }
        anyLive = true;
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
          float lanes[kW];
          expv(VecF::set1(sr[j] - mNew)).store(lanes);
          sr[j] = lanes[0];
          s += lanes[0];
        }
        if (mOld != mNew && mOld != negInf) {
          float lanes[kW];
          expv(VecF::set1(mOld - mNew)).store(lanes);
          const float corr = lanes[0];
          sc.l[r] *= corr;
          const VecF cv = VecF::set1(corr);
          float* orow = O + r * Dv;
          int64_t t = 0;
          for (; t + kW <= Dv; t += kW) (VecF::load(orow + t) * cv).store(orow + t);
          for (; t < Dv; t++) orow[t] *= corr;
        }
        sc.l[r] += s;
        sc.m[r] = mNew;
      }
      if (anyLive) gemmPackedTile(rows, Dv, bk, S, kBK, vp.data() + hk * vHead + j0 * kNR, Lk * kNR, O, Dv, true);
    }
    for (int64_t r = 0; r < rows; r++) {
      float* dst = oblk + r * Dv;
      const float l = sc.l[r];
      // A row that saw no key (all masked) outputs zeros, as the reference does.
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const float* orow = O + r * Dv;
      for (int64_t t = 0; t < Dv; t++) dst[t] = orow[t] * inv;
    }
  });
  return env.Undefined();
}

}  // namespace

void registerAttention(Napi::Env env, Napi::Object exports) { exports.Set("sdpa", Napi::Function::New(env, Sdpa)); }

}  // namespace inferjit
