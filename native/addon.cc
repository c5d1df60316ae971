// The N-API surface of the native backend. Every entry point takes the tensors' own typed
// arrays (no copies) plus sizes, checks extents, and runs a kernel on the shared thread pool.
// Kernel families live in gemm/, attention/ and ops/; this file only binds them.
#include <napi.h>

#include <cmath>
#include <string>

#include "common.h"
#include "gemm/gemm.h"
#include "gemm/gemm_bf16_napi.h"
#include "ops/hash.h"
#include "ops/ops.h"
#include "attention/attention.h"
#include "quant/quant_napi.h"
#include "llm/moe.h"
#include "llm/paged_napi.h"
#include "plan/plan.h"
#include "threadpool.h"

#ifndef INFERJIT_ARCH
#define INFERJIT_ARCH "unknown"
#endif

namespace inferjit {
namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", kIsa);
  o.Set("arch", INFERJIT_ARCH);
  o.Set("simdWidth", kW);
  o.Set("gemmTile", std::to_string(kMR) + "x" + std::to_string(kNR));
  o.Set("threads", numThreads());
  o.Set("physicalCores", physicalCores());
  return o;
}

// The count is checked as a double before any conversion: 2**32 + 3 must not wrap to 3.
Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  need(env, n >= 1 && n <= kMaxThreads && n == std::floor(n),
       "setNumThreads: n must be a whole number from 1 to " + std::to_string(kMaxThreads));
  try {
    setNumThreads(static_cast<int>(n));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("setNumThreads: ") + e.what());
  }
  return env.Undefined();
}
Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), numThreads()); }

// ---- GEMM ----

using PackedHandle = Napi::External<PackedB>;

// packB(b: Float32Array, K, N, transB) -> handle. B is [K, N], or [N, K] when transB.
Napi::Value PackBNative(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto b = viewOf<float>(env, info[0], "packB: b");
  const int64_t K = i64(info[1]), N = i64(info[2]);
  const bool transB = flag(info[3]);
  need(env, K >= 0 && N >= 0 && b.length >= static_cast<size_t>(K * N), "packB: b is smaller than K*N");
  auto pb = packB(b.data, transB ? K : N, transB, K, N).release();
  const int64_t bytes = static_cast<int64_t>(pb->bytes());
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return PackedHandle::New(env, pb, [bytes](Napi::Env e, PackedB* p) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
    delete p;
  });
}

int64_t maxOffset(const std::vector<int64_t>& offs) {
  int64_t m = 0;
  for (int64_t o : offs) m = std::max(m, o);
  return m;
}

// gemm(M, N, K, a, aOffsets, transA, b | packedHandle, bOffsets, transB, c, cOffsets,
//      bias, biasPerRow, act, residual, rOffsets, alpha, batchCount)
// All matrices are contiguous: A [M, K] (or [K, M] when transA), B [K, N] (or [N, K] when transB),
// C and residual [M, N]. Offsets (element units, one per batch) may be null for "all zero".
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t M = i64(info[0]), N = i64(info[1]), K = i64(info[2]);
  auto a = viewOf<float>(env, info[3], "gemm: a");
  auto aOff = ints(env, info[4]);
  const bool transA = flag(info[5]);
  const PackedB* packed = nullptr;
  View<float> b;
  if (info[6].IsExternal()) {
    packed = info[6].As<PackedHandle>().Data();
    need(env, packed->K == K && packed->N == N, "gemm: packed B has the wrong shape");
  } else {
    b = viewOf<float>(env, info[6], "gemm: b");
  }
  auto bOff = ints(env, info[7]);
  const bool transB = flag(info[8]);
  auto c = viewOf<float>(env, info[9], "gemm: c");
  auto cOff = ints(env, info[10]);
  auto bias = viewOf<float>(env, info[11], "gemm: bias", true);
  const bool biasPerRow = flag(info[12]);
  const int act = static_cast<int>(i64(info[13]));
  auto res = viewOf<float>(env, info[14], "gemm: residual", true);
  auto rOff = ints(env, info[15]);
  const float alpha = static_cast<float>(f64(info[16]));
  const int64_t count = i64(info[17]);

  need(env, M >= 0 && N >= 0 && K >= 0 && count >= 1, "gemm: bad sizes");
  auto checkOffs = [&](const std::vector<int64_t>& o, const char* name) {
    need(env, o.empty() || static_cast<int64_t>(o.size()) == count, std::string("gemm: ") + name + " offsets need one per batch");
  };
  checkOffs(aOff, "a");
  checkOffs(bOff, "b");
  checkOffs(cOff, "c");
  checkOffs(rOff, "residual");
  need(env, static_cast<size_t>(maxOffset(aOff) + M * K) <= a.length, "gemm: a is too small");
  if (!packed) need(env, static_cast<size_t>(maxOffset(bOff) + K * N) <= b.length, "gemm: b is too small");
  need(env, static_cast<size_t>(maxOffset(cOff) + M * N) <= c.length, "gemm: c is too small");
  if (bias) need(env, bias.length >= static_cast<size_t>(biasPerRow ? M : N), "gemm: bias is too small");
  if (res) need(env, static_cast<size_t>(maxOffset(rOff) + M * N) <= res.length, "gemm: residual is too small");
  need(env, act >= kActNone && act <= kActSilu, "gemm: unknown activation");

  Epilogue epi;
  epi.bias = bias.data;
  epi.biasPerRow = biasPerRow;
  epi.act = act;
  epi.residual = res.data;
  epi.ldr = N;
  epi.alpha = alpha;
  GemmBatch batch;
  batch.count = count;
  batch.aOffsets = aOff.empty() ? nullptr : aOff.data();
  batch.bOffsets = bOff.empty() ? nullptr : bOff.data();
  batch.cOffsets = cOff.empty() ? nullptr : cOff.data();
  batch.rOffsets = rOff.empty() ? nullptr : rOff.data();
  gemm(M, N, K, a.data, transA ? M : K, transA, b.data, transB ? K : N, transB, packed, c.data, N, epi, batch);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const char* missing = nullptr;
  if (!cpuSupportsBuild(&missing)) {
    throw Napi::Error::New(env, std::string("inferjit native addon was built for ") + missing +
                                    " but this CPU lacks it; rebuild with `npm run build:native` on this machine");
  }
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads));
  exports.Set("packB", Napi::Function::New(env, PackBNative));
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  registerOps(env, exports);
  registerAttention(env, exports);
  registerBf16(env, exports);
  registerQuant(env, exports);
  registerW8a8(env, exports);
  registerMoe(env, exports);
  registerPagedKv(env, exports);
  registerPlan(env, exports);
  registerHash(env, exports);
  return exports;
}

}  // namespace
}  // namespace inferjit

static Napi::Object InitInferjit(Napi::Env env, Napi::Object exports) { return inferjit::Init(env, exports); }
NODE_API_MODULE(inferjit_native, InitInferjit)
