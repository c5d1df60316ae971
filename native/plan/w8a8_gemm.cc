// The plan's W8A8 and FP8 GEMM kernels (w8a8_gemm, fp8_gemm): descriptors decoded by the generated
// kernel table, run by native/quant/w8a8.cc on weights packed at lowering
// (src/backends/cpu/plan/rules/w8a8.ts; layouts in native/quant/w8a8.h).
#include "../quant/w8a8.h"
#include "kernels.h"

namespace inferjit {
namespace kt {

namespace {
template <typename D>
W8GemmArgs argsOf(const D& d) {
  W8GemmArgs p;
  p.a = reinterpret_cast<const float*>(d.a);
  p.lda = d.lda;
  p.weight = d.weight;
  p.scales = reinterpret_cast<const float*>(d.scales);
  p.bias = reinterpret_cast<const float*>(d.bias);
  p.residual = reinterpret_cast<const float*>(d.residual);
  p.ldr = d.ldr;
  p.out = reinterpret_cast<float*>(d.out);
  p.M = d.M;
  p.N = d.N;
  p.K = d.K;
  p.act = static_cast<int>(d.act);
  return p;
}
}  // namespace

void runW8a8Gemm(const W8a8GemmDesc& d, const plan::KernelContext&) {
  W8GemmArgs p = argsOf(d);
  p.colSum = reinterpret_cast<const int32_t*>(d.colSum);
  p.group = static_cast<int>(d.group);
  w8a8Gemm(p);
}

void runFp8Gemm(const Fp8GemmDesc& d, const plan::KernelContext&) {
  W8GemmArgs p = argsOf(d);
  p.actFp8 = d.actFp8 != 0;
  fp8Gemm(p);
}

}  // namespace kt
}  // namespace inferjit
