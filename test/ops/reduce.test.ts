// Tests for reductions, argmax and softmax/log_softmax (src/ops/reduce.ts): hand-worked values,
// explicit-loop oracles for multi-axis reductions, dtype rules, errors and symbolic inference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, scalar, zeros, randn, ops, type Tensor } from '../../src/index.js';

const flat = (t: Tensor): number[] => Array.from(t.toFlatArray());

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = ''): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: got ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
  }
}

// x[i][j][k] = i*12 + j*4 + k for shape [2, 3, 4]: small integers, so f32 sums are exact
const cube = (): Tensor => fromArray(Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]);
const at = (i: number, j: number, k: number) => i * 12 + j * 4 + k;

test('sum over one axis, all axes, and keepdim on a hand-worked matrix', () => {
  const m = fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(m.sum().shape, []);
  assert.equal(m.sum().item(), 21);
  assert.deepEqual(m.sum(0).toArray(), [5, 7, 9]);
  assert.deepEqual(m.sum(1).toArray(), [6, 15]);
  assert.deepEqual(m.sum(-1, true).toArray(), [[6], [15]]);
  assert.deepEqual(m.sum([0, 1]).toArray(), 21);
  // an empty axes list means every axis
  assert.deepEqual(ops.sum(m, []).toArray(), 21);
  const all = m.sum(undefined, true);
  assert.deepEqual(all.shape, [1, 1]);
  assert.deepEqual(all.toArray(), [[21]]);
  assert.equal(m.sum().dtype, 'f32');
});

test('reductions over multiple and negative axes match explicit loops, with and without keepdim', () => {
  const x = cube();
  // sum over axes 0 and 2 (written as [0, -1] and [-1, 0]): out[j] = Σ_i Σ_k x[i][j][k]
  const want02 = [0, 1, 2].map((j) => { let s = 0; for (let i = 0; i < 2; i++) for (let k = 0; k < 4; k++) s += at(i, j, k); return s; });
  assert.deepEqual(x.sum([0, -1]).toArray(), want02);
  assert.deepEqual(x.sum([-1, 0]).toArray(), want02);
  const kept = x.sum([0, -1], true);
  assert.deepEqual(kept.shape, [1, 3, 1]);
  assert.deepEqual(flat(kept), want02);
  // max/min over axes 1 and 2: out[i] = x[i][2][3] and x[i][0][0] (values increase with every index)
  assert.deepEqual(x.max([1, 2]).toArray(), [at(0, 2, 3), at(1, 2, 3)]);
  assert.deepEqual(x.min([-2, -1], true).toArray(), [[[at(0, 0, 0)]], [[at(1, 0, 0)]]]);
  // mean over axis 1: out[i][k] = (x[i][0][k] + x[i][1][k] + x[i][2][k]) / 3 = x[i][1][k]
  const m1 = x.mean(1);
  assert.deepEqual(m1.shape, [2, 4]);
  assert.deepEqual(m1.toArray(), [0, 1].map((i) => [0, 1, 2, 3].map((k) => at(i, 1, k))));
  assert.deepEqual(x.mean(-2, true).shape, [2, 1, 4]);
  // mean over all axes: (0 + ... + 23) / 24
  assert.equal(x.mean().item(), 11.5);
});

test('sum of random data agrees with a float64 loop to f32 rounding', () => {
  const x = randn([3, 5, 7], { seed: 7 });
  const v = x.toFlatArray();
  const want: number[] = [];
  for (let i = 0; i < 3; i++) for (let k = 0; k < 7; k++) { let s = 0; for (let j = 0; j < 5; j++) s += v[i * 35 + j * 7 + k]; want.push(s); }
  // the kernel sums in float64 and rounds once: within one f32 ulp of sums of magnitude < 16
  assertClose(flat(x.sum(1)), want, 16 * 2 ** -23, 'sum');
  assertClose(flat(x.mean(1)), want.map((s) => s / 5), 4 * 2 ** -23, 'mean');
});

