// Fused op forms that graph passes emit and native kernels implement in one pass:
//   linear_fused    act(x · weightᵀ + bias) + residual     (GEMM epilogue fusion)
//   add_layer_norm  [layer_norm(x + residual), x + residual] (residual stream + pre-norm)
//   add_rms_norm    [rms_norm(x + residual), x + residual]
// Each reference kernel is literally the composition of the unfused ops' reference kernels, so a
// fusion pass that rewrites the unfused pattern into one of these ops preserves the semantics.
import { defineOp, getOp, type TensorMeta } from './registry.js';
import { type Dim, type Shape, broadcastShapes, formatShape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';

export const FUSED_ACTIVATIONS = ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'] as const;
export type FusedActivation = (typeof FUSED_ACTIVATIONS)[number];

interface LinearFusedAttrs { activation: FusedActivation }
interface AddLayerNormAttrs { normalized_ndim: number; eps: number }
interface AddRmsNormAttrs { eps: number }

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
