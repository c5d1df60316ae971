// The Llama-family forward pass as one native call (prefill of T tokens, or a decode step with
// T = 1) behind LlamaEngine (src/llm/engine.ts). RETIRING: generation runs the model's own code
// compiled by the JIT (src/llm/step-engine.ts); this file stays only while src/serve's adapter still
// uses LlamaEngine, and goes with src/llm/engine.ts. The quantized-weight bindings it used to export
// live in native/quant/quant_napi.cc. Every op of the step runs on the shared
// thread pool with the calling thread taking part, so a decode step never hops threads and never
// returns to JavaScript between layers.
//
// Weights are not copied: the model keeps pointers into the JS typed arrays it was created with
// (GGUF tensor bytes, quantized buffers), and the JS wrapper (src/llm/engine.ts) keeps those
// arrays alive for the model's lifetime. Same for the KV pages attached with llmAttachCache.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../common.h"
#include "../quant/qmatmul.h"
#include "../quant/weight_napi.h"
#include "../simd.h"
#include "../threadpool.h"
#include "llm.h"
#include "paged_attention.h"

namespace inferjit {
namespace {

struct Layer {
  const float* attnNorm = nullptr;
  const float* ffnNorm = nullptr;
  WeightRef wq, wk, wv, wo, gate, up, down;
};

struct LlamaModel {
  int64_t dim = 0, nLayers = 0, nHeads = 0, nKv = 0, headDim = 0, ffn = 0, vocab = 0, ropeDim = 0;
  bool interleaved = false;
  float eps = 1e-5f;
  std::vector<double> invFreq;
  WeightRef embed, output;
  const float* outNorm = nullptr;
  std::vector<Layer> layers;
  // Paged KV cache (attached later).
  std::vector<void*> kPages, vPages;
  int64_t numBlocks = 0, blockSize = 0;
  bool f16Cache = false;
  // Scratch, grown on demand and reused by every call.
  std::vector<float> x, xn, q, k, v, att, tmp, g, u, cosT, sinT;
  std::vector<BlockQ8> xq;
};

using ModelHandle = Napi::External<LlamaModel>;

void addInPlace(float* x, const float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) (VecF::load(x + i) + VecF::load(y + i)).store(x + i);
  for (; i < n; i++) x[i] += y[i];
}

// Row t of x ([t][h][...]): rotates the first ropeDim dims of every head at position start + t.
void ropeRow(const LlamaModel& m, float* x, int64_t t, int64_t heads) {
  const int64_t hd = m.headDim, half = m.ropeDim / 2;
  const float* c = m.cosT.data() + t * half;
  const float* s = m.sinT.data() + t * half;
  for (int64_t h = 0; h < heads; h++) {
    float* r = x + (t * heads + h) * hd;
    if (m.interleaved) {
      for (int64_t i = 0; i < half; i++) {
        const float x0 = r[2 * i], x1 = r[2 * i + 1];
        r[2 * i] = x0 * c[i] - x1 * s[i];
        r[2 * i + 1] = x0 * s[i] + x1 * c[i];
      }
    } else {
      for (int64_t i = 0; i < half; i++) {
        const float x0 = r[i], x1 = r[i + half];
        r[i] = x0 * c[i] - x1 * s[i];
        r[i + half] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

// One row of rmsNorm: y = x / rms(x) · w.
void rmsNormRow(const float* xr, const float* w, float* yr, int64_t dim, float eps) {
  VecF acc = VecF::zero();
  int64_t i = 0;
  for (; i + kW <= dim; i += kW) {
    const VecF a = VecF::load(xr + i);
    acc = fmadd(a, a, acc);
  }
  double ss = acc.sum();
  for (; i < dim; i++) ss += static_cast<double>(xr[i]) * xr[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
  const VecF sv = VecF::set1(scale);
  i = 0;
  for (; i + kW <= dim; i += kW) (VecF::load(xr + i) * sv * VecF::load(w + i)).store(yr + i);
  for (; i < dim; i++) yr[i] = xr[i] * scale * w[i];
}

template <typename T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// The matmul inputs of one step are prepared row by row in one pool job each, so a layer has few
// synchronization points: [residual add +] rmsNorm [+ quantize] for the norms, SwiGLU [+ quantize]
// for the down projection, [quantize] for the attention output.
BlockQ8* quantScratch(LlamaModel& m, int64_t rows, int64_t K) {
  grow(m.xq, static_cast<size_t>(rows * (K / kQK)));
  return m.xq.data();
}

// x[r] += add[r] (when add), xn[r] = rmsNorm(x[r])·w, xq[r] = Q8(xn[r]) (when xq), for every row.
void addNormQuant(float* x, const float* add, const float* w, float* xn, BlockQ8* xq, int64_t rows, int64_t D, float eps) {
  parallelFor(rows, [&](int64_t r, int) {
    if (add) addInPlace(x + r * D, add + r * D, D);
    rmsNormRow(x + r * D, w, xn + r * D, D, eps);
    if (xq) quantizeRowQ8(xn + r * D, D, xq + r * (D / kQK));
  });
}

// llmCreate(hparams: number[10], invFreq: Float64Array, weights: WeightSpec[]) -> handle
// hparams = [dim, nLayers, nHeads, nKv, headDim, ffn, vocab, ropeDim, interleaved, eps]
// weights = [embed, outNorm, output, then per layer: attnNorm, wq, wk, wv, wo, ffnNorm, gate, up, down]
Napi::Value LlmCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto hp = ints(env, info[0]);
  need(env, hp.size() == 10, "llmCreate: hparams needs 10 entries");
  auto m = std::make_unique<LlamaModel>();
  m->dim = hp[0];
  m->nLayers = hp[1];
  m->nHeads = hp[2];
  m->nKv = hp[3];
  m->headDim = hp[4];
  m->ffn = hp[5];
  m->vocab = hp[6];
  m->ropeDim = hp[7];
  m->interleaved = hp[8] != 0;
  m->eps = static_cast<float>(info[0].As<Napi::Array>().Get(9u).As<Napi::Number>().DoubleValue());
  need(env, m->dim > 0 && m->nLayers > 0 && m->nHeads > 0 && m->nKv > 0 && m->headDim > 0 && m->ffn > 0 && m->vocab > 0,
       "llmCreate: sizes must be positive");
  need(env, m->nHeads % m->nKv == 0, "llmCreate: head count must be a multiple of the kv head count");
  need(env, m->ropeDim % 2 == 0 && m->ropeDim <= m->headDim, "llmCreate: rope dims must be even and <= head dim");
  auto inv = viewOf<double>(env, info[1], "llmCreate: invFreq");
  need(env, inv.length == static_cast<size_t>(m->ropeDim / 2), "llmCreate: invFreq needs ropeDim/2 entries");
  m->invFreq.assign(inv.data, inv.data + inv.length);
  need(env, info[2].IsArray(), "llmCreate: weights must be an array");
  Napi::Array ws = info[2].As<Napi::Array>();
  need(env, ws.Length() == static_cast<uint32_t>(3 + 9 * m->nLayers), "llmCreate: wrong number of weights");
  const int64_t D = m->dim, Hq = m->nHeads * m->headDim, Hk = m->nKv * m->headDim, Fh = m->ffn;
  auto norm = [&](uint32_t i, const std::string& what) {
    auto w = weightOf(env, ws.Get(i), what, 1, D);
    need(env, w.format == kWF32, what + ": norm weights must be f32");
    return reinterpret_cast<const float*>(w.data);
  };
  m->embed = weightOf(env, ws.Get(0u), "token embedding", m->vocab, D);
  m->outNorm = norm(1, "output norm");
  m->output = weightOf(env, ws.Get(2u), "output", m->vocab, D);
  for (int64_t l = 0; l < m->nLayers; l++) {
    const uint32_t b = static_cast<uint32_t>(3 + 9 * l);
    const std::string p = "layer " + std::to_string(l) + " ";
    Layer L;
    L.attnNorm = norm(b, p + "attn norm");
    L.wq = weightOf(env, ws.Get(b + 1), p + "wq", Hq, D);
    L.wk = weightOf(env, ws.Get(b + 2), p + "wk", Hk, D);
    L.wv = weightOf(env, ws.Get(b + 3), p + "wv", Hk, D);
    L.wo = weightOf(env, ws.Get(b + 4), p + "wo", D, Hq);
    L.ffnNorm = norm(b + 5, p + "ffn norm");
    L.gate = weightOf(env, ws.Get(b + 6), p + "gate", Fh, D);
    L.up = weightOf(env, ws.Get(b + 7), p + "up", Fh, D);
    L.down = weightOf(env, ws.Get(b + 8), p + "down", D, Fh);
    m->layers.push_back(L);
  }
  return ModelHandle::New(env, m.release(), [](Napi::Env, LlamaModel* p) { delete p; });
}

// llmAttachCache(model, kPages: TypedArray[], vPages: TypedArray[], numBlocks, blockSize, f16)
Napi::Value LlmAttachCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel* m = info[0].As<ModelHandle>().Data();
  Napi::Array ks = info[1].As<Napi::Array>(), vs = info[2].As<Napi::Array>();
  const int64_t numBlocks = i64(info[3]), blockSize = i64(info[4]);
  const bool f16 = flag(info[5]);
  need(env, ks.Length() == static_cast<uint32_t>(m->nLayers) && vs.Length() == ks.Length(), "llmAttachCache: need one K and one V array per layer");
  need(env, numBlocks > 0 && blockSize > 0, "llmAttachCache: numBlocks and blockSize must be positive");
  const size_t want = static_cast<size_t>(numBlocks * m->nKv * blockSize * m->headDim) * (f16 ? 2 : 4);
  m->kPages.clear();
  m->vPages.clear();
  for (uint32_t l = 0; l < ks.Length(); l++) {
    Bytes k = bytesOf(env, ks.Get(l), "llmAttachCache: K pages"), v = bytesOf(env, vs.Get(l), "llmAttachCache: V pages");
    need(env, k.bytes >= want && v.bytes >= want, "llmAttachCache: page arrays are smaller than numBlocks·nKv·blockSize·headDim");
    m->kPages.push_back(const_cast<uint8_t*>(k.data));
    m->vPages.push_back(const_cast<uint8_t*>(v.data));
  }
  m->numBlocks = numBlocks;
  m->blockSize = blockSize;
  m->f16Cache = f16;
  return env.Undefined();
}

// llmForward(model, tokens: Int32Array, startPos, blockTable: Int32Array, logits: Float32Array, allLogits)
// Runs T = tokens.length positions start..start+T-1 of one sequence, writing their K/V into the
// pages of blockTable, and the logits of the last position (or of all T when allLogits).
Napi::Value LlmForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = *info[0].As<ModelHandle>().Data();
  auto tokens = viewOf<int32_t>(env, info[1], "llmForward: tokens");
  const int64_t start = i64(info[2]);
  auto table = viewOf<int32_t>(env, info[3], "llmForward: blockTable");
  auto logits = viewOf<float>(env, info[4], "llmForward: logits");
  const bool all = flag(info[5]);
  const int64_t T = static_cast<int64_t>(tokens.length);
  need(env, !m.kPages.empty(), "llmForward: no KV cache attached");
  need(env, T > 0 && start >= 0, "llmForward: need at least one token and start >= 0");
  need(env, start + T <= static_cast<int64_t>(table.length) * m.blockSize,
       "llmForward: the block table covers " + std::to_string(table.length * m.blockSize) + " positions, the call needs " +
           std::to_string(start + T));
  for (int64_t b = 0; b < (start + T + m.blockSize - 1) / m.blockSize; b++) {
    need(env, table.data[b] >= 0 && table.data[b] < m.numBlocks, "llmForward: block table entry " + std::to_string(b) + " is not a valid page");
  }
  for (int64_t t = 0; t < T; t++) {
    need(env, tokens.data[t] >= 0 && tokens.data[t] < m.vocab,
         "llmForward: token id " + std::to_string(tokens.data[t]) + " at index " + std::to_string(t) + " is outside the vocabulary [0, " +
             std::to_string(m.vocab) + ")");
  }
  const int64_t outRows = all ? T : 1;
  need(env, logits.length >= static_cast<size_t>(outRows * m.vocab), "llmForward: logits buffer is too small");

  const int64_t D = m.dim, hd = m.headDim, Hq = m.nHeads * hd, Hk = m.nKv * hd, Fh = m.ffn;
  grow(m.x, T * D);
  grow(m.xn, T * D);
  grow(m.tmp, T * D);
  grow(m.q, T * Hq);
  grow(m.att, T * Hq);
  grow(m.k, T * Hk);
  grow(m.v, T * Hk);
  grow(m.g, T * Fh);
  grow(m.u, T * Fh);
  const int64_t half = m.ropeDim / 2;
  grow(m.cosT, T * half);
  grow(m.sinT, T * half);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < half; i++) {
      const double a = static_cast<double>(start + t) * m.invFreq[i];
      m.cosT[t * half + i] = static_cast<float>(std::cos(a));
      m.sinT[t * half + i] = static_cast<float>(std::sin(a));
    }
  }
  float* x = m.x.data();
  parallelFor(T, [&](int64_t t, int) { dequantRow(m.embed, tokens.data[t], x + t * D); });

  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // The residual add of the previous sublayer is folded into the next norm's job (pending = tmp).
  const float* pending = nullptr;
  for (int64_t l = 0; l < m.nLayers; l++) {
    const Layer& L = m.layers[l];
    const bool qkvQuant = L.wq.quantized() || L.wk.quantized() || L.wv.quantized();
    BlockQ8* xq = qkvQuant ? quantScratch(m, T, D) : nullptr;
    addNormQuant(x, pending, L.attnNorm, m.xn.data(), xq, T, D, m.eps);
    {
      const WeightRef ws[3] = {L.wq, L.wk, L.wv};
      float* ys[3] = {m.q.data(), m.k.data(), m.v.data()};
      matmulWeights(ws, 3, T, m.xn.data(), xq, ys);
    }
    PagedKv kv;
    kv.k = m.kPages[l];
    kv.v = m.vPages[l];
    kv.f16 = m.f16Cache;
    kv.blockSize = m.blockSize;
    kv.nKv = m.nKv;
    kv.headDim = hd;
    kv.table = table.data;
    parallelFor(T, [&](int64_t t, int) {
      ropeRow(m, m.q.data(), t, m.nHeads);
      ropeRow(m, m.k.data(), t, m.nKv);
      pagedStore(kv, m.k.data() + t * Hk, m.v.data() + t * Hk, 1, start + t);
    });
    pagedAttention(kv, m.q.data(), m.att.data(), T, start, m.nHeads, scale);
    xq = nullptr;
    if (L.wo.quantized()) {
      xq = quantScratch(m, T, Hq);
      BlockQ8* xqp = xq;
      const float* att = m.att.data();
      parallelFor(T, [&](int64_t t, int) { quantizeRowQ8(att + t * Hq, Hq, xqp + t * (Hq / kQK)); });
    }
    {
      float* ys[1] = {m.tmp.data()};
      matmulWeights(&L.wo, 1, T, m.att.data(), xq, ys);
    }
    xq = L.gate.quantized() || L.up.quantized() ? quantScratch(m, T, D) : nullptr;
    addNormQuant(x, m.tmp.data(), L.ffnNorm, m.xn.data(), xq, T, D, m.eps);
    {
      const WeightRef ws[2] = {L.gate, L.up};
      float* ys[2] = {m.g.data(), m.u.data()};
      matmulWeights(ws, 2, T, m.xn.data(), xq, ys);
    }
    float* g = m.g.data();
    const float* u = m.u.data();
    xq = L.down.quantized() ? quantScratch(m, T, Fh) : nullptr;
    BlockQ8* xqd = xq;
    parallelFor(T, [&](int64_t t, int) {
      float* gr = g + t * Fh;
      const float* ur = u + t * Fh;
      int64_t i = 0;
      for (; i + kW <= Fh; i += kW) (activate<kActSilu>(VecF::load(gr + i)) * VecF::load(ur + i)).store(gr + i);
      for (; i < Fh; i++) gr[i] = gr[i] / (1.0f + std::exp(-gr[i])) * ur[i];
      if (xqd) quantizeRowQ8(gr, Fh, xqd + t * (Fh / kQK));
    });
    {
      float* ys[1] = {m.tmp.data()};
      matmulWeights(&L.down, 1, T, g, xq, ys);
    }
    pending = m.tmp.data();
  }
  // Only the rows whose logits are wanted need the last residual add and the output norm.
  const int64_t first = T - outRows;
  BlockQ8* xq = m.output.quantized() ? quantScratch(m, outRows, D) : nullptr;
  addNormQuant(x + first * D, pending ? pending + first * D : nullptr, m.outNorm, m.xn.data(), xq, outRows, D, m.eps);
  float* ys[1] = {logits.data};
  matmulWeights(&m.output, 1, outRows, m.xn.data(), xq, ys);
  return env.Undefined();
}

}  // namespace

void registerLlm(Napi::Env env, Napi::Object exports) {
  exports.Set("llmCreate", Napi::Function::New(env, LlmCreate));
  exports.Set("llmAttachCache", Napi::Function::New(env, LlmAttachCache));
  exports.Set("llmForward", Napi::Function::New(env, LlmForward));
}

}  // namespace inferjit
