// The native plan executor. A plan (built once per concrete shape by src/backends/cpu/plan/) is a
// kernel list over one arena: every operand is a slot (arena offset, graph input, graph output or
// constant) resolved to a pointer when the plan runs. runPlan executes the whole list in one call
// on the shared thread pool; runPlanAsync does the same on a libuv worker thread so the JS thread
// stays free. One plan runs at a time (a process-wide lock): plans share kernel scratch, and two
// plans would only fight over the same cores anyway. Plans lowered with precision 'bf16' run their
// packed-weight GEMMs on bf16 panels (gemmBf16, same epilogues) and flagged attention kernels with
// bf16 products (attentionBf16); precision 'fp16' runs them on f16-stored panels with fp32 products
// (gemmF16). Activations stay fp32 in the arena either way. This file only parses and checks
// descriptors and runs the list: each kernel's fields, size check, decoder and dispatch come from
// kernel_table.gen.h (scripts/kernel-table.mjs), its body from kernels.cc.
#include "plan.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "../common.h"
#include "../gemm/gemm.h"
#include "../gemm/gemm_bf16.h"
#include "../gemm/gemm_bf16_napi.h"
#include "kernels.h"

namespace inferjit {
namespace {

using namespace plan;

// Operand kinds and kernel codes, and each kernel's named fields: kernel_table.gen.h, generated
// from scripts/kernel-table.mjs like the TS encoders that write them.
using namespace kt;

struct Ref {
  int kind = kRefNone;
  int index = 0;
  int64_t offset = 0;  // bytes
};

struct Kernel {
  int op = 0;
  std::string name;
  std::vector<Ref> refs;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  const PackedB* packed = nullptr;
  const PackedBf16* packedBf16 = nullptr;  // set instead of `packed` for bf16 GEMMs
  const PackedF16* packedF16 = nullptr;    // ... or for f16-storage GEMMs
  // decoded once for elementwise programs
  std::vector<EwInstr> prog;
  // a while_loop's carried-value buffers (control_flow.cc)
  std::unique_ptr<uint8_t, decltype(&std::free)> scratch{nullptr, &std::free};
  // a Winograd convolution's transformed weight, shared with every other plan of the process that
  // convolves the same weight the same way (prepareWinograd)
  std::shared_ptr<float> winogradWeight;
  // bytes of scratch or winogradWeight, reported to the GC (a shared transform counts in each plan)
  int64_t scratchBytes = 0;
  uint8_t* kernelScratch() const { return winogradWeight ? reinterpret_cast<uint8_t*>(winogradWeight.get()) : scratch.get(); }
};

struct Plan {
  std::vector<Kernel> kernels;
  std::vector<int64_t> inputBytes, outputBytes;
  std::vector<uint8_t*> consts;
  uint8_t* arena = nullptr;
  int64_t arenaBytes = 0;
  Bf16Kernel bf16Kernel = Bf16Kernel::kAuto;  // resolved at createPlan when a kernel runs in bf16
  std::vector<double> profileNs;
  int64_t runs = 0;
  Napi::ObjectReference keep;  // the descriptor: keeps constants and packed weights alive
  // plans of control-flow sub-graphs (desc.subPlans), run by cond / while_loop kernels
  std::vector<std::unique_ptr<Plan>> subs;
  ~Plan() { std::free(arena); }
};

std::mutex gRunMutex;

struct RawArray {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};
RawArray rawOf(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(env, what + ": expected a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  napi_typedarray_type type;
  size_t length = 0, off = 0;
  void* data = nullptr;
  napi_value buf;
  napi_get_typedarray_info(env, v, &type, &length, &data, &buf, &off);
  return {static_cast<uint8_t*>(data), length * ta.ElementSize()};
}

std::vector<int64_t> intList(const Napi::Env& env, const Napi::Value& v) { return ints(env, v); }
std::vector<double> floatList(const Napi::Value& v) {
  std::vector<double> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::Number>().DoubleValue());
  return out;
}

// ---- execution ----

struct Bound {
  const Plan& p;
  const std::vector<uint8_t*>& in;
  const std::vector<uint8_t*>& out;
  uint8_t* at(const Ref& r) const {
    switch (r.kind) {
      case kRefArena: return p.arena + r.offset;
      case kRefInput: return in[r.index] + r.offset;
      case kRefOutput: return out[r.index] + r.offset;
      case kRefConstant: return p.consts[r.index] + r.offset;
      default: return nullptr;
    }
  }
  float* f(const Ref& r) const { return reinterpret_cast<float*>(at(r)); }
};

void executeLocked(Plan& p, const std::vector<uint8_t*>& in, const std::vector<uint8_t*>& out);

// Runs a plan's sub-plans for its cond / while_loop kernels, inside the run that holds the lock.
struct Subs final : SubPlanRunner {
  Plan& p;
  explicit Subs(Plan& plan) : p(plan) {}
  void run(int64_t index, const std::vector<uint8_t*>& inputs, const std::vector<uint8_t*>& outputs) const override {
    executeLocked(*p.subs[static_cast<size_t>(index)], inputs, outputs);
  }
};

void runKernel(const Kernel& k, const Bound& b, const Subs& subs) {
  const KernelContext ctx{k.packed, k.packedBf16, k.packedF16, b.p.bf16Kernel, &k.prog, &subs, k.kernelScratch()};
  auto at = [&](int i) { return b.at(k.refs[i]); };
  if (!kt::runKernel(k.op, k.ints.data(), k.floats.data(), at, ctx)) throw KernelError{"runPlan: unknown kernel code " + std::to_string(k.op)};
}

void execute(Plan& p, const std::vector<uint8_t*>& in, const std::vector<uint8_t*>& out) {
  std::lock_guard<std::mutex> lock(gRunMutex);
  executeLocked(p, in, out);
}

void executeLocked(Plan& p, const std::vector<uint8_t*>& in, const std::vector<uint8_t*>& out) {
  Bound b{p, in, out};
  const Subs subs(p);
  for (size_t i = 0; i < p.kernels.size(); i++) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      runKernel(p.kernels[i], b, subs);
    } catch (KernelError& e) {
      e.message = "kernel " + std::to_string(i) + " (" + p.kernels[i].name + "): " + e.message;
      throw;
    }
    p.profileNs[i] += std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  }
  p.runs++;
}

