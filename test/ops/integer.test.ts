// Integer arithmetic, reductions and comparisons are exact (i64 beyond 2^53, i32 products beyond
// 2^53) and wrap on overflow like C and PyTorch, on every eager backend (integer ops run on the
// reference kernels: the native eager kernels are f32-only and decline them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, fromArray, ops, inferenceJit } from '../../src/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';

const i64 = (...v: bigint[]): Tensor => Tensor.fromStorage('i64', [v.length], new BigInt64Array(v));
const big = (t: Tensor): bigint[] => Array.from(t.data as BigInt64Array);
const P53 = 2n ** 53n, P63 = 2n ** 63n;

for (const backend of ['reference', 'auto'] as const) {
  const on = <T>(fn: () => T): T => withEagerBackend(backend, fn);

  test(`[${backend}] i64 sum keeps every unit beyond 2^53 and wraps mod 2^64`, () => on(() => {
    assert.deepEqual(big(ops.sum(i64(P53, 1n, 1n))), [P53 + 2n]);
    assert.deepEqual(big(ops.sum(i64(P63 - 1n, 1n))), [-P63]); // wraps, like torch.sum on int64
    const m = Tensor.fromStorage('i64', [2, 2], new BigInt64Array([P53, 1n, 3n, P53 + 1n]));
    assert.deepEqual(big(ops.sum(m, 0)), [P53 + 3n, P53 + 2n]);
    assert.deepEqual(big(ops.sum(m, 1, true)), [P53 + 1n, P53 + 4n]);
    assert.deepEqual(big(ops.max(m, 1)), [P53, P53 + 1n]);
    assert.deepEqual(big(ops.min(m)), [1n]);
    assert.deepEqual(big(ops.argmax(i64(P53 + 1n, P53 + 2n, P53), 0)), [1n]);
  }));

  test(`[${backend}] i64 comparisons are exact beyond 2^53`, () => on(() => {
    const a = i64(P53 + 1n, P53, -P63), b = i64(P53, P53, P63 - 1n);
    assert.deepEqual(ops.equal(a, b).toArray(), [0, 1, 0]);
    assert.deepEqual(ops.greater(a, b).toArray(), [1, 0, 0]);
    assert.deepEqual(ops.less(a, b).toArray(), [0, 0, 1]);
    assert.deepEqual(big(ops.maximum(a, b)), [P53 + 1n, P53, P63 - 1n]);
    assert.deepEqual(big(ops.minimum(a, b)), [P53, P53, -P63]);
    // an i32 operand is widened exactly, not through float
    assert.deepEqual(ops.equal(i64(P53 + 1n), fromArray([1], 'i32')).toArray(), [0]);
  }));

  test(`[${backend}] i64 arithmetic is exact and wraps on overflow`, () => on(() => {
    assert.deepEqual(big(ops.add(i64(P53, P63 - 1n), i64(1n, 1n))), [P53 + 1n, -P63]);
    assert.deepEqual(big(ops.sub(i64(P53 + 3n, -P63), i64(1n, 1n))), [P53 + 2n, P63 - 1n]);
    assert.deepEqual(big(ops.mul(i64(P53 + 1n, 2n ** 62n), i64(3n, 4n))), [3n * P53 + 3n, 0n]);
    assert.deepEqual(big(ops.pow(i64(3n, 2n, 5n, -1n), i64(39n, 64n, -1n, -3n))), [3n ** 39n, 0n, 0n, -1n]);
    assert.deepEqual(big(ops.neg(i64(P53 + 1n, -P63))), [-P53 - 1n, -P63]);
    assert.deepEqual(big(ops.abs(i64(-P53 - 1n))), [P53 + 1n]);
    assert.deepEqual(big(ops.relu(i64(-5n, P53 + 1n))), [0n, P53 + 1n]);
    // a scalar operand that i64 holds stays exact
    assert.deepEqual(big(i64(P53).add(1)), [P53 + 1n]);
    const c = fromArray([1, 0], 'u8').cast('bool');
    assert.deepEqual(big(ops.where(c, i64(P53 + 1n, 0n), i64(0n, P53 + 3n))), [P53 + 1n, P53 + 3n]);
  }));

  test(`[${backend}] i32 and u8 arithmetic wraps like C (products past 2^53 included)`, () => on(() => {
    const a = fromArray([2 ** 31 - 1, 123456789, -(2 ** 31)], 'i32');
    assert.deepEqual(ops.add(a, fromArray([1, 0, -1], 'i32')).toArray(), [-(2 ** 31), 123456789, 2 ** 31 - 1]);
    // 123456789 * 987654321 = 121932631112635269 (> 2^53): float64 would get the low bits wrong
    assert.deepEqual(ops.mul(fromArray([123456789], 'i32'), fromArray([987654321], 'i32')).toArray(), [Number(BigInt.asIntN(32, 123456789n * 987654321n))]);
    assert.deepEqual(ops.pow(fromArray([3, 2], 'i32'), fromArray([21, 31], 'i32')).toArray(), [Number(BigInt.asIntN(32, 3n ** 21n)), -(2 ** 31)]);
    assert.deepEqual(ops.neg(fromArray([-(2 ** 31)], 'i32')).toArray(), [-(2 ** 31)]);
    assert.deepEqual(ops.neg(fromArray([-128], 'i8')).toArray(), [-128]);
    assert.deepEqual(ops.add(fromArray([250], 'u8'), fromArray([10], 'u8')).toArray(), [4]);
    assert.equal(ops.sum(fromArray([2 ** 31 - 1, 2 ** 31 - 1], 'i32')).item(), 2 ** 32 - 2); // i64 result: no overflow
  }));
}

for (const device of ['cpu', 'reference'] as const) {
  test(`compiled on ${device}, i64 arithmetic is as exact as eager (plans hand i64 nodes to the interpreter)`, () => {
    const f = inferenceJit((a: Tensor, b: Tensor) => ({ s: ops.sum(a.add(b)), eq: a.equal(b), m: a.mul(3) }), { device, cache: 'memory', fallback: 'error' });
    const { s, eq, m } = f(i64(P53, 1n, 1n), i64(0n, 0n, 1n));
    assert.deepEqual(big(s), [P53 + 3n]);
    assert.deepEqual(eq.toArray(), [0, 0, 1]);
    assert.deepEqual(big(m), [3n * P53, 3n, 3n]);
  });
}
