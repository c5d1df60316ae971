// The JIT's view of the cpu backend (device 'cpu'): native plans (src/backends/cpu/plan: one native
// call per forward, plans per concrete shape) when the addon is built and every node has a plan
// kernel; otherwise the graph is interpreted node by node on the eager kernels (native where they
// exist), and describe() says why.
// precision 'bf16' runs the plans' weight GEMMs and attention with bf16 products (AVX512_BF16), or
// where those are slower than fp32 on this CPU, fp32 kernels on bf16-rounded weights (bf16ComputePlan);
// 'fp16' stores their weights as f16 (F16C) and computes in fp32. Where the CPU lacks the
// instructions it fails naming them, or, only when the user allowed it (precisionFallback: 'fp32'),
// warns once and compiles fp32; never silently.
import { kernelBackends } from '../../ops/registry.js';
import type { Target } from '../../passes/manager.js';
import type { JitBackend, LowerContext } from '../backend.js';
import { interpreterExecutable } from '../reference/executable.js';
import { loadNativeBackend } from './index.js';
import { PlanExecutable, PLAN_OPS, planSupportReason } from './plan/executable.js';
import { reducedPrecisionSupport } from './bf16.js';

/** On 'cpu' with the native addon, only ops that run natively may be emitted by the passes: fusing
 *  into an op that only has the pure-TS reference kernel would make the graph slower. Without the
 *  addon every op may (nothing is native anyway). */
function cpuTarget(): Target {
  if (!loadNativeBackend()) return { name: 'cpu', canEmit: () => true };
  // An op is worth emitting when it runs natively: as an eager cpu kernel, or as a kernel of the
  // native plan executor (fused_elementwise, layer_norm_modulate and attention_fused exist only there).
  const planned = planSupportReason() === null;
  return { name: 'cpu-native', canEmit: (op) => kernelBackends(op).includes('cpu') || (planned && PLAN_OPS.has(op)) };
}

export const cpuJitBackend: JitBackend = {
  id: 'cpu',
  version: () => `plan-1+native:${loadNativeBackend() ? 'yes' : 'no'}`,
  unavailableReason: () => null,
  target: cpuTarget,
  lower(graph, constants, context) {
    loadNativeBackend();
    let note: string | undefined;
    if (context.precision === 'bf16' || context.precision === 'fp16') {
      const missing = cpuPrecisionMissing(context.precision);
      if (missing === null) return new PlanExecutable(graph, constants, { precision: context.precision, disk: context.disk ?? null });
      note = fallBackToFp32(context, missing);
    } else if (context.precision !== 'fp32') {
      throw new Error(`inferenceJit: precision '${context.precision}' is not available yet on device 'cpu' (only 'fp32', 'bf16' and 'fp16' are implemented)`);
    }
    const planWhy = planSupportReason();
    if (planWhy === null) return new PlanExecutable(graph, constants, note ? { note } : {});
    return interpreterExecutable(graph, constants, { backend: 'cpu', eager: 'auto', describe: `cpu interpreter (${planWhy})${note ? `; ${note}` : ''}` });
  },
};

/** Why this machine cannot run a reduced precision on 'cpu' (naming the missing instruction set),
 *  or null when it can. Reduced precision runs only as native plans, so those must exist too. */
function cpuPrecisionMissing(precision: 'bf16' | 'fp16'): string | null {
  const support = reducedPrecisionSupport();
  if (precision === 'bf16' && !support.bf16) return `needs AVX512_BF16: ${support.missing}`;
  if (precision === 'fp16' && !support.f16Storage) return `needs AVX-512 and F16C: ${support.f16Missing}`;
  const why = planSupportReason();
  return why === null ? null : `runs only as native plans, which are unavailable: ${why}`;
}

const warnedFallbacks = new Set<string>();

/** precisionFallback 'fp32': warn once per process and reason, and say so in describe(); otherwise
 *  the error names the missing instruction set and the option that allows the fallback. */
function fallBackToFp32(context: LowerContext, missing: string): string {
  const what = `precision '${context.precision}' on device 'cpu' ${missing}`;
  if (context.precisionFallback !== 'fp32') {
    throw new Error(`inferenceJit: ${what}. To run in fp32 on such machines instead, set precisionFallback: 'fp32' (or INFERJIT_PRECISION_FALLBACK=fp32).`);
  }
  if (!warnedFallbacks.has(what)) {
    warnedFallbacks.add(what);
    process.emitWarning(`inferenceJit: ${what}; compiling in fp32 instead (precisionFallback: 'fp32').`, { type: 'InferjitWarning', code: 'INFERJIT_PRECISION_FALLBACK' });
  }
  return `precision '${context.precision}' fell back to fp32: ${missing}`;
}
