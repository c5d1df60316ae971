// The plan executor's functions in the native addon (native/plan/plan.cc) and the descriptor they
// take. The codes and kernel layouts the lowering and the executor share are generated
// (kernel-table.gen.ts, from scripts/kernel-table.mjs). `planAddon` is null (and `planUnavailable` says
// why) when the addon is missing or was built before the plan executor existed.
import { addon, loadFailure, type PackedHandle } from '../addon.js';
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
  /** Plans of control-flow sub-graphs (same form, nested), run by cond / while_loop kernels. */
  subPlans?: PlanDesc[];
}

export interface PlanAddon {
  createPlan(desc: PlanDesc): PlanHandle;
  runPlan(plan: PlanHandle, inputs: ArrayBufferView[], outputs: ArrayBufferView[]): void;
  runPlanAsync(plan: PlanHandle, inputs: ArrayBufferView[], outputs: ArrayBufferView[], done: (err?: Error) => void): void;
  /** Cumulative nanoseconds per kernel since creation (or the last reset). */
  planProfile(plan: PlanHandle, reset?: boolean): { runs: number; ns: Float64Array };
  packB(b: Float32Array, K: number, N: number, transB: boolean): PackedHandle;
  /** Transformed Winograd weights alive in this process (shared by every plan convolving the same weight). */
  winogradWeights(): { C: number; O: number; m: number; bytes: number }[];
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
