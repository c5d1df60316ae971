// Tests for the broadcasting binary ops and `where` (src/ops/binary.ts): hand-worked values,
// broadcasting edge cases, dtype promotion, JS-number operands, errors and symbolic inference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, scalar, zeros, randn, ops, type Tensor, type DType } from '../../src/index.js';

const flat = (t: Tensor): number[] => Array.from(t.toFlatArray());

/** Independent broadcasting oracle: walks output multi-indices and picks input elements by
 *  right-aligned coordinates (clamping size-1 dims to 0), with no shared code from the kernels. */
function oracle(a: Tensor, b: Tensor, fn: (x: number, y: number) => number): { shape: number[]; values: number[] } {
  const r = Math.max(a.rank, b.rank);
  const pa = [...Array(r - a.rank).fill(1), ...a.shape], pb = [...Array(r - b.rank).fill(1), ...b.shape];
  const shape = pa.map((d, i) => Math.max(d, pb[i]) * (d === 0 || pb[i] === 0 ? 0 : 1));
  const va = a.toFlatArray(), vb = b.toFlatArray();
  const out: number[] = [];
  const idx = new Array(r).fill(0);
  const total = shape.reduce((n, d) => n * d, 1);
  const flatIndex = (dims: number[]) => dims.reduce((off, d, i) => off * d + (d === 1 ? 0 : idx[i]), 0);
  for (let k = 0; k < total; k++) {
    out.push(fn(va[flatIndex(pa)], vb[flatIndex(pb)]));
    for (let d = r - 1; d >= 0; d--) { if (++idx[d] < shape[d]) break; idx[d] = 0; }
  }
  return { shape, values: out };
}

test('add/sub/mul/div on a row broadcast over a matrix give hand-computed values', () => {
  const a = fromArray([[1, 2, 3], [4, 5, 6]]);
  const b = fromArray([10, 20, 40]);
  assert.deepEqual(a.add(b).toArray(), [[11, 22, 43], [14, 25, 46]]);
  assert.deepEqual(a.sub(b).toArray(), [[-9, -18, -37], [-6, -15, -34]]);
  assert.deepEqual(b.sub(a).toArray(), [[9, 18, 37], [6, 15, 34]]); // operand order survives broadcasting
  assert.deepEqual(a.mul(b).toArray(), [[10, 40, 120], [40, 100, 240]]);
  // 1/10, 2/20, 3/40, ... rounded to f32
  assert.deepEqual(flat(a.div(b)), [0.1, 0.1, 0.075, 0.4, 0.25, 0.15].map(Math.fround));
});

test('size-1 dims broadcast both ways: [2, 1] x [1, 3] is an outer product', () => {
  const col = fromArray([[1], [2]]);
  const row = fromArray([[10, 20, 30]]);
  const p = col.mul(row);
  assert.deepEqual(p.shape, [2, 3]);
  assert.deepEqual(p.toArray(), [[10, 20, 30], [20, 40, 60]]);
  assert.deepEqual(row.sub(col).toArray(), [[9, 19, 29], [8, 18, 28]]);
});

test('rank mismatch broadcasts against right-aligned dims and agrees with an explicit loop', () => {
  const cases: [number[], number[]][] = [
    [[2, 1, 3], [4, 3]], [[4, 3], [2, 1, 3]], [[3], [2, 4, 1]], [[1, 1], [5]], [[2, 3, 1, 5], [3, 4, 1]], [[], [2, 3]],
  ];
  let seed = 1;
  for (const [sa, sb] of cases) {
    const a = randn(sa, { seed: seed++ }), b = randn(sb, { seed: seed++ });
    for (const [name, fn] of [['add', (x: number, y: number) => x + y], ['mul', (x: number, y: number) => x * y], ['maximum', Math.max]] as const) {
      const got = (ops as any)[name](a, b) as Tensor;
      const want = oracle(a, b, fn);
      assert.deepEqual(got.shape, want.shape, `${name} ${JSON.stringify(sa)} ${JSON.stringify(sb)}`);
      // inputs are f32 values; one rounding of the float64 result to f32 is exactly Math.fround
      assert.deepEqual(flat(got), want.values.map(Math.fround), `${name} ${JSON.stringify(sa)} ${JSON.stringify(sb)}`);
    }
  }
});

