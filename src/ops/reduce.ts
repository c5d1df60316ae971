// Reductions (sum, mean, max, min over a set of axes; argmax along one axis) and the
// normalizations along one axis (softmax, log_softmax). Float math runs in float64 and is rounded
// once; i64 (and very long integer) folds run exactly in BigInt.
import { defineOp, type TensorMeta } from './registry.js';
import { type DType, isFloatDType } from '../tensor/dtype.js';
import { type Dim, type Shape, formatShape, numel } from '../tensor/shape.js';
import { values, tensorFrom, broadcastIndex, aroundAxis, concrete } from './kernel-utils.js';
import { isIntegerDType, bigValues, wrappedTensor } from './integer.js';

/** Integer folds that float64 could get wrong: any over i64, and sums of ≤32-bit integers once a
 *  sum could pass 2^53 (more than 2^22 terms of up to 2^31 each). The rest are exact in float64. */
function needsBigIntFold(op: string, dtype: DType, inSize: number, outSize: number): boolean {
  if (dtype === 'i64') return op !== 'mean';
  return op === 'sum' && (isIntegerDType(dtype) || dtype === 'bool') && outSize > 0 && inSize / outSize > 2 ** 22;
}

interface ReduceAttrs { axes: readonly number[]; keepdim: boolean }
interface AxisAttrs { axis: number; keepdim: boolean }
interface SoftmaxAttrs { axis: number }

/** Normalizes one axis. A rank-0 tensor accepts axis 0 or -1 (as PyTorch does): there is nothing
 *  to reduce, and the result is the scalar itself. */
function checkAxis(op: string, axis: number, shape: Shape, what = 'axis'): number {
  const rank = shape.length;
  if (rank === 0 && (axis === 0 || axis === -1)) return 0;
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new RangeError(`${op}: ${what} ${axis} is out of range for x of shape ${formatShape(shape)} (rank ${rank})`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** The sorted, normalized axes a reduction runs over; an empty list means every axis. */
function reducedAxes(op: string, axes: readonly number[], shape: Shape): number[] {
  if (axes.length === 0) return shape.map((_, i) => i);
  const seen = new Set<number>();
  for (const a of axes) {
    const n = checkAxis(op, a, shape);
    if (seen.has(n)) throw new RangeError(`${op}: axis ${n} appears more than once in axes [${axes.join(', ')}] for x of shape ${formatShape(shape)}`);
    seen.add(n);
  }
  // a rank-0 input has no real axes to drop
  return shape.length === 0 ? [] : [...seen].sort((x, y) => x - y);
}

function reducedShape(shape: Shape, axes: readonly number[], keepdim: boolean): Dim[] {
  const out: Dim[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdim) out.push(1);
  });
  return out;
}

/** max/min/argmax have no identity: reducing over a dim of size 0 is an error (checked only when
 *  the dim is concrete; a symbolic dim is assumed non-empty). */
function checkNonEmpty(op: string, shape: Shape, axes: readonly number[]): void {
  for (const a of axes) {
    if (shape[a] === 0) throw new RangeError(`${op}: cannot reduce over axis ${a} of size 0 in x of shape ${formatShape(shape)} (no identity value)`);
  }
}

type Fold = { init: number; step: (acc: number, v: number) => number; finish?: (acc: number, count: number) => number };

// NaN propagates through max/min (like torch.max), which Math.max/min already do.
const FOLDS: Record<string, Fold> = {
  sum: { init: 0, step: (acc, v) => acc + v },
  mean: { init: 0, step: (acc, v) => acc + v, finish: (acc, n) => acc / n },
  max: { init: -Infinity, step: Math.max },
  min: { init: Infinity, step: Math.min },
};

const OUT_DTYPE: Record<string, (x: DType) => DType> = {
  // like torch.sum: integer and bool sums widen to i64 so counts do not overflow
  sum: (x) => (isFloatDType(x) ? x : 'i64'),
  mean: (x) => {
    if (!isFloatDType(x)) throw new TypeError(`mean: x has dtype ${x}; mean needs a floating-point tensor (cast it first)`);
    return x;
  },
  max: (x) => x,
  min: (x) => x,
};

