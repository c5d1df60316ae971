// Normalization ops: layer_norm, rms_norm and group_norm. Statistics are computed in float64 with
// two passes (mean, then the biased variance of the deviations), which is what the native kernels
// are tested against; the result is rounded once into x's dtype.
import { defineOp, type TensorMeta } from './registry.js';
import { isFloatDType } from '../tensor/dtype.js';
import { type Dim, type Shape, formatShape, numel } from '../tensor/shape.js';
import { values, tensorFrom, concrete } from './kernel-utils.js';

interface LayerNormAttrs { normalized_ndim: number; eps: number }
interface RmsNormAttrs { eps: number }
interface GroupNormAttrs { num_groups: number; eps: number }

/** Two dims can only be shown to differ when both are concrete; a symbolic dim is checked at run time. */
const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;
const shapesMayEqual = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => mayEqual(d, b[i]));

function checkFloatX(op: string, x: TensorMeta): void {
  if (!isFloatDType(x.dtype)) throw new TypeError(`${op}: x has dtype ${x.dtype}; ${op} needs a floating-point tensor (cast it first)`);
}

/** weight/bias must have x's dtype (so native kernels see one dtype) and exactly the expected shape. */
function checkParam(op: string, name: string, p: TensorMeta | null, x: TensorMeta, want: Shape, wantText: string): void {
  if (!p) return;
  if (p.dtype !== x.dtype) throw new TypeError(`${op}: ${name} has dtype ${p.dtype} but x has dtype ${x.dtype}; they must match`);
  if (!shapesMayEqual(p.shape, want)) {
    throw new RangeError(`${op}: ${name} ${formatShape(p.shape)} must be ${wantText} ${formatShape(want)} for x ${formatShape(x.shape)}`);
  }
}

/** Mean and biased variance of v[start .. start+n), two-pass. */
function moments(v: Float64Array, start: number, n: number): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < n; i++) s += v[start + i];
  const mean = n > 0 ? s / n : 0;
  let q = 0;
  for (let i = 0; i < n; i++) { const d = v[start + i] - mean; q += d * d; }
  return { mean, variance: n > 0 ? q / n : 0 };
}

export const layerNorm = defineOp<LayerNormAttrs>({
  name: 'layer_norm',
  kind: 'norm',
  inputs: ['x', 'weight?', 'bias?'],
  attrs: { normalized_ndim: { type: 'int', default: 1 }, eps: { type: 'float', default: 1e-5 } },
  doc: 'y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing normalized_ndim dims (biased variance).',
  infer([x, weight, bias], { normalized_ndim: nd }) {
    checkFloatX('layer_norm', x!);
    if (nd < 1 || nd > x!.shape.length) {
      throw new RangeError(`layer_norm: normalized_ndim ${nd} must be between 1 and the rank of x ${formatShape(x!.shape)}`);
    }
    const tail = x!.shape.slice(x!.shape.length - nd);
    checkParam('layer_norm', 'weight', weight, x!, tail, 'the normalized (last) dims');
    checkParam('layer_norm', 'bias', bias, x!, tail, 'the normalized (last) dims');
    return [{ dtype: x!.dtype, shape: x!.shape }];
  },
  reference([x, weight, bias], { normalized_ndim: nd, eps }, [out]) {
    const shape = concrete(out.shape);
    const cols = numel(shape.slice(shape.length - nd));
    const rows = cols === 0 ? 0 : numel(shape) / cols;
    const v = values(x!);
    const w = weight ? values(weight) : null, b = bias ? values(bias) : null;
    for (let r = 0; r < rows; r++) {
      const start = r * cols;
      const { mean, variance } = moments(v, start, cols);
      const inv = 1 / Math.sqrt(variance + eps);
      for (let j = 0; j < cols; j++) {
        let y = (v[start + j] - mean) * inv;
        if (w) y *= w[j];
        if (b) y += b[j];
        v[start + j] = y;
      }
    }
    return [tensorFrom(out, v)];
  },
});

export const rmsNorm = defineOp<RmsNormAttrs>({
  name: 'rms_norm',
  kind: 'norm',
  inputs: ['x', 'weight?'],
  attrs: { eps: { type: 'float', default: 1e-6 } },
  doc: 'y = x / sqrt(mean(x²) + eps) * weight over the last dim.',
  infer([x, weight]) {
    checkFloatX('rms_norm', x!);
    if (x!.shape.length < 1) throw new RangeError(`rms_norm: x must have at least one dim, got a scalar`);
    const last = x!.shape[x!.shape.length - 1];
    checkParam('rms_norm', 'weight', weight, x!, [last], 'the last dim of x');
    return [{ dtype: x!.dtype, shape: x!.shape }];
  },
  reference([x, weight], { eps }, [out]) {
    const shape = concrete(out.shape);
    const cols = shape[shape.length - 1];
    const rows = cols === 0 ? 0 : numel(shape) / cols;
    const v = values(x!);
    const w = weight ? values(weight) : null;
    for (let r = 0; r < rows; r++) {
      const start = r * cols;
      let q = 0;
      for (let j = 0; j < cols; j++) q += v[start + j] * v[start + j];
      const inv = 1 / Math.sqrt(q / cols + eps);
      for (let j = 0; j < cols; j++) v[start + j] = w ? v[start + j] * inv * w[j] : v[start + j] * inv;
    }
    return [tensorFrom(out, v)];
  },
});

export const groupNorm = defineOp<GroupNormAttrs>({
  name: 'group_norm',
  kind: 'norm',
  inputs: ['x', 'weight?', 'bias?'],
  attrs: { num_groups: { type: 'int' }, eps: { type: 'float', default: 1e-5 } },
  doc: 'x [N, C, *]: channels split into num_groups contiguous groups, each normalized over its channels and spatial dims; then per-channel weight [C] and bias [C].',
  infer([x, weight, bias], { num_groups: groups }) {
    checkFloatX('group_norm', x!);
    const shape = x!.shape;
    if (shape.length < 2) throw new RangeError(`group_norm: x must be [N, C, *] (rank >= 2), got ${formatShape(shape)}`);
    if (groups < 1) throw new RangeError(`group_norm: num_groups must be positive, got ${groups}`);
    const c = shape[1];
    if (typeof c === 'number' && c % groups !== 0) {
      throw new RangeError(`group_norm: channels ${c} of x ${formatShape(shape)} are not divisible by num_groups ${groups}`);
    }
    checkParam('group_norm', 'weight', weight, x!, [c], 'the channel dim');
    checkParam('group_norm', 'bias', bias, x!, [c], 'the channel dim');
    return [{ dtype: x!.dtype, shape }];
  },
  reference([x, weight, bias], { num_groups: groups, eps }, [out]) {
    const shape = concrete(out.shape);
    const [n, c] = shape;
    const spatial = numel(shape.slice(2));
    const perGroup = (c / groups) * spatial; // a group's channels are contiguous in memory
    const v = values(x!);
    const w = weight ? values(weight) : null, b = bias ? values(bias) : null;
    for (let i = 0; i < n * groups; i++) {
      const start = i * perGroup;
      const { mean, variance } = moments(v, start, perGroup);
      const inv = 1 / Math.sqrt(variance + eps);
      for (let j = 0; j < perGroup; j++) {
        const ch = (i % groups) * (c / groups) + Math.floor(j / spatial);
        let y = (v[start + j] - mean) * inv;
        if (w) y *= w[ch];
        if (b) y += b[ch];
        v[start + j] = y;
      }
    }
    return [tensorFrom(out, v)];
  },
});
