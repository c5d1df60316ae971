// Control-flow kernels: cond and while_loop run sub-plans (plans lowered from the op's closed
// sub-graphs, built with the outer plan by plan.cc) entirely in native code, so a loop runs with
// no JavaScript between iterations.
//  - cond reads its one-byte bool predicate and runs the then- or else-plan with the outer operands
//    as inputs and the outer destination buffers as outputs (distinct memory: the lowering gives a
//    cond's results buffers that live while its operands are read).
//  - while_loop keeps the carried values in two buffers each (kernel scratch): the condition plan
//    reads the current set into a one-byte flag, the body plan reads the current set and writes the
//    other, and the sets swap; the final set is copied to the outputs. The loop stops with an error
//    after maxIterations body runs (a runaway loop fails loudly instead of hanging the process).
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernels.h"

namespace inferjit {

namespace {
constexpr int64_t kScratchAlign = 64;
int64_t alignUp(int64_t n) { return (n + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }
}  // namespace

namespace plan {

int64_t whileLoopScratchBytes(const int64_t* operandBytes, int64_t nCarried) {
  int64_t bytes = 0;
  for (int64_t i = 0; i < nCarried; i++) bytes += 2 * alignUp(operandBytes[i]);
  return bytes + kScratchAlign;  // the condition's flag
}

}  // namespace plan

namespace kt {

void runCond(const CondDesc& d, const plan::KernelContext& ctx) {
  const bool taken = *d.pred != 0;
  ctx.subPlans->run(taken ? d.thenPlan : d.elsePlan, d.operands, d.outputs);
}

void runWhileLoop(const WhileLoopDesc& d, const plan::KernelContext& ctx) {
  const int64_t nC = d.nCarried;
  std::vector<uint8_t*> cur(nC), next(nC);
  int64_t off = 0;
  for (int64_t i = 0; i < nC; i++) {
    cur[i] = ctx.scratch + off;
    off += alignUp(d.operandBytes[i]);
    next[i] = ctx.scratch + off;
    off += alignUp(d.operandBytes[i]);
  }
  uint8_t* flag = ctx.scratch + off;
  for (int64_t i = 0; i < nC; i++) std::memcpy(cur[i], d.operands[i], static_cast<size_t>(d.operandBytes[i]));

  std::vector<uint8_t*> in(d.operands.begin(), d.operands.end());  // carried slots replaced below; invariants stay
  const std::vector<uint8_t*> flagOut{flag};
  for (int64_t it = 0;; it++) {
    for (int64_t i = 0; i < nC; i++) in[i] = cur[i];
    ctx.subPlans->run(d.condPlan, in, flagOut);
    if (*flag == 0) break;
    if (it >= d.maxIterations) {
      throw plan::KernelError{"while_loop: the condition is still true after " + std::to_string(d.maxIterations) +
                              " iterations; a loop that never ends? Raise the cap with INFERJIT_MAX_LOOP_ITERATIONS if it is meant to run longer"};
    }
    ctx.subPlans->run(d.bodyPlan, in, next);
    std::swap(cur, next);
  }
  for (int64_t i = 0; i < nC; i++) std::memcpy(d.outputs[i], cur[i], static_cast<size_t>(d.operandBytes[i]));
}

}  // namespace kt
}  // namespace inferjit
