// Fused op forms that graph passes emit and native kernels implement in one pass:
//   linear_fused    act(x · weightᵀ + bias) + residual     (GEMM epilogue fusion)
//   add_layer_norm  [layer_norm(x + residual), x + residual] (residual stream + pre-norm)
//   add_rms_norm    [rms_norm(x + residual), x + residual]
//   add_group_norm  [group_norm(x + residual), x + residual]
//   add_softmax     softmax(x + addend), addend broadcast to x (attention scores plus a mask or bias)
//   layer_norm_modulate  layer_norm(x) * (1 + scale) + shift, per-sample scale/shift (DiT's adaLN)
//   fused_elementwise    a small program of elementwise ops evaluated in one pass over memory
//   attention_fused      scaled_dot_product_attention on [B, L, H, D] operands (head-split absorbed)
// Each reference kernel is literally the composition of the unfused ops' reference kernels, so a
// fusion pass that rewrites the unfused pattern into one of these ops preserves the semantics.
import { defineOp, getOp, type TensorMeta } from './registry.js';
import { type Dim, type Shape, broadcastShapes, formatShape, numel } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import { type DType, isFloatDType, allocStorage, writeElement, readElement } from '../tensor/dtype.js';
import { UNARY_FUNCTIONS } from './unary.js';
import { values, tensorFrom, broadcastIndex, concrete } from './kernel-utils.js';

export const FUSED_ACTIVATIONS = ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'] as const;
export type FusedActivation = (typeof FUSED_ACTIVATIONS)[number];

interface LinearFusedAttrs { activation: FusedActivation }
interface AddLayerNormAttrs { normalized_ndim: number; eps: number }
interface AddRmsNormAttrs { eps: number }
interface AddGroupNormAttrs { num_groups: number; eps: number }
interface AddSoftmaxAttrs { axis: number }

const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;
const shapesMayEqual = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => mayEqual(d, b[i]));

/** Runs another op's reference kernel (inferring its output metadata first). */
function ref(op: string, inputs: (Tensor | null)[], attrs: Record<string, unknown> = {}): Tensor[] {
  const def = getOp(op);
  const outs = def.infer(inputs.map((t) => (t ? { dtype: t.dtype, shape: t.shape } : null)), attrs);
  return def.reference(inputs, attrs, outs);
}

export const linearFused = defineOp<LinearFusedAttrs>({
  name: 'linear_fused',
  kind: 'linalg',
  inputs: ['x', 'weight', 'bias?', 'residual?'],
  attrs: { activation: { type: 'string', default: 'none', oneOf: FUSED_ACTIVATIONS } },
  doc: 'act(x · weightᵀ + bias) + residual, x [..., in], weight [out, in], bias [out]; residual broadcasts to the output [..., out].',
  infer([x, weight, bias, residual]) {
    const [out] = getOp('linear').infer([x, weight, bias], {});
    if (residual) {
      if (residual.dtype !== out.dtype) throw new TypeError(`linear_fused: residual has dtype ${residual.dtype} but x has dtype ${out.dtype}; they must match`);
      const b = broadcastShapes(out.shape, residual.shape);
      if (!b || !shapesMayEqual(b, out.shape)) {
        throw new RangeError(`linear_fused: residual ${formatShape(residual.shape)} does not broadcast to the output ${formatShape(out.shape)}`);
      }
    }
    return [out];
  },
  reference([x, weight, bias, residual], { activation }) {
    let y = ref('linear', [x, weight, bias])[0];
    if (activation !== 'none') y = ref(activation, [y])[0];
    if (residual) y = ref('add', [y, residual])[0];
    return [y];
  },
});

function checkResidual(op: string, x: TensorMeta, residual: TensorMeta): void {
  if (residual.dtype !== x.dtype) throw new TypeError(`${op}: residual has dtype ${residual.dtype} but x has dtype ${x.dtype}; they must match`);
  if (!shapesMayEqual(residual.shape, x.shape)) {
    throw new RangeError(`${op}: residual ${formatShape(residual.shape)} must have the shape of x ${formatShape(x.shape)}`);
  }
}

export const addLayerNorm = defineOp<AddLayerNormAttrs>({
  name: 'add_layer_norm',
  kind: 'norm',
  inputs: ['x', 'residual', 'weight?', 'bias?'],
  attrs: { normalized_ndim: { type: 'int', default: 1 }, eps: { type: 'float', default: 1e-5 } },
  doc: 'sum = x + residual (same shape); outputs [layer_norm(sum, weight, bias), sum].',
  infer([x, residual, weight, bias], attrs) {
    checkResidual('add_layer_norm', x!, residual!);
    const [normed] = getOp('layer_norm').infer([x, weight, bias], attrs);
    return [normed, { dtype: x!.dtype, shape: x!.shape }];
  },
  reference([x, residual, weight, bias], attrs) {
    const sum = ref('add', [x, residual])[0];
    return [ref('layer_norm', [sum, weight, bias], { ...attrs })[0], sum];
  },
});