// ---- N-API ----

using PlanHandle = Napi::External<Plan>;

Plan* planOf(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(env, "runPlan: expected a plan handle from createPlan");
  return v.As<PlanHandle>().Data();
}

// createPlan({ arenaBytes, inputBytes, outputBytes, constants: TypedArray[], packed: handle[], packedBf16?: handle[],
//              kernels: { op, name, refs: number[] (kind, index, byteOffset triples), ints, floats, packed, packedBf16? }[] })
// A GEMM kernel with packedBf16 >= 0 runs on that bf16 weight, one with packedF16 >= 0 (from
// desc.packedF16) on that f16-stored weight; an attention kernel with bf16 = 1 runs in bf16. Each
// kernel's ints, floats and operand count are checked against its kernel-table fields here.
// A descriptor may carry subPlans (descriptors of the same form, built recursively): its cond and
// while_loop kernels name them by index, and their operand sizes are checked against them here.
std::unique_ptr<Plan> buildPlan(const Napi::Env& env, const Napi::Object& desc, const std::string& where);

// The arena bytes a plan holds and its transformed Winograd weights, its sub-plans' included
// (reported to the GC as external memory).
int64_t arenaBytesWithSubs(const Plan& p) {
  int64_t bytes = p.arenaBytes;
  for (const auto& k : p.kernels) bytes += k.scratchBytes;
  for (const auto& s : p.subs) bytes += arenaBytesWithSubs(*s);
  return bytes;
}

Napi::Value CreatePlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "createPlan: expected a plan descriptor");
  Napi::Object desc = info[0].As<Napi::Object>();
  auto plan = buildPlan(env, desc, "");
  plan->keep = Napi::Persistent(desc);
  const int64_t bytes = arenaBytesWithSubs(*plan);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return PlanHandle::New(env, plan.release(), [bytes](Napi::Env e, Plan* p) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
    delete p;
  });
}

