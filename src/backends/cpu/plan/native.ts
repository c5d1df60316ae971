// The plan executor's functions in the native addon (native/plan/plan.cc), with the codes the
// TypeScript lowering and the C++ executor share. `planAddon` is null (and `planUnavailable` says
// why) when the addon is missing or was built before the plan executor existed.
import { addon, loadFailure, type PackedHandle } from '../addon.js';
import type { DType } from '../../../tensor/dtype.js';
import type { PackedBf16Handle, PackedF16Handle } from '../bf16.js';

/** An opaque handle to a native plan (freed by the GC with its arena). */
export type PlanHandle = { readonly __plan: unique symbol };

/** One kernel of a plan descriptor; refs are (kind, index, byteOffset) triples. */
export interface KernelDesc {
  op: number;
  name: string;
  refs: number[];
  ints: number[];
  floats: number[];
  /** Index into PlanDesc.packed, or -1. */
  packed: number;
  /** GEMM on a bf16 weight: index into PlanDesc.packedBf16, or -1 / absent. */
  packedBf16?: number;
  /** GEMM on an f16-stored weight: index into PlanDesc.packedF16, or -1 / absent. */
  packedF16?: number;
}

export interface PlanDesc {
  arenaBytes: number;
  inputBytes: number[];
  outputBytes: number[];
  /** Storage arrays of the constants the kernels read (kept alive by the plan). */
  constants: ArrayBufferView[];
  packed: PackedHandle[];
  /** bf16 weights (handles from packBf16) of precision-'bf16' plans. */
  packedBf16?: PackedBf16Handle[];
  /** f16-stored weights (handles from packF16) of precision-'fp16' plans. */
  packedF16?: PackedF16Handle[];
  kernels: KernelDesc[];
}

export interface PlanAddon {
  createPlan(desc: PlanDesc): PlanHandle;
  runPlan(plan: PlanHandle, inputs: ArrayBufferView[], outputs: ArrayBufferView[]): void;
  runPlanAsync(plan: PlanHandle, inputs: ArrayBufferView[], outputs: ArrayBufferView[], done: (err?: Error) => void): void;
  /** Cumulative nanoseconds per kernel since creation (or the last reset). */
  planProfile(plan: PlanHandle, reset?: boolean): { runs: number; ns: Float64Array };
  packB(b: Float32Array, K: number, N: number, transB: boolean): PackedHandle;
}

function load(): { plan: PlanAddon | null; reason?: string } {
  if (!addon) return { plan: null, reason: loadFailure ?? 'the native addon is not loaded' };
  const a = addon as unknown as Partial<PlanAddon>;
  if (typeof a.createPlan !== 'function' || typeof a.runPlan !== 'function') {
    return { plan: null, reason: 'the native addon was built without the plan executor; rebuild it with `npm run build:native`' };
  }
  return { plan: a as PlanAddon };
}

const loaded = load();
export const planAddon: PlanAddon | null = loaded.plan;
export const planUnavailable: string | undefined = loaded.reason;

/** Operand kinds (enum RefKind). */
export const REF = { none: 0, arena: 1, input: 2, output: 3, constant: 4 } as const;

/** Kernel codes (enum KernelOp). */
export const KERNEL = { copy: 1, elementwise: 2, gemm: 3, norm: 4, softmax: 5, reduce: 6, attention: 7, conv2d: 8, gather: 9, cast: 10 } as const;

/** Element dtypes (plan::DType). f16 and bf16 are only stored, moved and cast, never computed on. */
export const DTYPE_CODES: Partial<Record<DType, number>> = { f32: 0, i32: 1, i64: 2, bool: 3, i8: 4, u8: 5, f16: 6, bf16: 7 };

/** Elementwise instruction codes (kernels.cc enum Op). */
export const EW_CODES: Record<string, number> = {
  neg: 0, abs: 1, relu: 2, exp: 3, log: 4, sqrt: 5, rsqrt: 6, tanh: 7, sigmoid: 8, silu: 9, gelu: 10, gelu_tanh: 11, erf: 12, sin: 13, cos: 14,
  add: 20, sub: 21, mul: 22, div: 23, maximum: 24, minimum: 25, pow: 26,
  equal: 40, less: 41, greater: 42,
  where: 60,
};
export const COMPARISONS = new Set(['equal', 'less', 'greater']);

/** GEMM epilogue activations (native/simd.h enum Act). */
export const ACT_CODES: Record<string, number> = { none: 0, relu: 1, gelu: 2, gelu_tanh: 3, silu: 4 };

/** Reduction codes of the reduce kernel. */
export const REDUCE_CODES: Record<string, number> = { sum: 0, mean: 1, max: 2, min: 3 };
