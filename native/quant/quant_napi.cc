// N-API bindings of the weight-only quantized kernels (qmatmul.h): the matmul the eager
// quant_linear kernel calls (src/backends/cpu/kernels/quantized.ts), load-time weight quantization
// (src/llm/models/weight-params.ts) and the 16-row interleaving the plan's qgemm rule reads.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../common.h"
#include "../simd.h"
#include "../threadpool.h"
#include "fake_quant.h"
#include "gptq.h"
#include "qmatmul.h"
#include "quant_napi.h"
#include "weight_napi.h"

namespace inferjit {
namespace {

// quantMatmul(weight: WeightSpec, x: Float32Array, M, y: Float32Array): y[M, N] = x[M, K]·Wᵀ
Napi::Value QuantMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WeightRef w = weightOf(env, info[0], "quantMatmul: weight", -1, -1);
  auto x = viewOf<float>(env, info[1], "quantMatmul: x");
  const int64_t M = i64(info[2]);
  auto y = viewOf<float>(env, info[3], "quantMatmul: y");
  need(env, M >= 0 && x.length >= static_cast<size_t>(M * w.K), "quantMatmul: x is smaller than M·K");
  need(env, y.length >= static_cast<size_t>(M * w.N), "quantMatmul: y is smaller than M·N");
  std::vector<BlockQ8> xq;
  if (w.quantized()) {
    xq.resize(M * (w.K / kQK));
    quantizeRowsQ8(x.data, M, w.K, xq.data());
  }
  float* ys[1] = {y.data};
  matmulWeights(&w, 1, M, x.data, w.quantized() ? xq.data() : nullptr, ys);
  return env.Undefined();
}

// quantizeWeight(format, src: Float32Array | Uint16Array (f16/bf16 bits), srcFormat, N, K, group, data: Uint8Array,
//                scales: Float32Array | null). format: q8_0, q4_0 (ggml's reference rounding), int8, int4.
Napi::Value QuantizeWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int format = static_cast<int>(i64(info[0]));
  const int srcFormat = static_cast<int>(i64(info[2]));
  const int64_t N = i64(info[3]), K = i64(info[4]);
  const int group = static_cast<int>(i64(info[5]));
  need(env, format >= kWQ8_0 && format <= kWI4, "quantizeWeight: target format must be q8_0, q4_0, int8 or int4");
  need(env, srcFormat >= kWF32 && srcFormat <= kWBF16, "quantizeWeight: source must be f32, f16 or bf16");
  if (const char* bad = checkWeight(format, K, group)) throw Napi::RangeError::New(env, std::string("quantizeWeight: ") + bad);
  Bytes src = bytesOf(env, info[1], "quantizeWeight: src");
  need(env, src.bytes >= weightDataBytes(srcFormat, N, K), "quantizeWeight: src is smaller than N·K");
  Bytes dst = bytesOf(env, info[6], "quantizeWeight: data");
  need(env, dst.bytes >= weightDataBytes(format, N, K), "quantizeWeight: data is too small");
  float* scales = nullptr;
  if (weightScaleCount(format, N, K, group) > 0) {
    auto s = viewOf<float>(env, info[7], "quantizeWeight: scales");
    need(env, s.length >= weightScaleCount(format, N, K, group), "quantizeWeight: scales is too small");
    scales = s.data;
  }
  WeightRef in;
  in.format = srcFormat;
  in.data = src.data;
  in.N = N;
  in.K = K;
  uint8_t* out = const_cast<uint8_t*>(dst.data);
  const int64_t nb = K / kQK;
  parallelFor(N, [&](int64_t n, int) {
    std::vector<float> row(K);
    dequantRow(in, n, row.data());
    if (format == kWI8) {
      float amax = 0;
      for (float v : row) amax = std::max(amax, std::fabs(v));
      const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
      scales[n] = d;
      int8_t* q = reinterpret_cast<int8_t*>(out) + n * K;
      for (int64_t k = 0; k < K; k++) q[k] = static_cast<int8_t>(std::nearbyint(row[k] * id));
      return;
    }
    if (format == kWQ8_0) {
      for (int64_t b = 0; b < nb; b++) {
        const float* xb = row.data() + b * kQK;
        float amax = 0;
        for (int j = 0; j < kQK; j++) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint8_t* p = out + (n * nb + b) * 34;
        const uint16_t dh = floatToHalf(d);
        std::memcpy(p, &dh, 2);
        for (int j = 0; j < kQK; j++) p[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(xb[j] * id)));
      }
      return;
    }
    // Q4_0 and int4: d = (value of largest magnitude) / −8, q = min(15, (int)(x/d + 8.5)), as ggml.
    const int64_t gsz = format == kWQ4_0 ? kQK : group;
    for (int64_t g0 = 0; g0 < K; g0 += gsz) {
      float amax = 0, mx = 0;
      for (int64_t j = 0; j < gsz; j++) {
        const float v = row[g0 + j];
        if (std::fabs(v) > amax) {
          amax = std::fabs(v);
          mx = v;
        }
      }
      const float d = mx / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
      for (int64_t b0 = g0; b0 < g0 + gsz; b0 += kQK) {
        uint8_t* qs;
        if (format == kWQ4_0) {
          uint8_t* p = out + (n * nb + b0 / kQK) * 18;
          const uint16_t dh = floatToHalf(d);
          std::memcpy(p, &dh, 2);
          qs = p + 2;
        } else {
          qs = out + n * (K / 2) + (b0 / kQK) * 16;
        }
        for (int j = 0; j < 16; j++) {
          const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(row[b0 + j] * id + 8.5f)));
          const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(row[b0 + 16 + j] * id + 8.5f)));
          qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
      }
      if (format == kWI4) scales[n * (K / group) + g0 / group] = d;
    }
  });
  return env.Undefined();
}

