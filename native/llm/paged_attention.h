// Attention over a paged KV cache (layout below), grouped-query heads, causal.
//
// KV page layout (one K and one V array per layer):  [numBlocks][nKv][blockSize][headDim], fp32
// or f16 bits. Token position p of a sequence lives in page table[p / blockSize], slot
// p % blockSize, so one kv head's keys of a page are contiguous (headDim·blockSize values).
// int8 pools ([numBlocks][nKv][blockSize][headDim + 4] bytes, src/ops/kv-int8.ts): each (page,
// kv head) tile holds its blockSize rows of headDim int8 values, then the rows' blockSize f32
// scales; a row is quantized at write with its own absmax scale and dequantized in registers
// where attention reads it.
#pragma once
#include <cstdint>

namespace inferjit {

// Storage of a page pool; the values are the plan's kv dtype codes (kernel table).
enum class KvDtype : int { f32 = 0, f16 = 1, i8 = 2 };

struct PagedKv {
  void* k = nullptr;
  void* v = nullptr;
  KvDtype dtype = KvDtype::f32;
  int64_t blockSize = 16, nKv = 1, headDim = 64;
  const int32_t* table = nullptr;  // page of each logical block of the sequence
  // f32/f16 pools: element offset of the row
  int64_t offset(int64_t pos, int64_t kvh) const {
    return ((static_cast<int64_t>(table[pos / blockSize]) * nKv + kvh) * blockSize + pos % blockSize) * headDim;
  }
  // int8 pools: byte offset of the (page, kv head) tile holding position pos
  int64_t tile(int64_t pos, int64_t kvh) const {
    return (static_cast<int64_t>(table[pos / blockSize]) * nKv + kvh) * blockSize * (headDim + 4);
  }
};

// Stores K and V rows [T][nKv·headDim] for positions start..start+T-1.
void pagedStore(const PagedKv& kv, const float* k, const float* v, int64_t T, int64_t start);

// out[T][nHeads·headDim] = softmax(q·Kᵀ·scale, causal) · V, query t at position start + t attending
// to positions 0..start+t. T == 1 (decode) splits each head's keys into chunks run on different
// threads and merges their partial softmaxes (flash-decoding); T > 1 runs one task per (kv head,
// tile of queries) that packs the visible K/V rows once and computes the tile's scores and output
// with the fp32 GEMM microkernel, sharing every K/V row across the kv head's query heads.
void pagedAttention(const PagedKv& kv, const float* q, float* out, int64_t T, int64_t start, int64_t nHeads,
                    float scale);

// A ragged step (vLLM style): the tokens of many sequences flattened to q/out [tokens][heads·headDim].
// Sequence s owns tokens queryStart[s] .. queryStart[s+1]-1 (n of them) at positions
// seqLens[s]-n .. seqLens[s]-1, its keys in pages tables[s·maxBlocks ..]. window > 0 keeps the
// last `window` keys of each query, softcap > 0 maps scores to softcap·tanh(score/softcap).
// Tokens of no sequence (padding) get zeros. The metadata must have been checked
// (checkRagged): this function trusts it.
struct RaggedAttention {
  const float* q = nullptr;
  float* out = nullptr;
  void* k = nullptr;
  void* v = nullptr;
  const int32_t* tables = nullptr;
  const int32_t* seqLens = nullptr;
  const int32_t* queryStart = nullptr;
  int64_t tokens = 0, heads = 1, kvHeads = 1, headDim = 64, blockSize = 16, numBlocks = 0, seqs = 0, maxBlocks = 0, window = 0;
  float scale = 1.0f, softcap = 0.0f;
  KvDtype dtype = KvDtype::f32;  // storage of both pools
};
// "" when the metadata is consistent with the shapes, else what is wrong (first bad entry).
const char* checkRagged(const RaggedAttention& a, char* buf, int bufLen);
// Prefill chunks without window/softcap run the GEMM tile path per sequence; every other query
// (decode tokens, windowed or soft-capped ones) runs as (query, kv head, key chunk) tasks whose
// partial softmaxes are merged (flash-decoding), so a few long contexts still fill every thread.
void raggedPagedAttention(const RaggedAttention& a);
// kv_write: rows [tokens][kvHeads·headDim] into pool slots (slot -1 skipped; checked by the caller);
// an f16 pool gets the rows rounded to nearest even, an int8 pool each row quantized with its own
// absmax scale (q = round-half-even(x·(127/absmax)), scale = absmax/127, in f32).
void pagedWriteSlots(void* pool, KvDtype dtype, const float* rows, const int32_t* slots, int64_t tokens, int64_t kvHeads, int64_t headDim,
                     int64_t blockSize);

}  // namespace inferjit
