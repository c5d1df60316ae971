// Native kernels for permute (any dtype, blocked transposes) and gather/embedding (any dtype,
// i32/i64 indices). Out-of-range indices raise the same errors as the reference kernels.
import { registerKernel } from '../../../ops/registry.js';
import { aroundAxis } from '../../../ops/kernel-utils.js';
import { formatShape } from '../../../tensor/shape.js';
import type { NativeAddon } from '../addon.js';
import { empty } from './util.js';

const isIndex = (dtype: string): boolean => dtype === 'i64' || dtype === 'i32';

export function registerMovementKernels(addon: NativeAddon): void {
  registerKernel<{ perm: readonly number[] }>('permute', 'cpu', ([x], { perm }, [out]) => {
    const y = empty(out);
    addon.permute(x!.data, y.data, [...x!.shape], [...perm]);
    return [y];
  });

  registerKernel<{ axis: number }>('gather', 'cpu', ([x, indices], { axis }, [out]) => {
    const a = axis < 0 ? axis + x!.rank : axis;
    const { outer, size, inner } = aroundAxis(x!.shape, a);
    const y = empty(out);
    const bad = addon.gather(x!.data, indices!.data as Int32Array | BigInt64Array, y.data, outer, size, inner, true);
    if (bad !== undefined) throw new RangeError(`gather: index ${bad} is out of range for axis ${a} of size ${size} (x has shape ${formatShape(x!.shape)})`);
    return [y];
  }, ([, indices]) => isIndex(indices!.dtype));

  registerKernel('embedding', 'cpu', ([weight, ids], _attrs, [out]) => {
    const [vocab, dim] = weight!.shape;
    const y = empty(out);
    const bad = addon.gather(weight!.data, ids!.data as Int32Array | BigInt64Array, y.data, 1, vocab, dim, false);
    if (bad !== undefined) throw new RangeError(`embedding: id ${bad} is out of range for a vocabulary of ${vocab} rows`);
    return [y];
  }, ([, ids]) => isIndex(ids!.dtype));
}
