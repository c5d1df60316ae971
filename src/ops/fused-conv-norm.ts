// Fused op forms for convolutional models (Stable Diffusion's UNet and VAE), emitted by the
// conv-epilogue and group-norm-fusion passes and run by one plan kernel each:
//   conv2d_fused        act(conv2d(x, weight, bias) + chan_bias) + residual
//   group_norm_act      act(group_norm(x, weight, bias))                    (GroupNorm + SiLU)
//   add_group_norm_act  [act(group_norm(x + residual, weight, bias)), x + residual]
// As in fused.ts, each reference kernel is literally the composition of the unfused ops' reference
// kernels, so a pass that rewrites the unfused pattern into one of these preserves the semantics.
import { defineOp, getOp } from './registry.js';
import { formatShape, type Dim, type Shape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { FUSED_ACTIVATIONS, type FusedActivation } from './fused.js';

interface Conv2dFusedAttrs { stride: number[]; padding: number[]; dilation: number[]; groups: number; activation: FusedActivation }
interface GroupNormActAttrs { num_groups: number; eps: number; activation: FusedActivation }

const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;
const shapesMayEqual = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => mayEqual(d, b[i]));

function ref(op: string, inputs: (Tensor | null)[], attrs: Record<string, unknown> = {}): Tensor[] {
  const def = getOp(op);
  const outs = def.infer(inputs.map((t) => (t ? { dtype: t.dtype, shape: t.shape } : null)), attrs);
  return def.reference(inputs, attrs, outs);
}

const activationAttr = { type: 'string', default: 'none', oneOf: FUSED_ACTIVATIONS } as const;

export const conv2dFused = defineOp<Conv2dFusedAttrs>({
  name: 'conv2d_fused',
  kind: 'linalg',
  inputs: ['x', 'weight', 'bias?', 'chan_bias?', 'residual?'],
  attrs: {
    stride: { type: 'ints', default: [1, 1] },
    padding: { type: 'ints', default: [0, 0] },
    dilation: { type: 'ints', default: [1, 1] },
    groups: { type: 'int', default: 1 },
    activation: activationAttr,
  },
  doc: 'act(conv2d(x, weight, bias) + chan_bias) + residual; chan_bias [N or 1, O, 1, 1] (a per-image channel vector, e.g. a timestep embedding), residual [N, O, Ho, Wo].',
  infer([x, weight, bias, chanBias, residual], { stride, padding, dilation, groups }) {
    const [out] = getOp('conv2d').infer([x, weight, bias], { stride, padding, dilation, groups });
    const [n, o] = out.shape;
    if (chanBias) {
      const s = chanBias.shape;
      if (chanBias.dtype !== out.dtype) throw new TypeError(`conv2d_fused: chan_bias has dtype ${chanBias.dtype} but x has dtype ${out.dtype}; they must match`);
      if (s.length !== 4 || !(s[0] === 1 || mayEqual(s[0], n)) || !mayEqual(s[1], o) || s[2] !== 1 || s[3] !== 1) {
        throw new RangeError(`conv2d_fused: chan_bias ${formatShape(s)} must be [N or 1, O, 1, 1] for the output ${formatShape(out.shape)}`);
      }
    }
    if (residual) {
      if (residual.dtype !== out.dtype) throw new TypeError(`conv2d_fused: residual has dtype ${residual.dtype} but x has dtype ${out.dtype}; they must match`);
      if (!shapesMayEqual(residual.shape, out.shape)) throw new RangeError(`conv2d_fused: residual ${formatShape(residual.shape)} must have the output's shape ${formatShape(out.shape)}`);
    }
    return [out];
  },
  reference([x, weight, bias, chanBias, residual], { activation, ...conv }) {
    let y = ref('conv2d', [x, weight, bias], conv)[0];
    if (chanBias) y = ref('add', [y, chanBias])[0];
    if (activation !== 'none') y = ref(activation, [y])[0];
    if (residual) y = ref('add', [y, residual])[0];
    return [y];
  },
});

export const groupNormAct = defineOp<GroupNormActAttrs>({
  name: 'group_norm_act',
  kind: 'norm',
  inputs: ['x', 'weight?', 'bias?'],
  attrs: { num_groups: { type: 'int' }, eps: { type: 'float', default: 1e-5 }, activation: activationAttr },
  doc: 'act(group_norm(x, weight, bias)) for x [N, C, *].',
  infer([x, weight, bias], { num_groups, eps }) {
    return getOp('group_norm').infer([x, weight, bias], { num_groups, eps });
  },
  reference([x, weight, bias], { activation, num_groups, eps }) {
    const y = ref('group_norm', [x, weight, bias], { num_groups, eps })[0];
    return activation === 'none' ? [y] : ref(activation, [y]);
  },
});

export const addGroupNormAct = defineOp<GroupNormActAttrs>({
  name: 'add_group_norm_act',
  kind: 'norm',
  inputs: ['x', 'residual', 'weight?', 'bias?'],
  attrs: { num_groups: { type: 'int' }, eps: { type: 'float', default: 1e-5 }, activation: activationAttr },
  doc: 'sum = x + residual (same shape [N, C, *]); outputs [act(group_norm(sum, weight, bias)), sum].',
  infer([x, residual, weight, bias], { num_groups, eps }) {
    return getOp('add_group_norm').infer([x, residual, weight, bias], { num_groups, eps });
  },
  reference([x, residual, weight, bias], { activation, num_groups, eps }) {
    const [normed, sum] = ref('add_group_norm', [x, residual, weight, bias], { num_groups, eps });
    return [activation === 'none' ? normed : ref(activation, [normed])[0], sum];
  },
});

/** Whether `s` is a chan_bias shape for a conv output [n, o, h, w] ([N or 1, O, 1, 1]). */
export function isChanBiasShape(s: Shape, out: Shape): boolean {
  return s.length === 4 && (s[0] === 1 || s[0] === out[0]) && s[1] === out[1] && s[2] === 1 && s[3] === 1;
}