export const addRmsNorm = defineOp<AddRmsNormAttrs>({
  name: 'add_rms_norm',
  kind: 'norm',
  inputs: ['x', 'residual', 'weight?'],
  attrs: { eps: { type: 'float', default: 1e-6 } },
  doc: 'sum = x + residual (same shape); outputs [rms_norm(sum, weight), sum].',
  infer([x, residual, weight], attrs) {
    checkResidual('add_rms_norm', x!, residual!);
    const [normed] = getOp('rms_norm').infer([x, weight], attrs);
    return [normed, { dtype: x!.dtype, shape: x!.shape }];
  },
  reference([x, residual, weight], attrs) {
    const sum = ref('add', [x, residual])[0];
    return [ref('rms_norm', [sum, weight], { ...attrs })[0], sum];
  },
});

export const addGroupNorm = defineOp<AddGroupNormAttrs>({
  name: 'add_group_norm',
  kind: 'norm',
  inputs: ['x', 'residual', 'weight?', 'bias?'],
  attrs: { num_groups: { type: 'int' }, eps: { type: 'float', default: 1e-5 } },
  doc: 'sum = x + residual (same shape [N, C, *]); outputs [group_norm(sum, weight, bias), sum].',
  infer([x, residual, weight, bias], attrs) {
    checkResidual('add_group_norm', x!, residual!);
    const [normed] = getOp('group_norm').infer([x, weight, bias], attrs);
    return [normed, { dtype: x!.dtype, shape: x!.shape }];
  },
  reference([x, residual, weight, bias], attrs) {
    const sum = ref('add', [x, residual])[0];
    return [ref('group_norm', [sum, weight, bias], { ...attrs })[0], sum];
  },
});

export const addSoftmax = defineOp<AddSoftmaxAttrs>({
  name: 'add_softmax',
  kind: 'reduction',
  inputs: ['x', 'addend'],
  attrs: { axis: { type: 'int', default: -1 } },
  doc: 'softmax(x + addend) along axis; addend (same dtype) broadcasts to x\'s shape, e.g. a [B, 1, Lq, Lk] mask added to [B, H, Lq, Lk] scores.',
  infer([x, addend], attrs) {
    const [out] = getOp('softmax').infer([x], attrs);
    if (addend!.dtype !== x!.dtype) throw new TypeError(`add_softmax: addend has dtype ${addend!.dtype} but x has dtype ${x!.dtype}; they must match`);
    const b = broadcastShapes(x!.shape, addend!.shape);
    if (!b || !shapesMayEqual(b, x!.shape)) {
      throw new RangeError(`add_softmax: addend ${formatShape(addend!.shape)} does not broadcast to x ${formatShape(x!.shape)}`);
    }
    return [out];
  },
  reference([x, addend], attrs) {
    return ref('softmax', [ref('add', [x, addend])[0]], { ...attrs });
  },
});

// ---- layer_norm_modulate ----

interface LayerNormModulateAttrs { eps: number }

/** [N, D] per-sample vector as [N, 1, ..., 1, D] for an x of rank r (broadcast over tokens). */
const perSampleShape = (v: Shape, rank: number): Dim[] => [v[0], ...new Array<Dim>(rank - 2).fill(1), v[1]];

