// Ops on quantized weights (src/tensor/quantized.ts): the weight is a flat u8 tensor of blocks in
// the native kernels' layout, and the node's attributes carry its format and logical [N, K] shape,
// so shape inference, graph printing and graph hashing see what the weight is.
//   quant_linear    act(x · dequant(weight)ᵀ + bias) + residual   (what `linear` records on a quantized weight)
//   dequantize      the f32 [N, K] values of a quantized weight
//   quant_concat    quantized weights of one format concatenated along N (horizontal GEMM fusion)
// The reference kernels dequantize in TypeScript and run the f32 reference linear: the oracle the
// native kernels (src/backends/cpu/kernels/quantized.ts, the plan's qgemm) are tested against.
import { Tensor } from '../tensor/tensor.js';
import { formatShape, type Dim } from '../tensor/shape.js';
import { type QuantFormat, type QuantSpec, QUANT_FORMATS, checkQuantSpec, concatQuantized, dequantizeValues, quantLayout } from '../tensor/quantized.js';
import { defineOp, getOp, type TensorMeta } from './registry.js';

const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;

export interface QuantAttrs { format: QuantFormat; N: number; K: number; group: number }
export interface QuantLinearAttrs extends QuantAttrs { activation: 'none' | 'relu' | 'gelu' | 'gelu_tanh' | 'silu' }

const QUANT_ATTRS = {
  format: { type: 'string', oneOf: QUANT_FORMATS },
  N: { type: 'int' },
  K: { type: 'int' },
  group: { type: 'int', default: 32 },
} as const;

export const specOfAttrs = (a: QuantAttrs): QuantSpec => ({ format: a.format, N: a.N, K: a.K, group: a.format === 'int4' ? a.group : 32 });

/** Checks that a weight input is the u8 byte tensor the attributes describe. */
function checkWeightMeta(op: string, w: TensorMeta, a: QuantAttrs): void {
  const spec = specOfAttrs(a);
  checkQuantSpec(spec, op);
  const { totalBytes } = quantLayout(spec);
  if (w.dtype !== 'u8' || w.shape.length !== 1 || !mayEqual(w.shape[0], totalBytes)) {
    throw new TypeError(`${op}: weight must be the u8[${totalBytes}] bytes of a ${a.format} [${a.N}, ${a.K}] weight, got ${w.dtype}${formatShape(w.shape)}`);
  }
}

/** The f32 [N, K] tensor of a quantized weight's bytes. */
function dequantTensor(w: Tensor, a: QuantAttrs): Tensor {
  return Tensor.fromStorage('f32', [a.N, a.K], dequantizeValues(w.data as Uint8Array, specOfAttrs(a)));
}

function ref(op: string, inputs: (Tensor | null)[], attrs: Record<string, unknown> = {}): Tensor[] {
  const def = getOp(op);
  const outs = def.infer(inputs.map((t) => (t ? { dtype: t.dtype, shape: t.shape } : null)), attrs);
  return def.reference(inputs, attrs, outs);
}

export const quantLinear = defineOp<QuantLinearAttrs>({
  name: 'quant_linear',
  kind: 'linalg',
  inputs: ['x', 'weight', 'bias?', 'residual?'],
  attrs: { ...QUANT_ATTRS, activation: { type: 'string', default: 'none', oneOf: ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'] } },
  doc: 'act(x · Wᵀ + bias) + residual for a quantized weight W [N, K] stored as u8 blocks (format, N, K, group attributes); x [..., K] f32, y [..., N].',
  infer([x, weight, bias, residual], a) {
    checkWeightMeta('quant_linear', weight!, a);
    const xs = x!.shape;
    if (x!.dtype !== 'f32') throw new TypeError(`quant_linear: x must be f32, got ${x!.dtype}`);
    if (xs.length < 1 || !mayEqual(xs[xs.length - 1], a.K)) {
      throw new RangeError(`quant_linear: x ${formatShape(xs)} must end in the weight's ${a.K} input features`);
    }
    const out: TensorMeta = { dtype: 'f32', shape: [...xs.slice(0, -1), a.N] };
    if (bias && (bias.dtype !== 'f32' || bias.shape.length !== 1 || !mayEqual(bias.shape[0], a.N))) {
      throw new RangeError(`quant_linear: bias ${bias.dtype}${formatShape(bias.shape)} must be f32[${a.N}]`);
    }
    if (residual && (residual.dtype !== 'f32' || residual.shape.length !== out.shape.length || !residual.shape.every((d, i) => mayEqual(d, out.shape[i])))) {
      throw new RangeError(`quant_linear: residual ${residual.dtype}${formatShape(residual.shape)} must be f32 with the output's shape ${formatShape(out.shape)}`);
    }
    return [out];
  },
  reference([x, weight, bias, residual], a) {
    return ref('linear_fused', [x, dequantTensor(weight!, a), bias, residual], { activation: a.activation });
  },
});

export const dequantizeOp = defineOp<QuantAttrs>({
  name: 'dequantize',
  kind: 'other',
  inputs: ['weight'],
  attrs: { ...QUANT_ATTRS },
  doc: 'The f32 [N, K] values of a quantized weight stored as u8 blocks.',
  infer([weight], a) {
    checkWeightMeta('dequantize', weight!, a);
    return [{ dtype: 'f32', shape: [a.N, a.K] }];
  },
  reference([weight], a) { return [dequantTensor(weight!, a)]; },
});

export interface QuantConcatAttrs { format: QuantFormat; Ns: readonly number[]; K: number; group: number }

export const quantConcat = defineOp<QuantConcatAttrs>({
  name: 'quant_concat',
  kind: 'other',
  inputs: ['...weights'],
  attrs: { format: { type: 'string', oneOf: QUANT_FORMATS }, Ns: { type: 'ints' }, K: { type: 'int' }, group: { type: 'int', default: 32 } },
  doc: 'Quantized weights of one format and K concatenated along N (rows): the u8 bytes of the [ΣN, K] weight.',
  infer(ws, a) {
    if (ws.length !== a.Ns.length) throw new RangeError(`quant_concat: ${ws.length} weights but Ns lists ${a.Ns.length}`);
    ws.forEach((w, i) => checkWeightMeta('quant_concat', w!, { format: a.format, N: a.Ns[i], K: a.K, group: a.group }));
    const N = a.Ns.reduce((s, n) => s + n, 0);
    return [{ dtype: 'u8', shape: [quantLayout(specOfAttrs({ format: a.format, N, K: a.K, group: a.group })).totalBytes] }];
  },
  reference(ws, a) {
    const { bytes } = concatQuantized(ws.map((w, i) => ({ bytes: w!.data as Uint8Array, spec: specOfAttrs({ format: a.format, N: a.Ns[i], K: a.K, group: a.group }) })));
    return [Tensor.fromStorage('u8', [bytes.length], bytes)];
  },
});