for (const [name, fold] of Object.entries(FOLDS)) {
  defineOp<ReduceAttrs>({
    name,
    kind: 'reduction',
    inputs: ['x'],
    attrs: { axes: { type: 'ints', default: [] }, keepdim: { type: 'bool', default: false } },
    infer([x], attrs): TensorMeta[] {
      const dtype = OUT_DTYPE[name](x!.dtype);
      const axes = reducedAxes(name, attrs.axes, x!.shape);
      if (name === 'max' || name === 'min') checkNonEmpty(name, x!.shape, axes);
      return [{ dtype, shape: reducedShape(x!.shape, axes, attrs.keepdim) }];
    },
    reference([x], attrs, [out]) {
      const inShape = x!.shape;
      const axes = reducedAxes(name, attrs.axes, inShape);
      // keepdim shape of the output: maps every input element to the output element it folds into
      const keptShape = inShape.map((d, i) => (axes.includes(i) ? 1 : d));
      const map = broadcastIndex(inShape, keptShape);
      if (needsBigIntFold(name, x!.dtype, x!.size, numel(concrete(out.shape)))) {
        // i64 (or huge) integer folds in BigInt: exact, sums wrapping mod 2^64 like torch.sum
        const step = name === 'sum' ? (acc: bigint, v: bigint) => acc + v : name === 'max' ? (acc: bigint, v: bigint) => (v > acc ? v : acc) : (acc: bigint, v: bigint) => (v < acc ? v : acc);
        const v = bigValues(x!);
        // sum starts at 0; max/min start at the first element they see (their axes are non-empty)
        const acc = new Array<bigint | undefined>(numel(concrete(out.shape))).fill(name === 'sum' ? 0n : undefined);
        for (let i = 0; i < v.length; i++) { const a = acc[map[i]]; acc[map[i]] = a === undefined ? v[i] : step(a, v[i]); }
        return [wrappedTensor(out, acc.map((a) => a ?? 0n))];
      }
      const v = values(x!);
      const acc = new Float64Array(numel(concrete(out.shape))).fill(fold.init);
      for (let i = 0; i < v.length; i++) acc[map[i]] = fold.step(acc[map[i]], v[i]);
      if (fold.finish) {
        const count = axes.reduce((n, a) => n * inShape[a], 1);
        for (let i = 0; i < acc.length; i++) acc[i] = fold.finish(acc[i], count);
      }
      return [tensorFrom(out, acc)];
    },
  });
}

defineOp<AxisAttrs>({
  name: 'argmax',
  kind: 'reduction',
  inputs: ['x'],
  attrs: { axis: { type: 'int', default: -1 }, keepdim: { type: 'bool', default: false } },
  infer([x], attrs): TensorMeta[] {
    const shape = x!.shape;
    const axis = checkAxis('argmax', attrs.axis, shape);
    const axes = shape.length === 0 ? [] : [axis];
    checkNonEmpty('argmax', shape, axes);
    return [{ dtype: 'i64', shape: reducedShape(shape, axes, attrs.keepdim) }];
  },
  reference([x], attrs, [out]) {
    if (x!.rank === 0) return [tensorFrom(out, [0])];
    // i64 compared as BigInts (exact beyond 2^53); every other dtype is exact in float64
    const v: ArrayLike<number | bigint> = x!.dtype === 'i64' ? (x!.data as BigInt64Array) : values(x!);
    const { outer, size, inner } = aroundAxis(x!.shape, checkAxis('argmax', attrs.axis, x!.shape));
    const r = new Float64Array(outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const base = o * size * inner + i;
        // strict '>' keeps the first index on ties; a NaN counts as the largest value (torch.argmax)
        let best = 0, bestV = v[base];
        for (let k = 1; k < size && !Number.isNaN(bestV); k++) {
          const val = v[base + k * inner];
          if (val > bestV || Number.isNaN(val)) { best = k; bestV = val; }
        }
        r[o * inner + i] = best;
      }
    }
    return [tensorFrom(out, r)];
  },
});

for (const name of ['softmax', 'log_softmax'] as const) {
  defineOp<SoftmaxAttrs>({
    name,
    kind: 'reduction',
    inputs: ['x'],
    attrs: { axis: { type: 'int', default: -1 } },
    infer([x], attrs): TensorMeta[] {
      if (!isFloatDType(x!.dtype)) throw new TypeError(`${name}: x has dtype ${x!.dtype}; ${name} needs a floating-point tensor (cast it first)`);
      checkAxis(name, attrs.axis, x!.shape);
      return [{ dtype: x!.dtype, shape: x!.shape }];
    },
    reference([x], attrs, [out]) {
      const v = values(x!);
      const shape = x!.rank === 0 ? [1] : x!.shape;
      const { outer, size, inner } = aroundAxis(shape, checkAxis(name, attrs.axis, x!.shape));
      for (let o = 0; o < outer; o++) {
        for (let i = 0; i < inner; i++) {
          const base = o * size * inner + i;
          // subtracting the max keeps exp() from overflowing; the result is mathematically unchanged
          let m = -Infinity;
          for (let k = 0; k < size; k++) m = Math.max(m, v[base + k * inner]);
          // a row of all -Infinity would give (-Inf) - (-Inf) = NaN; PyTorch returns NaN there too
          let s = 0;
          for (let k = 0; k < size; k++) s += Math.exp(v[base + k * inner] - m);
          const logS = Math.log(s);
          for (let k = 0; k < size; k++) {
            const j = base + k * inner;
            v[j] = name === 'softmax' ? Math.exp(v[j] - m) / s : v[j] - m - logS;
          }
        }
      }
      return [tensorFrom(out, v)];
    },
  });
}
