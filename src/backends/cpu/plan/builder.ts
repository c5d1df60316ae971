// The state a plan lowering builds up while it walks a graph, and the operations the lowering rules
// (rules/*.ts) use: where a value lives (a strided view of the arena, a graph input or output, or a
// constant), making it contiguous when a kernel needs that, choosing where a kernel writes, packing
// GEMM weights, and emitting encoded kernels. lower.ts drives it: one rule per node, then arena
// placement and the descriptor.
import type { Graph, Node } from '../../../ir/graph.js';
import { evalShape, type DimBindings } from '../../../ir/dims.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { dtypeBytes, type DType } from '../../../tensor/dtype.js';
import type { PackedHandle } from '../addon.js';
import type { PackedBf16Handle, PackedF16Handle } from '../bf16.js';
import type { PlanDesc } from './native.js';
import { DTYPE_CODES, encodeCast, encodeCopy, type EncodedKernel } from './kernel-table.gen.js';
import { contiguousStrides, isContiguous, numelOf, reshapeStrides } from './views.js';

/** Thrown when a graph has a node the plan executor cannot run (the caller falls back). */
export class PlanUnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanUnsupportedError';
  }
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
  /** 'bf16' only: 'bf16' (default) runs bf16 products; 'fp32' runs the fp32 kernels on weights
   *  rounded to bf16 (where the bf16 kernels are slower than fp32: bf16ComputePlan in ../bf16.ts). */
  bf16Compute?: 'bf16' | 'fp32';
  /** bf16Compute 'bf16': the bf16 kernel the plan will run on (AMX changes which attention shapes
   *  gain from bf16; null / absent: not known, taken as the AVX512_BF16 kernel). */
  bf16Kernel?: 'amx' | 'avx512bf16' | null;
  /** bf16Compute 'fp32': as pack, of the weight rounded to bf16 (cached by the caller). */
  packBf16AsF32?(name: string, t: Tensor, K: number, N: number, transB: boolean): PackedHandle;
  /** bf16Compute 'fp32': an f32 copy of constant weight `t` rounded to bf16 (cached by the caller). */
  constantBf16Rounded?(name: string, t: Tensor): Tensor;
}

export type Store = { kind: 'arena' | 'input' | 'output' | 'const'; index: number };
/** A value as a window (element offset, shape, element strides) into some storage. */
export interface View { store: Store; offset: number; shape: number[]; strides: number[]; dtype: DType }
export type Operand = View | null;

/** A GEMM's constant B operand: an index into one of the plan's packed-weight lists (else -1). */
export interface WeightRef { packed: number; packedBf16: number; packedF16: number }
export interface Draft extends EncodedKernel<Operand>, WeightRef { name: string }
/** A control-flow sub-graph lowered into its own plan (lower.ts supplies the lowering). */
export interface SubPlan { desc: PlanDesc; kernels: number; subPlans: number; subKernels: number }
export type LowerSubgraph = (graph: Graph, where: string) => SubPlan;

/** An arena buffer: bytes, the kernels that first and last touch it, the values viewing it. */
export interface ArenaBuffer { bytes: number; first: number; last: number; aliases: Set<number> }

export const normAxis = (a: number, rank: number): number => (a < 0 ? a + rank : a);

export class PlanBuilder {
  readonly precision: PlanPrecision;
  /** bf16 products (bf16 weight panels, bf16 attention and conv). */
  readonly bf16: boolean;
  /** precision 'bf16' computed by the fp32 kernels on bf16-rounded weights (bf16Compute 'fp32'). */
  readonly bf16AsFp32: boolean;
  readonly fp16: boolean;
  /** bf16 products on AMX tiles (see LowerContext.bf16Kernel). */
  readonly bf16Amx: boolean;
  /** The 16-bit type a reduced-precision plan widens to f32 (null in fp32 plans). */
  readonly narrow: DType | null;
  readonly drafts: Draft[] = [];
  readonly buffers: ArenaBuffer[] = [];
  /** Output slots: one per distinct value the plan writes for the caller. */
  readonly slotOf = new Map<number, number>();
  readonly slots: { dtype: DType; shape: number[] }[] = [];
  readonly constants: ArrayBufferView[] = [];
  readonly packed: PackedHandle[] = [];
  readonly packedBf16: PackedBf16Handle[] = [];
  readonly packedF16: PackedF16Handle[] = [];
  readonly widened: string[] = [];
  readonly stats = { views: 0, copies: 0, inPlace: 0, bf16Attention: 0, bf16Rounded: 0, subPlans: 0, subKernels: 0 };
  /** Plans of control-flow sub-graphs, which cond / while_loop kernels name by index. */
  readonly subPlans: PlanDesc[] = [];
  readonly users: Map<number, Node[]>;
  /** Node index of each value's last reader (Infinity for graph outputs). */
  readonly lastUse = new Map<number, number>();

