// Mixture-of-experts core (see moe.h). Steps: route (top-k per token, weights = softmax over the
// selected logits), sort the (token, slot) pairs by expert, gather their rows, run gate/up for every
// (expert, F tile) task with silu(g)·u fused into the tile, run down for every (expert, H tile)
// task, then sum each token's k expert outputs in slot order (deterministic, no atomics).
#include "moe.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../common.h"
#include "../gemm/gemm.h"
#include "../simd.h"
#include "../threadpool.h"

namespace inferjit {

WeightRef ExpertWeights::expert(int64_t e) const {
  WeightRef w;
  w.format = format;
  w.N = N;
  w.K = K;
  w.group = group;
  w.data = bytes + static_cast<size_t>(e) * weightDataBytes(format, N, K);
  const size_t sc = weightScaleCount(format, N, K, group);
  if (sc > 0) w.scales = reinterpret_cast<const float*>(bytes + weightDataBytes(format, E * N, K)) + static_cast<size_t>(e) * sc;
  return w;
}

size_t ExpertWeights::totalBytes() const {
  return weightDataBytes(format, E * N, K) + 4 * weightScaleCount(format, E * N, K, group);
}

const char* checkMoe(const MoeArgs& a, char* buf, size_t n) {
  buf[0] = '\0';
  if (a.T < 0 || a.H < 1 || a.F < 1 || a.E < 1) {
    std::snprintf(buf, n, "moe: bad sizes (tokens %lld, hidden %lld, ffn %lld, experts %lld)", (long long)a.T, (long long)a.H,
                  (long long)a.F, (long long)a.E);
    return buf;
  }
  if (a.topK < 1 || a.topK > a.E) {
    std::snprintf(buf, n, "moe: top_k = %lld must lie in 1..%lld (the number of experts)", (long long)a.topK, (long long)a.E);
    return buf;
  }
  const ExpertWeights* ws[3] = {&a.gate, &a.up, &a.down};
  const char* names[3] = {"gate", "up", "down"};
  for (int i = 0; i < 3; i++) {
    const ExpertWeights& w = *ws[i];
    if (w.format < kWF32 || w.format > kWLastFormat) {
      std::snprintf(buf, n, "moe: %s weights have an unsupported format code %d", names[i], w.format);
      return buf;
    }
    // a 16-row interleaved stack: each expert's rows must start on a 16-row group
    if (isPacked(w.format) && w.N % kPackRows != 0) {
      std::snprintf(buf, n, "moe: packed %s weights need each expert's %lld rows to be a multiple of %d", names[i], (long long)w.N, kPackRows);
      return buf;
    }
    if (const char* bad = checkWeight(w.format, w.K, w.group)) {
      std::snprintf(buf, n, "moe: %s weights: %s", names[i], bad);
      return buf;
    }
    if (w.E != a.E || w.N != (i == 2 ? a.H : a.F) || w.K != (i == 2 ? a.F : a.H)) {
      std::snprintf(buf, n, "moe: %s weights are [%lld, %lld, %lld], expected [%lld, %lld, %lld]", names[i], (long long)w.E,
                    (long long)w.N, (long long)w.K, (long long)a.E, (long long)(i == 2 ? a.H : a.F), (long long)(i == 2 ? a.F : a.H));
      return buf;
    }
  }
  return buf;
}

namespace {

constexpr int64_t kTile = 64;            // output columns per task (a multiple of 16 and of kNR)
constexpr int64_t kDenseGemmRows = 16;   // from this many rows an f32 expert runs the packed GEMM tile

bool wantsQ8(int format) { return format >= kWQ8_0 && !isKQuant(format); }

thread_local std::vector<float> tPanel;

// y[m][n0..n1) (row stride ldy) = x[m]·W[n]ᵀ for the M rows of one expert. Single-threaded.
void expertTile(const WeightRef& w, int64_t M, const float* x, const BlockQ8* xq, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  if (w.format == kWF32 && M >= kDenseGemmRows) {
    // the fp32 GEMM's own microkernel over this tile's weight rows, packed per task into panels
    const int64_t K = w.K, nc = n1 - n0, panels = (nc + kNR - 1) / kNR;
    tPanel.resize(static_cast<size_t>(panels * K * kNR));
    const float* b = reinterpret_cast<const float*>(w.data) + n0 * K;
    for (int64_t p = 0; p < panels; p++) packBPanel(b, K, true, K, nc, p, tPanel.data() + p * K * kNR);
    gemmPackedTile(M, nc, K, x, K, tPanel.data(), K * kNR, y + n0, ldy, false);
    return;
  }
  matmulRange(w, M, x, xq, y, ldy, n0, n1);
}

struct Task {
  int64_t expert, n0;
};

}  // namespace

void moeForward(const MoeArgs& a) {
  const int64_t T = a.T, H = a.H, F = a.F, E = a.E, k = a.topK, R = T * k;
  if (T == 0) return;
  // ---- route: top-k logits per token (ties: the lower expert index), weights = their softmax ----
  std::vector<int32_t> sel(static_cast<size_t>(R));
  std::vector<float> wt(static_cast<size_t>(R));
  for (int64_t t = 0; t < T; t++) {
    const float* l = a.logits + t * E;
    int32_t* s = sel.data() + t * k;
    for (int64_t j = 0; j < k; j++) {
      int32_t best = -1;
      for (int64_t e = 0; e < E; e++) {
        bool taken = false;
        for (int64_t i = 0; i < j; i++) taken = taken || s[i] == e;
        if (!taken && (best < 0 || l[e] > l[best])) best = static_cast<int32_t>(e);
      }
      s[j] = best;
    }
    const float mx = l[s[0]];
    double sum = 0;
    for (int64_t j = 0; j < k; j++) sum += std::exp(static_cast<double>(l[s[j]]) - mx);
    for (int64_t j = 0; j < k; j++) wt[t * k + j] = static_cast<float>(std::exp(static_cast<double>(l[s[j]]) - mx) / sum);
  }
  // ---- group the (token, slot) pairs by expert, tokens ascending within an expert ----
  std::vector<int64_t> start(static_cast<size_t>(E + 1), 0), cursor(static_cast<size_t>(E));
  for (int64_t r = 0; r < R; r++) start[sel[r] + 1]++;
  for (int64_t e = 0; e < E; e++) start[e + 1] += start[e];
  for (int64_t e = 0; e < E; e++) cursor[e] = start[e];
  std::vector<int64_t> rowOf(static_cast<size_t>(R)), tokenOf(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; r++) {
    const int64_t row = cursor[sel[r]]++;
    rowOf[r] = row;
    tokenOf[row] = r / k;
  }
  std::vector<float> xs(static_cast<size_t>(R * H)), g(static_cast<size_t>(R * F)), u(static_cast<size_t>(R * F)),
      y(static_cast<size_t>(R * H));
  parallelFor(R, [&](int64_t row, int) { std::copy(a.x + tokenOf[row] * H, a.x + (tokenOf[row] + 1) * H, xs.data() + row * H); });
  std::vector<BlockQ8> xq;
  if (wantsQ8(a.gate.format) || wantsQ8(a.up.format)) {
    xq.resize(static_cast<size_t>(R * (H / kQK)));
    parallelFor(R, [&](int64_t row, int) { quantizeRowQ8(xs.data() + row * H, H, xq.data() + row * (H / kQK)); });
  }
  auto tasksOver = [&](int64_t N) {
    std::vector<Task> tasks;
    for (int64_t e = 0; e < E; e++) {
      if (start[e + 1] == start[e]) continue;  // an expert no token chose costs nothing
      for (int64_t n0 = 0; n0 < N; n0 += kTile) tasks.push_back({e, n0});
    }
    return tasks;
  };
  // ---- gate and up, then h = silu(g)·u in the tile ----
  std::vector<Task> t1 = tasksOver(F);
  parallelFor(static_cast<int64_t>(t1.size()), [&](int64_t i, int) {
    const int64_t e = t1[i].expert, n0 = t1[i].n0, n1 = std::min(F, n0 + kTile);
    const int64_t r0 = start[e], M = start[e + 1] - r0;
    const BlockQ8* q = xq.empty() ? nullptr : xq.data() + r0 * (H / kQK);
    expertTile(a.gate.expert(e), M, xs.data() + r0 * H, wantsQ8(a.gate.format) ? q : nullptr, g.data() + r0 * F, F, n0, n1);
    expertTile(a.up.expert(e), M, xs.data() + r0 * H, wantsQ8(a.up.format) ? q : nullptr, u.data() + r0 * F, F, n0, n1);
    for (int64_t m = 0; m < M; m++) {
      float* gr = g.data() + (r0 + m) * F;
      const float* ur = u.data() + (r0 + m) * F;
      int64_t n = n0;
      for (; n + kW <= n1; n += kW) (activate<kActSilu>(VecF::load(gr + n)) * VecF::load(ur + n)).store(gr + n);
      if (n < n1) {
        const int rem = static_cast<int>(n1 - n);
        (activate<kActSilu>(VecF::loadPartial(gr + n, rem)) * VecF::loadPartial(ur + n, rem)).storePartial(gr + n, rem);
      }
    }
  });
  // ---- down ----
  std::vector<BlockQ8> hq;
  if (wantsQ8(a.down.format)) {
    hq.resize(static_cast<size_t>(R * (F / kQK)));
    parallelFor(R, [&](int64_t row, int) { quantizeRowQ8(g.data() + row * F, F, hq.data() + row * (F / kQK)); });
  }
  std::vector<Task> t2 = tasksOver(H);
  parallelFor(static_cast<int64_t>(t2.size()), [&](int64_t i, int) {
    const int64_t e = t2[i].expert, n0 = t2[i].n0, n1 = std::min(H, n0 + kTile);
    const int64_t r0 = start[e], M = start[e + 1] - r0;
    expertTile(a.down.expert(e), M, g.data() + r0 * F, hq.empty() ? nullptr : hq.data() + r0 * (F / kQK), y.data() + r0 * H, H, n0, n1);
  });
  // ---- combine: out[t] = Σ_j weight[t, j] · y[row of (t, j)], slots in routing order ----
  parallelFor(T, [&](int64_t t, int) {
    float* o = a.out + t * H;
    const float* y0 = y.data() + rowOf[t * k] * H;
    const float w0 = wt[t * k];
    for (int64_t h = 0; h < H; h++) o[h] = w0 * y0[h];
    for (int64_t j = 1; j < k; j++) {
      const float* yj = y.data() + rowOf[t * k + j] * H;
      const float wj = wt[t * k + j];
      for (int64_t h = 0; h < H; h++) o[h] += wj * yj[h];
    }
  });
}

namespace {

ExpertWeights expertsOf(const Napi::Env& env, const Napi::Value& v, const char* what, int64_t E, int64_t N, int64_t K, int group) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + ": expected [formatCode, bytes]");
  Napi::Array arr = v.As<Napi::Array>();
  ExpertWeights w;
  w.format = static_cast<int>(i64(arr.Get(0u)));
  auto bytes = viewOf<uint8_t>(env, arr.Get(1u), what);
  w.bytes = bytes.data;
  w.E = E; w.N = N; w.K = K; w.group = group;
  if (w.format >= kWF32 && w.format <= kWLastFormat && checkWeight(w.format, K, group) == nullptr) {
    need(env, bytes.length >= w.totalBytes(), std::string(what) + ": " + std::to_string(bytes.length) + " bytes, expected " + std::to_string(w.totalBytes()));
  }
  return w;
}