test('rank-0 tensors broadcast against anything; scalar op scalar stays rank 0', () => {
  const s = scalar(2);
  const m = fromArray([[1, 2], [3, 4]]);
  assert.deepEqual(s.mul(m).toArray(), [[2, 4], [6, 8]]);
  assert.deepEqual(m.sub(s).toArray(), [[-1, 0], [1, 2]]);
  const ss = s.add(scalar(3));
  assert.deepEqual(ss.shape, []);
  assert.equal(ss.item(), 5);
});

test('empty tensors broadcast to empty results with the right shape', () => {
  const e = zeros([0, 3]).add(fromArray([1, 2, 3]));
  assert.deepEqual(e.shape, [0, 3]);
  assert.equal(e.size, 0);
  assert.deepEqual(fromArray([5]).mul(zeros([0])).shape, [0]);
  assert.throws(() => zeros([0]).add(fromArray([1, 2])), /add: shapes \[0\] and \[2\] cannot be broadcast/);
});

test('JS numbers work as either operand and keep the tensor dtype where exact', () => {
  const x = fromArray([1, 2, 3]);
  assert.deepEqual(x.add(1).toArray(), [2, 3, 4]);
  assert.deepEqual(x.mul(0.5).toArray(), [0.5, 1, 1.5]);
  assert.deepEqual(x.sub(3).toArray(), [-2, -1, 0]);
  assert.deepEqual(x.pow(2).toArray(), [1, 4, 9]);
  assert.deepEqual(ops.sub(10, x).toArray(), [9, 8, 7]);
  assert.deepEqual(ops.div(6, x).toArray(), [6, 3, 2]);
  const xi = fromArray([1, 2, 3], 'i32');
  assert.equal(xi.add(1).dtype, 'i32');
  assert.deepEqual(xi.add(1).toArray(), [2, 3, 4]);
  // a fractional number cannot live in an integer dtype, so it promotes the result to f32
  assert.equal(xi.mul(0.5).dtype, 'f32');
  assert.deepEqual(xi.mul(0.5).toArray(), [0.5, 1, 1.5]);
  const xh = fromArray([1, 2], 'f16');
  assert.equal(xh.add(1).dtype, 'f16');
  assert.deepEqual(xh.add(1).toArray(), [2, 3]);
  const x64 = fromArray([2 ** 40, -5], 'i64');
  assert.equal(x64.add(1).dtype, 'i64');
  assert.deepEqual(x64.add(1).toArray(), [2 ** 40 + 1, -4]);
  assert.throws(() => ops.add(1, 2), /add: at least one argument must be a Tensor/);
});

test('dtype promotion follows promoteTypes: floats beat ints, f16 with bf16 gives f32, u8 with i8 gives i32', () => {
  const t = (d: DType) => fromArray([1, 0], d); // 0 and 1 are exact in every dtype, bool included
  const cases: [DType, DType, DType][] = [
    ['i32', 'f32', 'f32'], ['f16', 'bf16', 'f32'], ['u8', 'i8', 'i32'], ['i32', 'i64', 'i64'],
    ['bool', 'i32', 'i32'], ['bool', 'bool', 'bool'], ['i64', 'f16', 'f16'], ['bf16', 'f32', 'f32'],
  ];
  for (const [da, db, want] of cases) {
    const r = t(da).add(t(db));
    assert.equal(r.dtype, want, `${da} + ${db}`);
    assert.equal(t(db).mul(t(da)).dtype, want, `${db} * ${da}`);
    if (want !== 'bool') assert.deepEqual(flat(r), [2, 0], `${da} + ${db}`);
  }
  // bool + bool is a logical or, bool * bool a logical and (values stay 0/1)
  const p = fromArray([1, 1, 0, 0], 'bool'), q = fromArray([1, 0, 1, 0], 'bool');
  assert.deepEqual(flat(p.add(q)), [1, 1, 1, 0]);
  assert.deepEqual(flat(p.mul(q)), [1, 0, 0, 0]);
  assert.throws(() => p.sub(q), /sub: a and b are both bool/);
});