  private readonly shapeOf = new Map<number, number[]>();
  private readonly constByValue;
  private readonly inputIndex: Map<number, number>;
  private readonly env = new Map<number, View>();
  private readonly constIndex = new Map<string, number>();
  private readonly packIndex = new Map<string, number>();
  private where = '';

  constructor(readonly graph: Graph, bindings: DimBindings, private readonly ctx: LowerContext, private readonly lowerSub?: LowerSubgraph) {
    this.precision = ctx.precision ?? 'fp32';
    this.bf16AsFp32 = this.precision === 'bf16' && ctx.bf16Compute === 'fp32';
    this.bf16 = this.precision === 'bf16' && !this.bf16AsFp32;
    this.fp16 = this.precision === 'fp16';
    this.bf16Amx = this.bf16 && ctx.bf16Kernel === 'amx';
    if (this.bf16 && !ctx.packBf16) throw new Error('lowerPlan: precision \'bf16\' needs a packBf16 callback');
    if (this.bf16AsFp32 && !(ctx.packBf16AsF32 && ctx.constantBf16Rounded)) throw new Error('lowerPlan: bf16Compute \'fp32\' needs packBf16AsF32 and constantBf16Rounded callbacks');
    if (this.fp16 && !ctx.packF16) throw new Error('lowerPlan: precision \'fp16\' needs a packF16 callback');
    this.narrow = this.fp16 ? 'f16' : this.precision === 'bf16' ? 'bf16' : null;
    for (const [id, v] of graph.values) this.shapeOf.set(id, evalShape(v.shape, bindings));
    this.constByValue = graph.constantByValue();
    this.inputIndex = new Map(graph.inputs.map((inp, i) => [inp.value, i]));
    this.users = graph.users();
    graph.nodes.forEach((n, i) => { for (const v of n.inputs) if (v !== null) this.lastUse.set(v, i); });
    for (const o of graph.outputs) this.lastUse.set(o.value, Infinity);
  }

  // ---- values ----

  shape(v: number): number[] { return this.shapeOf.get(v)!; }
  /** The dtype a value is stored as (graph inputs, outputs, constants). */
  storedDtype(v: number): DType { return this.graph.value(v).dtype; }
  /** The dtype a value is computed as (a widened 16-bit value computes as f32). */
  dtypeOf(v: number): DType { const d = this.storedDtype(v); return d === this.narrow ? 'f32' : d; }
  isF32(v: number | null): boolean { return v === null || this.dtypeOf(v) === 'f32'; }
  isConstant(v: number): boolean { return this.constByValue.has(v); }
  graphInputIndex(v: number): number | undefined { return this.inputIndex.get(v); }
  constantName(v: number): string | undefined { return this.constByValue.get(v)?.name; }
  /** The live tensor of constant value v (for rules that keep a derived copy of it, e.g. a re-laid-out weight). */
  constantTensor(v: number): Tensor { return this.ctx.constant(this.constByValue.get(v)!.name); }

  /** Lowers control-flow sub-graph `graph` (role `role` of the current node) into a sub-plan; its index. */
  subPlan(graph: Graph, role: string): number {
    if (!this.lowerSub) this.unsupported('this lowering has no sub-plan support');
    let sub: SubPlan;
    try {
      sub = this.lowerSub(graph, `${this.where} ${role}`);
    } catch (e) {
      if (e instanceof PlanUnsupportedError) this.unsupported(`${role} sub-graph: ${e.message}`);
      throw e;
    }
    this.stats.subPlans += 1 + sub.subPlans;
    this.stats.subKernels += sub.kernels + sub.subKernels;
    return this.subPlans.push(sub.desc) - 1;
  }

  /** The node being lowered, for error messages. */
  at(node: Node, i: number): void { this.where = `node ${i} (${node.op}${node.source ? ` at ${node.source}` : ''})`; }
  unsupported(why: string): never { throw new PlanUnsupportedError(`${this.where}: ${why}`); }
  /** Rejects a node whose inputs or outputs are not all f32 (most plan kernels compute in f32). */
  needF32(node: Node): void {
    if (!node.inputs.every((v) => this.isF32(v)) || !node.outputs.every((v) => this.isF32(v))) {
      this.unsupported(`plan kernels compute in f32; inputs are ${node.inputs.map((v) => (v === null ? 'none' : this.dtypeOf(v))).join(', ')}`);
    }
  }