// moe(x: Float32Array [T·H], logits: Float32Array [T·E], T, H, F, E, topK, group,
//     gate: [format, bytes], up: [format, bytes], down: [format, bytes], out: Float32Array [T·H])
Napi::Value Moe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MoeArgs a;
  auto x = viewOf<float>(env, info[0], "moe: x");
  auto logits = viewOf<float>(env, info[1], "moe: logits");
  a.T = i64(info[2]); a.H = i64(info[3]); a.F = i64(info[4]); a.E = i64(info[5]); a.topK = i64(info[6]);
  const int group = static_cast<int>(i64(info[7]));
  a.gate = expertsOf(env, info[8], "moe: gate", a.E, a.F, a.H, group);
  a.up = expertsOf(env, info[9], "moe: up", a.E, a.F, a.H, group);
  a.down = expertsOf(env, info[10], "moe: down", a.E, a.H, a.F, group);
  auto out = viewOf<float>(env, info[11], "moe: out");
  char buf[256];
  const char* bad = checkMoe(a, buf, sizeof buf);
  need(env, bad[0] == '\0', bad);
  need(env, x.length >= static_cast<size_t>(a.T * a.H) && out.length >= static_cast<size_t>(a.T * a.H), "moe: x or out is smaller than tokens·hidden");
  need(env, logits.length >= static_cast<size_t>(a.T * a.E), "moe: logits is smaller than tokens·experts");
  a.x = x.data; a.logits = logits.data; a.out = out.data;
  moeForward(a);
  return env.Undefined();
}

}  // namespace

void registerMoe(Napi::Env env, Napi::Object exports) { exports.Set("moe", Napi::Function::New(env, Moe)); }

}  // namespace inferjit
