// Attention over a paged KV cache (layout below), grouped-query heads, causal.
//
// KV page layout (one K and one V array per layer):  [numBlocks][nKv][blockSize][headDim], fp32
// or f16 bits. Token position p of a sequence lives in page table[p / blockSize], slot
// p % blockSize, so one kv head's keys of a page are contiguous (headDim·blockSize values).
#pragma once
#include <cstdint>

namespace inferjit {

struct PagedKv {
  void* k = nullptr;
  void* v = nullptr;
  bool f16 = false;
  int64_t blockSize = 16, nKv = 1, headDim = 64;
  const int32_t* table = nullptr;  // page of each logical block of the sequence
  int64_t offset(int64_t pos, int64_t kvh) const {
    return ((static_cast<int64_t>(table[pos / blockSize]) * nKv + kvh) * blockSize + pos % blockSize) * headDim;
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

}  // namespace inferjit