export const layerNormModulate = defineOp<LayerNormModulateAttrs>({
  name: 'layer_norm_modulate',
  kind: 'norm',
  inputs: ['x', 'shift', 'scale', 'weight?', 'bias?'],
  attrs: { eps: { type: 'float', default: 1e-6 } },
  doc: 'adaLN modulation (DiT): layer_norm(x, weight, bias) over the last dim, times (1 + scale), plus shift; '
    + 'x [N, ..., D], shift and scale [N, D] broadcast over the middle (token) dims.',
  infer([x, shift, scale, weight, bias], { eps }) {
    const op = 'layer_norm_modulate';
    const [normed] = getOp('layer_norm').infer([x, weight, bias], { normalized_ndim: 1, eps });
    const xs = x!.shape;
    if (xs.length < 2) throw new RangeError(`${op}: x must be [N, ..., D] (rank >= 2), got ${formatShape(xs)}`);
    for (const [name, m] of [['shift', shift!], ['scale', scale!]] as const) {
      if (m.dtype !== x!.dtype) throw new TypeError(`${op}: ${name} has dtype ${m.dtype} but x has dtype ${x!.dtype}; they must match`);
      if (m.shape.length !== 2 || !mayEqual(m.shape[0], xs[0]) || !mayEqual(m.shape[1], xs[xs.length - 1])) {
        throw new RangeError(`${op}: ${name} ${formatShape(m.shape)} must be [N, D] = [${xs[0]}, ${xs[xs.length - 1]}] for x ${formatShape(xs)}`);
      }
    }
    return [normed];
  },
  reference([x, shift, scale, weight, bias], { eps }) {
    const normed = ref('layer_norm', [x, weight, bias], { normalized_ndim: 1, eps })[0];
    const r = x!.rank;
    const one = Tensor.fromStorage(scale!.dtype, [], (() => { const s = allocStorage(scale!.dtype, 1); writeElement(scale!.dtype, s, 0, 1); return s; })());
    const sc = ref('add', [ref('reshape', [scale], { shape: perSampleShape(scale!.shape, r) })[0], one])[0];
    const sh = ref('reshape', [shift], { shape: perSampleShape(shift!.shape, r) })[0];
    return [ref('add', [ref('mul', [normed, sc])[0], sh])[0]];
  },
});

// ---- fused_elementwise ----

interface FusedElementwiseAttrs { program: string }

/** Ops a fused_elementwise program may use, with their arity. Stable names (the program is text). */
export const FUSED_ELEMENTWISE_OPS: Readonly<Record<string, number>> = {
  ...Object.fromEntries(Object.keys(UNARY_FUNCTIONS).map((k) => [k, 1])),
  add: 2, sub: 2, mul: 2, div: 2, pow: 2, maximum: 2, minimum: 2,
  where: 3,
};

const BINARY_SCALAR: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b, sub: (a, b) => a - b, mul: (a, b) => a * b, div: (a, b) => a / b,
  pow: Math.pow, maximum: Math.max, minimum: Math.min,
};

export interface ElementwiseInstruction { op: string; args: number[] }

/** Parses a program: space-separated instructions `op(i,j,...)`; registers 0..n-1 are the inputs,
 *  instruction k defines register n+k, and the last instruction's register is the output. */
export function parseElementwiseProgram(program: string, numInputs: number): ElementwiseInstruction[] {
  const fail = (why: string): never => { throw new RangeError(`fused_elementwise: program "${program}": ${why}`); };
  const tokens = program.trim().split(/\s+/).filter((t) => t.length > 0);
  if (tokens.length === 0) fail('has no instructions');
  return tokens.map((tok, k) => {
    const m = /^([a-z_]+)\(([0-9,]*)\)$/.exec(tok);
    if (!m) return fail(`instruction ${k} "${tok}" is not op(i,j,...)`);
    const arity = FUSED_ELEMENTWISE_OPS[m[1]];
    if (arity === undefined) fail(`instruction ${k} uses "${m[1]}", which is not one of ${Object.keys(FUSED_ELEMENTWISE_OPS).join(', ')}`);
    const args = m[2] === '' ? [] : m[2].split(',').map(Number);
    if (args.length !== arity) fail(`instruction ${k} (${m[1]}) takes ${arity} operands, got ${args.length}`);
    for (const a of args) if (!(a < numInputs + k)) fail(`instruction ${k} reads register ${a}, which is not defined yet (${numInputs} inputs)`);
    return { op: m[1], args };
  });
}

/** Register metadata of a program: each instruction typed by its op's own shape inference. */
function programMetas(inputs: readonly TensorMeta[], prog: readonly ElementwiseInstruction[]): TensorMeta[] {
  const regs: TensorMeta[] = [...inputs];
  for (const ins of prog) regs.push(getOp(ins.op).infer(ins.args.map((a) => regs[a]), {})[0]);
  return regs;
}

/** Rounds a float64 to the nearest value of a floating dtype (what storing it would do). */
function rounder(dtype: DType): (x: number) => number {
  if (dtype === 'f32') return Math.fround;
  const cell = allocStorage(dtype, 1);
  return (x) => { writeElement(dtype, cell, 0, x); return readElement(dtype, cell, 0); };
}