  contiguousView(store: Store, s: number[], dtype: DType, offset = 0): View {
    return { store, offset, shape: s, strides: contiguousStrides(s), dtype };
  }
  /** Records where value v lives. */
  setView(v: number, view: View): void {
    this.env.set(v, view);
    if (view.store.kind === 'arena') this.buffers[view.store.index].aliases.add(v);
  }
  /** A new arena buffer, live from the next kernel. */
  alloc(s: number[], dtype: DType): View {
    const k = this.drafts.length;
    this.buffers.push({ bytes: numelOf(s) * dtypeBytes(dtype), first: k, last: k, aliases: new Set() });
    return this.contiguousView({ kind: 'arena', index: this.buffers.length - 1 }, s, dtype);
  }
  /** A new arena buffer holding `like`'s shape with its dims laid out in `like`'s stride order
   *  (PyTorch's preserve_format): the result of a kernel on a transposed view is itself the
   *  transpose of a contiguous buffer, so transposing it back costs no copy. */
  allocLayoutOf(like: View): View {
    const rank = like.shape.length;
    const order = [...like.shape.keys()].sort((i, j) => like.strides[j] - like.strides[i] || i - j);
    const buf = this.alloc(order.map((i) => like.shape[i]), like.dtype);
    const strides = new Array<number>(rank);
    order.forEach((dim, k) => { strides[dim] = buf.strides[k]; });
    return { ...buf, shape: [...like.shape], strides };
  }
  /** Whether every value viewing arena buffer `buf` is dead after node i. */
  deadAfter(buf: number, i: number): boolean { return [...this.buffers[buf].aliases].every((a) => (this.lastUse.get(a) ?? -1) <= i); }

  /** The output slot v ends up in when v is a graph output, or is only reshaped into one. */
  slotThroughReshapes(v: number): number | undefined {
    for (let cur = v, hops = 0; hops < 8; hops++) {
      const slot = this.slotOf.get(cur);
      if (slot !== undefined) return slot;
      const us = this.users.get(cur) ?? [];
      if (us.length !== 1 || us[0].op !== 'reshape' || this.lastUse.get(cur) === Infinity) return undefined;
      cur = us[0].outputs[0];
    }
    return undefined;
  }
  /** Where a kernel writes value v: the output slot it becomes (directly or through reshapes, which
   *  are then free views of the slot), else a new arena buffer. */
  dest(v: number, s = this.shape(v)): View {
    const slot = this.slotThroughReshapes(v);
    // a widened f16 output is computed in the arena and converted into its slot at the end
    return slot !== undefined && this.slots[slot].dtype === this.dtypeOf(v)
      ? this.contiguousView({ kind: 'output', index: slot }, s, this.dtypeOf(v))
      : this.alloc(s, this.dtypeOf(v));
  }

  /** Where value v lives (a constant or graph input on first use). */
  viewOf(v: number): View {
    const have = this.env.get(v);
    if (have) return have;
    const c = this.constByValue.get(v);
    if (c) {
      const widen = c.dtype === this.narrow;
      let idx = this.constIndex.get(c.name);
      if (idx === undefined) {
        if (widen && !this.ctx.constantF32) throw new Error(`lowerPlan: ${c.dtype} constant @${c.name} needs a constantF32 callback`);
        const t = widen ? this.ctx.constantF32!(c.name) : this.ctx.constant(c.name);
        if (widen) this.widened.push(c.name);
        idx = this.constants.length;
        this.constants.push(t.data as ArrayBufferView);
        this.constIndex.set(c.name, idx);
      }
      const view = this.contiguousView({ kind: 'const', index: idx }, this.shape(v), widen ? 'f32' : c.dtype);
      this.env.set(v, view);
      return view;
    }
    const inp = this.inputIndex.get(v);
    if (inp !== undefined) {
      let view = this.contiguousView({ kind: 'input', index: inp }, this.shape(v), this.storedDtype(v));
      if (view.dtype !== this.dtypeOf(v)) {
        // a widened f16 input: converted once, on first use
        const wide = this.alloc(this.shape(v), this.dtypeOf(v));
        this.emitCast(view, wide, `input ${inp} (${view.dtype} -> ${wide.dtype})`);
        view = wide;
      }
      this.setView(v, view);
      return view;
    }
    throw new PlanUnsupportedError(`value %${v} is read before it is defined`);
  }
  /** The value as contiguous memory, copying it once (later readers reuse the copy). */
  contiguous(v: number): View {
    const view = this.viewOf(v);
    if (isContiguous(view.shape, view.strides)) return view;
    const dst = this.alloc(view.shape, view.dtype);
    this.emitCopy(view, dst, 'materialize');
    this.setView(v, dst);
    return dst;
  }
  optional(v: number | null | undefined): View | null { return v === null || v === undefined ? null : this.contiguous(v); }
  /** v viewed as a row-major [M, K] matrix with unit column stride: its leading dimension. */
  asMatrix(v: number, M: number, K: number): { view: View; ld: number } {
    const view = this.viewOf(v);
    const st = reshapeStrides(view.shape, view.strides, [M, K]);
    if (st && (K <= 1 || st[1] === 1) && (M <= 1 || st[0] >= K)) return { view, ld: M <= 1 ? K : st[0] };
    return { view: this.contiguous(v), ld: K };
  }