// packWeight(weight: WeightSpec) -> Uint8Array | null: the weight in its 16-row interleaved layout
// (qmatmul.h), or null when its format has none.
Napi::Value PackWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WeightRef w = weightOf(env, info[0], "packWeight: weight", -1, -1);
  const int packed = packedFormatOf(w.format);
  if (packed < 0) return env.Null();
  Napi::Uint8Array out = Napi::Uint8Array::New(env, weightDataBytes(packed, w.N, w.K));
  packWeight(w, out.Data());
  return out;
}

// fakeQuantWeight(w: Float32Array [N, K], colScale: Float64Array [K] | null, N, K, format (0 int8, 1 int4,
//                 2 fp8), group, out: Float32Array [N, K] | null, codes: Float32Array [N, K] | null,
//                 scales: Float32Array | null): fake_quant.h.
Napi::Value FakeQuantWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto w = viewOf<float>(env, info[0], "fakeQuantWeight: w");
  const int64_t N = i64(info[2]), K = i64(info[3]);
  const int format = static_cast<int>(i64(info[4]));
  const int64_t group = i64(info[5]);
  auto out = viewOf<float>(env, info[6], "fakeQuantWeight: out", true);
  auto codes = viewOf<float>(env, info[7], "fakeQuantWeight: codes", true);
  auto scales = viewOf<float>(env, info[8], "fakeQuantWeight: scales", true);
  need(env, N >= 0 && K > 0, "fakeQuantWeight: bad sizes");
  need(env, format >= kFqInt8 && format <= kFqFp8, "fakeQuantWeight: format must be 0 (int8), 1 (int4) or 2 (fp8)");
  need(env, format != kFqInt4 || (group > 0 && K % group == 0), "fakeQuantWeight: int4 needs a group that divides K");
  need(env, w.length >= static_cast<size_t>(N * K), "fakeQuantWeight: w needs N·K values");
  need(env, (!out || out.length >= static_cast<size_t>(N * K)) && (!codes || codes.length >= static_cast<size_t>(N * K)), "fakeQuantWeight: out and codes need N·K values");
  need(env, !scales || scales.length >= static_cast<size_t>(N * (format == kFqInt4 ? K / group : 1)), "fakeQuantWeight: scales needs one value per row (int4: per group)");
  const double* colScale = nullptr;
  if (!info[1].IsNull() && !info[1].IsUndefined()) {
    need(env, info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array, "fakeQuantWeight: colScale must be a Float64Array or null");
    Napi::Float64Array s = info[1].As<Napi::Float64Array>();
    need(env, s.ElementLength() >= static_cast<size_t>(K), "fakeQuantWeight: colScale needs K values");
    colScale = s.Data();
  }
  fakeQuantWeight(w.data, colScale, N, K, format, group, out.data, codes.data, scales.data);
  return env.Undefined();
}