// Checks a cond / while_loop kernel against the sub-plans it names and allocates a loop's scratch.
void linkControlFlow(const Napi::Env& env, const Plan& plan, Kernel& k, const std::string& where) {
  auto noRef = [](int) { return static_cast<uint8_t*>(nullptr); };
  auto sub = [&](int64_t index, const char* role) -> const Plan& {
    need(env, index >= 0 && static_cast<size_t>(index) < plan.subs.size(), where + ": " + role + " names a missing sub-plan");
    return *plan.subs[static_cast<size_t>(index)];
  };
  auto sameBytes = [&](const std::vector<int64_t>& got, const Span& want, int64_t n, const std::string& what) {
    need(env, static_cast<int64_t>(got.size()) == n, where + ": the " + what + " takes " + std::to_string(got.size()) + " values, the kernel passes " + std::to_string(n));
    for (int64_t i = 0; i < n; i++) need(env, got[i] == want[i], where + ": the " + what + "'s value " + std::to_string(i) + " has " + std::to_string(got[i]) + " bytes, the kernel's " + std::to_string(want[i]));
  };
  if (k.op == kKernelCond) {
    const CondDesc c = decodeCond(k.ints.data(), k.floats.data(), noRef);
    for (const auto& [index, role] : {std::pair<int64_t, const char*>{c.thenPlan, "then-plan"}, {c.elsePlan, "else-plan"}}) {
      const Plan& s = sub(index, role);
      sameBytes(s.inputBytes, c.operandBytes, c.nOperands, std::string(role) + " input");
      sameBytes(s.outputBytes, c.outputBytes, c.nOutputs, std::string(role) + " output");
    }
  } else if (k.op == kKernelWhileLoop) {
    const WhileLoopDesc w = decodeWhileLoop(k.ints.data(), k.floats.data(), noRef);
    need(env, w.nCarried >= 1 && w.nCarried <= w.nOperands && w.maxIterations >= 0, where + ": bad carried count or iteration cap");
    const Plan& c = sub(w.condPlan, "condition plan");
    const Plan& b = sub(w.bodyPlan, "body plan");
    sameBytes(c.inputBytes, w.operandBytes, w.nOperands, "condition plan input");
    sameBytes(b.inputBytes, w.operandBytes, w.nOperands, "body plan input");
    need(env, c.outputBytes.size() == 1 && c.outputBytes[0] == 1, where + ": the condition plan must write one bool");
    sameBytes(b.outputBytes, w.operandBytes, w.nCarried, "body plan output");
    void* mem = nullptr;
    if (posix_memalign(&mem, 64, static_cast<size_t>(whileLoopScratchBytes(w.operandBytes.data, w.nCarried))) != 0) {
      throw Napi::Error::New(env, "createPlan: cannot allocate a while_loop's buffers");
    }
    k.scratch.reset(static_cast<uint8_t*>(mem));
  }
}

// Transformed Winograd weights by (weight address, C, O, m), held weakly: plans of one model at
// several shapes (an SD UNet at 256² and 512², a bucketed LLM) transform each weight once, and a
// transform is freed with the last plan using it. A plan keeps its constants alive (Plan::keep), so
// while an entry lives no other weight can occupy its address; like packed weights, constants are
// assumed not to change in place after a plan is created.
struct WinogradKey {
  const float* w;
  int64_t C, O;
  int m;
  bool operator<(const WinogradKey& o) const {
    if (w != o.w) return std::less<const float*>()(w, o.w);
    if (C != o.C) return C < o.C;
    if (O != o.O) return O < o.O;
    return m < o.m;
  }
};
std::mutex gWinogradMutex;
std::map<WinogradKey, std::weak_ptr<float>> gWinogradWeights;

