// Mixture-of-experts FFN (Mixtral): each token is routed to its top-k experts (softmax over the k
// largest router logits, i.e. Mixtral's softmax-then-renormalize), every expert is a SwiGLU MLP
// down(silu(gate·x) ⊙ up·x), and a token's output is the routing-weighted sum of its experts' outputs.
// The tokens routed to each expert are gathered into one contiguous block, so each expert runs as
// one GEMM over its tokens (a grouped GEMM); the tasks of one parallel job are (expert, column tile)
// pairs, so decode (2 active experts) and prefill (all experts busy) both fill the pool.
// Shared by the plan kernel (native/plan/llm_kernels.cc) and the eager addon call `moe`.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

#include "../quant/qmatmul.h"

namespace inferjit {

// E experts' [N, K] weights stacked row-wise into one [E·N, K] weight of one format (qmatmul.h
// layouts: f32/f16/bf16 values or GGUF/inferjit quantized blocks, int8/int4 scales after all blocks).
struct ExpertWeights {
  int format = kWF32;
  const uint8_t* bytes = nullptr;
  int64_t E = 0, N = 0, K = 0;
  int group = 32;
  // Expert e's [N, K] weight, read in place.
  WeightRef expert(int64_t e) const;
  // Bytes the whole stack occupies (blocks + scales).
  size_t totalBytes() const;
};

struct MoeArgs {
  const float* x = nullptr;       // [T, H]
  const float* logits = nullptr;  // [T, E] router logits
  float* out = nullptr;           // [T, H]
  int64_t T = 0, H = 0, F = 0, E = 0, topK = 2;
  ExpertWeights gate, up;         // [E, F, H]
  ExpertWeights down;             // [E, H, F]
};

// Checks formats and shapes (not pointers); returns "" or a message written into buf.
const char* checkMoe(const MoeArgs& a, char* buf, size_t n);
void moeForward(const MoeArgs& a);

// Registers the eager binding `moe` on the addon.
void registerMoe(Napi::Env env, Napi::Object exports);

}  // namespace inferjit
