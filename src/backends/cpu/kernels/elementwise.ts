// Native kernels for f32 elementwise unary/binary ops (binary with NumPy broadcasting), softmax
// and log_softmax along any axis, and sum/mean/max/min over one contiguous block of axes.
import { registerKernel } from '../../../ops/registry.js';
import { aroundAxis } from '../../../ops/kernel-utils.js';
import { numel } from '../../../tensor/shape.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { BINARY_CODES, REDUCE_CODES, UNARY_CODES, type NativeAddon } from '../addon.js';
import { allF32, empty, f32, broadcastStrides } from './util.js';

const norm = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

/** [outer, size, inner] when the reduced axes form one contiguous block, else null. */
function contiguousBlock(x: Tensor, axes: readonly number[]): { outer: number; size: number; inner: number } | null {
  const rank = x.rank;
  const list = axes.length === 0 ? x.shape.map((_, i) => i) : [...new Set(axes.map((a) => norm(a, rank)))].sort((p, q) => p - q);
  if (rank === 0) return { outer: 1, size: 1, inner: 1 };
  for (let i = 1; i < list.length; i++) if (list[i] !== list[i - 1] + 1) return null;
  const a0 = list[0], a1 = list[list.length - 1];
  return { outer: numel(x.shape.slice(0, a0)), size: numel(x.shape.slice(a0, a1 + 1)), inner: numel(x.shape.slice(a1 + 1)) };
}

export function registerElementwiseKernels(addon: NativeAddon): void {
  for (const [name, code] of Object.entries(UNARY_CODES)) {
    registerKernel(name, 'cpu', ([x], _attrs, [out]) => {
      const y = empty(out);
      addon.unary(code, f32(x!), f32(y));
      return [y];
    }, (inputs) => allF32(inputs));
  }

  for (const [name, code] of Object.entries(BINARY_CODES)) {
    registerKernel(name, 'cpu', ([a, b], _attrs, [out]) => {
      const y = empty(out);
      addon.binary(code, f32(a!), f32(b!), f32(y), [...y.shape], broadcastStrides(y.shape, a!.shape), broadcastStrides(y.shape, b!.shape));
      return [y];
    }, (inputs) => allF32(inputs));
  }

  for (const name of ['softmax', 'log_softmax']) {
    registerKernel<{ axis: number }>(name, 'cpu', ([x], { axis }, [out]) => {
      const y = empty(out);
      const { outer, size, inner } = x!.rank === 0 ? { outer: 1, size: 1, inner: 1 } : aroundAxis(x!.shape, norm(axis, x!.rank));
      addon.softmax(f32(x!), f32(y), outer, size, inner, name === 'log_softmax');
      return [y];
    }, (inputs) => allF32(inputs));
  }

  for (const [name, code] of Object.entries(REDUCE_CODES)) {
    registerKernel<{ axes: readonly number[]; keepdim: boolean }>(name, 'cpu', ([x], { axes }, [out]) => {
      const y = empty(out);
      const { outer, size, inner } = contiguousBlock(x!, axes)!;
      addon.reduce(code, f32(x!), f32(y), outer, size, inner);
      return [y];
    }, ([x], { axes }) => x!.dtype === 'f32' && contiguousBlock(x!, axes) !== null);
  }
}