// A Winograd convolution (direct == 2: F(4×4, 3×3), 3: F(2×2, 3×3)) with a constant weight: the weight
// transformed once per process (native/ops/conv_winograd.cc), shared through gWinogradWeights; with
// any other weight the kernel transforms it on every call.
void prepareWinograd(const Plan& plan, Kernel& k) {
  auto constRef = [&](int i) -> uint8_t* {
    const Ref& r = k.refs[static_cast<size_t>(i)];
    return r.kind == kRefConstant ? plan.consts[r.index] + r.offset : nullptr;
  };
  const Conv2dFusedDesc c = decodeConv2dFused(k.ints.data(), k.floats.data(), constRef);
  if ((c.direct != 2 && c.direct != 3) || !c.weight || c.groups != 1 || c.kh != 3 || c.kw != 3) return;
  const int m = c.direct == 2 ? 4 : 2;
  const size_t bytes = static_cast<size_t>(conv2dWinogradWeightFloats(c.C, c.O, m)) * sizeof(float);
  const WinogradKey key{reinterpret_cast<const float*>(c.weight), c.C, c.O, m};
  k.scratchBytes = static_cast<int64_t>(bytes);
  {
    std::lock_guard<std::mutex> lock(gWinogradMutex);
    auto it = gWinogradWeights.find(key);
    if (it != gWinogradWeights.end()) k.winogradWeight = it->second.lock();
    if (k.winogradWeight) return;
    for (auto e = gWinogradWeights.begin(); e != gWinogradWeights.end();) e = e->second.expired() ? gWinogradWeights.erase(e) : std::next(e);
  }
  void* mem = nullptr;
  if (posix_memalign(&mem, 64, bytes) != 0) throw std::bad_alloc();
  std::shared_ptr<float> w(static_cast<float*>(mem), &std::free);
  conv2dWinogradPackWeight(key.w, c.C, c.O, m, w.get());
  std::lock_guard<std::mutex> lock(gWinogradMutex);
  gWinogradWeights[key] = w;
  k.winogradWeight = std::move(w);
}

// The transformed Winograd weights alive in this process, one { C, O, m, bytes } each (tests, memory reports).
Napi::Value WinogradWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array list = Napi::Array::New(env);
  std::lock_guard<std::mutex> lock(gWinogradMutex);
  for (const auto& [key, weak] : gWinogradWeights) {
    if (weak.expired()) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("C", Napi::Number::New(env, static_cast<double>(key.C)));
    o.Set("O", Napi::Number::New(env, static_cast<double>(key.O)));
    o.Set("m", Napi::Number::New(env, key.m));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(conv2dWinogradWeightFloats(key.C, key.O, key.m)) * sizeof(float)));
    list.Set(list.Length(), o);
  }
  return list;
}

