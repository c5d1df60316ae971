// Lowering of an optimized graph, for one concrete shape binding, into a native plan: a kernel list
// over one arena. This file is the driver: it walks the graph and hands each node to its op's rule
// (rules/*.ts, which choose views, copies and kernels through builder.ts), fills the graph outputs'
// slots, places the arena buffers (the shared planner, src/passes/memory-plan.ts) and assembles the
// descriptor the native executor runs. Every value becomes a strided view of some storage (the arena, a graph input, a
// graph output, a constant): movement ops (reshape, permute, split, slice, expand) only make new
// views, and a copy is emitted only where the consumer needs contiguous memory or a graph output
// must be filled. Arena buffers are placed by liveness (greedy by size, as TFLite's planner does);
// a view keeps its buffer alive, and an elementwise kernel writes over an input buffer that dies
// at it. Control-flow nodes (cond, while_loop) lower each closed sub-graph recursively into a
// sub-plan of its own (rules/control-flow.ts) that the native kernel runs. Constants are read in place; linear/matmul weights are pre-packed once per executable.
// With precision 'bf16' those weights are packed as bf16 panels (fp32 accumulation, same fused
// epilogues) and attention runs with bf16 products; everything else, and the arena, stays fp32.
// Where bf16 products are slower than fp32 (bf16Compute 'fp32', see bf16ComputePlan) the weights
// are rounded to bf16 and then packed or read as f32 for the fp32 kernels, attention runs in fp32.
// With precision 'fp16' they are stored as f16 panels (converted to fp32 as the GEMM loads them)
// and everything else computes in fp32. A model stored in the precision's own 16-bit type (f16
// parameters, inputs, outputs for 'fp16'; bf16 for 'bf16') is widened: its 16-bit activations are
// computed as f32, 16-bit inputs are converted once on entry and outputs on exit, GEMM weights are
// packed straight from their 16-bit storage and only the other 16-bit constants (biases, norm
// weights, tables) are read from f32 copies. Constants the graph derives from parameters (its
// prologue) are still computed in the graph's own dtype, as eager execution would.
import type { Graph } from '../../../ir/graph.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { literalTensor } from '../../reference/interpret.js';
import type { DimBindings } from '../../../ir/dims.js';
import { dtypeBytes, type DType } from '../../../tensor/dtype.js';
import { alignArena, placeBuffers } from '../../../passes/memory-plan.js';
import { PlanBuilder, PlanUnsupportedError, type LowerContext, type Operand, type PlanPrecision, type SubPlan } from './builder.js';
import { REF_KINDS } from './kernel-table.gen.js';
import type { KernelDesc, PlanDesc } from './native.js';
import { planRule } from './rules/index.js';
import { isContiguous, numelOf } from './views.js';

export { PlanUnsupportedError, type LowerContext, type PlanPrecision } from './builder.js';

/** How a graph output is produced: a slot the plan writes, or a tensor handed through. */
export type OutputSource = { kind: 'slot'; slot: number } | { kind: 'input'; index: number } | { kind: 'constant'; name: string };

export interface LoweredPlan {
  desc: PlanDesc;
  /** Per graph output. */
  outputs: OutputSource[];
  /** Dtype and shape of each output slot. */
  slots: { dtype: DType; shape: number[] }[];
  stats: PlanStats;
}

export interface PlanStats {
  kernels: number;
  arenaBytes: number;
  /** One buffer per intermediate value, no reuse, no views: what node-by-node execution allocates. */
  naiveBytes: number;
  /** Movement nodes that became views (no kernel). */
  views: number;
  /** Copies emitted (materialized views, outputs, concat pieces). */
  copies: number;
  /** Elementwise kernels writing over a dying input. */
  inPlace: number;
  /** Linear/matmul weights read pre-packed. */
  packedWeights: number;
  /** Compute precision of the weight GEMMs and attention ('fp32', 'bf16', or 'fp16' storage). */
  precision: PlanPrecision;
  /** Of packedWeights, those packed as bf16 panels. */
  bf16Weights: number;
  /** Of packedWeights, those stored as f16 panels. */
  f16Weights: number;
  /** Reduced-precision plans: 16-bit constants read from f32 copies (not GEMM weights: biases, norms, tables). */
  widened: string[];
  /** Attention kernels with bf16 products. */
  bf16Attention: number;
  /** precision 'bf16' computed by the fp32 kernels ('fp32'), or with bf16 products ('bf16'); absent otherwise. */
  bf16Compute?: 'bf16' | 'fp32';
  /** bf16Compute 'fp32': weights rounded to bf16 for the fp32 kernels (packed, or read in place by conv2d). */
  bf16Rounded: number;
  /** Control-flow sub-plans (nested ones included) and their kernels (not counted in `kernels`). */
  subPlans: number;
  subKernels: number;
  kernelNames: string[];
}

