// Lowering of an optimized graph, for one concrete shape binding, into a native plan: a kernel list
// over one arena. Every value becomes a strided view of some storage (the arena, a graph input, a
// graph output, a constant): movement ops (reshape, permute, split, slice, expand) only make new
// views, and a copy is emitted only where the consumer needs contiguous memory or a graph output
// must be filled. Arena buffers are placed by liveness (greedy by size, as TFLite's planner does);
// a view keeps its buffer alive, and an elementwise kernel writes over an input buffer that dies
// at it. Constants are read in place; linear/matmul weights are pre-packed once per executable.
// With precision 'bf16' those weights are packed as bf16 panels (fp32 accumulation, same fused
// epilogues) and attention runs with bf16 products; everything else, and the arena, stays fp32.
// With precision 'fp16' they are stored as f16 panels (converted to fp32 as the GEMM loads them)
// and everything else computes in fp32. A model stored in the precision's own 16-bit type (f16
// parameters, inputs, outputs for 'fp16'; bf16 for 'bf16') is widened: its 16-bit activations are
// computed as f32, 16-bit inputs are converted once on entry and outputs on exit, GEMM weights are
// packed straight from their 16-bit storage and only the other 16-bit constants (biases, norm
// weights, tables) are read from f32 copies. Constants the graph derives from parameters (its
// prologue) are still computed in the graph's own dtype, as eager execution would.
import type { Graph, Node } from '../../../ir/graph.js';
import { evalShape, type DimBindings } from '../../../ir/dims.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { dtypeBytes, type DType } from '../../../tensor/dtype.js';
import { parseElementwiseProgram } from '../../../ops/fused.js';
import type { PackedHandle } from '../addon.js';
import type { PackedBf16Handle, PackedF16Handle } from '../bf16.js';
import { ACT_CODES, COMPARISONS, DTYPE_CODES, EW_CODES, KERNEL, REDUCE_CODES, REF, type KernelDesc, type PlanDesc } from './native.js';
import { broadcastTo, contiguousStrides, isContiguous, numelOf, reshapeStrides, sliceBounds } from './views.js';

/** Thrown when a graph has a node the plan executor cannot run (the caller falls back). */
export class PlanUnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanUnsupportedError';
  }
}

export const ARENA_ALIGN = 64;
const align = (n: number): number => Math.ceil(n / ARENA_ALIGN) * ARENA_ALIGN;

type Store = { kind: 'arena' | 'input' | 'output' | 'const'; index: number };
interface View { store: Store; offset: number; shape: number[]; strides: number[]; dtype: DType }

interface Draft { op: number; name: string; refs: (View | null)[]; ints: number[]; floats: number[]; packed: number; packedBf16: number; packedF16: number }
/** A GEMM's constant B operand: an index into one of the plan's packed-weight lists (else -1). */
interface WeightRef { packed: number; packedBf16: number; packedF16: number }
interface Buffer { bytes: number; def: number; end: number; aliases: Set<number> }

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
  kernelNames: string[];
}

/** Precisions the plan executor computes in. */
export type PlanPrecision = 'fp32' | 'bf16' | 'fp16';

export interface LowerContext {
  /** The live tensor of a constant value (parameters, derived constants, literals). */
  constant(name: string): Tensor;
  /** A packed handle for weight `t` viewed as B [K, N] (stored [N, K] when transB), cached by the caller. */
  pack(name: string, t: Tensor, K: number, N: number, transB: boolean): PackedHandle;
  /** Default 'fp32'. 'bf16' needs packBf16, 'fp16' packF16; both need constantF32 for 16-bit models. */
  precision?: PlanPrecision;
  /** As pack, into bf16 panels (rounded to nearest even), cached by the caller. */
  packBf16?(name: string, t: Tensor, K: number, N: number, transB: boolean): PackedBf16Handle;
  /** 'fp16': as pack, into f16 panels (f16 weights as they are, f32 rounded to nearest even). */
  packF16?(name: string, t: Tensor, K: number, N: number, transB: boolean): PackedF16Handle;
  /** 'fp16' / 'bf16': an f32 copy of an f16 / bf16 constant, cached by the caller. */
  constantF32?(name: string): Tensor;
}

const normAxis = (a: number, rank: number): number => (a < 0 ? a + rank : a);

