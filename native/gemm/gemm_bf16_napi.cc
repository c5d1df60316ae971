// N-API bindings of the reduced-precision kernels: capability report, bf16 / f16 weight packing
// (handles tagged by type, so a fp32 PackedB can never be read as bf16 panels), export/import of
// packed panels for the disk cache, the two GEMMs with the fp32 GEMM's argument conventions, and
// bf16 attention (registered from attention_bf16.cc).
#include "gemm_bf16_napi.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "../attention/attention_bf16.h"
#include "../common.h"
#include "gemm_bf16.h"

namespace inferjit {
namespace {

const napi_type_tag kBf16Tag = {0x6a1f0c3e5b2d4e71ULL, 0x9c8b7a6f5e4d3c2bULL};
const napi_type_tag kF16Tag = {0x3b5e7d9f1a2c4e6bULL, 0x8d0f2a4c6e8b1d3fULL};

template <typename T>
Napi::Value wrap(Napi::Env env, std::unique_ptr<T> owned, const napi_type_tag& tag) {
  T* raw = owned.release();
  const int64_t bytes = static_cast<int64_t>(raw->bytes());
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  auto ext = Napi::External<T>::New(env, raw, [bytes](Napi::Env e, T* p) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
    delete p;
  });
  napi_type_tag_object(env, ext, &tag);
  return ext;
}

template <typename T>
const T* unwrap(Napi::Env env, const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  bool ok = false;
  if (v.IsExternal()) napi_check_object_type_tag(env, v, &tag, &ok);
  if (!ok) throw Napi::TypeError::New(env, std::string(what) + ": expected a handle from the matching pack function");
  return v.As<Napi::External<T>>().Data();
}

Bf16Kernel kernelArg(Napi::Env env, const Napi::Value& v, const char* what) {
  Bf16Kernel requested = bf16KernelFromEnv();
  if (v.IsNumber() && i64(v) != 0) requested = static_cast<Bf16Kernel>(i64(v));
  Bf16Kernel k;
  std::string why;
  if (!resolveBf16Kernel(requested, &k, &why)) throw Napi::Error::New(env, std::string(what) + ": " + why);
  return k;
}

Napi::Value Bf16Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bf16Caps& c = bf16Caps();
  Napi::Object o = Napi::Object::New(env);
  o.Set("avx512f", c.avx512f);
  o.Set("avx512bf16", c.avx512bf16);
  o.Set("amxBf16", c.amxBf16);
  o.Set("amxUsable", c.amxUsable);
  o.Set("f16c", c.f16c);
  Bf16Kernel k;
  std::string why;
  if (resolveBf16Kernel(bf16KernelFromEnv(), &k, &why)) {
    o.Set("kernel", bf16KernelName(k));
    o.Set("missing", env.Null());
  } else {
    o.Set("kernel", env.Null());
    o.Set("missing", why);
  }
  return o;
}

// bf16SpeedProbe(kernel, M, K, N, rounds): times the bf16 GEMM against the fp32 GEMM (see
// probeBf16Speed); the caller (src/backends/cpu/bf16.ts) caches the answer per process.
Napi::Value Bf16SpeedProbe_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bf16Kernel k = kernelArg(env, info[0], "bf16SpeedProbe");
  const int64_t M = i64(info[1]), K = i64(info[2]), N = i64(info[3]), rounds = i64(info[4]);
  need(env, M > 0 && K > 0 && N > 0 && rounds > 0, "bf16SpeedProbe: M, K, N and rounds must be positive");
  const Bf16SpeedProbe r = probeBf16Speed(k, M, K, N, static_cast<int>(rounds));
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernel", bf16KernelName(k));
  o.Set("bf16Ms", r.bf16Ms);
  o.Set("fp32Ms", r.fp32Ms);
  return o;
}

// Source matrix of packBf16/packF16: Float32Array (type 0) or Uint16Array raw bits (1 bf16, 2 f16).
const void* sourceOf(Napi::Env env, const Napi::Value& v, SrcType type, size_t need_, const char* what) {
  if (type == SrcType::kF32) {
    auto b = viewOf<float>(env, v, what);
    need(env, b.length >= need_, std::string(what) + " is smaller than K*N");
    return b.data;
  }
  auto b = viewOf<uint16_t>(env, v, what);
  need(env, b.length >= need_, std::string(what) + " is smaller than K*N");
  return b.data;
}

// packBf16(b, srcType, K, N, transB) -> handle. B is [K, N], or [N, K] when transB.
Napi::Value PackBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto type = static_cast<SrcType>(i64(info[1]));
  const int64_t K = i64(info[2]), N = i64(info[3]);
  const bool transB = flag(info[4]);
  need(env, type == SrcType::kF32 || type == SrcType::kBf16 || type == SrcType::kF16, "packBf16: unknown source type");
  need(env, K >= 0 && N >= 0, "packBf16: bad sizes");
  if (!bf16Caps().avx512f) throw Napi::Error::New(env, "packBf16: packing bf16 weights needs AVX-512 (F/BW/DQ/VL); this CPU lacks it");
  const void* src = sourceOf(env, info[0], type, static_cast<size_t>(K * N), "packBf16: b");
  return wrap(env, packBBf16(src, type, transB ? K : N, transB, K, N), kBf16Tag);
}