test('sum widens integers and bools to i64; floats keep their dtype; mean needs floats', () => {
  const u = fromArray([200, 200, 200], 'u8');
  assert.equal(u.sum().dtype, 'i64');
  assert.equal(u.sum().item(), 600); // would overflow u8
  const b = fromArray([1, 0, 1, 1], 'bool');
  assert.equal(b.sum().dtype, 'i64');
  assert.equal(b.sum().item(), 3); // counts the trues
  assert.equal(fromArray([[1, 2], [3, 4]], 'i32').sum(0).dtype, 'i64');
  assert.deepEqual(fromArray([[1, 2], [3, 4]], 'i32').sum(0).toArray(), [4, 6]);
  const h = fromArray([1, 2, 3.5], 'f16');
  assert.equal(h.sum().dtype, 'f16');
  assert.equal(h.sum().item(), 6.5);
  assert.equal(fromArray([1, 2], 'bf16').mean().dtype, 'bf16');
  assert.equal(fromArray([1, 2], 'bf16').mean().item(), 1.5);
  assert.throws(() => fromArray([1, 2], 'i32').mean(), { name: 'TypeError', message: 'mean: x has dtype i32; mean needs a floating-point tensor (cast it first)' });
  // max/min keep the input dtype, integers included
  assert.equal(fromArray([3, -7, 5], 'i32').max().dtype, 'i32');
  assert.equal(fromArray([3, -7, 5], 'i32').min().item(), -7);
});

test('max/min propagate NaN; reducing an empty axis is an error for max/min but 0 for sum', () => {
  assert.ok(Number.isNaN(fromArray([1, NaN, 3]).max().item()));
  assert.deepEqual(flat(fromArray([[1, NaN], [2, 0]]).min(1)), [NaN, 0]);
  const e = zeros([0, 3]);
  assert.deepEqual(e.sum(0).toArray(), [0, 0, 0]);
  assert.ok(flat(e.mean(0)).every(Number.isNaN)); // 0 / 0
  assert.deepEqual(e.sum(1).shape, [0]);
  assert.deepEqual(e.max(1).shape, [0]); // reducing the non-empty axis is fine
  assert.throws(() => e.max(0), /max: cannot reduce over axis 0 of size 0 in x of shape \[0, 3\]/);
  assert.throws(() => e.min(), /min: cannot reduce over axis 0 of size 0/);
  assert.throws(() => e.argmax(0), /argmax: cannot reduce over axis 0 of size 0/);
});

test('axis errors name the op, the axis and the shape', () => {
  const m = zeros([2, 3]);
  assert.throws(() => m.sum(2), { name: 'RangeError', message: 'sum: axis 2 is out of range for x of shape [2, 3] (rank 2)' });
  assert.throws(() => m.mean(-3), /mean: axis -3 is out of range for x of shape \[2, 3\]/);
  assert.throws(() => m.sum([1, -1]), { name: 'RangeError', message: 'sum: axis 1 appears more than once in axes [1, -1] for x of shape [2, 3]' });
  assert.throws(() => m.max([0, 0]), /max: axis 0 appears more than once/);
  assert.throws(() => m.argmax(5), /argmax: axis 5 is out of range for x of shape \[2, 3\]/);
  assert.throws(() => m.softmax(2), /softmax: axis 2 is out of range/);
  assert.throws(() => m.logSoftmax(-3), /log_softmax: axis -3 is out of range/);
});

test('rank-0 inputs: reducing over no axis or axis 0/-1 returns the scalar itself', () => {
  const s = scalar(4);
  assert.deepEqual(s.sum().shape, []);
  assert.equal(s.sum().item(), 4);
  assert.equal(s.max(0).item(), 4);
  assert.equal(s.mean(-1, true).item(), 4);
  assert.deepEqual(s.mean(-1, true).shape, []);
  assert.equal(s.argmax().item(), 0);
  assert.equal(s.argmax().dtype, 'i64');
  assert.equal(s.softmax().item(), 1);
  assert.equal(s.logSoftmax().item(), 0);
  assert.throws(() => s.sum(1), /sum: axis 1 is out of range for x of shape \[\] \(rank 0\)/);
});

