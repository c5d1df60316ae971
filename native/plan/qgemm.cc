// The plan's quantized GEMM/GEMV kernel: out = act(A·Wᵀ + bias) + residual with W a constant in one
// of the weight-only formats of native/quant/qmatmul.h (GGUF Q8_0/Q4_0 and their 16-row packed
// forms, Q4_K/Q5_K/Q6_K, inferjit's int8 per-channel and int4 group-wise; int8/int4 scales follow
// the weight bytes in the same constant). matmulWeights picks the kernel by format and row count:
// the register-tile GEMV for decode-sized M, row blocks of 64 for prefill, VNNI/AMX for the packed
// formats where the CPU has them. Activations are quantized to int8 blocks once per call, by the
// first tasks of the GEMM's pool job, for the formats with integer kernels; the K-quant kernels
// read fp32 activations. Bias, activation
// and residual are applied inside the GEMM's own pool job, tile by tile.
#include <algorithm>
#include <vector>

#include "../quant/qmatmul.h"
#include "../simd.h"
#include "../threadpool.h"
#include "kernels.h"

namespace inferjit {
namespace kt {

namespace {
thread_local std::vector<float> tQgemmX;
thread_local std::vector<BlockQ8> tQgemmXq;
}  // namespace

void runQgemm(const QgemmDesc& d, const plan::KernelContext&) {
  WeightRef w;
  w.format = static_cast<int>(d.format);
  w.data = d.weight;
  w.N = d.N;
  w.K = d.K;
  w.group = static_cast<int>(d.group);
  if (weightScaleCount(w.format, w.N, w.K, w.group) > 0) {
    w.scales = reinterpret_cast<const float*>(d.weight + weightDataBytes(w.format, w.N, w.K));
  }
  const int64_t M = d.M, K = d.K;
  const float* x = reinterpret_cast<const float*>(d.a);
  if (d.lda != K && M > 1) {
    // the weight kernels read rows at stride K
    std::vector<float>& xc = tQgemmX;
    xc.resize(static_cast<size_t>(M * K));
    float* xd = xc.data();
    parallelFor(M, [&](int64_t m, int) { std::copy(x + m * d.lda, x + m * d.lda + K, xd + m * K); });
    x = xd;
  }
  // the activations are quantized to int8 blocks by the GEMM's own pool job (its first tasks)
  BlockQ8* xqFill = nullptr;
  if (w.quantized() && !isKQuant(w.format)) {
    std::vector<BlockQ8>& q = tQgemmXq;
    q.resize(static_cast<size_t>(M * (K / kQK)));
    xqFill = q.data();
  }
  float* y = reinterpret_cast<float*>(d.out);
  float* ys[1] = {y};
  // bias, activation and residual are applied by the task that computed each tile (same pool job)
  MatmulEpilogue ep;
  ep.bias = reinterpret_cast<const float*>(d.bias);
  ep.residual = reinterpret_cast<const float*>(d.residual);
  ep.ldr = d.ldr;
  ep.act = static_cast<int>(d.act);
  matmulWeights(&w, 1, M, x, nullptr, ys, ep.active() ? &ep : nullptr, xqFill);
}

}  // namespace kt
}  // namespace inferjit