std::unique_ptr<Plan> buildPlan(const Napi::Env& env, const Napi::Object& desc, const std::string& where) {
  auto plan = std::make_unique<Plan>();
  if (desc.Has("subPlans") && desc.Get("subPlans").IsArray()) {
    Napi::Array subs = desc.Get("subPlans").As<Napi::Array>();
    for (uint32_t i = 0; i < subs.Length(); i++) {
      need(env, subs.Get(i).IsObject(), "createPlan: " + where + "subPlans[" + std::to_string(i) + "] is not a plan descriptor");
      plan->subs.push_back(buildPlan(env, subs.Get(i).As<Napi::Object>(), where + "sub-plan " + std::to_string(i) + ": "));
    }
  }
  plan->arenaBytes = i64(desc.Get("arenaBytes"));
  plan->inputBytes = ints(env, desc.Get("inputBytes"));
  plan->outputBytes = ints(env, desc.Get("outputBytes"));
  Napi::Array consts = desc.Get("constants").As<Napi::Array>();
  std::vector<size_t> constBytes;
  for (uint32_t i = 0; i < consts.Length(); i++) {
    RawArray r = rawOf(env, consts.Get(i), "createPlan: constant " + std::to_string(i));
    plan->consts.push_back(r.data);
    constBytes.push_back(r.bytes);
  }
  Napi::Array packed = desc.Get("packed").As<Napi::Array>();
  std::vector<const PackedB*> packs;
  for (uint32_t i = 0; i < packed.Length(); i++) {
    Napi::Value h = packed.Get(i);
    need(env, h.IsExternal(), "createPlan: packed[" + std::to_string(i) + "] is not a packB handle");
    packs.push_back(h.As<Napi::External<PackedB>>().Data());
  }
  std::vector<const PackedBf16*> packsBf16;
  if (desc.Has("packedBf16") && desc.Get("packedBf16").IsArray()) {
    Napi::Array pb = desc.Get("packedBf16").As<Napi::Array>();
    for (uint32_t i = 0; i < pb.Length(); i++) packsBf16.push_back(packedBf16FromValue(env, pb.Get(i), "createPlan: packedBf16"));
  }
  std::vector<const PackedF16*> packsF16;
  if (desc.Has("packedF16") && desc.Get("packedF16").IsArray()) {
    Napi::Array pf = desc.Get("packedF16").As<Napi::Array>();
    for (uint32_t i = 0; i < pf.Length(); i++) packsF16.push_back(packedF16FromValue(env, pf.Get(i), "createPlan: packedF16"));
  }
  bool usesBf16 = false, usesF16 = false;
  Napi::Array kernels = desc.Get("kernels").As<Napi::Array>();
  for (uint32_t i = 0; i < kernels.Length(); i++) {
    Napi::Object ko = kernels.Get(i).As<Napi::Object>();
    Kernel k;
    k.op = static_cast<int>(i64(ko.Get("op")));
    k.name = ko.Get("name").ToString().Utf8Value();
    std::vector<int64_t> refs = ints(env, ko.Get("refs"));
    need(env, refs.size() % 3 == 0, "createPlan: kernel " + std::to_string(i) + " refs must be (kind, index, offset) triples");
    for (size_t j = 0; j < refs.size(); j += 3) {
      Ref r{static_cast<int>(refs[j]), static_cast<int>(refs[j + 1]), refs[j + 2]};
      const std::string where = "createPlan: kernel " + std::to_string(i) + " (" + k.name + ") operand " + std::to_string(j / 3);
      switch (r.kind) {
        case kRefNone: break;
        case kRefArena: need(env, r.offset >= 0 && r.offset <= plan->arenaBytes, where + " lies outside the arena"); break;
        case kRefInput: need(env, r.index >= 0 && static_cast<size_t>(r.index) < plan->inputBytes.size(), where + ": no such input"); break;
        case kRefOutput: need(env, r.index >= 0 && static_cast<size_t>(r.index) < plan->outputBytes.size(), where + ": no such output"); break;
        case kRefConstant:
          need(env, r.index >= 0 && static_cast<size_t>(r.index) < plan->consts.size(), where + ": no such constant");
          need(env, static_cast<size_t>(r.offset) <= constBytes[r.index], where + " lies outside its constant");
          break;
        default: need(env, false, where + ": unknown operand kind");
      }
      k.refs.push_back(r);
    }
    k.ints = ints(env, ko.Get("ints"));
    k.floats = floatList(ko.Get("floats"));
    const std::string bad = checkKernel(k.op, k.ints.data(), k.ints.size(), k.floats.size(), k.refs.size());
    need(env, bad.empty(), "createPlan: kernel " + std::to_string(i) + " (" + k.name + "): " + bad);
    auto noRef = [](int) { return static_cast<uint8_t*>(nullptr); };
    Napi::Value pk = ko.Get("packed");
    if (pk.IsNumber() && i64(pk) >= 0) {
      need(env, static_cast<size_t>(i64(pk)) < packs.size(), "createPlan: kernel " + std::to_string(i) + " names a missing packed weight");
      k.packed = packs[i64(pk)];
      if (k.op == kKernelConv2dFused) {
        const Conv2dFusedDesc c = decodeConv2dFused(k.ints.data(), k.floats.data(), noRef);
        need(env, c.groups == 1 && c.C * c.kh * c.kw == k.packed->K && c.O == k.packed->N,
             "createPlan: kernel " + std::to_string(i) + " (" + k.name + ") does not match its packed weight's [C·kh·kw, O]");
      }
    }
    Napi::Value pkb = ko.Get("packedBf16");
    if (pkb.IsNumber() && i64(pkb) >= 0) {
      need(env, (k.op == kKernelGemm || k.op == kKernelConv2dFused) && !k.packed,
           "createPlan: kernel " + std::to_string(i) + " takes a bf16 weight but is not an unpacked GEMM or convolution");
      need(env, static_cast<size_t>(i64(pkb)) < packsBf16.size(), "createPlan: kernel " + std::to_string(i) + " names a missing bf16 packed weight");
      k.packedBf16 = packsBf16[i64(pkb)];
      if (k.op == kKernelGemm) {
        const GemmDesc g = decodeGemm(k.ints.data(), k.floats.data(), noRef);
        need(env, g.count == 1 && g.transA == 0 && g.K == k.packedBf16->K && g.N == k.packedBf16->N,
             "createPlan: kernel " + std::to_string(i) + " (" + k.name + ") does not match its bf16 weight's [K, N]");
      } else {
        const Conv2dFusedDesc c = decodeConv2dFused(k.ints.data(), k.floats.data(), noRef);
        need(env, c.groups == 1 && c.C * c.kh * c.kw == k.packedBf16->K && c.O == k.packedBf16->N,
             "createPlan: kernel " + std::to_string(i) + " (" + k.name + ") does not match its bf16 weight's [C·kh·kw, O]");
      }
      usesBf16 = true;
    }
    Napi::Value pkh = ko.Get("packedF16");
    if (pkh.IsNumber() && i64(pkh) >= 0) {
      need(env, k.op == kKernelGemm && !k.packed && !k.packedBf16, "createPlan: kernel " + std::to_string(i) + " takes an f16 weight but is not an unpacked GEMM");
      need(env, static_cast<size_t>(i64(pkh)) < packsF16.size(), "createPlan: kernel " + std::to_string(i) + " names a missing f16 packed weight");
      k.packedF16 = packsF16[i64(pkh)];
      const GemmDesc g = decodeGemm(k.ints.data(), k.floats.data(), noRef);
      need(env, g.count == 1 && g.transA == 0 && g.K == k.packedF16->K && g.N == k.packedF16->N,
           "createPlan: kernel " + std::to_string(i) + " (" + k.name + ") does not match its f16 weight's [K, N]");
      usesF16 = true;
    }
    if (k.op == kKernelConv2dFused) prepareWinograd(*plan, k);
    if (k.op == kKernelCond || k.op == kKernelWhileLoop) linkControlFlow(env, *plan, k, "createPlan: " + where + "kernel " + std::to_string(i) + " (" + k.name + ")");
    if (k.op == kKernelAttention && decodeAttention(k.ints.data(), k.floats.data(), noRef).bf16 != 0) usesBf16 = true;
    if (k.op == kKernelConv2dFused && decodeConv2dFused(k.ints.data(), k.floats.data(), noRef).bf16 != 0) usesBf16 = true;
    if (k.op == kKernelElementwise) {
      const ElementwiseDesc e = decodeElementwise(k.ints.data(), k.floats.data(), noRef);
      need(env, e.nIn + e.nInstr <= 64, "createPlan: elementwise programs are limited to 64 registers");
      for (int64_t j = 0; j < e.nInstr; j++) {
        const int64_t* r = e.args.data + 3 * j;
        for (int q = 0; q < 3; q++) {
          need(env, r[q] < e.nIn + j, "createPlan: kernel " + std::to_string(i) + " (" + k.name + ") instruction " + std::to_string(j) + " reads a register not yet written");
        }
        k.prog.push_back(EwInstr{static_cast<int>(e.opcodes[j]), {static_cast<int>(r[0]), static_cast<int>(r[1]), static_cast<int>(r[2])}});
      }
    }
    plan->kernels.push_back(std::move(k));
  }
  if (usesBf16) {
    std::string why;
    if (!resolveBf16Kernel(bf16KernelFromEnv(), &plan->bf16Kernel, &why)) throw Napi::Error::New(env, "createPlan: precision 'bf16': " + why);
  }
  if (usesF16 && !(bf16Caps().avx512f && bf16Caps().f16c)) {
    throw Napi::Error::New(env, "createPlan: precision 'fp16': f16 weight storage needs AVX-512 (F/BW/DQ/VL) and F16C; this CPU lacks them");
  }
  plan->profileNs.assign(plan->kernels.size(), 0.0);
  if (plan->arenaBytes > 0) {
    void* p = nullptr;
    if (posix_memalign(&p, 64, static_cast<size_t>(plan->arenaBytes)) != 0) throw Napi::Error::New(env, "createPlan: cannot allocate the arena");
    plan->arena = static_cast<uint8_t*>(p);
  }
  return plan;
}

