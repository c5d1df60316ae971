// The plan's LLM-serving kernels: kv_write (KV rows into the session's page pool, in place),
// paged_attention (ragged causal GQA over the pools) and moe (Mixtral's expert FFN). Their cores live in native/llm/paged_attention.cc,
// shared with the hand-written Llama step; here they are only decoded and their metadata checked
// (on the calling thread, so a bad slot or block table becomes a JS error, not a crash).
#include <string>

#include "../llm/moe.h"
#include "../llm/paged_attention.h"
#include "kernels.h"

namespace inferjit {
namespace kt {

void runKvWrite(const KvWriteDesc& d, const plan::KernelContext&) {
  const int32_t* slots = reinterpret_cast<const int32_t*>(d.slots);
  const int64_t capacity = d.numBlocks * d.blockSize;
  for (int64_t t = 0; t < d.tokens; t++) {
    if (slots[t] < -1 || slots[t] >= capacity) {
      throw plan::KernelError{"kv_write: slot_mapping[" + std::to_string(t) + "] = " + std::to_string(slots[t]) + " is outside the pool (" +
                              std::to_string(d.numBlocks) + " blocks x " + std::to_string(d.blockSize) + " slots); use -1 for padding tokens"};
    }
  }
  const float* rows = reinterpret_cast<const float*>(d.rows);
  const KvDtype dtype = static_cast<KvDtype>(d.kvDtype);
  if (d.rowStride == d.kvHeads * d.headDim) {
    pagedWriteSlots(d.pool, dtype, rows, slots, d.tokens, d.kvHeads, d.headDim, d.blockSize);
    return;
  }
  // token rows inside a wider one (the V columns of a fused QKV projection): one token at a time
  for (int64_t t = 0; t < d.tokens; t++) pagedWriteSlots(d.pool, dtype, rows + t * d.rowStride, slots + t, 1, d.kvHeads, d.headDim, d.blockSize);
}

void runPagedAttention(const PagedAttentionDesc& d, const plan::KernelContext&) {
  RaggedAttention a;
  a.q = reinterpret_cast<const float*>(d.q);
  a.out = reinterpret_cast<float*>(d.out);
  a.k = d.kPool;
  a.v = d.vPool;
  a.tables = reinterpret_cast<const int32_t*>(d.blockTables);
  a.seqLens = reinterpret_cast<const int32_t*>(d.seqLens);
  a.queryStart = reinterpret_cast<const int32_t*>(d.queryStart);
  a.tokens = d.tokens; a.heads = d.heads; a.kvHeads = d.kvHeads; a.headDim = d.headDim; a.blockSize = d.blockSize;
  a.numBlocks = d.numBlocks; a.seqs = d.seqs; a.maxBlocks = d.maxBlocks; a.window = d.window;
  a.scale = static_cast<float>(d.scale);
  a.softcap = static_cast<float>(d.softcap);
  a.dtype = static_cast<KvDtype>(d.kvDtype);
  char buf[256];
  const char* bad = checkRagged(a, buf, sizeof buf);
  if (bad[0] != '\0') throw plan::KernelError{bad};
  raggedPagedAttention(a);
}

// moe: the grouped-GEMM mixture-of-experts core of native/llm/moe.cc (weights are plan constants
// read in place; sizes were checked when the plan was built, and again here on the calling thread).
void runMoe(const MoeDesc& d, const plan::KernelContext&) {
  MoeArgs a;
  a.x = reinterpret_cast<const float*>(d.x);
  a.logits = reinterpret_cast<const float*>(d.logits);
  a.out = reinterpret_cast<float*>(d.out);
  a.T = d.T; a.H = d.H; a.F = d.F; a.E = d.E; a.topK = d.topK;
  const int group = static_cast<int>(d.group);
  a.gate = {static_cast<int>(d.gateFormat), d.gate, d.E, d.F, d.H, group};
  a.up = {static_cast<int>(d.upFormat), d.up, d.E, d.F, d.H, group};
  a.down = {static_cast<int>(d.downFormat), d.down, d.E, d.H, d.F, group};
  char buf[256];
  const char* bad = checkMoe(a, buf, sizeof buf);
  if (bad[0] != '\0') throw plan::KernelError{bad};
  moeForward(a);
}

}  // namespace kt
}  // namespace inferjit
