// bf16 flash attention (see attention_bf16.h): each task owns (batch, head, block of BQ queries)
// and walks the keys in blocks of BK with a running max and sum per query, as attention.cc does;
// here K and V are packed once per call into packed-bf16 GEMM panels (Kᵀ over keys with pairs
// along D, V over Dv with pairs along keys) and both tile products run on the bf16 tile kernel
// (vdpbf16ps or AMX), which rounds Q and the probabilities P to bf16 as it packs them. Operands are
// read through their strides (rows of Q, K, V and out need only a unit stride along the head dim):
// the panel packing and the tile product both take a leading dimension, so views cost nothing.
#include "attention_bf16.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../common.h"
#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {
namespace {

constexpr int64_t kBQ = 64;
constexpr int64_t kBK = 256;  // a multiple of the panel width and of AMX's K step
static_assert(kBK % kBf16NR == 0 && kBK % kBf16KAlign == 0, "key blocks must align with packed panels");

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

struct Scratch {
  std::vector<float> s, o, m, l;
};
thread_local Scratch tScratch;

// Packed K/V, kept by the calling thread between calls (attention runs once per layer per forward).
thread_local std::vector<uint16_t> tK, tV;

}  // namespace

void attentionBf16(const AttentionProblem& pr, Bf16Kernel kernel) {
  const int64_t B = pr.B, Hq = pr.Hq, Hkv = pr.Hkv, Lq = pr.Lq, Lk = pr.Lk, D = pr.D, Dv = pr.Dv;
  if (B * Hq * Lq * Dv == 0) return;
  if (Lk == 0) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < Lq; i++) {
          float* row = pr.out + b * pr.os[0] + h * pr.os[1] + i * pr.os[2];
          std::fill(row, row + Dv, 0.0f);
        }
    return;
  }
  const bool hasMask = pr.maskF || pr.maskB;
  const int64_t* ms = pr.maskStrides;

  // Kᵀ: a "B" of [D, Lk] (K stored [Lk, D] is its transpose); V: a "B" of [Lk, Dv].
  const int64_t Dp = roundUp(D, kBf16KAlign), Lkp = roundUp(Lk, kBf16KAlign);
  const int64_t kPanels = ceilDiv(Lk, kBf16NR), vPanels = ceilDiv(Dv, kBf16NR);
  const int64_t kHead = kPanels * Dp * kBf16NR, vHead = vPanels * Lkp * kBf16NR;
  const int64_t heads = B * Hkv;
  tK.resize(static_cast<size_t>(heads * kHead));
  tV.resize(static_cast<size_t>(heads * vHead));
  uint16_t* kp = tK.data();
  uint16_t* vp = tV.data();
  parallelFor(heads * (kPanels + vPanels), [&](int64_t t, int) {
    const int64_t hd = t / (kPanels + vPanels), p = t % (kPanels + vPanels);
    const int64_t b = hd / Hkv, h = hd % Hkv;
    if (p < kPanels) {
      // key j is row j of K (stride ks[2]): column j of the "B" = Kᵀ, contiguous along D
      packBBf16Panel(pr.k + b * pr.ks[0] + h * pr.ks[1], SrcType::kF32, pr.ks[2], true, D, Lk, p, kp + hd * kHead + p * Dp * kBf16NR);
    } else {
      const int64_t pv = p - kPanels;
      packBBf16Panel(pr.v + b * pr.vs[0] + h * pr.vs[1], SrcType::kF32, pr.vs[2], false, Lk, Dv, pv, vp + hd * vHead + pv * Lkp * kBf16NR);
    }
  });

  const int64_t group = Hq / Hkv;
  const int64_t bq = std::min(kBQ, Lq);
  const int64_t qBlocks = ceilDiv(Lq, bq);
  const int64_t diag = Lk - Lq;  // causal: query i sees key j iff j <= i + diag
  const float negInf = -std::numeric_limits<float>::infinity();
  const float scale = pr.scale;
  parallelFor(B * Hq * qBlocks, [&](int64_t task, int) {
    if (kernel == Bf16Kernel::kAmx) amx::configureTiles();
    const int64_t qb = task % qBlocks, bh = task / qBlocks;
    const int64_t h = bh % Hq, b = bh / Hq;
    const int64_t hk = b * Hkv + h / group;
    const int64_t i0 = qb * bq, rows = std::min(bq, Lq - i0);
    const float* qblk = pr.q + b * pr.qs[0] + h * pr.qs[1] + i0 * pr.qs[2];
    float* oblk = pr.out + b * pr.os[0] + h * pr.os[1] + i0 * pr.os[2];
    Scratch& sc = tScratch;
    sc.s.resize(static_cast<size_t>(bq * kBK));
    sc.o.assign(static_cast<size_t>(bq * Dv), 0.0f);
    sc.m.assign(static_cast<size_t>(bq), negInf);
    sc.l.assign(static_cast<size_t>(bq), 0.0f);
    float* S = sc.s.data();
    float* O = sc.o.data();
    const int64_t kEnd = pr.causal ? std::min(Lk, std::max<int64_t>(0, i0 + rows + diag)) : Lk;
    const VecF scv = VecF::set1(scale);
    for (int64_t j0 = 0; j0 < kEnd; j0 += kBK) {
      const int64_t bk = std::min(kBK, kEnd - j0);
      gemmBf16PackedTile(rows, bk, D, qblk, pr.qs[2], kp + hk * kHead + (j0 / kBf16NR) * Dp * kBf16NR, Dp * kBf16NR, S, kBK, false, kernel);
      bool anyLive = false;
      for (int64_t r = 0; r < rows; r++) {
        float* sr = S + r * kBK;
        const int64_t i = i0 + r;
        const int64_t jLim = pr.causal ? std::min(j0 + bk, std::max<int64_t>(j0, i + diag + 1)) : j0 + bk;
        const int64_t nLive = jLim - j0;
        int64_t j = 0;
        for (; j + kW <= nLive; j += kW) (VecF::load(sr + j) * scv).store(sr + j);
        for (; j < nLive; j++) sr[j] *= scale;
        for (j = nLive; j < bk; j++) sr[j] = negInf;
        if (hasMask) {
          const int64_t base = b * ms[0] + h * ms[1] + i * ms[2];
          if (pr.maskB) {
            for (j = 0; j < nLive; j++)
              if (!pr.maskB[base + (j0 + j) * ms[3]]) sr[j] = negInf;
          } else if (ms[3] == 1) {
            const float* mr = pr.maskF + base + j0;
            for (j = 0; j + kW <= nLive; j += kW) (VecF::load(sr + j) + VecF::load(mr + j)).store(sr + j);
            for (; j < nLive; j++) sr[j] += mr[j];
          } else {
            for (j = 0; j < nLive; j++) sr[j] += pr.maskF[base + (j0 + j) * ms[3]];
          }
        }
        VecF mv = VecF::set1(negInf);
        j = 0;
        for (; j + kW <= bk; j += kW) mv = vmax(mv, VecF::load(sr + j));
        float mx = mv.max();
        for (; j < bk; j++) mx = std::max(mx, sr[j]);
        const float mOld = sc.m[r];
        const float mNew = std::max(mOld, mx);
        if (mNew == negInf) {
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
      // Pair row j0/2 of each V panel starts this key block.
      if (anyLive) gemmBf16PackedTile(rows, Dv, bk, S, kBK, vp + hk * vHead + (j0 / 2) * 64, Lkp * kBf16NR, O, Dv, true, kernel);
    }
    for (int64_t r = 0; r < rows; r++) {
      float* dst = oblk + r * pr.os[2];
      const float l = sc.l[r];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const float* orow = O + r * Dv;
      for (int64_t t = 0; t < Dv; t++) dst[t] = orow[t] * inv;
    }
  });
}

namespace {

// Elements a strided [n0, n1, n2, d] operand reaches (its last dim has unit stride), 0 when empty.
int64_t extentOf(int64_t n0, int64_t n1, int64_t n2, int64_t d, const int64_t* s) {
  if (n0 * n1 * n2 * d == 0) return 0;
  return 1 + (n0 - 1) * s[0] + (n1 - 1) * s[1] + (n2 - 1) * s[2] + (d - 1);
}

// sdpaBf16(q, k, v, mask, maskIsBool, maskStrides[4], out, [B, Hq, Hkv, Lq, Lk, D, Dv], scale, causal, kernel,
//          strides?) with strides = [qs0, qs1, qs2, ks.., vs.., os..] (batch, head, row; default dense [B, H, L, D])
Napi::Value SdpaBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bf16Kernel kernel;
  std::string why;
  const Bf16Kernel requested = info[10].IsNumber() && i64(info[10]) != 0 ? static_cast<Bf16Kernel>(i64(info[10])) : bf16KernelFromEnv();
  if (!resolveBf16Kernel(requested, &kernel, &why)) throw Napi::Error::New(env, "sdpaBf16: " + why);
  auto q = viewOf<float>(env, info[0], "sdpaBf16: q");
  auto k = viewOf<float>(env, info[1], "sdpaBf16: k");
  auto v = viewOf<float>(env, info[2], "sdpaBf16: v");
  const bool hasMask = !(info[3].IsNull() || info[3].IsUndefined());
  const bool maskIsBool = flag(info[4]);
  AttentionProblem pr;
  size_t maskLen = 0;
  if (hasMask) {
    if (maskIsBool) {
      auto m = viewOf<uint8_t>(env, info[3], "sdpaBf16: mask");
      pr.maskB = m.data;
      maskLen = m.length;
    } else {
      auto m = viewOf<float>(env, info[3], "sdpaBf16: mask");
      pr.maskF = m.data;
      maskLen = m.length;
    }
  }
  auto ms = ints(env, info[5]);
  auto out = viewOf<float>(env, info[6], "sdpaBf16: out");
  auto dims = ints(env, info[7]);
  need(env, dims.size() == 7 && ms.size() == 4, "sdpaBf16: bad arguments");
  pr.B = dims[0], pr.Hq = dims[1], pr.Hkv = dims[2], pr.Lq = dims[3], pr.Lk = dims[4], pr.D = dims[5], pr.Dv = dims[6];
  need(env, pr.Hkv > 0 && pr.Hq % pr.Hkv == 0, "sdpaBf16: Hq must be a multiple of Hkv");
  pr.contiguous();
  if (info.Length() > 11 && info[11].IsArray()) {
    auto st = ints(env, info[11]);
    need(env, st.size() == 12, "sdpaBf16: strides must be 12 numbers (q, k, v, out: batch, head, row)");
    for (int64_t x : st) need(env, x >= 0, "sdpaBf16: strides must be non-negative");
    for (int i = 0; i < 3; i++) pr.qs[i] = st[i], pr.ks[i] = st[3 + i], pr.vs[i] = st[6 + i], pr.os[i] = st[9 + i];
  }
  need(env, static_cast<size_t>(extentOf(pr.B, pr.Hq, pr.Lq, pr.D, pr.qs)) <= q.length, "sdpaBf16: q is too small for its shape and strides");
  need(env, static_cast<size_t>(extentOf(pr.B, pr.Hkv, pr.Lk, pr.D, pr.ks)) <= k.length, "sdpaBf16: k is too small for its shape and strides");
  need(env, static_cast<size_t>(extentOf(pr.B, pr.Hkv, pr.Lk, pr.Dv, pr.vs)) <= v.length, "sdpaBf16: v is too small for its shape and strides");
  need(env, static_cast<size_t>(extentOf(pr.B, pr.Hq, pr.Lq, pr.Dv, pr.os)) <= out.length, "sdpaBf16: out is too small for its shape and strides");
  for (int i = 0; i < 4; i++) pr.maskStrides[i] = ms[i];
  if (hasMask) {
    const int64_t extent = 1 + (pr.B - 1) * ms[0] + (pr.Hq - 1) * ms[1] + (pr.Lq - 1) * ms[2] + (pr.Lk - 1) * ms[3];
    need(env, pr.B * pr.Hq * pr.Lq * pr.Lk == 0 || static_cast<size_t>(extent) <= maskLen, "sdpaBf16: mask strides exceed the mask");
  }
  pr.q = q.data, pr.k = k.data, pr.v = v.data, pr.out = out.data;
  pr.scale = static_cast<float>(f64(info[8]));
  pr.causal = flag(info[9]);
  attentionBf16(pr, kernel);
  return env.Undefined();
}

}  // namespace

void registerAttentionBf16(Napi::Env env, Napi::Object exports) { exports.Set("sdpaBf16", Napi::Function::New(env, SdpaBf16)); }

}  // namespace inferjit
