// N-API binding of the W8A8 / FP8 GEMM (w8a8.h) for eager calls: the cpu kernel of the w8_linear op
// (src/backends/cpu/kernels/w8a8.ts) runs the same kernel the plan's w8a8_gemm / fp8_gemm do, on
// weights packed by the same TypeScript packer (src/backends/cpu/plan/rules/w8a8.ts).
#include <napi.h>

#include <string>

#include "../common.h"
#include "../simd.h"
#include "quant_napi.h"
#include "w8a8.h"
#include "weight_napi.h"

namespace inferjit {
namespace {

// w8Gemm(fp8: boolean, a: Float32Array [M, K], M, K, N, weight: Uint8Array (packed), colSum: Int32Array | null,
//        scales: Float32Array [Np], bias: Float32Array | null, residual: Float32Array [M, N] | null,
//        out: Float32Array [M, N], act, group (int8: 0 or 32), actFp8 (fp8: round activations to E4M3))
Napi::Value W8Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool fp8 = flag(info[0]);
  auto a = viewOf<float>(env, info[1], "w8Gemm: a");
  const int64_t M = i64(info[2]), K = i64(info[3]), N = i64(info[4]);
  need(env, M >= 0 && K > 0 && N > 0, "w8Gemm: bad sizes");
  const int64_t Np = (N + kW8GroupRows - 1) / kW8GroupRows * kW8GroupRows;
  Bytes w = bytesOf(env, info[5], "w8Gemm: weight");
  const int64_t wantBytes = fp8 ? Np * K : (Np / kW8GroupRows) * ((K + 3) / 4) * 64;
  need(env, static_cast<int64_t>(w.bytes) >= wantBytes, "w8Gemm: packed weight has " + std::to_string(w.bytes) + " bytes, expected " + std::to_string(wantBytes));
  auto scales = viewOf<float>(env, info[7], "w8Gemm: scales");
  need(env, static_cast<int64_t>(scales.length) >= Np, "w8Gemm: scales needs one value per padded row");
  auto bias = viewOf<float>(env, info[8], "w8Gemm: bias", true);
  if (bias) need(env, static_cast<int64_t>(bias.length) >= N, "w8Gemm: bias needs N values");
  auto residual = viewOf<float>(env, info[9], "w8Gemm: residual", true);
  if (residual) need(env, static_cast<int64_t>(residual.length) >= M * N, "w8Gemm: residual needs M·N values");
  auto out = viewOf<float>(env, info[10], "w8Gemm: out");
  need(env, static_cast<int64_t>(a.length) >= M * K && static_cast<int64_t>(out.length) >= M * N, "w8Gemm: a needs M·K and out M·N values");
  const int act = static_cast<int>(i64(info[11]));
  const int group = static_cast<int>(i64(info[12]));
  need(env, act >= kActNone && act <= kActSilu, "w8Gemm: unknown activation");
  W8GemmArgs p;
  p.a = a.data;
  p.lda = K;
  p.weight = w.data;
  p.scales = scales.data;
  p.bias = bias.data;
  p.residual = residual.data;
  p.ldr = N;
  p.out = out.data;
  p.M = M;
  p.N = N;
  p.K = K;
  p.act = act;
  if (fp8) {
    p.actFp8 = flag(info[13]);
    fp8Gemm(p);
  } else {
    need(env, group == 0 || group == kW8ActGroup, "w8Gemm: group must be 0 or 32");
    const int64_t blocks = group ? (K + group - 1) / group : 1;
    auto colSum = viewOf<int32_t>(env, info[6], "w8Gemm: colSum");
    need(env, static_cast<int64_t>(colSum.length) >= blocks * Np, "w8Gemm: colSum is too small");
    p.colSum = colSum.data;
    p.group = group;
    w8a8Gemm(p);
  }
  return env.Undefined();
}

}  // namespace

void registerW8a8(Napi::Env env, Napi::Object exports) { exports.Set("w8Gemm", Napi::Function::New(env, W8Gemm)); }

}  // namespace inferjit