// packF16(b, srcType (0 f32 | 2 f16), K, N, transB) -> handle.
Napi::Value PackF16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto type = static_cast<SrcType>(i64(info[1]));
  const int64_t K = i64(info[2]), N = i64(info[3]);
  const bool transB = flag(info[4]);
  need(env, type == SrcType::kF32 || type == SrcType::kF16, "packF16: source must be f32 or f16");
  need(env, K >= 0 && N >= 0, "packF16: bad sizes");
  if (!bf16Caps().avx512f || !bf16Caps().f16c)
    throw Napi::Error::New(env, "packF16: fp16 weight storage needs AVX-512 (F/BW/DQ/VL) and F16C; this CPU lacks them");
  const void* src = sourceOf(env, info[0], type, static_cast<size_t>(K * N), "packF16: b");
  return wrap(env, packBF16(src, type, transB ? K : N, transB, K, N), kF16Tag);
}

int64_t maxOffset(const std::vector<int64_t>& offs) {
  int64_t m = 0;
  for (int64_t o : offs) m = std::max(m, o);
  return m;
}

struct GemmArgs {
  int64_t M, N, K, count;
  View<float> a, c, bias, res;
  std::vector<int64_t> aOff, cOff, rOff;
  bool transA, biasPerRow;
  Epilogue epi;
  GemmBatch batch;
};

// Shared argument parsing of gemmBf16/gemmF16:
// (M, N, K, a, aOffsets, transA, handle, c, cOffsets, bias, biasPerRow, act, residual, rOffsets, alpha, batchCount)
void parseGemm(const Napi::CallbackInfo& info, const char* name, int64_t packedK, int64_t packedN, GemmArgs& g) {
  Napi::Env env = info.Env();
  const std::string n(name);
  g.M = i64(info[0]), g.N = i64(info[1]), g.K = i64(info[2]);
  g.a = viewOf<float>(env, info[3], (n + ": a").c_str());
  g.aOff = ints(env, info[4]);
  g.transA = flag(info[5]);
  g.c = viewOf<float>(env, info[7], (n + ": c").c_str());
  g.cOff = ints(env, info[8]);
  g.bias = viewOf<float>(env, info[9], (n + ": bias").c_str(), true);
  g.biasPerRow = flag(info[10]);
  const int act = static_cast<int>(i64(info[11]));
  g.res = viewOf<float>(env, info[12], (n + ": residual").c_str(), true);
  g.rOff = ints(env, info[13]);
  const float alpha = static_cast<float>(f64(info[14]));
  g.count = i64(info[15]);
  need(env, g.M >= 0 && g.N >= 0 && g.K >= 0 && g.count >= 1, n + ": bad sizes");
  need(env, packedK == g.K && packedN == g.N, n + ": packed B is [" + std::to_string(packedK) + ", " + std::to_string(packedN) +
                                                  "] but the product needs [" + std::to_string(g.K) + ", " + std::to_string(g.N) + "]");
  auto checkOffs = [&](const std::vector<int64_t>& o, const char* which) {
    need(env, o.empty() || static_cast<int64_t>(o.size()) == g.count, n + ": " + which + " offsets need one per batch");
  };
  checkOffs(g.aOff, "a");
  checkOffs(g.cOff, "c");
  checkOffs(g.rOff, "residual");
  need(env, static_cast<size_t>(maxOffset(g.aOff) + g.M * g.K) <= g.a.length, n + ": a is too small");
  need(env, static_cast<size_t>(maxOffset(g.cOff) + g.M * g.N) <= g.c.length, n + ": c is too small");
  if (g.bias) need(env, g.bias.length >= static_cast<size_t>(g.biasPerRow ? g.M : g.N), n + ": bias is too small");
  if (g.res) need(env, static_cast<size_t>(maxOffset(g.rOff) + g.M * g.N) <= g.res.length, n + ": residual is too small");
  need(env, act >= kActNone && act <= kActSilu, n + ": unknown activation");
  g.epi.bias = g.bias.data;
  g.epi.biasPerRow = g.biasPerRow;
  g.epi.act = act;
  g.epi.residual = g.res.data;
  g.epi.ldr = g.N;
  g.epi.alpha = alpha;
  g.batch.count = g.count;
  g.batch.aOffsets = g.aOff.empty() ? nullptr : g.aOff.data();
  g.batch.cOffsets = g.cOff.empty() ? nullptr : g.cOff.data();
  g.batch.rOffsets = g.rOff.empty() ? nullptr : g.rOff.data();
}

