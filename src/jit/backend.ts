// Lowering: turns an (optimized) graph plus its live constants into an Executable for a device.
// 'cpu' lowers to native plans (src/backends/cpu/plan: one native call per forward, plans per
// concrete shape) when the addon is built and every node has a plan kernel; otherwise, and on
// 'reference', the graph is interpreted node by node through dispatch, and describe() says why.
// precision 'bf16' on 'cpu' runs the plans' weight GEMMs and attention with bf16 products
// (AVX512_BF16); 'fp16' stores their weights as f16 (F16C) and computes in fp32. Where the CPU lacks the instructions it fails naming them, or, only when the user
// allowed it (precisionFallback: 'fp32'), warns once and compiles fp32; never silently.
// 'onnxruntime' and 'tensorrt' export the graph to ONNX and run it in ONNX Runtime
// (src/backends/onnxruntime, src/backends/tensorrt).
import type { Tensor } from '../tensor/tensor.js';
import type { Graph } from '../ir/index.js';
import type { DiskCache } from '../cache/disk-cache.js';
import { interpret } from '../trace/index.js';
import { bindConstants } from '../passes/derived.js';
import { withEagerBackend, isNativeAvailable } from '../ops/dispatch.js';
import type { JitDevice, Precision, PrecisionFallback } from './options.js';
import { onnxRuntimeJitBackend } from '../backends/onnxruntime/jit.js';
import { tensorRtJitBackend } from '../backends/tensorrt/jit.js';
import { PlanExecutable, planSupportReason } from '../backends/cpu/plan/executable.js';
import { reducedPrecisionSupport } from '../backends/cpu/bf16.js';

/** A compiled graph ready to run: flat tensor inputs in graph-input order -> graph outputs. */
export interface Executable {
  readonly backend: string;
  run(inputs: Tensor[]): Tensor[];
  /** The same computation off the JS thread where the backend can (native plans); otherwise it
   *  runs synchronously and resolves. */
  runAsync?(inputs: Tensor[]): Promise<Tensor[]>;
  /** One line saying how the graph runs (e.g. native plan vs interpreter, and why). */
  describe?(): string;
  /** Reduced-precision weights packed in this process and loaded from the disk cache (cpu plans). */
  weightStats?(): { packed: number; loaded: number };
}

export interface LowerContext {
  precision: Precision;
  /** 'fp32': where this machine cannot run `precision`, warn once and compile fp32 (default 'error'). */
  precisionFallback?: PrecisionFallback;
  /** The disk cache folder when the disk cache is on: backends keep their artifacts (ONNX files,
   *  engines) below it. No cache key is passed: the JIT's keys cover the graph, not weight values,
   *  so a backend that bakes weights into an artifact must key it by the weights itself. */
  cacheDir?: string;
  /** The disk cache itself when it is on: backends may keep entries of their own in it, keyed by
   *  what their contents depend on (packed weights: by the weights' bytes). */
  disk?: DiskCache;
  /** Backend-specific options from inferenceJit's `onnxruntime` / `tensorrt` options. */
  onnxruntime?: Record<string, unknown>;
  tensorrt?: Record<string, unknown>;
}

export interface JitBackend {
  readonly id: JitDevice;
  /** Changes when the backend's code or its native library changes (part of the disk key). */
  version(): string;
  /** Null when usable here, else why not. */
  unavailableReason(): string | null;
  lower(graph: Graph, constants: Map<string, Tensor>, context: LowerContext): Executable;
}

const interpreterBackend = (id: 'cpu' | 'reference'): JitBackend => ({
  id,
  version: () => (id === 'cpu' ? `plan-1+native:${isNativeAvailable() ? 'yes' : 'no'}` : 'interpret-1'),
  unavailableReason: () => null,
  lower(graph, constants, context) {
    let note: string | undefined;
    if (id === 'cpu' && (context.precision === 'bf16' || context.precision === 'fp16')) {
      const missing = cpuPrecisionMissing(context.precision);
      if (missing === null) return new PlanExecutable(graph, constants, { precision: context.precision, disk: context.disk ?? null });
      note = fallBackToFp32(context, missing);
    } else if (context.precision !== 'fp32') {
      const have = id === 'cpu' ? `'fp32', 'bf16' and 'fp16' are` : `'fp32' is`;
      throw new Error(`inferenceJit: precision '${context.precision}' is not available yet on device '${id}' (only ${have} implemented)`);
    }
    if (id === 'cpu' && planSupportReason() === null) return new PlanExecutable(graph, constants, note ? { note } : {});
    const eager = id === 'cpu' ? 'auto' : 'reference';
    const why = (id === 'cpu' ? `cpu interpreter (${planSupportReason()})` : 'reference interpreter') + (note ? `; ${note}` : '');
    // Values the passes derived from weights (transposed or concatenated weights) are computed once
    // and recomputed only when a source weight changes.
    const bound = bindConstants(graph, constants);
    const run = (inputs: Tensor[]): Tensor[] => withEagerBackend(eager, () => interpret(bound.graph, inputs, bound.constants()));
    return { backend: id, run, runAsync: async (inputs) => run(inputs), describe: () => why };
  },
});

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

const backends = new Map<JitDevice, JitBackend>([
  ['cpu', interpreterBackend('cpu')],
  ['reference', interpreterBackend('reference')],
  ['onnxruntime', onnxRuntimeJitBackend],
  ['tensorrt', tensorRtJitBackend],
]);

/** Installs (or replaces) the backend for a device; later backends plug in here. */
export function registerJitBackend(backend: JitBackend): void { backends.set(backend.id, backend); }

/** The backend for a device, or a clear error when it cannot run here. */
export function getJitBackend(device: JitDevice): JitBackend {
  const b = backends.get(device);
  if (!b) throw new Error(`inferenceJit: unknown device '${device}'; known devices: ${[...backends.keys()].join(', ')}`);
  const why = b.unavailableReason();
  if (why) throw new Error(`inferenceJit: ${why}`);
  return b;
}
