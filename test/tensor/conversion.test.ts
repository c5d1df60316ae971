// Numbers into tensors and tensors into other dtypes, as the README's Tensors section documents:
// creating an integer tensor from a JS number it cannot hold is a RangeError naming the value,
// index and dtype; the `cast` op truncates and saturates float -> int (NaN -> 0), wraps int -> int,
// and gives the same bits on the reference kernels, the eager native path and a compiled plan.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, full, scalar, arange, randn, rand, ops, Tensor, inferenceJit } from '../../src/index.js';
import { withEagerBackend, isNativeAvailable } from '../../src/ops/dispatch.js';

test('creation refuses numbers an integer dtype cannot hold, naming value, index and dtype', () => {
  assert.throws(() => fromArray([2 ** 63], [1], 'i64'), (e: Error) => e instanceof RangeError && /value 9223372036854776000 is out of range for i64/.test(e.message));
  assert.throws(() => full([2], 1e10, 'i32'), /full\(\[2\], 10000000000, 'i32'\): value 10000000000 is out of range for i32 \(-2147483648\.\.2147483647\)/);
  assert.throws(() => fromArray([1, 300], 'u8'), /value 300 at index 1 is out of range for u8 \(0\.\.255\)/);
  assert.throws(() => fromArray([-129], 'i8'), /out of range for i8/);
  assert.throws(() => fromArray([1, 2, 1.7], 'i64'), /value 1\.7 at index 2 is not an integer; i64 holds integers/);
  assert.throws(() => fromArray([NaN], 'i32'), /value NaN is not an integer/);
  assert.throws(() => fromArray([Infinity], 'i64'), /value Infinity is not an integer/);
  assert.throws(() => fromArray([NaN], 'bool'), /value NaN is NaN, which is neither true nor false/);
  assert.throws(() => scalar(0.5, 'i32'), /not an integer/);
  assert.throws(() => arange(0, 2, 0.5, 'i32'), /arange\(0, 2, 0\.5, 'i32'\): value 0\.5 at index 1 is not an integer/);
  // the edges themselves are fine
  assert.deepEqual(fromArray([-(2 ** 31), 2 ** 31 - 1], 'i32').toArray(), [-(2 ** 31), 2 ** 31 - 1]);
  assert.deepEqual(fromArray([0, 255], 'u8').toArray(), [0, 255]);
  assert.equal((fromArray([-(2 ** 63), 2 ** 62], 'i64').data as BigInt64Array)[0], -(2n ** 63n));
  assert.deepEqual(fromArray([0, 2, -1], 'bool').toArray(), [0, 1, 1]);
  // floats round (and overflow to infinity), as IEEE conversion does
  assert.deepEqual(fromArray([1e40, NaN], 'f32').toArray(), [Infinity, NaN]);
});

test('random creation takes float dtypes only', () => {
  assert.throws(() => randn([2], { dtype: 'i32' }), /randn: dtype i32 is not a floating-point dtype/);
  assert.throws(() => rand([2], { dtype: 'u8' }), /rand: dtype u8 is not a floating-point dtype/);
  assert.equal(randn([2], { dtype: 'f16', seed: 1 }).dtype, 'f16');
});

test('a number operand widens instead of wrapping when the tensor dtype cannot hold it', () => {
  const u = fromArray([1, 2], 'u8');
  assert.equal(u.add(300).dtype, 'i64');
  assert.deepEqual(u.add(300).toArray(), [301, 302]);
  assert.equal(u.add(0.5).dtype, 'f32');
  assert.equal(fromArray([1], 'i64').add(2 ** 70).dtype, 'f32'); // beyond i64: a float, like PyTorch
});

test('Tensor.fromStorage refuses a typed array of the wrong kind instead of converting or reinterpreting', () => {
  assert.throws(() => Tensor.fromStorage('f32', [2], new Int32Array([1, 2]) as never), (e: Error) => e instanceof TypeError && /dtype f32 is stored in a Float32Array, got a Int32Array/.test(e.message));
  assert.throws(() => Tensor.fromStorage('i64', [2], new Float64Array(2) as never), /dtype i64 is stored in a BigInt64Array, got a Float64Array/);
  assert.throws(() => Tensor.fromStorage('f16', [1], new Float32Array(1)), /f16 is stored in a Uint16Array.*bit patterns/);
  assert.throws(() => Tensor.fromStorage('i8', [1], new Uint8Array(1)), /i8 is stored in a Int8Array/);
  assert.throws(() => Tensor.fromStorage('nope' as never, [1], new Uint8Array(1)), /unknown dtype "nope"/);
  // the matching kinds are wrapped without a copy
  const data = new Int32Array([1, 2]);
  assert.equal(Tensor.fromStorage('i32', [2], data).data, data);
  assert.equal(Tensor.fromStorage('bool', [1], new Uint8Array([1])).dtype, 'bool');
});