test('argmax returns i64 indices, the first one on ties, and honours axis and keepdim', () => {
  const m = fromArray([[1, 9, 9, 2], [7, 3, 7, 0], [-1, -1, -1, -1]]);
  const r = m.argmax();
  assert.equal(r.dtype, 'i64');
  assert.ok(r.data instanceof BigInt64Array);
  assert.deepEqual(r.toArray(), [1, 0, 0]); // ties resolve to the lowest index
  assert.deepEqual(m.argmax(0).toArray(), [1, 0, 0, 0]);
  const k = m.argmax(-1, true);
  assert.deepEqual(k.shape, [3, 1]);
  assert.deepEqual(k.toArray(), [[1], [0], [0]]);
  // middle axis of a 3-D tensor: values grow along j, so the last index wins everywhere
  const c = cube().argmax(1);
  assert.deepEqual(c.shape, [2, 4]);
  assert.deepEqual(flat(c), new Array(8).fill(2));
  // NaN counts as the largest value (like torch.argmax); integer inputs work
  assert.deepEqual(fromArray([1, NaN, 5, NaN]).argmax().toArray(), 1);
  assert.deepEqual(fromArray([[3, 8], [-2, -9]], 'i32').argmax(1).toArray(), [1, 0]);
});

test('softmax matches hand-worked values and every slice sums to 1', () => {
  // softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6
  const s = fromArray([0, Math.log(2), Math.log(3)]).softmax();
  // f32 output rounded once from float64: within 2^-24 relative of values < 1
  assertClose(flat(s), [1 / 6, 2 / 6, 3 / 6], 1e-7, 'softmax');
  const x = randn([3, 4, 5], { seed: 3 });
  for (const axis of [0, 1, 2, -1]) {
    const y = x.softmax(axis);
    assert.deepEqual(y.shape, [3, 4, 5]);
    const v = y.toFlatArray();
    assert.ok(v.every((p) => p > 0 && p < 1), `axis ${axis} values in (0, 1)`);
    // sum along the axis, by explicit loops over the other two axes
    const a = axis < 0 ? axis + 3 : axis;
    const strides = [20, 5, 1], dims = [3, 4, 5];
    const others = [0, 1, 2].filter((d) => d !== a);
    for (let p = 0; p < dims[others[0]]; p++) {
      for (let q = 0; q < dims[others[1]]; q++) {
        let total = 0;
        for (let t = 0; t < dims[a]; t++) total += v[p * strides[others[0]] + q * strides[others[1]] + t * strides[a]];
        // each of ≤ 5 terms carries an f32 rounding of ≤ 2^-24 relative
        assert.ok(Math.abs(total - 1) < 5 * 2 ** -24 + 1e-12, `axis ${axis} sum ${total}`);
      }
    }
  }
});

test('softmax and log_softmax are numerically stable for large inputs and -Infinity entries', () => {
  // [1000, 1001]: exp overflows without the max shift; exact answer is [1/(1+e), e/(1+e)]
  const e = Math.E;
  assertClose(flat(fromArray([1000, 1001]).softmax()), [1 / (1 + e), e / (1 + e)], 1e-7, 'softmax large');
  assertClose(flat(fromArray([-1000, -1001]).softmax()), [e / (1 + e), 1 / (1 + e)], 1e-7, 'softmax very negative');
  // log_softmax([1000, 0]) = [-log(1 + e^-1000), -1000 - log(1 + e^-1000)] = [0, -1000] in float64
  assert.deepEqual(flat(fromArray([1000, 0]).logSoftmax()), [0, -1000]);
  // -Infinity is a masked entry: probability exactly 0, log-probability -Infinity
  assert.deepEqual(flat(fromArray([0, -Infinity, 0]).softmax()), [0.5, 0, 0.5]);
  assert.deepEqual(flat(fromArray([0, -Infinity, 0]).logSoftmax()), [-Math.LN2, -Infinity, -Math.LN2].map(Math.fround));
});

