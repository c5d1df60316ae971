// Tests for the elementwise unary ops (src/ops/unary.ts): values against hand-computed and
// independently tabulated results, dtype rules, and shape inference with symbolic dims.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, scalar, zeros, ops, type Tensor } from '../../src/index.js';
import { erfScalar } from '../../src/ops/unary.js';
import { f16BitsToFloat, floatToF16Bits, bf16BitsToFloat, floatToBf16Bits } from '../../src/tensor/half.js';

/** Elementwise |actual - expected| <= tol, with the index in the message. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = ''): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e)) { assert.ok(Number.isNaN(a), `${what}[${i}]: expected NaN, got ${a}`); continue; }
    if (!Number.isFinite(e)) { assert.equal(a, e, `${what}[${i}]`); continue; }
    assert.ok(Math.abs(a - e) <= tol, `${what}[${i}]: got ${a}, expected ${e} (tol ${tol})`);
  }
}
const flat = (t: Tensor): number[] => Array.from(t.toFlatArray());

// f32 results are rounded once from float64, so values of magnitude <= ~4 are within 2^-22 ≈ 2.4e-7;
// 1e-6 leaves headroom without hiding a wrong formula (those are off by far more).
const F32_TOL = 1e-6;

test('neg, abs and relu give exact hand-computed values and keep integer dtypes', () => {
  const x = fromArray([-2, -0.5, 0, 1.5, 3]);
  assert.deepEqual(flat(x.neg()), [2, 0.5, -0, -1.5, -3]);
  assert.deepEqual(flat(x.abs()), [2, 0.5, 0, 1.5, 3]);
  assert.deepEqual(flat(x.relu()), [0, 0, 0, 1.5, 3]);
  const xi = fromArray([[-3, 4], [0, -1]], 'i32');
  for (const [y, want] of [[xi.neg(), [3, -4, 0, 1]], [xi.abs(), [3, 4, 0, 1]], [xi.relu(), [0, 4, 0, 0]]] as const) {
    assert.equal(y.dtype, 'i32');
    assert.deepEqual(y.shape, [2, 2]);
    assert.deepEqual(flat(y), want);
  }
  const x64 = fromArray([-(2 ** 40), 5], 'i64');
  assert.deepEqual(x64.abs().toArray(), [2 ** 40, 5]);
  assert.equal(x64.abs().dtype, 'i64');
});

test('transcendental ops match hand-computed values', () => {
  const e = Math.E;
  assertClose(flat(fromArray([0, 1, -1]).exp()), [1, e, 1 / e], F32_TOL, 'exp');
  assertClose(flat(fromArray([1, e, 0.25]).log()), [0, 1, -2 * Math.LN2], F32_TOL, 'log');
  assertClose(flat(fromArray([0, 4, 2.25]).sqrt()), [0, 2, 1.5], 0, 'sqrt'); // exact in f32
  assertClose(flat(fromArray([4, 0.25, 1]).rsqrt()), [0.5, 2, 1], 0, 'rsqrt');
  // tanh(1) = (e² - 1) / (e² + 1)
  assertClose(flat(fromArray([0, 1, -1]).tanh()), [0, (e * e - 1) / (e * e + 1), -(e * e - 1) / (e * e + 1)], F32_TOL, 'tanh');
  // sigmoid(x) = 1/(1+e^-x): sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4
  assertClose(flat(fromArray([0, Math.log(3), -Math.log(3)]).sigmoid()), [0.5, 0.75, 0.25], F32_TOL, 'sigmoid');
  // silu(x) = x·sigmoid(x): silu(ln 3) = 0.75·ln 3, silu(1) = 0.7310585786300049 (tabulated sigmoid(1))
  assertClose(flat(fromArray([0, Math.log(3), 1]).silu()), [0, 0.75 * Math.log(3), 0.7310585786300049], F32_TOL, 'silu');
  assertClose(flat(fromArray([0, Math.PI / 2, Math.PI / 6]).sin()), [0, 1, 0.5], F32_TOL, 'sin');
  assertClose(flat(fromArray([0, Math.PI, Math.PI / 3]).cos()), [1, -1, 0.5], F32_TOL, 'cos');
});

test('special values: log(0) = -Inf, log(-1) and sqrt(-1) are NaN, exp overflows to Inf in f32', () => {
  assertClose(flat(fromArray([0, -1]).log()), [-Infinity, NaN], 0, 'log');
  assertClose(flat(fromArray([-1]).sqrt()), [NaN], 0, 'sqrt');
  assertClose(flat(fromArray([100, -200]).exp()), [Infinity, 0], 0, 'exp'); // e^100 > f32 max
  assertClose(flat(fromArray([-1000, 1000]).sigmoid()), [0, 1], 0, 'sigmoid');
});

test('exact gelu matches tabulated x·Φ(x) and the tanh form is a distinct approximation', () => {
  // x·Φ(x) with Φ the standard normal CDF, tabulated independently (Python math.erf, float64)
  const xs = [0, 1, -1, 2, -3, 0.5];
  const exact = [0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416, -0.00404969409489031, 0.34573123063700656];
  assertClose(flat(fromArray(xs).gelu()), exact, F32_TOL, 'gelu');
  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715x³))), tabulated the same way
  const approx = [0, 0.8411919906082768, -0.15880800939172324, 1.954597694087775, NaN, 0.34571400982514394];
  const got = flat(fromArray(xs).gelu('tanh'));
  assertClose(got.filter((_, i) => i !== 4), approx.filter((_, i) => i !== 4), F32_TOL, 'gelu_tanh');
  // the two forms differ by ~1.5e-4 at x = 1: make sure 'tanh' really routes to the approximation
  assert.ok(Math.abs(got[1] - exact[1]) > 1e-4);
});

test('erf matches tabulated values to 1e-7 in f32 and ~1e-15 in float64', () => {
  // Python math.erf (float64); these straddle the series (|x| < 2), continued-fraction and |x| > 6 branches
  const xs = [0, 0.1, -0.3, 0.5, 1, 2, -2.5, 3, 4.5, 6.5];
  const want = [0, 0.1124629160182849, -0.3286267594591274, 0.5204998778130465, 0.8427007929497149, 0.9953222650189527,
    -0.999593047982555, 0.9999779095030014, 0.9999999998033839, 1];
  // f32 spacing near 1 is 6e-8, so one rounding from float64 stays within 1e-7
  assertClose(flat(ops.erf(fromArray(xs))), want, 1e-7, 'erf f32');
  // float64 kernel helper: about machine precision on both branches (series below 2, continued fraction above)
  assertClose(xs.map(erfScalar), want, 2e-15, 'erfScalar');
  assertClose([0.7, 1.2, 1.99, 2.01].map(erfScalar), [0.6778011938374184, 0.9103139782296353, 0.995111413199617, 0.9955248493552482], 2e-15, 'erfScalar near branch points');
  // odd symmetry
  for (const x of [0.3, 0.7, 1.9, 5]) assert.equal(erfScalar(-x), -erfScalar(x));
});

test('float-only ops reject integer and bool inputs with a specific error; neg/abs/relu reject bool', () => {
  assert.throws(() => fromArray([1, 2], 'i32').exp(), /exp: x has dtype i32; exp needs a floating-point tensor \(cast it first\)/);
  assert.throws(() => fromArray([1, 2], 'i64').gelu(), /gelu: x has dtype i64; gelu needs a floating-point tensor/);
  assert.throws(() => fromArray([1, 2], 'u8').gelu('tanh'), /gelu_tanh: x has dtype u8/);
  assert.throws(() => fromArray([1, 0], 'bool').sqrt(), /sqrt: x has dtype bool/);
  assert.throws(() => fromArray([1, 0], 'bool').relu(), /relu: x has dtype bool; relu needs a numeric tensor/);
  assert.throws(() => fromArray([1, 0], 'bool').neg(), TypeError);
});

test('f16 and bf16 inputs keep their dtype and are rounded once from the exact result', () => {
  const xs = [-2, -0.5, 0.3, 1, 2.7];
  for (const [dtype, toBits, fromBits, eps] of [
    ['f16', floatToF16Bits, f16BitsToFloat, 2 ** -11],
    ['bf16', floatToBf16Bits, bf16BitsToFloat, 2 ** -8],
  ] as const) {
    const x = fromArray(xs, dtype);
    const stored = xs.map((v) => fromBits(toBits(v))); // what the half tensor actually holds
    for (const [name, fn] of [['exp', Math.exp], ['tanh', Math.tanh], ['sigmoid', (v: number) => 1 / (1 + Math.exp(-v))]] as const) {
      const y = (x as any)[name]() as Tensor;
      assert.equal(y.dtype, dtype, `${name} ${dtype}`);
      assert.ok(y.data instanceof Uint16Array);
      // one rounding to nearest: relative error at most half an ulp (eps is the unit roundoff)
      const want = stored.map(fn);
      flat(y).forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= Math.abs(want[i]) * eps, `${name} ${dtype}[${i}]: ${v} vs ${want[i]}`));
    }
    assert.equal(x.relu().dtype, dtype);
    assert.deepEqual(flat(x.relu()), stored.map((v) => Math.max(v, 0)));
  }
});

test('shapes are preserved, including rank-0 and empty tensors', () => {
  const s = scalar(-2).abs();
  assert.deepEqual(s.shape, []);
  assert.equal(s.item(), 2);
  const e = zeros([0, 3]).exp();
  assert.deepEqual(e.shape, [0, 3]);
  assert.equal(e.size, 0);
  const y = fromArray([[1, 2, 3], [4, 5, 6]]).sigmoid();
  assert.deepEqual(y.shape, [2, 3]);
});

test('shape inference passes symbolic dims through unchanged', () => {
  for (const name of ['exp', 'gelu', 'relu', 'erf']) {
    const [out] = ops.getOp(name).infer([{ dtype: 'f16', shape: ['batch', 'seq', 64] }], {});
    assert.deepEqual(out, { dtype: 'f16', shape: ['batch', 'seq', 64] });
  }
  assert.throws(() => ops.getOp('exp').infer([{ dtype: 'i32', shape: ['batch'] }], {}), /exp: x has dtype i32/);
});
