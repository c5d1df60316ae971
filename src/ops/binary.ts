// Elementwise binary ops with NumPy broadcasting (arithmetic, max/min, comparisons) and the
// three-way `where`. Inputs are first converted to their promoted dtype (as PyTorch does); float
// math runs in float64 and is rounded once into the output dtype, integer math is exact and wraps
// on overflow (src/ops/integer.ts).
import { defineOp, type TensorMeta } from './registry.js';
import { type DType, isFloatDType, promoteTypes, fromNumbers, toFloat64 } from '../tensor/dtype.js';
import { type Dim, type Shape, broadcastShapes, formatShape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { values, tensorFrom, broadcastIndex, concrete } from './kernel-utils.js';
import { isIntegerDType, INTEGER_BINARY, bigValues, wrappedTensor } from './integer.js';

/** Values of `t` after conversion to `dtype`, so that e.g. an i32 2049 compared with an f16 reads as
 *  2048 on both sides, exactly as if the tensor had been cast first. */
function valuesAs(t: Tensor, dtype: DType): Float64Array {
  const v = values(t);
  return t.dtype === dtype ? v : toFloat64(dtype, fromNumbers(dtype, v));
}

function broadcastOrThrow(op: string, shapes: Shape[]): Dim[] {
  let out: Dim[] | undefined = [...shapes[0]];
  for (let i = 1; i < shapes.length && out; i++) out = broadcastShapes(out, shapes[i]);
  if (!out) {
    const list = shapes.map(formatShape);
    const joined = list.length === 2 ? `${list[0]} and ${list[1]}` : `${list.slice(0, -1).join(', ')} and ${list[list.length - 1]}`;
    throw new RangeError(`${op}: shapes ${joined} cannot be broadcast`);
  }
  return out;
}

interface BinarySpec {
  fn: (a: number, b: number) => number;
  /** Output dtype from the promoted input dtype (throws for dtypes the op does not accept). */
  outDType: (promoted: DType, a: DType, b: DType) => DType;
  /** Dtype the inputs are converted to before computing (defaults to the promoted dtype). */
  computeDType?: (promoted: DType) => DType;
}

const same = (p: DType): DType => p;
const toBool = (): DType => 'bool';
// True division, like PyTorch: integer (and bool) operands give f32.
const trueDiv = (p: DType): DType => (isFloatDType(p) ? p : 'f32');

const BINARY: Record<string, BinarySpec> = {
  add: { fn: (a, b) => a + b, outDType: same },
  sub: {
    fn: (a, b) => a - b,
    outDType: (p, a, b) => {
      // bool - bool has no meaning as logic (PyTorch refuses it too); use logical ops or cast first
      if (p === 'bool') throw new TypeError(`sub: a and b are both bool (a is ${a}, b is ${b}); cast to a numeric dtype first`);
      return p;
    },
  },
  mul: { fn: (a, b) => a * b, outDType: same },
  div: { fn: (a, b) => a / b, outDType: trueDiv, computeDType: trueDiv },
  // Integer results are truncated toward zero (2 ** -1 gives 0), as a C cast would.
  pow: { fn: Math.pow, outDType: same },
  // Math.max/min propagate NaN, matching torch.maximum/minimum.
  maximum: { fn: Math.max, outDType: same },
  minimum: { fn: Math.min, outDType: same },
  equal: { fn: (a, b) => (a === b ? 1 : 0), outDType: toBool },
  less: { fn: (a, b) => (a < b ? 1 : 0), outDType: toBool },
  greater: { fn: (a, b) => (a > b ? 1 : 0), outDType: toBool },
};

for (const [name, spec] of Object.entries(BINARY)) {
  defineOp({
    name,
    kind: 'elementwise',
    inputs: ['a', 'b'],
    attrs: {},
    infer([a, b]): TensorMeta[] {
      const shape = broadcastOrThrow(name, [a!.shape, b!.shape]);
      const promoted = promoteTypes(a!.dtype, b!.dtype);
      return [{ dtype: spec.outDType(promoted, a!.dtype, b!.dtype), shape }];
    },
    reference([a, b], _attrs, [out]) {
      const promoted = promoteTypes(a!.dtype, b!.dtype);
      const compute = (spec.computeDType ?? same)(promoted);
      const shape = concrete(out.shape);
      const ia = broadcastIndex(shape, a!.shape), ib = broadcastIndex(shape, b!.shape);
      if (isIntegerDType(compute)) return [integerBinary(name, compute, a!, b!, ia, ib, out)];
      const va = valuesAs(a!, compute), vb = valuesAs(b!, compute);
      const r = new Float64Array(ia.length);
      for (let i = 0; i < r.length; i++) r[i] = spec.fn(va[ia[i]], vb[ib[i]]);
      return [tensorFrom(out, r)];
    },
  });
}

/** Integer (and i64) arithmetic and comparisons, exactly: see src/ops/integer.ts. Both inputs are
 *  integer or bool here (a float would have promoted the computation to float). */
function integerBinary(name: string, compute: DType, a: Tensor, b: Tensor, ia: Int32Array, ib: Int32Array, out: TensorMeta): Tensor {
  const op = INTEGER_BINARY[name];
  const n = ia.length;
  if (compute === 'i64') {
    const va = bigValues(a), vb = bigValues(b);
    const r = new BigInt64Array(n); // the store wraps mod 2^64
    for (let i = 0; i < n; i++) r[i] = op.big(va[ia[i]], vb[ib[i]]);
    return out.dtype === 'bool' ? wrappedTensor(out, Array.from(r, Number)) : wrappedTensor(out, r);
  }
  const va = values(a), vb = values(b);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) r[i] = op.small(va[ia[i]], vb[ib[i]]);
  return wrappedTensor(out, r);
}

defineOp({
  name: 'where',
  kind: 'elementwise',
  inputs: ['condition', 'a', 'b'],
  attrs: {},
  infer([condition, a, b]): TensorMeta[] {
    if (condition!.dtype !== 'bool') {
      throw new TypeError(`where: condition has dtype ${condition!.dtype}; it must be bool (compare first, e.g. x.greater(0))`);
    }
    const shape = broadcastOrThrow('where', [condition!.shape, a!.shape, b!.shape]);
    return [{ dtype: promoteTypes(a!.dtype, b!.dtype), shape }];
  },
  reference([condition, a, b], _attrs, [out]) {
    const vc = condition!.data as Uint8Array;
    const shape = concrete(out.shape);
    const ic = broadcastIndex(shape, condition!.shape), ia = broadcastIndex(shape, a!.shape), ib = broadcastIndex(shape, b!.shape);
    if (out.dtype === 'i64') {
      // i64 values beyond 2^53 are selected exactly (both sides are integer: the result is i64)
      const va = bigValues(a!), vb = bigValues(b!);
      const r = new BigInt64Array(ic.length);
      for (let i = 0; i < r.length; i++) r[i] = vc[ic[i]] ? va[ia[i]] : vb[ib[i]];
      return [wrappedTensor(out, r)];
    }
    const va = valuesAs(a!, out.dtype), vb = valuesAs(b!, out.dtype);
    const r = new Float64Array(ic.length);
    for (let i = 0; i < r.length; i++) r[i] = vc[ic[i]] ? va[ia[i]] : vb[ib[i]];
    return [tensorFrom(out, r)];
  },
});
