// Fused scaled-dot-product attention with bf16 products: S = bf16(Q)·bf16(K)ᵀ and O += bf16(P)·bf16(V)
// accumulate in fp32; the online softmax (max, exp, sum, rescale) stays fp32. Same semantics as the
// fp32 kernel (attention.cc): causal aligned bottom-right, bool or additive masks by strides, GQA.
#pragma once
#include <napi.h>

#include <cstdint>

#include "../gemm/gemm_bf16.h"

namespace inferjit {

struct AttentionProblem {
  const float *q = nullptr, *k = nullptr, *v = nullptr;  // [B, Hq, Lq, D], [B, Hkv, Lk, D], [B, Hkv, Lk, Dv]
  const float* maskF = nullptr;                          // additive mask, or
  const uint8_t* maskB = nullptr;                        // bool mask (0 = hidden); element (b,h,i,j) at
  int64_t maskStrides[4] = {0, 0, 0, 0};                 //   b·s0 + h·s1 + i·s2 + j·s3
  float* out = nullptr;                                  // [B, Hq, Lq, Dv]
  int64_t B = 0, Hq = 0, Hkv = 0, Lq = 0, Lk = 0, D = 0, Dv = 0;
  float scale = 1.0f;
  bool causal = false;
};

// Runs on the thread pool; `kernel` must be resolved (kAvx512 or kAmx).
void attentionBf16(const AttentionProblem& p, Bf16Kernel kernel);

void registerAttentionBf16(Napi::Env env, Napi::Object exports);

}  // namespace inferjit