export function lowerPlan(graph: Graph, bindings: DimBindings, ctx: LowerContext): LoweredPlan {
  const precision: PlanPrecision = ctx.precision ?? 'fp32';
  const bf16 = precision === 'bf16', fp16 = precision === 'fp16';
  if (bf16 && !ctx.packBf16) throw new Error('lowerPlan: precision \'bf16\' needs a packBf16 callback');
  if (fp16 && !ctx.packF16) throw new Error('lowerPlan: precision \'fp16\' needs a packF16 callback');
  const shapeOf = new Map<number, number[]>();
  for (const [id, v] of graph.values) shapeOf.set(id, evalShape(v.shape, bindings));
  /** The dtype a value is stored as (graph inputs, outputs, constants). */
  const storedDtype = (v: number): DType => graph.value(v).dtype;
  /** The 16-bit type a reduced-precision plan widens to f32, and the dtype a value is computed as. */
  const narrow: DType | null = fp16 ? 'f16' : bf16 ? 'bf16' : null;
  const dtypeOf = (v: number): DType => { const d = storedDtype(v); return d === narrow ? 'f32' : d; };
  const shape = (v: number): number[] => shapeOf.get(v)!;

  const constByValue = graph.constantByValue();
  const inputIndex = new Map(graph.inputs.map((inp, i) => [inp.value, i]));
  const users = graph.users();
  const lastUse = new Map<number, number>();
  graph.nodes.forEach((n, i) => { for (const v of n.inputs) if (v !== null) lastUse.set(v, i); });
  for (const o of graph.outputs) lastUse.set(o.value, Infinity);

  // output slots: one per distinct value computed by the plan
  const slotOf = new Map<number, number>();
  const slots: { dtype: DType; shape: number[] }[] = [];
  const outputs: OutputSource[] = graph.outputs.map((o) => {
    const inp = inputIndex.get(o.value);
    if (inp !== undefined) return { kind: 'input', index: inp };
    const c = constByValue.get(o.value);
    if (c) return { kind: 'constant', name: c.name };
    let s = slotOf.get(o.value);
    if (s === undefined) {
      s = slots.length;
      slotOf.set(o.value, s);
      slots.push({ dtype: storedDtype(o.value), shape: shape(o.value) });
    }
    return { kind: 'slot', slot: s };
  });

  const drafts: Draft[] = [];
  const buffers: Buffer[] = [];
  const env = new Map<number, View>();
  const constants: ArrayBufferView[] = [];
  const constIndex = new Map<string, number>();
  const packed: PackedHandle[] = [];
  const packedIndex = new Map<string, number>();
  const packedBf16: PackedBf16Handle[] = [];
  const packedBf16Index = new Map<string, number>();
  const packedF16: PackedF16Handle[] = [];
  const packedF16Index = new Map<string, number>();
  const widened: string[] = [];
  const stats = { views: 0, copies: 0, inPlace: 0, bf16Attention: 0 };

  const contiguousView = (store: Store, s: number[], dtype: DType, offset = 0): View => ({ store, offset, shape: s, strides: contiguousStrides(s), dtype });
  const setView = (v: number, view: View): void => {
    env.set(v, view);
    if (view.store.kind === 'arena') buffers[view.store.index].aliases.add(v);
  };
  const alloc = (s: number[], dtype: DType): View => {
    buffers.push({ bytes: numelOf(s) * dtypeBytes(dtype), def: drafts.length, end: drafts.length, aliases: new Set() });
    return contiguousView({ kind: 'arena', index: buffers.length - 1 }, s, dtype);
  };
  /** The output slot v ends up in when v is a graph output, or is only reshaped into one. */
  const slotThroughReshapes = (v: number): number | undefined => {
    for (let cur = v, hops = 0; hops < 8; hops++) {
      const slot = slotOf.get(cur);
      if (slot !== undefined) return slot;
      const us = users.get(cur) ?? [];
      if (us.length !== 1 || us[0].op !== 'reshape' || lastUse.get(cur) === Infinity) return undefined;
      cur = us[0].outputs[0];
    }
    return undefined;
  };
  /** Where a kernel writes value v: the output slot it becomes (directly or through reshapes, which
   *  are then free views of the slot), else a new arena buffer. */
  const dest = (v: number, s = shape(v)): View => {
    const slot = slotThroughReshapes(v);
    // a widened f16 output is computed in the arena and converted into its slot at the end
    return slot !== undefined && slots[slot].dtype === dtypeOf(v) ? contiguousView({ kind: 'output', index: slot }, s, dtypeOf(v)) : alloc(s, dtypeOf(v));
  };
  const emit = (op: number, name: string, refs: (View | null)[], ints: number[], floats: number[] = [], pk = -1): void => {
    const k = drafts.length;
    for (const r of refs) if (r && r.store.kind === 'arena') { const b = buffers[r.store.index]; b.end = Math.max(b.end, k); }
    drafts.push({ op, name, refs, ints, floats, packed: pk, packedBf16: -1, packedF16: -1 });
  };
  /** Converts contiguous src into dst (same shape) with the plan's cast kernel. */
  const emitCast = (src: View, dst: View, name: string): void => {
    emit(KERNEL.cast, name, [src, dst], [DTYPE_CODES[src.dtype]!, DTYPE_CODES[dst.dtype]!, numelOf(src.shape)]);
  };
  const emitCopy = (src: View, dst: View, name: string): void => {
    stats.copies++;
    const es = dtypeBytes(src.dtype);
    emit(KERNEL.copy, name, [src, dst], [es, src.shape.length, ...src.shape, ...src.strides, ...dst.strides]);
  };

  const viewOf = (v: number): View => {
    const have = env.get(v);
    if (have) return have;
    const c = constByValue.get(v);
    if (c) {
      const widen = c.dtype === narrow;
      let idx = constIndex.get(c.name);
      if (idx === undefined) {
        if (widen && !ctx.constantF32) throw new Error(`lowerPlan: ${c.dtype} constant @${c.name} needs a constantF32 callback`);
        const t = widen ? ctx.constantF32!(c.name) : ctx.constant(c.name);
        if (widen) widened.push(c.name);
        idx = constants.length;
        constants.push(t.data as ArrayBufferView);
        constIndex.set(c.name, idx);
      }
      const view = contiguousView({ kind: 'const', index: idx }, shape(v), widen ? 'f32' : c.dtype);
      env.set(v, view);
      return view;
    }
    const inp = inputIndex.get(v);
    if (inp !== undefined) {
      let view = contiguousView({ kind: 'input', index: inp }, shape(v), storedDtype(v));
      if (view.dtype !== dtypeOf(v)) {
        // a widened f16 input: converted once, on first use
        const wide = alloc(shape(v), dtypeOf(v));
        emitCast(view, wide, `input ${inp} (${view.dtype} -> ${wide.dtype})`);
        view = wide;
      }
      setView(v, view);
      return view;
    }
    throw new PlanUnsupportedError(`value %${v} is read before it is defined`);
  };
  /** The value as contiguous memory, copying it once (later readers reuse the copy). */
  const contiguous = (v: number): View => {
    const view = viewOf(v);
    if (isContiguous(view.shape, view.strides)) return view;
    const dst = alloc(view.shape, view.dtype);
    emitCopy(view, dst, 'materialize');
    setView(v, dst);
    return dst;
  };
  const optional = (v: number | null): View | null => (v === null ? null : contiguous(v));
  /** v viewed as a row-major [M, K] matrix with unit column stride: its leading dimension. */
  const asMatrix = (v: number, M: number, K: number): { view: View; ld: number } => {
    const view = viewOf(v);
    const st = reshapeStrides(view.shape, view.strides, [M, K]);
    if (st && (K <= 1 || st[1] === 1) && (M <= 1 || st[0] >= K)) return { view, ld: M <= 1 ? K : st[0] };
    return { view: contiguous(v), ld: K };
  };
  const deadAfter = (buf: number, i: number): boolean => [...buffers[buf].aliases].every((a) => (lastUse.get(a) ?? -1) <= i);
  const packOf = (v: number, K: number, N: number, transB: boolean): number => {
    const c = constByValue.get(v)!;
    const key = `${c.name}|${transB ? 't' : 'n'}`;
    let idx = packedIndex.get(key);
    if (idx === undefined) {
      idx = packed.length;
      packed.push(ctx.pack(c.name, ctx.constant(c.name), K, N, transB));
      packedIndex.set(key, idx);
    }
    return idx;
  };
  /** A constant weight as a GEMM's B operand: fp32 panels, bf16 panels in a bf16 plan, f16 panels
   *  (packed from the stored constant, f16 or f32) in an fp16 plan. */
  const weightOf = (v: number, K: number, N: number, transB: boolean): WeightRef => {
    if (!bf16 && !fp16) return { packed: packOf(v, K, N, transB), packedBf16: -1, packedF16: -1 };
    const c = constByValue.get(v)!;
    const key = `${c.name}|${transB ? 't' : 'n'}`;
    const [list, index, pack] = bf16
      ? [packedBf16 as unknown[], packedBf16Index, ctx.packBf16!] as const
      : [packedF16 as unknown[], packedF16Index, ctx.packF16!] as const;
    let idx = index.get(key);
    if (idx === undefined) {
      idx = list.length;
      list.push(pack(c.name, ctx.constant(c.name), K, N, transB));
      index.set(key, idx);
    }
    return bf16 ? { packed: -1, packedBf16: idx, packedF16: -1 } : { packed: -1, packedBf16: -1, packedF16: idx };
  };
  const useWeight = (w: WeightRef): void => {
    const d = drafts[drafts.length - 1];
    d.packed = w.packed;
    d.packedBf16 = w.packedBf16;
    d.packedF16 = w.packedF16;
  };
  const isF32 = (v: number | null): boolean => v === null || dtypeOf(v) === 'f32';

  graph.nodes.forEach((node, i) => {
    const where = `node ${i} (${node.op}${node.source ? ` at ${node.source}` : ''})`;
    const unsupported = (why: string): never => { throw new PlanUnsupportedError(`${where}: ${why}`); };
    const outV = node.outputs[0];
    if (node.outputs.every((v) => numelOf(shape(v)) === 0)) {
      for (const v of node.outputs) setView(v, dest(v));
      return;
    }
    lowerNode(node, i, outV, unsupported);
    // graph outputs must end up in their slots
    for (const v of node.outputs) {
      const slot = slotOf.get(v);
      if (slot === undefined) continue;
      const view = env.get(v)!;
      if (view.store.kind === 'output' && view.store.index === slot && view.offset === 0 && isContiguous(view.shape, view.strides)) continue;
      const dst = contiguousView({ kind: 'output', index: slot }, shape(v), slots[slot].dtype);
      if (dst.dtype === view.dtype) emitCopy(view, dst, `output ${slot}`);
      else emitCast(contiguous(v), dst, `output ${slot} (${view.dtype} -> ${dst.dtype})`);
      setView(v, dst);
    }
  });

  function elementwise(node: Node, i: number, instrs: number[][], outDtype: DType): void {
    const outV = node.outputs[0];
    const outShape = shape(outV);
    const ins = node.inputs.map((v) => viewOf(v!));
    let dst: View | null = null;
    if (slotThroughReshapes(outV) === undefined) {
      for (let j = 0; j < ins.length && !dst; j++) {
        const w = ins[j];
        if (w.store.kind !== 'arena' || w.offset !== 0 || dtypeBytes(w.dtype) !== dtypeBytes(outDtype)) continue;
        const buf = w.store.index;
        if (buffers[buf].bytes !== numelOf(outShape) * dtypeBytes(outDtype)) continue;
        if (w.shape.length !== outShape.length || w.shape.some((d, k) => d !== outShape[k]) || !isContiguous(w.shape, w.strides)) continue;
        if (ins.some((o, k) => k !== j && o.store.kind === 'arena' && o.store.index === buf)) continue;
        if (!deadAfter(buf, i)) continue;
        dst = { store: w.store, offset: 0, shape: outShape, strides: contiguousStrides(outShape), dtype: outDtype };
        stats.inPlace++;
      }
    }
    dst ??= dest(outV);
    const ints = [ins.length, outShape.length, DTYPE_CODES[outDtype]!, ...outShape];
    for (const w of ins) ints.push(DTYPE_CODES[w.dtype]!, ...broadcastTo(w.shape, w.strides, outShape));
    ints.push(instrs.length);
    for (const ins4 of instrs) ints.push(ins4[0], ins4[1] ?? -1, ins4[2] ?? -1, ins4[3] ?? -1);
    emit(KERNEL.elementwise, node.op, [...ins, dst], ints);
    setView(outV, dst);
  }

  function lowerNode(node: Node, i: number, outV: number, unsupported: (why: string) => never): void {
    const a = node.attrs as Record<string, any>;
    const op = node.op;
    const inF32 = node.inputs.every(isF32);
    const needF32 = (): void => { if (!inF32 || !node.outputs.every(isF32)) unsupported(`plan kernels compute in f32; inputs are ${node.inputs.map((v) => (v === null ? 'none' : dtypeOf(v))).join(', ')}`); };

    // ---- elementwise ----
    if (EW_CODES[op] !== undefined) {
      const code = EW_CODES[op];
      if (op === 'where') {
        if (dtypeOf(node.inputs[0]!) !== 'bool' || !isF32(node.inputs[1]) || !isF32(node.inputs[2])) unsupported('where needs a bool condition and f32 values');
        return elementwise(node, i, [[code, 0, 1, 2]], 'f32');
      }
      if (!inF32) unsupported(`elementwise kernels take f32 operands, got ${node.inputs.map((v) => dtypeOf(v!)).join(', ')}`);
      if (COMPARISONS.has(op)) return elementwise(node, i, [[code, 0, 1]], 'bool');
      if (dtypeOf(outV) !== 'f32') unsupported(`output dtype ${dtypeOf(outV)}`);
      return elementwise(node, i, [node.inputs.length === 1 ? [code, 0] : [code, 0, 1]], 'f32');
    }
    switch (op) {
      case 'fused_elementwise': {
        if (dtypeOf(outV) !== 'f32' || !node.inputs.every((v) => dtypeOf(v!) === 'f32' || dtypeOf(v!) === 'bool')) unsupported('fused programs run on f32 (bool conditions)');
        const prog = parseElementwiseProgram(a.program as string, node.inputs.length);
        const instrs = prog.map((p) => {
          const c = EW_CODES[p.op];
          if (c === undefined) unsupported(`program op ${p.op} has no plan kernel`);
          return [c, ...p.args];
        });
        return elementwise(node, i, instrs, 'f32');
      }

      // ---- views ----
      case 'reshape': {
        const src = viewOf(node.inputs[0]!);
        const outShape = shape(outV);
        const st = reshapeStrides(src.shape, src.strides, outShape);
        if (st) { stats.views++; setView(outV, { ...src, shape: outShape, strides: st }); return; }
        const dst = dest(outV);
        emitCopy(src, { ...dst, shape: src.shape, strides: contiguousStrides(src.shape) }, 'reshape');
        setView(outV, dst);
        return;
      }
      case 'permute': {
        const src = viewOf(node.inputs[0]!);
        const perm = (a.perm as number[]).map((p) => normAxis(p, src.shape.length));
        stats.views++;
        setView(outV, { ...src, shape: perm.map((p) => src.shape[p]), strides: perm.map((p) => src.strides[p]) });
        return;
      }
      case 'split': {
        const src = viewOf(node.inputs[0]!);
        const axis = normAxis(a.axis as number, src.shape.length);
        let at = 0;
        node.outputs.forEach((v) => {
          const s = shape(v);
          setView(v, { ...src, offset: src.offset + at * src.strides[axis], shape: s, strides: [...src.strides] });
          at += s[axis];
        });
        stats.views++;
        return;
      }
      case 'slice': {
        const src = viewOf(node.inputs[0]!);
        let offset = src.offset;
        const s = [...src.shape], st = [...src.strides];
        (a.axes as number[]).forEach((ax, j) => {
          const d = normAxis(ax, s.length);
          const { start, length } = sliceBounds(src.shape[d], a.starts[j], a.ends[j], a.steps[j]);
          offset += start * src.strides[d];
          s[d] = length;
          st[d] = src.strides[d] * a.steps[j];
        });
        stats.views++;
        setView(outV, { ...src, offset, shape: s, strides: st });
        return;
      }
      case 'expand': {
        const src = viewOf(node.inputs[0]!);
        const s = shape(outV);
        stats.views++;
        setView(outV, { ...src, shape: s, strides: broadcastTo(src.shape, src.strides, s) });
        return;
      }
      case 'concat': {
        const dst = dest(outV);
        const axis = normAxis(a.axis as number, dst.shape.length);
        let at = 0;
        for (const v of node.inputs) {
          const src = viewOf(v!);
          if (numelOf(src.shape) > 0) emitCopy(src, { ...dst, offset: dst.offset + at * dst.strides[axis], shape: src.shape }, 'concat');
          at += src.shape[axis];
        }
        setView(outV, dst);
        return;
      }
      case 'cast': {
        const from = DTYPE_CODES[dtypeOf(node.inputs[0]!)], to = DTYPE_CODES[dtypeOf(outV)];
        if (from === undefined || to === undefined) unsupported(`cast ${dtypeOf(node.inputs[0]!)} -> ${dtypeOf(outV)}`);
        if (narrow && from === to) {
          // f32 <-> the widened 16-bit type: both sides are f32 here. Widening is exact, so the value
          // passes through; a cast *to* the 16-bit type is a rounding the code asked for, so it is
          // kept (a round trip through a 16-bit buffer).
          if (storedDtype(outV) !== narrow || storedDtype(node.inputs[0]!) === narrow) {
            stats.views++;
            setView(outV, viewOf(node.inputs[0]!));
            return;
          }
          const x = contiguous(node.inputs[0]!);
          const rounded = alloc(x.shape, narrow);
          emitCast(x, rounded, `${op} (round to ${narrow})`);
          const dst = dest(outV);
          emitCast(rounded, dst, `${op} (round to ${narrow})`);
          setView(outV, dst);
          return;
        }
        const x = contiguous(node.inputs[0]!);
        const dst = dest(outV);
        emit(KERNEL.cast, op, [x, dst], [from!, to!, numelOf(x.shape)]);
        setView(outV, dst);
        return;
      }
      case 'gather':
      case 'embedding': {
        const [xv, iv] = op === 'embedding' ? [node.inputs[0]!, node.inputs[1]!] : [node.inputs[0]!, node.inputs[1]!];
        const idt = dtypeOf(iv);
        if (idt !== 'i32' && idt !== 'i64') unsupported(`indices of dtype ${idt}`);
        const x = contiguous(xv), idx = contiguous(iv);
        const axis = op === 'embedding' ? 0 : normAxis(a.axis as number, x.shape.length);
        const outer = numelOf(x.shape.slice(0, axis)), size = x.shape[axis], inner = numelOf(x.shape.slice(axis + 1));
        const dst = dest(outV);
        emit(KERNEL.gather, op, [x, idx, dst], [dtypeBytes(x.dtype), outer, size, inner, dtypeBytes(idt), numelOf(idx.shape), op === 'gather' ? 1 : 0, op === 'embedding' ? 1 : 0]);
        setView(outV, dst);
        return;
      }

      // ---- linear algebra ----
      case 'linear':
      case 'linear_fused': {
        needF32();
        const [xv, wv, bv, rv] = node.inputs;
        const [N, K] = shape(wv!);
        const outShape = shape(outV);
        const M = numelOf(outShape) / N;
        const A = asMatrix(xv!, M, K);
        let bRef: View | null = null, w: WeightRef | null = null;
        if (constByValue.has(wv!)) w = weightOf(wv!, K, N, true);
        else bRef = contiguous(wv!);
        const bias = optional(bv ?? null);
        const dst = dest(outV);
        let res: View | null = null, ldr = N, lateResidual: number | null = null;
        if (rv !== undefined && rv !== null) {
          const rs = shape(rv);
          if (rs.length === outShape.length && rs.every((d, k) => d === outShape[k])) {
            const R = asMatrix(rv, M, N);
            res = R.view;
            ldr = R.ld;
          } else lateResidual = rv;
        }
        const act = ACT_CODES[(a.activation as string | undefined) ?? 'none'];
        emit(KERNEL.gemm, op, [A.view, bRef, bias, res, dst], [M, N, K, 0, 1, act, 1, 0, A.ld, K, N, ldr], [1]);
        if (w) useWeight(w);
        setView(outV, dst);
        if (lateResidual !== null) {
          // a broadcast residual is added in place afterwards
          const r = viewOf(lateResidual);
          emit(KERNEL.elementwise, 'residual-add', [dst, r, dst], [2, outShape.length, 0, ...outShape, 0, ...dst.strides, 0, ...broadcastTo(r.shape, r.strides, outShape), 1, EW_CODES.add, 0, 1, -1]);
        }
        return;
      }
      case 'matmul': {
        needF32();
        const [av, bv] = node.inputs as number[];
        const as = shape(av), bs = shape(bv), ys = shape(outV);
        const M = as.length === 1 ? 1 : as[as.length - 2], K = as[as.length - 1];
        const N = bs.length === 1 ? 1 : bs[bs.length - 1];
        const aBatch = as.length <= 2 ? [] : as.slice(0, -2), bBatch = bs.length <= 2 ? [] : bs.slice(0, -2);
        const yBatch = ys.slice(0, ys.length - (as.length > 1 ? 1 : 0) - (bs.length > 1 ? 1 : 0));
        const count = numelOf(yBatch);
        const dst = dest(outV);
        if (numelOf(bBatch) === 1) {
          const A = asMatrix(av, count * M, K);
          let bRef: View | null = null, w: WeightRef | null = null;
          if (constByValue.has(bv) && bs.length <= 2) w = weightOf(bv, K, N, false);
          else bRef = contiguous(bv);
          emit(KERNEL.gemm, op, [A.view, bRef, null, null, dst], [count * M, N, K, 0, 0, 0, 1, 0, A.ld, N, N, N], [1]);
          if (w) useWeight(w);
        } else {
          const A = contiguous(av), B = contiguous(bv);
          const offs = (batch: number[]): number[] => {
            const out: number[] = [];
            const st = broadcastTo(batch, contiguousStrides(batch), yBatch);
            for (let t = 0; t < count; t++) {
              let rem = t, o = 0;
              for (let d = yBatch.length - 1; d >= 0; d--) { o += (rem % yBatch[d]) * st[d]; rem = Math.floor(rem / yBatch[d]); }
              out.push(o);
            }
            return out;
          };
          const aOff = offs(aBatch).map((o) => o * M * K), bOff = offs(bBatch).map((o) => o * K * N);
          const cOff = Array.from({ length: count }, (_, t) => t * M * N);
          emit(KERNEL.gemm, op, [A, B, null, null, dst], [M, N, K, 0, 0, 0, count, 1, K, N, N, N, ...aOff, ...bOff, ...cOff, ...new Array<number>(count).fill(0)], [1]);
        }
        setView(outV, dst);
        return;
      }
      case 'conv2d': {
        needF32();
        const x = contiguous(node.inputs[0]!), w = contiguous(node.inputs[1]!), bias = optional(node.inputs[2] ?? null);
        const [n, c, h, wd] = x.shape;
        const [o, , kh, kw] = w.shape;
        const dst = dest(outV);
        emit(KERNEL.conv2d, op, [x, w, bias, dst], [n, c, h, wd, o, kh, kw, a.stride[0], a.stride[1], a.padding[0], a.padding[1], a.dilation[0], a.dilation[1], a.groups, 0]);
        setView(outV, dst);
        return;
      }

      // ---- norms, softmax, reductions ----
      case 'layer_norm':
      case 'rms_norm':
      case 'add_layer_norm':
      case 'add_rms_norm':
      case 'layer_norm_modulate': {
        needF32();
        const rms = op === 'rms_norm' || op === 'add_rms_norm';
        const withRes = op === 'add_layer_norm' || op === 'add_rms_norm';
        const mod = op === 'layer_norm_modulate';
        const ins = node.inputs;
        const x = contiguous(ins[0]!);
        const res = withRes ? contiguous(ins[1]!) : null;
        const wIdx = withRes || !mod ? (withRes ? 2 : 1) : 3;
        const weight = optional(ins[wIdx] ?? null);
        const bias = rms ? null : optional(ins[wIdx + 1] ?? null);
        const nd = op === 'layer_norm' || op === 'add_layer_norm' ? (a.normalized_ndim as number) : 1;
        const cols = numelOf(x.shape.slice(x.shape.length - nd));
        const rows = cols === 0 ? 0 : numelOf(x.shape) / cols;
        let shift: View | null = null, scale: View | null = null, shiftStride = 0, scaleStride = 0, perSample = 1;
        if (mod) {
          const rowView = (v: number): { view: View; stride: number } => {
            const w = viewOf(v);
            if (w.shape.length === 2 && (w.shape[1] <= 1 || w.strides[1] === 1)) return { view: w, stride: w.shape[0] <= 1 ? 0 : w.strides[0] };
            return { view: contiguous(v), stride: w.shape[1] };
          };
          const sh = rowView(ins[1]!), sc = rowView(ins[2]!);
          shift = sh.view; shiftStride = sh.stride;
          scale = sc.view; scaleStride = sc.stride;
          perSample = rows / x.shape[0];
        }
        const out = dest(outV);
        const sum = withRes ? dest(node.outputs[1]) : null;
        emit(KERNEL.norm, op, [x, res, weight, bias, shift, scale, out, sum], [rms ? 1 : 0, rows, cols, perSample, shiftStride, scaleStride], [a.eps as number]);
        setView(outV, out);
        if (sum) setView(node.outputs[1], sum);
        return;
      }
      case 'softmax':
      case 'log_softmax': {
        needF32();
        const x = contiguous(node.inputs[0]!);
        const r = x.shape.length;
        const ax = r === 0 ? 0 : normAxis(a.axis as number, r);
        const outer = r === 0 ? 1 : numelOf(x.shape.slice(0, ax)), size = r === 0 ? 1 : x.shape[ax], inner = r === 0 ? 1 : numelOf(x.shape.slice(ax + 1));
        const dst = dest(outV);
        emit(KERNEL.softmax, op, [x, dst], [outer, size, inner, op === 'log_softmax' ? 1 : 0]);
        setView(outV, dst);
        return;
      }
      case 'sum':
      case 'mean':
      case 'max':
      case 'min': {
        needF32();
        const x = contiguous(node.inputs[0]!);
        const r = x.shape.length;
        const axes = (a.axes as number[]).length === 0 ? x.shape.map((_, k) => k) : [...new Set((a.axes as number[]).map((ax) => normAxis(ax, r)))].sort((p, q) => p - q);
        for (let k = 1; k < axes.length; k++) if (axes[k] !== axes[k - 1] + 1) unsupported(`reduced axes [${axes.join(', ')}] are not one contiguous block`);
        const a0 = r === 0 ? 0 : axes[0], a1 = r === 0 ? -1 : axes[axes.length - 1];
        const dst = dest(outV);
        emit(KERNEL.reduce, op, [x, dst], [REDUCE_CODES[op], numelOf(x.shape.slice(0, a0)), numelOf(x.shape.slice(a0, a1 + 1)), numelOf(x.shape.slice(a1 + 1))]);
        setView(outV, dst);
        return;
      }

      // ---- attention ----
      case 'scaled_dot_product_attention':
      case 'attention_fused': {
        const [qv, kv, vv, mv] = node.inputs;
        if (![qv, kv, vv].every(isF32) || !isF32(outV)) unsupported('attention runs on f32 q/k/v');
        if (mv !== null && mv !== undefined && dtypeOf(mv) !== 'f32' && dtypeOf(mv) !== 'bool') unsupported(`mask dtype ${dtypeOf(mv)}`);
        const bshd = op === 'attention_fused' && a.layout === 'bshd';
        const perm = bshd ? [0, 2, 1, 3] : [0, 1, 2, 3];
        const operand = (v: number): { view: View; st: number[]; dims: number[] } => {
          let view = viewOf(v);
          if (view.shape.length !== 4) unsupported(`attention operands must be rank 4, got [${view.shape.join(', ')}]`);
          if (view.shape[3] > 1 && view.strides[3] !== 1) view = contiguous(v);
          return { view, st: perm.slice(0, 3).map((p) => view.strides[p]), dims: perm.map((p) => view.shape[p]) };
        };
        const q = operand(qv!), k = operand(kv!), v = operand(vv!);
        const [B, Hq, Lq, D] = q.dims;
        const [, Hkv, Lk] = k.dims;
        const Dv = v.dims[3];
        let mask: View | null = null, ms = [0, 0, 0, 0];
        if (mv !== null && mv !== undefined) {
          mask = viewOf(mv);
          ms = broadcastTo(mask.shape, mask.strides, [B, Hq, Lq, Lk]);
        }
        let dst: View, os: number[];
        const consumers = users.get(outV) ?? [];
        const next = consumers.length === 1 ? consumers[0] : null;
        const permuteAfter = !bshd && !slotOf.has(outV) && next !== null && next.op === 'permute' && (next.attrs.perm as number[]).map((p) => normAxis(p, 4)).join() === '0,2,1,3';
        if (bshd || permuteAfter) {
          // write [B, L, H, Dv] rows directly: the layout the head-merge reshape wants
          const target = bshd ? dest(outV) : dest(next!.outputs[0]);
          os = [Lq * Hq * Dv, Dv, Hq * Dv];
          dst = bshd ? target : { ...target, shape: [B, Hq, Lq, Dv], strides: [os[0], os[1], os[2], 1] };
        } else {
          dst = dest(outV);
          os = [Hq * Lq * Dv, Lq * Dv, Dv];
        }
        const scale = (a.scale as number) === 0 ? 1 / Math.sqrt(D) : (a.scale as number);
        // the bf16 kernel reads the same strided views (int 25 selects it)
        emit(KERNEL.attention, op, [q.view, k.view, v.view, mask, dst],
          [B, Hq, Hkv, Lq, Lk, D, Dv, a.causal ? 1 : 0, mask?.dtype === 'bool' ? 1 : 0, ...q.st, ...k.st, ...v.st, ...os, ...ms, ...(bf16 ? [1] : [])], [scale]);
        if (bf16) stats.bf16Attention++;
        setView(outV, dst);
        return;
      }
      default:
        unsupported('no plan kernel for this op');
    }
  }

  // ---- placement: greedy by size over kernel-index lifetimes ----
  const order = buffers.map((_, b) => b).sort((p, q) => buffers[q].bytes - buffers[p].bytes || buffers[p].def - buffers[q].def);
  const placed: { offset: number; end: number; def: number; last: number }[] = [];
  const offsets = new Array<number>(buffers.length).fill(0);
  for (const b of order) {
    const buf = buffers[b];
    const size = align(buf.bytes);
    const clashes = placed.filter((p) => p.def <= buf.end && buf.def <= p.last).sort((x, y) => x.offset - y.offset);
    let offset = 0;
    for (const c of clashes) {
      if (offset + size <= c.offset) break;
      offset = Math.max(offset, c.end);
    }
    placed.push({ offset, end: offset + size, def: buf.def, last: buf.end });
    offsets[b] = offset;
  }
  const arenaBytes = placed.reduce((m, p) => Math.max(m, p.end), 0);

  const refOf = (r: View | null): number[] => {
    if (!r) return [REF.none, 0, 0];
    const bytes = r.offset * dtypeBytes(r.dtype);
    switch (r.store.kind) {
      case 'arena': return [REF.arena, 0, offsets[r.store.index] + bytes];
      case 'input': return [REF.input, r.store.index, bytes];
      case 'output': return [REF.output, r.store.index, bytes];
      default: return [REF.constant, r.store.index, bytes];
    }
  };
  const kernels: KernelDesc[] = drafts.map((d) => ({
    op: d.op, name: d.name, refs: d.refs.flatMap(refOf), ints: d.ints, floats: d.floats, packed: d.packed,
    ...(d.packedBf16 >= 0 ? { packedBf16: d.packedBf16 } : {}),
    ...(d.packedF16 >= 0 ? { packedF16: d.packedF16 } : {}),
  }));

  let naiveBytes = 0;
  for (const n of graph.nodes) for (const v of n.outputs) if (!slotOf.has(v)) naiveBytes += align(numelOf(shape(v)) * dtypeBytes(dtypeOf(v)));

  const inputBytes = graph.inputs.map((inp) => numelOf(shape(inp.value)) * dtypeBytes(storedDtype(inp.value)));
  const outputBytes = slots.map((s) => numelOf(s.shape) * dtypeBytes(s.dtype));
  return {
    desc: { arenaBytes, inputBytes, outputBytes, constants, packed, ...(bf16 ? { packedBf16 } : {}), ...(fp16 ? { packedF16 } : {}), kernels },
    outputs,
    slots,
    stats: {
      kernels: kernels.length, arenaBytes, naiveBytes, views: stats.views, copies: stats.copies, inPlace: stats.inPlace,
      packedWeights: packed.length + packedBf16.length + packedF16.length, precision, bf16Weights: packedBf16.length, f16Weights: packedF16.length,
      widened, bf16Attention: stats.bf16Attention,
      kernelNames: drafts.map((d) => d.name),
    },
  };
}