test('integer arithmetic is exact and wraps like the storage type', () => {
  const a = fromArray([7, -7, 100], 'i32'), b = fromArray([2, 2, -3], 'i32');
  assert.deepEqual(a.mul(b).toArray(), [14, -14, -300]);
  assert.deepEqual(a.sub(b).toArray(), [5, -9, 103]);
  const big = fromArray([2 ** 31 - 1], 'i32');
  assert.deepEqual(big.add(fromArray([1], 'i32')).toArray(), [-(2 ** 31)]); // C-style two's-complement wrap
  const u = fromArray([250], 'u8');
  assert.deepEqual(u.add(fromArray([10], 'u8')).toArray(), [4]);
});

test('div is true division: int / int gives f32, division by zero gives Inf/NaN, floats keep their dtype', () => {
  const q = fromArray([7, -7, 1, 0], 'i32').div(fromArray([2, 2, 0, 0], 'i32'));
  assert.equal(q.dtype, 'f32');
  assert.deepEqual(flat(q).slice(0, 3), [3.5, -3.5, Infinity]);
  assert.ok(Number.isNaN(flat(q)[3]));
  assert.equal(fromArray([1, 0], 'bool').div(fromArray([1, 1], 'bool')).dtype, 'f32');
  const h = fromArray([1, 3], 'f16').div(fromArray([3, 3], 'f16'));
  assert.equal(h.dtype, 'f16');
  // 1/3 rounded once to f16 (10-bit mantissa): 0x3555 = 0.333251953125
  assert.deepEqual(flat(h), [0.333251953125, 1]);
  assert.equal(fromArray([1], 'i64').div(fromArray([4], 'f16')).dtype, 'f16');
});

test('pow, maximum and minimum give hand-computed values; NaN propagates through maximum/minimum', () => {
  assert.deepEqual(fromArray([2, 3, 4, 9]).pow(fromArray([3, 2, 0.5, -0.5])).toArray(), [8, 9, 2, 1 / 3].map(Math.fround));
  assert.deepEqual(fromArray([2, 3], 'i32').pow(fromArray([10, 3], 'i32')).toArray(), [1024, 27]);
  // integer results truncate toward zero: 2^-1 = 0.5 -> 0
  assert.deepEqual(fromArray([2, 1], 'i32').pow(fromArray([-1, -1], 'i32')).toArray(), [0, 1]);
  const a = fromArray([1, 5, -2, NaN]), b = fromArray([3, 4, -2, 0]);
  assert.deepEqual(flat(a.maximum(b)), [3, 5, -2, NaN]);
  assert.deepEqual(flat(a.minimum(b)), [1, 4, -2, NaN]);
  assert.deepEqual(fromArray([[1, 5], [7, 0]]).maximum(2).toArray(), [[2, 5], [7, 2]]);
  assert.equal(fromArray([1], 'i32').minimum(fromArray([2], 'i64')).dtype, 'i64');
});

test('comparisons output bool, broadcast, and compare after promotion', () => {
  const a = fromArray([[1, 2, 3], [3, 2, 1]]);
  const b = fromArray([2, 2, 2]);
  for (const [name, want] of [['equal', [0, 1, 0, 0, 1, 0]], ['less', [1, 0, 0, 0, 0, 1]], ['greater', [0, 0, 1, 1, 0, 0]]] as const) {
    const r = (ops as any)[name](a, b) as Tensor;
    assert.equal(r.dtype, 'bool');
    assert.deepEqual(r.shape, [2, 3]);
    assert.deepEqual(flat(r), want, name);
  }
  assert.deepEqual(flat(fromArray([NaN, 1]).equal(fromArray([NaN, 1]))), [0, 1]); // NaN != NaN
  assert.deepEqual(flat(fromArray([1, 2, 3]).greater(1.5)), [0, 1, 1]);
  assert.deepEqual(flat(fromArray([1, 2, 3], 'i32').less(2)), [1, 0, 0]);
  // i32 2049 promoted to f16 rounds to 2048 (f16 spacing is 2 there), so it equals an f16 2048
  assert.deepEqual(flat(fromArray([2049, 2051], 'i32').equal(fromArray([2048, 2048], 'f16'))), [1, 0]);
});

