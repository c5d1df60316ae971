// Helpers shared by the reference kernels: concrete shapes, broadcasting index maps, and
// conversion between tensors and float64 working arrays.
import { Tensor } from '../tensor/tensor.js';
import { type DType, fromNumbers, toFloat64 } from '../tensor/dtype.js';
import { type Shape, stridesOf, numel } from '../tensor/shape.js';
import type { TensorMeta } from './registry.js';

/** The concrete shape of an output meta (kernels only run on concrete shapes). */
export function concrete(shape: Shape): number[] {
  return shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`kernel called with symbolic dim "${d}"`);
    return d;
  });
}

/** Values of a tensor as float64 (the reference kernels' working precision). */
export const values = (t: Tensor): Float64Array => toFloat64(t.dtype, t.data);

/** A tensor of the given meta from float64 values (rounded to the dtype). */
export function tensorFrom(meta: TensorMeta, v: ArrayLike<number>): Tensor {
  return Tensor.fromStorage(meta.dtype, concrete(meta.shape), fromNumbers(meta.dtype, v));
}
export function tensorOf(dtype: DType, shape: readonly number[], v: ArrayLike<number>): Tensor {
  return Tensor.fromStorage(dtype, shape, fromNumbers(dtype, v));
}

/** For each flat index of `outShape`, the flat index into a tensor of `inShape` broadcast to it. */
export function broadcastIndex(outShape: readonly number[], inShape: readonly number[]): Int32Array {
  const n = numel(outShape);
  const map = new Int32Array(n);
  const r = outShape.length, off = r - inShape.length;
  const inStrides = stridesOf(inShape);
  // effective stride per output dim: 0 where the input is broadcast (missing or size 1)
  const eff = outShape.map((_, i) => (i < off || inShape[i - off] === 1 ? 0 : inStrides[i - off]));
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let k = 0; k < n; k++) {
    map[k] = src;
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      src += eff[d];
      if (idx[d] < outShape[d]) break;
      src -= eff[d] * idx[d];
      idx[d] = 0;
    }
  }
  return map;
}

/** Splits a shape around an axis into (outer, size, inner) element counts. */
export function aroundAxis(shape: readonly number[], axis: number): { outer: number; size: number; inner: number } {
  return { outer: numel(shape.slice(0, axis)), size: shape[axis], inner: numel(shape.slice(axis + 1)) };
}