export interface LowerOptions {
  /** Every graph output gets its own slot, written by the plan even when it is a graph input, a
   *  constant or another output's value (sub-plans: their caller hands them one buffer per output). */
  distinctOutputs?: boolean;
  /** Where this graph sits inside the outer graph (sub-plans), to name its sub-graphs uniquely. */
  prefix?: string;
}

export function lowerPlan(graph: Graph, bindings: DimBindings, ctx: LowerContext, options: LowerOptions = {}): LoweredPlan {
  const b = new PlanBuilder(graph, bindings, ctx, (sub, where) => lowerSubPlan(sub, bindings, ctx, `${options.prefix ?? ''}${where}`));

  // output slots: one per distinct value computed by the plan (per output with distinctOutputs;
  // those not computed by a node into their slot are copied into it at the end)
  const copiedOutputs: { value: number; slot: number }[] = [];
  const outputs: OutputSource[] = graph.outputs.map((o) => {
    if (options.distinctOutputs) {
      const slot = b.slots.length;
      b.slots.push({ dtype: b.storedDtype(o.value), shape: b.shape(o.value) });
      if (b.graphInputIndex(o.value) === undefined && b.constantName(o.value) === undefined && !b.slotOf.has(o.value)) b.slotOf.set(o.value, slot);
      else copiedOutputs.push({ value: o.value, slot });
      return { kind: 'slot', slot };
    }
    const inp = b.graphInputIndex(o.value);
    if (inp !== undefined) return { kind: 'input', index: inp };
    const c = b.constantName(o.value);
    if (c !== undefined) return { kind: 'constant', name: c };
    let s = b.slotOf.get(o.value);
    if (s === undefined) {
      s = b.slots.length;
      b.slotOf.set(o.value, s);
      b.slots.push({ dtype: b.storedDtype(o.value), shape: b.shape(o.value) });
    }
    return { kind: 'slot', slot: s };
  });

  graph.nodes.forEach((node, i) => {
    b.at(node, i);
    if (node.outputs.every((v) => numelOf(b.shape(v)) === 0)) {
      for (const v of node.outputs) b.setView(v, b.dest(v));
      return;
    }
    const rule = planRule(node.op) ?? b.unsupported('no plan kernel for this op');
    rule(node, b, i);
    // graph outputs must end up in their slots
    for (const v of node.outputs) {
      const slot = b.slotOf.get(v);
      if (slot === undefined) continue;
      const view = b.viewOf(v);
      if (view.store.kind === 'output' && view.store.index === slot && view.offset === 0 && isContiguous(view.shape, view.strides)) continue;
      const dst = b.contiguousView({ kind: 'output', index: slot }, b.shape(v), b.slots[slot].dtype);
      if (dst.dtype === view.dtype) b.emitCopy(view, dst, `output ${slot}`);
      else b.emitCast(b.contiguous(v), dst, `output ${slot} (${view.dtype} -> ${dst.dtype})`);
      b.setView(v, dst);
    }
  });
  for (const { value, slot } of copiedOutputs) {
    const view = b.viewOf(value);
    const dst = b.contiguousView({ kind: 'output', index: slot }, b.shape(value), b.slots[slot].dtype);
    if (dst.dtype === view.dtype) b.emitCopy(view, dst, `output ${slot}`);
    else b.emitCast(b.contiguous(value), dst, `output ${slot} (${view.dtype} -> ${dst.dtype})`);
  }

  const { offsets, arenaBytes } = placeBuffers(b.buffers);
  const refOf = (r: Operand): number[] => {
    if (!r) return [REF_KINDS.none, 0, 0];
    const bytes = r.offset * dtypeBytes(r.dtype);
    switch (r.store.kind) {
      case 'arena': return [REF_KINDS.arena, 0, offsets[r.store.index] + bytes];
      case 'input': return [REF_KINDS.input, r.store.index, bytes];
      case 'output': return [REF_KINDS.output, r.store.index, bytes];
      default: return [REF_KINDS.constant, r.store.index, bytes];
    }
  };
  const kernels: KernelDesc[] = b.drafts.map((d) => ({
    op: d.op, name: d.name, refs: d.refs.flatMap(refOf), ints: d.ints, floats: d.floats, packed: d.packed,
    ...(d.packedBf16 >= 0 ? { packedBf16: d.packedBf16 } : {}),
    ...(d.packedF16 >= 0 ? { packedF16: d.packedF16 } : {}),
  }));

  let naiveBytes = 0;
  for (const n of graph.nodes) for (const v of n.outputs) if (!b.slotOf.has(v)) naiveBytes += alignArena(numelOf(b.shape(v)) * dtypeBytes(b.dtypeOf(v)));

  const inputBytes = graph.inputs.map((inp) => numelOf(b.shape(inp.value)) * dtypeBytes(b.storedDtype(inp.value)));
  const outputBytes = b.slots.map((s) => numelOf(s.shape) * dtypeBytes(s.dtype));
  const { packed, packedBf16, packedF16 } = b;
  return {
    desc: {
      arenaBytes, inputBytes, outputBytes, constants: b.constants, packed, ...(b.bf16 ? { packedBf16 } : {}), ...(b.fp16 ? { packedF16 } : {}), kernels,
      ...(b.subPlans.length ? { subPlans: b.subPlans } : {}),
    },
    outputs,
    slots: b.slots,
    stats: {
      kernels: kernels.length, arenaBytes, naiveBytes, views: b.stats.views, copies: b.stats.copies, inPlace: b.stats.inPlace,
      packedWeights: packed.length + packedBf16.length + packedF16.length, precision: b.precision, bf16Weights: packedBf16.length, f16Weights: packedF16.length,
      widened: b.widened, bf16Attention: b.stats.bf16Attention, ...(b.precision === 'bf16' ? { bf16Compute: b.bf16AsFp32 ? 'fp32' as const : 'bf16' as const } : {}),
      bf16Rounded: b.stats.bf16Rounded, subPlans: b.stats.subPlans, subKernels: b.stats.subKernels,
      kernelNames: b.drafts.map((d) => d.name),
    },
  };
}

