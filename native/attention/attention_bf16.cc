// bf16 flash attention (see attention_bf16.h): each task owns (batch, head, block of BQ queries)
// and walks the keys in blocks of BK with a running max and sum per query, as attention.cc does;
// here K and V are packed once per call into packed-bf16 GEMM panels (Kᵀ over keys with pairs
// along D, V over Dv with pairs along keys) and both tile products run on the bf16 tile kernel
// (vdpbf16ps or AMX), which rounds Q and the probabilities P to bf16 as it packs them.
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
    std::fill(pr.out, pr.out + B * Hq * Lq * Dv, 0.0f);
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
    if (p < kPanels) {
      packBBf16Panel(pr.k + hd * Lk * D, SrcType::kF32, D, true, D, Lk, p, kp + hd * kHead + p * Dp * kBf16NR);
    } else {
      const int64_t pv = p - kPanels;
      packBBf16Panel(pr.v + hd * Lk * Dv, SrcType::kF32, Dv, false, Lk, Dv, pv, vp + hd * vHead + pv * Lkp * kBf16NR);
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
    const float* qblk = pr.q + (bh * Lq + i0) * D;
    float* oblk = pr.out + (bh * Lq + i0) * Dv;
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
      gemmBf16PackedTile(rows, bk, D, qblk, D, kp + hk * kHead + (j0 / kBf16NR) * Dp * kBf16NR, Dp * kBf16NR, S, kBK, false, kernel);
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
      float* dst = oblk + r * Dv;
      const float l = sc.l[r];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const float* orow = O + r * Dv;
      for (int64_t t = 0; t < Dv; t++) dst[t] = orow[t] * inv;
    }
  });
}

namespace {

// sdpaBf16(q, k, v, mask, maskIsBool, maskStrides[4], out, [B, Hq, Hkv, Lq, Lk, D, Dv], scale, causal, kernel)
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
  need(env, q.length == static_cast<size_t>(pr.B * pr.Hq * pr.Lq * pr.D), "sdpaBf16: q size does not match");
  need(env, k.length == static_cast<size_t>(pr.B * pr.Hkv * pr.Lk * pr.D), "sdpaBf16: k size does not match");
  need(env, v.length == static_cast<size_t>(pr.B * pr.Hkv * pr.Lk * pr.Dv), "sdpaBf16: v size does not match");
  need(env, out.length == static_cast<size_t>(pr.B * pr.Hq * pr.Lq * pr.Dv), "sdpaBf16: out size does not match");
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