test('where selects with 3-way broadcasting and promotes a and b', () => {
  const cond = fromArray([[1], [0]], 'bool');          // [2, 1]
  const a = fromArray([1, 2, 3], 'i32');                // [3]
  const b = fromArray(0.5);                             // []
  const r = ops.where(cond, a, b);
  assert.equal(r.dtype, 'f32');
  assert.deepEqual(r.shape, [2, 3]);
  assert.deepEqual(r.toArray(), [[1, 2, 3], [0.5, 0.5, 0.5]]);
  // elementwise mask, JS numbers, and the method form x.where(condition, other)
  const x = fromArray([-1, 2, -3, 4]);
  const pos = x.greater(0);
  assert.deepEqual(ops.where(pos, x, 0).toArray(), [0, 2, 0, 4]);
  assert.deepEqual(ops.where(pos, 1, x).toArray(), [-1, 1, -3, 1]);
  assert.deepEqual(x.where(pos, -9).toArray(), [-9, 2, -9, 4]);
  assert.deepEqual(ops.where(fromArray([1, 0], 'bool'), fromArray([1, 2], 'f16'), fromArray([7, 8], 'f16')).dtype, 'f16');
  assert.throws(() => ops.where(fromArray([1, 0]), x, x), /where: condition has dtype f32; it must be bool/);
  assert.throws(() => ops.where(fromArray([1, 0], 'bool'), fromArray([1, 2, 3]), 0),
    /where: shapes \[2\], \[3\] and \[\] cannot be broadcast/);
});

test('incompatible shapes raise an error naming the op and both shapes', () => {
  assert.throws(() => zeros([2, 3]).add(zeros([4])), { name: 'RangeError', message: 'add: shapes [2, 3] and [4] cannot be broadcast' });
  assert.throws(() => zeros([2, 3]).mul(zeros([3, 2])), /mul: shapes \[2, 3\] and \[3, 2\] cannot be broadcast/);
  assert.throws(() => zeros([5, 1, 2]).less(zeros([4, 3])), /less: shapes \[5, 1, 2\] and \[4, 3\] cannot be broadcast/);
});

test('shape inference works on symbolic dims', () => {
  const f32 = (shape: (number | string)[]) => ({ dtype: 'f32' as const, shape });
  assert.deepEqual(ops.getOp('add').infer([f32(['batch', 1, 4]), f32([3, 1])], {}), [{ dtype: 'f32', shape: ['batch', 3, 4] }]);
  assert.deepEqual(ops.getOp('mul').infer([f32(['batch', 'seq', 8]), f32(['seq', 1])], {}), [{ dtype: 'f32', shape: ['batch', 'seq', 8] }]);
  assert.deepEqual(ops.getOp('sub').infer([f32([1, 'seq']), f32(['batch', 1])], {}), [{ dtype: 'f32', shape: ['batch', 'seq'] }]);
  assert.deepEqual(ops.getOp('div').infer([{ dtype: 'i32', shape: ['n'] }, { dtype: 'i32', shape: [] }], {}), [{ dtype: 'f32', shape: ['n'] }]);
  assert.deepEqual(ops.getOp('greater').infer([f32(['batch', 4]), f32([])], {}), [{ dtype: 'bool', shape: ['batch', 4] }]);
  assert.deepEqual(ops.getOp('where').infer([{ dtype: 'bool', shape: ['seq', 'seq'] }, f32(['batch', 1, 'seq', 'seq']), f32([])], {}),
    [{ dtype: 'f32', shape: ['batch', 1, 'seq', 'seq'] }]);
  // two different symbols (or a symbol and a number > 1) cannot be shown equal
  assert.throws(() => ops.getOp('add').infer([f32(['batch', 4]), f32(['seq', 4])], {}), /add: shapes \[batch, 4\] and \[seq, 4\] cannot be broadcast/);
  assert.throws(() => ops.getOp('add').infer([f32(['batch']), f32([3])], {}), /cannot be broadcast/);
});