// packedData(handle) -> [Uint16Array copy of the panels, K, N]: what a disk cache stores. The layout
// (gemm_bf16.h) does not depend on the CPU or the kernel, so the panels can be loaded back as they are.
template <typename T>
Napi::Value packedData(const Napi::CallbackInfo& info, const T* pb) {
  Napi::Env env = info.Env();
  const size_t n = pb->bytes() / 2;
  auto out = Napi::Uint16Array::New(env, n);
  std::memcpy(out.Data(), pb->data, pb->bytes());
  Napi::Array r = Napi::Array::New(env, 3);
  r.Set(0u, out);
  r.Set(1u, Napi::Number::New(env, static_cast<double>(pb->K)));
  r.Set(2u, Napi::Number::New(env, static_cast<double>(pb->N)));
  return r;
}
Napi::Value PackedBf16Data(const Napi::CallbackInfo& info) {
  return packedData(info, unwrap<PackedBf16>(info.Env(), info[0], kBf16Tag, "packedBf16Data: handle"));
}
Napi::Value PackedF16Data(const Napi::CallbackInfo& info) {
  return packedData(info, unwrap<PackedF16>(info.Env(), info[0], kF16Tag, "packedF16Data: handle"));
}

// loadPackedBf16(panels: Uint16Array, K, N) / loadPackedF16(...) -> handle (a copy of the panels).
template <typename T>
Napi::Value loadPacked(const Napi::CallbackInfo& info, const char* name, const napi_type_tag& tag) {
  Napi::Env env = info.Env();
  auto src = viewOf<uint16_t>(env, info[0], (std::string(name) + ": panels").c_str());
  const int64_t K = i64(info[1]), N = i64(info[2]);
  need(env, K >= 0 && N >= 0, std::string(name) + ": bad sizes");
  auto pb = std::make_unique<T>();
  pb->K = K;
  pb->N = N;
  pb->panels = (N + kBf16NR - 1) / kBf16NR;
  if constexpr (std::is_same_v<T, PackedBf16>) pb->Kp = (std::max<int64_t>(K, 1) + kBf16KAlign - 1) / kBf16KAlign * kBf16KAlign;
  need(env, src.length == pb->bytes() / 2, std::string(name) + ": expected " + std::to_string(pb->bytes() / 2) + " elements for K=" +
                                               std::to_string(K) + ", N=" + std::to_string(N) + ", got " + std::to_string(src.length));
  void* p = nullptr;
  if (posix_memalign(&p, 64, std::max<size_t>(pb->bytes(), 64)) != 0) throw Napi::Error::New(env, std::string(name) + ": out of memory");
  pb->data = static_cast<uint16_t*>(p);
  std::memcpy(pb->data, src.data, pb->bytes());
  return wrap(env, std::move(pb), tag);
}
Napi::Value LoadPackedBf16(const Napi::CallbackInfo& info) { return loadPacked<PackedBf16>(info, "loadPackedBf16", kBf16Tag); }
Napi::Value LoadPackedF16(const Napi::CallbackInfo& info) { return loadPacked<PackedF16>(info, "loadPackedF16", kF16Tag); }

// gemmBf16(<gemm args>, kernel (0 auto/env | 1 avx512 | 2 amx))
Napi::Value GemmBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bf16Kernel kernel = kernelArg(env, info[16], "gemmBf16");
  const PackedBf16* pb = unwrap<PackedBf16>(env, info[6], kBf16Tag, "gemmBf16: b");
  GemmArgs g;
  parseGemm(info, "gemmBf16", pb->K, pb->N, g);
  gemmBf16(g.M, g.N, g.K, g.a.data, g.transA ? g.M : g.K, g.transA, *pb, g.c.data, g.N, g.epi, g.batch, kernel);
  return env.Undefined();
}

Napi::Value GemmF16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const PackedF16* pb = unwrap<PackedF16>(env, info[6], kF16Tag, "gemmF16: b");
  GemmArgs g;
  parseGemm(info, "gemmF16", pb->K, pb->N, g);
  gemmF16(g.M, g.N, g.K, g.a.data, g.transA ? g.M : g.K, g.transA, *pb, g.c.data, g.N, g.epi, g.batch);
  return env.Undefined();
}

}  // namespace

const PackedBf16* packedBf16FromValue(Napi::Env env, const Napi::Value& v, const char* what) { return unwrap<PackedBf16>(env, v, kBf16Tag, what); }
const PackedF16* packedF16FromValue(Napi::Env env, const Napi::Value& v, const char* what) { return unwrap<PackedF16>(env, v, kF16Tag, what); }

void registerBf16(Napi::Env env, Napi::Object exports) {
  exports.Set("bf16Info", Napi::Function::New(env, Bf16Info));
  exports.Set("bf16SpeedProbe", Napi::Function::New(env, Bf16SpeedProbe_));
  exports.Set("packBf16", Napi::Function::New(env, PackBf16));
  exports.Set("packF16", Napi::Function::New(env, PackF16));
  exports.Set("gemmBf16", Napi::Function::New(env, GemmBf16));
  exports.Set("gemmF16", Napi::Function::New(env, GemmF16));
  exports.Set("packedBf16Data", Napi::Function::New(env, PackedBf16Data));
  exports.Set("packedF16Data", Napi::Function::New(env, PackedF16Data));
  exports.Set("loadPackedBf16", Napi::Function::New(env, LoadPackedBf16));
  exports.Set("loadPackedF16", Napi::Function::New(env, LoadPackedF16));
  registerAttentionBf16(env, exports);
}

}  // namespace inferjit