/** Lowers a control-flow sub-graph into a sub-plan: the same constants and weight packing as the
 *  outer plan, except the sub-graph's own literals (their names are only unique within it, so
 *  packed copies of them are cached under a name qualified by where the sub-graph sits). Sub-graph
 *  inputs carry the operands' types, so the outer dim bindings bind them. */
function lowerSubPlan(graph: Graph, bindings: DimBindings, ctx: LowerContext, where: string): SubPlan {
  const literals = new Map<string, Tensor>();
  for (const c of graph.constants) if (c.kind === 'literal') literals.set(c.name, literalTensor(c));
  const key = (name: string): string => (literals.has(name) ? `${where}/${name}` : name);
  const sub: LowerContext = {
    ...ctx,
    constant: (name) => literals.get(name) ?? ctx.constant(name),
    pack: (name, t, K, N, transB) => ctx.pack(key(name), t, K, N, transB),
    packBf16: ctx.packBf16 && ((name, t, K, N, transB) => ctx.packBf16!(key(name), t, K, N, transB)),
    packF16: ctx.packF16 && ((name, t, K, N, transB) => ctx.packF16!(key(name), t, K, N, transB)),
    packBf16AsF32: ctx.packBf16AsF32 && ((name, t, K, N, transB) => ctx.packBf16AsF32!(key(name), t, K, N, transB)),
    constantBf16Rounded: ctx.constantBf16Rounded && ((name, t) => ctx.constantBf16Rounded!(key(name), t)),
    constantF32: ctx.constantF32 && ((name) => {
      if (literals.has(name)) throw new PlanUnsupportedError(`${where}: 16-bit literal @${name} inside control flow is not widened`);
      return ctx.constantF32!(name);
    }),
  };
  const lowered = lowerPlan(graph, bindings, sub, { distinctOutputs: true, prefix: `${where} > ` });
  return { desc: lowered.desc, kernels: lowered.stats.kernels, subPlans: lowered.stats.subPlans, subKernels: lowered.stats.subKernels };
}