export const fusedElementwise = defineOp<FusedElementwiseAttrs>({
  name: 'fused_elementwise',
  kind: 'elementwise',
  inputs: ['...inputs'],
  attrs: { program: { type: 'string' } },
  doc: 'Evaluates a program of elementwise ops (unary math, add sub mul div pow maximum minimum, where) per output element, '
    + 'inputs broadcast to the output; every register is rounded to its dtype as the unfused ops would store it. '
    + 'Registers other than a where condition must share one floating dtype.',
  infer(inputs, { program }) {
    const ins = inputs.map((m, i) => {
      if (!m) throw new TypeError(`fused_elementwise: input ${i} is absent`);
      return m;
    });
    const prog = parseElementwiseProgram(program, ins.length);
    const regs = programMetas(ins, prog);
    const out = regs[regs.length - 1];
    prog.forEach((p, k) => {
      const operands = p.op === 'where' ? p.args.slice(1) : p.args;
      const dt = regs[ins.length + k].dtype;
      if (!isFloatDType(dt) || operands.some((a) => regs[a].dtype !== dt)) {
        throw new TypeError(`fused_elementwise: instruction ${k} (${p.op}) mixes dtypes ${operands.map((a) => regs[a].dtype).join(', ')} -> ${dt}; `
          + 'fused programs compute in one floating dtype (cast outside the program)');
      }
    });
    let all: Dim[] | undefined = [];
    for (const m of ins) all = all && broadcastShapes(all, m.shape);
    if (!all || all.length !== out.shape.length || !all.every((d, i) => mayEqual(d, out.shape[i]))) {
      throw new RangeError(`fused_elementwise: the inputs broadcast to ${all ? formatShape(all) : 'nothing'} but the program's result is ${formatShape(out.shape)}; every input must reach the result`);
    }
    return [out];
  },
  reference(inputs, { program }, [out]) {
    const ins = inputs as Tensor[];
    const prog = parseElementwiseProgram(program, ins.length);
    const regMetas = programMetas(ins.map((t) => ({ dtype: t.dtype, shape: t.shape })), prog);
    const shape = concrete(out.shape);
    const n = numel(shape);
    const vals = ins.map(values);
    const maps = ins.map((t) => broadcastIndex(shape, t.shape));
    const fns = prog.map((p) => {
      const unary = UNARY_FUNCTIONS[p.op]?.fn;
      return { unary, binary: BINARY_SCALAR[p.op], where: p.op === 'where', args: p.args };
    });
    const rounds = regMetas.slice(ins.length).map((m) => rounder(m.dtype));
    const regs = new Float64Array(ins.length + prog.length);
    const result = new Float64Array(n);
    for (let e = 0; e < n; e++) {
      for (let i = 0; i < ins.length; i++) regs[i] = vals[i][maps[i][e]];
      for (let k = 0; k < fns.length; k++) {
        const f = fns[k], a = f.args;
        const x = f.unary ? f.unary(regs[a[0]]) : f.binary ? f.binary(regs[a[0]], regs[a[1]]) : regs[a[0]] ? regs[a[1]] : regs[a[2]];
        regs[ins.length + k] = rounds[k](x);
      }
      result[e] = regs[ins.length + fns.length - 1];
    }
    return [tensorFrom(out, result)];
  },
});

// ---- attention_fused ----

interface AttentionFusedAttrs { causal: boolean; scale: number; layout: 'bshd' | 'bhsd' }

const BSHD_TO_BHSD = [0, 2, 1, 3];

export const attentionFused = defineOp<AttentionFusedAttrs>({
  name: 'attention_fused',
  kind: 'model',
  inputs: ['q', 'k', 'v', 'mask?'],
  attrs: {
    causal: { type: 'bool', default: false },
    scale: { type: 'float', default: 0 },
    layout: { type: 'string', default: 'bshd', oneOf: ['bshd', 'bhsd'] },
  },
  doc: 'scaled_dot_product_attention whose q, k, v and output use `layout`: "bshd" is [B, L, H, D] (the layout a '
    + 'head-split reshape of [B, L, H·D] gives, so the transposes around attention disappear), "bhsd" is [B, H, L, D]. '
    + 'mask, causal and scale mean what they mean for scaled_dot_product_attention (mask broadcasts to [B, H, Lq, Lk]).',
  infer([q, k, v, mask], { causal, scale, layout }) {
    const perm = (m: TensorMeta | null): TensorMeta | null => (m && layout === 'bshd' && m.shape.length === 4 ? { dtype: m.dtype, shape: BSHD_TO_BHSD.map((p) => m.shape[p]) } : m);
    const [o] = getOp('scaled_dot_product_attention').infer([perm(q), perm(k), perm(v), mask], { causal, scale });
    return [perm(o)!];
  },
  reference([q, k, v, mask], { causal, scale, layout }) {
    if (layout === 'bhsd') return ref('scaled_dot_product_attention', [q, k, v, mask], { causal, scale });
    const t = (x: Tensor | null): Tensor | null => (x ? ref('permute', [x], { perm: BSHD_TO_BHSD })[0] : null);
    const o = ref('scaled_dot_product_attention', [t(q), t(k), t(v), mask], { causal, scale })[0];
    return [t(o)!];
  },
});