// Inputs around every saturation edge: NaN, infinities, fractions, just inside and outside each range.
const EDGES = [NaN, Infinity, -Infinity, 1.9, -1.9, 127.5, 128, -128.7, -129, 255.9, 256, 300, -1, 2 ** 31 - 128, 2 ** 31, -(2 ** 31), -(2 ** 31) - 256, 1e10, -1e10, 2 ** 63, -(2 ** 63), 1e30, -1e30];
const WANT: Record<'i32' | 'i8' | 'u8' | 'i64' | 'bool', (v: number) => number | bigint> = {
  i32: (v) => (Number.isNaN(v) ? 0 : Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.trunc(v)))),
  i8: (v) => (Number.isNaN(v) ? 0 : Math.max(-128, Math.min(127, Math.trunc(v)))),
  u8: (v) => (Number.isNaN(v) ? 0 : Math.max(0, Math.min(255, Math.trunc(v)))),
  i64: (v) => (Number.isNaN(v) ? 0n : v >= 2 ** 63 ? 2n ** 63n - 1n : v <= -(2 ** 63) ? -(2n ** 63n) : BigInt(Math.trunc(v))),
  bool: (v) => (v !== 0 ? 1 : 0),
};

function castEverywhere(to: keyof typeof WANT): { ref: Tensor; eager: Tensor; plan: Tensor | null } {
  const x = fromArray(EDGES, 'f32');
  const ref = withEagerBackend('reference', () => ops.cast(x, to));
  const eager = ops.cast(x, to);
  const plan = isNativeAvailable() ? inferenceJit((t: Tensor) => t.cast(to), { device: 'cpu', cache: 'memory', fallback: 'error' })(x) : null;
  return { ref, eager, plan };
}

for (const to of Object.keys(WANT) as (keyof typeof WANT)[]) {
  test(`cast f32 -> ${to} (ints: truncate, saturate, NaN -> 0; bool: x != 0) identically on reference, eager and compiled plan`, () => {
    const { ref, eager, plan } = castEverywhere(to);
    const want = EDGES.map((v) => WANT[to](Math.fround(v)));
    assert.deepEqual(Array.from(ref.data as ArrayLike<number | bigint>), want, 'reference');
    assert.deepEqual(Array.from(eager.data as ArrayLike<number | bigint>), want, 'eager');
    if (plan) assert.deepEqual(Array.from(plan.data as ArrayLike<number | bigint>), want, 'compiled plan');
  });
}

test('cast int -> int wraps (two\'s complement), identically on reference and compiled plan', { skip: isNativeAvailable() ? false : 'native addon not built' }, () => {
  const big = Tensor.fromStorage('i64', [4], new BigInt64Array([2n ** 40n + 300n, -1n, 2n ** 53n + 1n, -(2n ** 63n)]));
  const i32 = fromArray([300, -1, 2 ** 31 - 1, -129], 'i32');
  const cases: [Tensor, 'i32' | 'u8' | 'i8' | 'bool' | 'i64'][] = [[big, 'i32'], [big, 'u8'], [big, 'i8'], [big, 'bool'], [i32, 'u8'], [i32, 'i8'], [i32, 'i64'], [i32, 'bool']];
  for (const [x, to] of cases) {
    const ref = withEagerBackend('reference', () => ops.cast(x, to));
    const plan = inferenceJit((t: Tensor) => t.cast(to), { device: 'cpu', cache: 'memory', fallback: 'error' })(x);
    const src = Array.from(x.data as ArrayLike<number | bigint>, (v) => BigInt(v));
    const want = src.map((v) => (to === 'bool' ? (v !== 0n ? 1 : 0) : to === 'i64' ? v : to === 'i32' ? Number(BigInt.asIntN(32, v)) : to === 'i8' ? Number(BigInt.asIntN(8, v)) : Number(BigInt.asUintN(8, v))));
    assert.deepEqual(Array.from(ref.data as ArrayLike<number | bigint>), want, `reference ${x.dtype} -> ${to}`);
    assert.deepEqual(Array.from(plan.data as ArrayLike<number | bigint>), want, `plan ${x.dtype} -> ${to}`);
  }
});

test('cast i64 -> f16 / bf16 / f32 on a compiled plan equals the reference (values, not zeros)', { skip: isNativeAvailable() ? false : 'native addon not built' }, () => {
  const x = fromArray([1, -2, 3000, 65504, 2 ** 40], 'i64');
  for (const to of ['f16', 'bf16', 'f32'] as const) {
    const ref = withEagerBackend('reference', () => ops.cast(x, to));
    const plan = inferenceJit((t: Tensor) => t.cast(to), { device: 'cpu', cache: 'memory', fallback: 'error' })(x);
    assert.deepEqual(Array.from(plan.data as Uint16Array), Array.from(ref.data as Uint16Array), `i64 -> ${to}`);
  }
});