void bindArrays(const Napi::Env& env, const Plan& p, const Napi::Value& inV, const Napi::Value& outV, std::vector<uint8_t*>& in,
                std::vector<uint8_t*>& out) {
  need(env, inV.IsArray() && outV.IsArray(), "runPlan: inputs and outputs must be arrays of typed arrays");
  Napi::Array ia = inV.As<Napi::Array>(), oa = outV.As<Napi::Array>();
  need(env, ia.Length() == p.inputBytes.size(), "runPlan: the plan takes " + std::to_string(p.inputBytes.size()) + " inputs, got " + std::to_string(ia.Length()));
  need(env, oa.Length() == p.outputBytes.size(), "runPlan: the plan writes " + std::to_string(p.outputBytes.size()) + " outputs, got " + std::to_string(oa.Length()));
  for (uint32_t i = 0; i < ia.Length(); i++) {
    RawArray r = rawOf(env, ia.Get(i), "runPlan: input " + std::to_string(i));
    need(env, static_cast<int64_t>(r.bytes) == p.inputBytes[i], "runPlan: input " + std::to_string(i) + " has " + std::to_string(r.bytes) + " bytes; the plan expects " + std::to_string(p.inputBytes[i]));
    in.push_back(r.data);
  }
  for (uint32_t i = 0; i < oa.Length(); i++) {
    RawArray r = rawOf(env, oa.Get(i), "runPlan: output " + std::to_string(i));
    need(env, static_cast<int64_t>(r.bytes) == p.outputBytes[i], "runPlan: output " + std::to_string(i) + " has " + std::to_string(r.bytes) + " bytes; the plan expects " + std::to_string(p.outputBytes[i]));
    out.push_back(r.data);
  }
}