test('log_softmax equals log(softmax) and differs from x by a per-row constant', () => {
  const x = randn([4, 6], { seed: 11 }).mul(3);
  const ls = flat(x.logSoftmax(1));
  const lsm = flat(x.softmax(1).log());
  // softmax values ≥ e^-20 here; log of an f32-rounded p is off by ≤ 2^-24 (relative to p) plus the
  // final f32 rounding of values up to ~20 (≤ 1e-6): 3e-6 covers both
  assertClose(ls, lsm, 3e-6, 'log_softmax vs log(softmax)');
  const v = x.toFlatArray();
  for (let r = 0; r < 4; r++) {
    const c = v[r * 6] - ls[r * 6];
    for (let j = 1; j < 6; j++) assert.ok(Math.abs(v[r * 6 + j] - ls[r * 6 + j] - c) < 1e-5);
    // and the constant is logsumexp of the row
    let s = 0;
    for (let j = 0; j < 6; j++) s += Math.exp(v[r * 6 + j]);
    assert.ok(Math.abs(c - Math.log(s)) < 1e-5);
  }
  // along axis 0 too
  assertClose(flat(x.logSoftmax(0)), flat(x.softmax(0).log()), 3e-6, 'axis 0');
});

test('softmax keeps half dtypes and rejects integers', () => {
  const h = fromArray([1, 2, 3], 'f16').softmax();
  assert.equal(h.dtype, 'f16');
  // exact values e^(i-3)/Σ: 0.0900306, 0.2447285, 0.6652410; f16 rounding is ≤ 2^-11 relative
  assertClose(flat(h), [0.09003057317038046, 0.24472847105479767, 0.6652409557748219], 0.6652409557748219 * 2 ** -11, 'f16');
  assert.equal(fromArray([1, 2], 'bf16').logSoftmax().dtype, 'bf16');
  assert.throws(() => fromArray([1, 2], 'i32').softmax(), { name: 'TypeError', message: 'softmax: x has dtype i32; softmax needs a floating-point tensor (cast it first)' });
  assert.throws(() => fromArray([1, 0], 'bool').logSoftmax(), /log_softmax: x has dtype bool/);
});

test('shape inference keeps symbolic dims and drops or keeps reduced ones', () => {
  const x = { dtype: 'f32' as const, shape: ['batch', 'seq', 64] };
  const infer = (op: string, attrs: object) => ops.getOp(op).infer([x], attrs);
  assert.deepEqual(infer('sum', { axes: [-1], keepdim: false }), [{ dtype: 'f32', shape: ['batch', 'seq'] }]);
  assert.deepEqual(infer('mean', { axes: [1], keepdim: true }), [{ dtype: 'f32', shape: ['batch', 1, 64] }]);
  assert.deepEqual(infer('max', { axes: [0, 1], keepdim: false }), [{ dtype: 'f32', shape: [64] }]); // symbolic dims assumed non-empty
  assert.deepEqual(infer('min', { axes: [], keepdim: false }), [{ dtype: 'f32', shape: [] }]);
  assert.deepEqual(infer('argmax', { axis: 1, keepdim: false }), [{ dtype: 'i64', shape: ['batch', 64] }]);
  assert.deepEqual(infer('softmax', { axis: -1 }), [{ dtype: 'f32', shape: ['batch', 'seq', 64] }]);
  assert.deepEqual(infer('log_softmax', { axis: 1 }), [{ dtype: 'f32', shape: ['batch', 'seq', 64] }]);
  assert.deepEqual(ops.getOp('sum').infer([{ dtype: 'i32', shape: ['n'] }], { axes: [], keepdim: false }), [{ dtype: 'i64', shape: [] }]);
  assert.throws(() => infer('sum', { axes: [3], keepdim: false }), /sum: axis 3 is out of range for x of shape \[batch, seq, 64\]/);
});