// gptqInverseFactor(H: Float64Array [K, K], K, U: Float64Array [K, K]) -> -1 | column: gptq.h.
Napi::Value GptqInverseFactor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto H = viewOf<double>(env, info[0], "gptqInverseFactor: H");
  const int64_t K = i64(info[1]);
  auto U = viewOf<double>(env, info[2], "gptqInverseFactor: U");
  need(env, K > 0 && H.length >= static_cast<size_t>(K * K) && U.length >= static_cast<size_t>(K * K), "gptqInverseFactor: H and U need K·K values");
  return Napi::Number::New(env, static_cast<double>(gptqInverseFactor(H.data, K, U.data)));
}

// gptqColumns(W: Float64Array [N, K], N, K, U: Float64Array [K, K], scales: Float32Array [N, K / groupSize],
//             groupSize, perm: Int32Array [K], format (0 int8, 1 int4, 2 fp8), block, codes: Float32Array [N, K]): gptq.h.
Napi::Value GptqColumns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto W = viewOf<double>(env, info[0], "gptqColumns: W");
  const int64_t N = i64(info[1]), K = i64(info[2]);
  auto U = viewOf<double>(env, info[3], "gptqColumns: U");
  auto scales = viewOf<float>(env, info[4], "gptqColumns: scales");
  const int64_t groupSize = i64(info[5]);
  auto perm = viewOf<int32_t>(env, info[6], "gptqColumns: perm");
  const int format = static_cast<int>(i64(info[7]));
  const int64_t block = i64(info[8]);
  auto codes = viewOf<float>(env, info[9], "gptqColumns: codes");
  need(env, N >= 0 && K > 0 && block > 0 && groupSize > 0 && K % groupSize == 0, "gptqColumns: bad sizes (groupSize must divide K)");
  need(env, format >= kFqInt8 && format <= kFqFp8, "gptqColumns: format must be 0 (int8), 1 (int4) or 2 (fp8)");
  need(env, W.length >= static_cast<size_t>(N * K) && codes.length >= static_cast<size_t>(N * K), "gptqColumns: W and codes need N·K values");
  need(env, U.length >= static_cast<size_t>(K * K) && perm.length >= static_cast<size_t>(K), "gptqColumns: U needs K·K values and perm K");
  need(env, scales.length >= static_cast<size_t>(N * (K / groupSize)), "gptqColumns: scales needs N·K/groupSize values");
  for (int64_t i = 0; i < K; i++) need(env, perm.data[i] >= 0 && perm.data[i] < K, "gptqColumns: perm holds a column outside [0, K)");
  gptqColumns(W.data, N, K, U.data, scales.data, groupSize, perm.data, format, block, codes.data);
  return env.Undefined();
}

}  // namespace

void registerQuant(Napi::Env env, Napi::Object exports) {
  exports.Set("quantMatmul", Napi::Function::New(env, QuantMatmul));
  exports.Set("quantizeWeight", Napi::Function::New(env, QuantizeWeight));
  exports.Set("packWeight", Napi::Function::New(env, PackWeight));
  exports.Set("fakeQuantWeight", Napi::Function::New(env, FakeQuantWeight));
  exports.Set("gptqInverseFactor", Napi::Function::New(env, GptqInverseFactor));
  exports.Set("gptqColumns", Napi::Function::New(env, GptqColumns));
  // Whether packing Q8_0/Q4_0 weights speeds this build up (AVX-512 VNNI kernels).
  exports.Set("llmPackedFast", Napi::Boolean::New(env, packedKernelsFast()));
  // Which integer-dot family the K-quant kernels compiled to (kquants.cc).
  exports.Set("kquantIsa", Napi::String::New(env, kquantIsa()));
}

}  // namespace inferjit