// runPlan(plan, inputs, outputs)
Napi::Value RunPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Plan* p = planOf(env, info[0]);
  std::vector<uint8_t*> in, out;
  bindArrays(env, *p, info[1], info[2], in, out);
  try {
    execute(*p, in, out);
  } catch (const KernelError& e) {
    throw Napi::RangeError::New(env, e.message);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "runPlan: out of memory");
  }
  return env.Undefined();
}

class PlanWorker : public Napi::AsyncWorker {
 public:
  PlanWorker(Napi::Function cb, Plan* p, std::vector<uint8_t*> in, std::vector<uint8_t*> out, Napi::Array keep)
      : Napi::AsyncWorker(cb, "inferjit.runPlan"), plan_(p), in_(std::move(in)), out_(std::move(out)), keep_(Napi::Persistent(static_cast<Napi::Object>(keep))) {}
  void Execute() override {
    try {
      execute(*plan_, in_, out_);
    } catch (const KernelError& e) {
      SetError(e.message);
    } catch (const std::exception& e) {
      SetError(std::string("runPlan: ") + e.what());
    }
  }

 private:
  Plan* plan_;
  std::vector<uint8_t*> in_, out_;
  Napi::ObjectReference keep_;  // plan handle, inputs and outputs stay alive until the callback
};

// runPlanAsync(plan, inputs, outputs, callback(err?))
Napi::Value RunPlanAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Plan* p = planOf(env, info[0]);
  std::vector<uint8_t*> in, out;
  bindArrays(env, *p, info[1], info[2], in, out);
  need(env, info[3].IsFunction(), "runPlanAsync: expected a callback");
  Napi::Array keep = Napi::Array::New(env, 3);
  keep.Set(0u, info[0]);
  keep.Set(1u, info[1]);
  keep.Set(2u, info[2]);
  auto* w = new PlanWorker(info[3].As<Napi::Function>(), p, std::move(in), std::move(out), keep);
  w->Queue();
  return env.Undefined();
}

// planProfile(plan) -> { runs, ns: Float64Array (cumulative per kernel) }
Napi::Value PlanProfile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Plan* p = planOf(env, info[0]);
  Napi::Object o = Napi::Object::New(env);
  std::lock_guard<std::mutex> lock(gRunMutex);
  o.Set("runs", Napi::Number::New(env, static_cast<double>(p->runs)));
  Napi::Float64Array ns = Napi::Float64Array::New(env, p->profileNs.size());
  for (size_t i = 0; i < p->profileNs.size(); i++) ns[i] = p->profileNs[i];
  o.Set("ns", ns);
  if (info.Length() > 1 && flag(info[1])) {
    std::fill(p->profileNs.begin(), p->profileNs.end(), 0.0);
    p->runs = 0;
  }
  return o;
}

}  // namespace

void registerPlan(Napi::Env env, Napi::Object exports) {
  exports.Set("createPlan", Napi::Function::New(env, CreatePlan));
  exports.Set("runPlan", Napi::Function::New(env, RunPlan));
  exports.Set("runPlanAsync", Napi::Function::New(env, RunPlanAsync));
  exports.Set("planProfile", Napi::Function::New(env, PlanProfile));
  exports.Set("winogradWeights", Napi::Function::New(env, WinogradWeights));
}

}  // namespace inferjit
