// Small helpers shared by the native kernel wrappers: output allocation and dtype checks.
import { Tensor } from '../../../tensor/tensor.js';
import type { TensorMeta } from '../../../ops/registry.js';
import { concrete } from '../../../ops/kernel-utils.js';

/** A fresh output tensor for inferred metadata; native code fills its storage in place. */
export const empty = (meta: TensorMeta): Tensor => Tensor.empty(meta.dtype, concrete(meta.shape));

/** True when every present input is f32 (what the native float kernels are written for). */
export const allF32 = (inputs: (Tensor | null)[]): boolean => inputs.every((t) => t === null || t.dtype === 'f32');

export const f32 = (t: Tensor): Float32Array => t.data as Float32Array;
export const f32OrNull = (t: Tensor | null): Float32Array | null => (t ? (t.data as Float32Array) : null);
/** A tensor's storage as bytes (no copy), for kernels that read its layout themselves (quantized stacks, KV pools). */
export const bytesOf = (t: Tensor): Uint8Array => {
  const d = t.data as ArrayBufferView;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
};

/** Row-major strides of `shape` right-aligned into `outShape`, 0 where the input broadcasts. */
export function broadcastStrides(outShape: readonly number[], shape: readonly number[]): number[] {
  const off = outShape.length - shape.length;
  const strides = new Array<number>(outShape.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[off + i] = shape[i] === 1 ? 0 : acc;
    acc *= shape[i];
  }
  return strides;
}
