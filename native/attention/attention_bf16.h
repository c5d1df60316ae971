// Fused scaled-dot-product attention with bf16 products: S = bf16(Q)·bf16(K)ᵀ and O += bf16(P)·bf16(V)
// accumulate in fp32; the online softmax (max, exp, sum, rescale) stays fp32. Same semantics as the
// fp32 kernel (attention.cc): causal aligned bottom-right, bool or additive masks by strides, GQA.
#pragma once
#include <napi.h>

#include <cstdint>

#include "../gemm/gemm_bf16.h"

namespace inferjit {

// q, k, v and out are strided views, as in the fp32 kernel (AttnArgs): element (b, h, i, d) of q is at
// q[b·qs[0] + h·qs[1] + i·qs[2] + d] (unit stride along the head dim), and likewise for k, v, out. So
// the plan can pass views straight into a fused QKV GEMM's output ([B, L, 3, H, D]) and write
// [B, L, H, Dv] rows for the head-merge reshape, with no layout copies. contiguous() sets the
// strides of dense [B, H, L, D] tensors.
struct AttentionProblem {
  const float *q = nullptr, *k = nullptr, *v = nullptr;  // [B, Hq, Lq, D], [B, Hkv, Lk, D], [B, Hkv, Lk, Dv] (logical)
  const float* maskF = nullptr;                          // additive mask, or
  const uint8_t* maskB = nullptr;                        // bool mask (0 = hidden); element (b,h,i,j) at
  int64_t maskStrides[4] = {0, 0, 0, 0};                 //   b·s0 + h·s1 + i·s2 + j·s3
  float* out = nullptr;                                  // [B, Hq, Lq, Dv] (logical)
  int64_t B = 0, Hq = 0, Hkv = 0, Lq = 0, Lk = 0, D = 0, Dv = 0;
  int64_t qs[3] = {0, 0, 0}, ks[3] = {0, 0, 0}, vs[3] = {0, 0, 0}, os[3] = {0, 0, 0};  // batch, head, row strides
  float scale = 1.0f;
  bool causal = false;

  void contiguous() {
    const int64_t q3[3] = {Hq * Lq * D, Lq * D, D}, k3[3] = {Hkv * Lk * D, Lk * D, D}, v3[3] = {Hkv * Lk * Dv, Lk * Dv, Dv},
                  o3[3] = {Hq * Lq * Dv, Lq * Dv, Dv};
    for (int i = 0; i < 3; i++) qs[i] = q3[i], ks[i] = k3[i], vs[i] = v3[i], os[i] = o3[i];
  }
};

// Runs on the thread pool; `kernel` must be resolved (kAvx512 or kAmx).
void attentionBf16(const AttentionProblem& p, Bf16Kernel kernel);

void registerAttentionBf16(Napi::Env env, Napi::Object exports);

}  // namespace inferjit