  // ---- weights ----

  /** A constant weight as a GEMM's B operand: fp32 panels, bf16 panels in a bf16 plan, f16 panels
   *  (packed from the stored constant, f16 or f32) in an fp16 plan. */
  weightOf(v: number, K: number, N: number, transB: boolean): WeightRef {
    const c = this.constByValue.get(v)!;
    const kind = this.bf16 ? 'bf16' : this.fp16 ? 'f16' : 'f32';
    const key = `${this.bf16AsFp32 ? 'f32r' : kind}|${c.name}|${transB ? 't' : 'n'}`;
    let idx = this.packIndex.get(key);
    if (idx === undefined) {
      const t = this.ctx.constant(c.name);
      if (this.bf16AsFp32) {
        idx = this.packed.push(this.ctx.packBf16AsF32!(c.name, t, K, N, transB)) - 1;
        this.stats.bf16Rounded++;
      } else if (kind === 'bf16') idx = this.packedBf16.push(this.ctx.packBf16!(c.name, t, K, N, transB)) - 1;
      else if (kind === 'f16') idx = this.packedF16.push(this.ctx.packF16!(c.name, t, K, N, transB)) - 1;
      else idx = this.packed.push(this.ctx.pack(c.name, t, K, N, transB)) - 1;
      this.packIndex.set(key, idx);
    }
    return { packed: kind === 'f32' ? idx : -1, packedBf16: kind === 'bf16' ? idx : -1, packedF16: kind === 'f16' ? idx : -1 };
  }

  /** A weight read in place (conv2d's unpacked weight): in a bf16-as-fp32 plan a constant weight
   *  is read from its bf16-rounded f32 copy, as the bf16 kernels would round it; otherwise viewOf. */
  weightView(v: number): View {
    const c = this.constByValue.get(v);
    if (!this.bf16AsFp32 || !c) return this.contiguous(v);
    const key = `${c.name}#bf16`;
    let idx = this.constIndex.get(key);
    if (idx === undefined) {
      idx = this.constants.length;
      this.constants.push(this.ctx.constantBf16Rounded!(c.name, this.ctx.constant(c.name)).data as ArrayBufferView);
      this.constIndex.set(key, idx);
      this.stats.bf16Rounded++;
    }
    return this.contiguousView({ kind: 'const', index: idx }, this.shape(v), 'f32');
  }

  // ---- kernels ----

  /** Appends a kernel; its arena operands stay live through it. */
  emit(name: string, k: EncodedKernel<Operand>, weight: WeightRef = { packed: -1, packedBf16: -1, packedF16: -1 }): void {
    const at = this.drafts.length;
    for (const r of k.refs) if (r && r.store.kind === 'arena') { const b = this.buffers[r.store.index]; b.last = Math.max(b.last, at); }
    this.drafts.push({ ...k, name, ...weight });
  }
  /** Converts contiguous src into dst (same shape) with the plan's cast kernel. */
  emitCast(src: View, dst: View, name: string): void {
    this.emit(name, encodeCast({ x: src, out: dst, from: DTYPE_CODES[src.dtype], to: DTYPE_CODES[dst.dtype], n: numelOf(src.shape) }));
  }
  emitCopy(src: View, dst: View, name: string): void {
    this.stats.copies++;
    this.emit(name, encodeCopy({ src, dst, elemSize: dtypeBytes(src.dtype), shape: src.shape, srcStrides: src.strides, dstStrides: dst.strides }));
  }
}
