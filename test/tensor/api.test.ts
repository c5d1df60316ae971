// The Tensor API rough edges a new user hit (issue 21): fromArray's dtype-only form, toFlatArray's
// documented contract, slice naming shared by Tensor and ops, Tensor.concat, DynamicDimError export.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as inferjit from '../../src/index.js';
import { Tensor, fromArray, arange, ops, DynamicDimError } from '../../src/index.js';
import { DynamicDimError as FromTrace } from '../../src/trace/dynamic.js';

test('fromArray(values, undefined, dtype) uses the dtype; a dtype given twice is an error', () => {
  const t = fromArray([[1, 2], [3, 4]], undefined, 'i64');
  assert.equal(t.dtype, 'i64');
  assert.deepEqual(t.shape, [2, 2]);
  assert.equal(fromArray([1, 2], 'i32').dtype, 'i32');
  assert.throws(() => fromArray([1], 'i32', 'i64' as never), /fromArray: dtype given twice/);
  assert.throws(() => fromArray([1], 5 as never), /second argument must be a shape .* or a dtype, got 5/);
});

test('toFlatArray: a Float64Array of exact values for every dtype; i64 beyond 2^53 is an error, not a rounding', () => {
  assert.ok(fromArray([1.5], 'f16').toFlatArray() instanceof Float64Array);
  assert.deepEqual(Array.from(fromArray([1, 0], 'bool').toFlatArray()), [1, 0]);
  assert.deepEqual(Array.from(fromArray([-(2 ** 31)], 'i32').toFlatArray()), [-(2 ** 31)]);
  const big = Tensor.fromStorage('i64', [2], new BigInt64Array([1n, 2n ** 53n + 1n]));
  assert.throws(() => big.toFlatArray(), /toFlatArray: i64 element 1 is 9007199254740993, .*read t\.data/);
  assert.throws(() => big.toArray(), /i64 element 1 is 9007199254740993/);
  assert.throws(() => Tensor.fromStorage('i64', [], new BigInt64Array([2n ** 60n])).item(), /element 0 is 1152921504606846976/);
  assert.match(String(big), /\[1, 9007199254740993\]/); // printing stays exact
});

test('Tensor.slice is ops.slice (starts, ends, axes?, steps?); one axis is sliceAxis on both', () => {
  const x = arange(24).reshape(2, 3, 4);
  assert.deepEqual(x.slice([0, 1], [1, 3]).toArray(), ops.slice(x, [0, 1], [1, 3]).toArray());
  assert.deepEqual(x.slice([1], [4], [2], [2]).shape, [2, 3, 2]);
  assert.deepEqual(x.sliceAxis(2, 1, 4, 2).toArray(), ops.sliceAxis(x, 2, 1, 4, 2).toArray());
  assert.deepEqual(x.sliceAxis(1, -1).shape, [2, 1, 4]);
  // the old per-axis call is refused with a pointer to sliceAxis, never reinterpreted
  assert.throws(() => (x.slice as (...a: unknown[]) => Tensor)(1, 0, 2), /Tensor\.slice\(starts, ends, axes\?, steps\?\) takes arrays.*sliceAxis\(axis, start, end, step\)/);
});

test('Tensor.concat joins along an axis exactly like ops.concat', () => {
  const a = fromArray([[1, 2]]), b = fromArray([[3, 4], [5, 6]]);
  assert.deepEqual(Tensor.concat([a, b]).toArray(), [[1, 2], [3, 4], [5, 6]]);
  assert.deepEqual(Tensor.concat([a, a], -1).toArray(), ops.concat([a, a], 1).toArray());
  assert.throws(() => Tensor.concat([a, fromArray([[1, 2, 3]])]), /concat: tensor 1 differs from tensor 0 in dim 1/);
});

test('DynamicDimError is exported from the package index', () => {
  assert.equal(DynamicDimError, FromTrace);
  assert.ok('DynamicDimError' in inferjit);
});
