// The N-API entry points of the paged KV kernels, for the eager kv_write and paged_attention
// (src/backends/cpu/kernels/llm.ts): the same cores the plan runs (paged_attention.cc), so an eager
// step and a compiled one write and read the pools identically (int8 pools included).
#include "paged_napi.h"

#include <string>

#include "../common.h"
#include "paged_attention.h"

namespace inferjit {
namespace {

// Bytes of a pool [numBlocks][kvHeads][blockSize][headDim] of `dtype` (int8 rows carry their f32 scale).
int64_t poolBytes(KvDtype dtype, int64_t NB, int64_t Hkv, int64_t BS, int64_t D) {
  const int64_t rows = NB * Hkv * BS;
  return dtype == KvDtype::f32 ? rows * D * 4 : dtype == KvDtype::f16 ? rows * D * 2 : rows * (D + 4);
}

KvDtype dtypeOf(const Napi::Env& env, const Napi::Value& v, const char* what) {
  const int64_t code = i64(v);
  need(env, code >= 0 && code <= 2, std::string(what) + ": kv dtype code must be 0 (f32), 1 (f16) or 2 (int8), got " + std::to_string(code));
  return static_cast<KvDtype>(code);
}

// pagedKvWrite(pool: Uint8Array (its bytes), dtype, rows: Float32Array [T·Hkv·D], slots: Int32Array [T],
//              T, Hkv, D, blockSize, numBlocks). Slot -1 is skipped.
Napi::Value PagedKvWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto pool = viewOf<uint8_t>(env, info[0], "pagedKvWrite: pool");
  const KvDtype dtype = dtypeOf(env, info[1], "pagedKvWrite");
  auto rows = viewOf<float>(env, info[2], "pagedKvWrite: rows");
  auto slots = viewOf<int32_t>(env, info[3], "pagedKvWrite: slots");
  const int64_t T = i64(info[4]), Hkv = i64(info[5]), D = i64(info[6]), BS = i64(info[7]), NB = i64(info[8]);
  need(env, T >= 0 && Hkv > 0 && D > 0 && BS > 0 && NB > 0, "pagedKvWrite: bad sizes");
  need(env, static_cast<int64_t>(pool.length) == poolBytes(dtype, NB, Hkv, BS, D), "pagedKvWrite: pool size does not match its shape");
  need(env, static_cast<int64_t>(rows.length) >= T * Hkv * D && static_cast<int64_t>(slots.length) >= T, "pagedKvWrite: rows or slots are smaller than tokens");
  for (int64_t t = 0; t < T; t++) {
    need(env, slots.data[t] >= -1 && slots.data[t] < NB * BS,
         "kv_write: slot_mapping[" + std::to_string(t) + "] = " + std::to_string(slots.data[t]) + " is outside the pool");
  }
  pagedWriteSlots(pool.data, dtype, rows.data, slots.data, T, Hkv, D, BS);
  return env.Undefined();
}

// pagedAttentionRagged(q: Float32Array, kPool, vPool: Uint8Array (bytes), dtype, blockTables, seqLens, queryStart: Int32Array,
//   out: Float32Array, [tokens, heads, kvHeads, headDim, blockSize, numBlocks, seqs, maxBlocks, window], scale, softcap)
Napi::Value PagedAttentionRagged(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto q = viewOf<float>(env, info[0], "pagedAttention: q");
  auto k = viewOf<uint8_t>(env, info[1], "pagedAttention: k_pool");
  auto v = viewOf<uint8_t>(env, info[2], "pagedAttention: v_pool");
  const KvDtype dtype = dtypeOf(env, info[3], "pagedAttention");
  auto tables = viewOf<int32_t>(env, info[4], "pagedAttention: block_tables");
  auto lens = viewOf<int32_t>(env, info[5], "pagedAttention: seq_lens");
  auto starts = viewOf<int32_t>(env, info[6], "pagedAttention: query_start");
  auto out = viewOf<float>(env, info[7], "pagedAttention: out");
  auto dims = ints(env, info[8]);
  need(env, dims.size() == 9, "pagedAttention: expected 9 sizes");
  RaggedAttention a;
  a.tokens = dims[0]; a.heads = dims[1]; a.kvHeads = dims[2]; a.headDim = dims[3]; a.blockSize = dims[4]; a.numBlocks = dims[5];
  a.seqs = dims[6]; a.maxBlocks = dims[7]; a.window = dims[8];
  a.scale = static_cast<float>(f64(info[9]));
  a.softcap = static_cast<float>(f64(info[10]));
  a.dtype = dtype;
  need(env, a.tokens >= 0 && a.heads > 0 && a.kvHeads > 0 && a.heads % a.kvHeads == 0 && a.headDim > 0 && a.blockSize > 0 && a.numBlocks > 0 && a.seqs >= 0 && a.maxBlocks >= 0,
       "pagedAttention: bad sizes");
  const int64_t pb = poolBytes(dtype, a.numBlocks, a.kvHeads, a.blockSize, a.headDim);
  need(env, static_cast<int64_t>(k.length) == pb && static_cast<int64_t>(v.length) == pb, "pagedAttention: a pool's size does not match its shape");
  need(env, static_cast<int64_t>(q.length) == a.tokens * a.heads * a.headDim && static_cast<int64_t>(out.length) == a.tokens * a.heads * a.headDim,
       "pagedAttention: q or out size does not match tokens·heads·headDim");
  need(env, static_cast<int64_t>(tables.length) >= a.seqs * a.maxBlocks && static_cast<int64_t>(lens.length) >= a.seqs &&
       static_cast<int64_t>(starts.length) >= a.seqs + 1, "pagedAttention: metadata is smaller than its sizes");
  a.q = q.data; a.out = out.data; a.k = k.data; a.v = v.data;
  a.tables = tables.data; a.seqLens = lens.data; a.queryStart = starts.data;
  char buf[256];
  const char* bad = checkRagged(a, buf, sizeof buf);
  need(env, bad[0] == '\0', bad);
  raggedPagedAttention(a);
  return env.Undefined();
}

}  // namespace

void registerPagedKv(Napi::Env env, Napi::Object exports) {
  exports.Set("pagedKvWrite", Napi::Function::New(env, PagedKvWrite));
  exports.Set("pagedAttentionRagged", Napi::Function::New(env, PagedAttentionRagged));
}

}  // namespace inferjit
