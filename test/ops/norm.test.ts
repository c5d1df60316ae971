// Tests for layer_norm, rms_norm and group_norm: hand-worked rows, statistical identities and an
// explicit loop written here, plus shape/dtype errors and symbolic shape inference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops, fromArray, randn, full, Tensor } from '../../src/index.js';

/** Inputs are f32 and outputs are rounded to f32 once, so 1e-5 relative (plus 1e-6 absolute for
 *  values near zero) is ~100 ulps of headroom over the float64 expectations computed here. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-5, atol = 1e-6, what = ''): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    assert.ok(Math.abs(a - e) <= atol + rtol * Math.abs(e), `${what}[${i}]: got ${a}, expected ${e}`);
  }
}
const flat = (t: Tensor): Float64Array => t.toFlatArray();

test('layer_norm: hand-worked row with and without affine', () => {
  const x = fromArray([[1, 2, 3, 4]]);
  // mean 2.5, biased variance 1.25
  const s = Math.sqrt(1.25);
  const plain = [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s];
  assertClose(flat(ops.layerNorm(x, 4, null, null, 0)), plain);
  const w = fromArray([1, 2, 1, 2]), b = fromArray([0, 0, 10, -10]);
  assertClose(flat(ops.layerNorm(x, [4], w, b, 0)), [plain[0], 2 * plain[1], plain[2] + 10, 2 * plain[3] - 10]);
  // eps enters under the square root: sqrt(1.25 + 2.75) = 2
  assertClose(flat(ops.layerNorm(x, 4, null, null, 2.75)), [-0.75, -0.25, 0.25, 0.75]);
});

test('layer_norm: every normalized group has mean 0 and variance 1 (no affine)', () => {
  const x = randn([3, 5, 8], { seed: 1 });
  for (const nd of [1, 2]) {
    const shape = nd === 1 ? [8] : [5, 8];
    const y = flat(ops.layerNorm(x, shape, null, null, 0));
    const cols = nd === 1 ? 8 : 40;
    for (let r = 0; r < y.length / cols; r++) {
      const row = y.subarray(r * cols, (r + 1) * cols);
      const mean = row.reduce((s, v) => s + v, 0) / cols;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / cols;
      // f32 rounding of O(1) outputs: errors ~1e-7 per element
      assert.ok(Math.abs(mean) < 1e-6, `mean ${mean}`);
      assert.ok(Math.abs(variance - 1) < 1e-5, `variance ${variance}`);
    }
  }
});

test('layer_norm: affine is applied per trailing element', () => {
  const x = randn([2, 3, 4], { seed: 2 });
  const w = randn([3, 4], { seed: 3 }), b = randn([3, 4], { seed: 4 });
  const plain = flat(ops.layerNorm(x, [3, 4], null, null, 1e-5));
  const affine = flat(ops.layerNorm(x, [3, 4], w, b, 1e-5));
  const wv = flat(w), bv = flat(b);
  assertClose(affine, plain.map((v, i) => v * wv[i % 12] + bv[i % 12]), 1e-5, 1e-5);
});

test('layer_norm: f16 input gives an f16 output close to the f32 result', () => {
  const x32 = randn([4, 16], { seed: 5 });
  const x16 = fromArray(flat(x32), [4, 16], 'f16');
  const y16 = ops.layerNorm(x16, 16);
  assert.equal(y16.dtype, 'f16');
  // f16 inputs carry ~5e-4 relative error and the output is rounded to f16 once: allow 4e-3
  assertClose(flat(y16), flat(ops.layerNorm(x32, 16)), 4e-3, 4e-3);
});

test('layer_norm: errors name the op, the argument and the shapes', () => {
  const x = randn([2, 3, 4], { seed: 6 });
  assert.throws(() => ops.layerNorm(x, [5]), /layer_norm: normalizedShape \[5\] does not match the last dims of x \[2, 3, 4\]/);
  assert.throws(() => ops.layerNorm(x, 4, randn([3])), /layer_norm: weight \[3\] must be the normalized \(last\) dims \[4\] for x \[2, 3, 4\]/);
  assert.throws(() => ops.layerNorm(x, 4, null, randn([4, 1])), /layer_norm: bias \[4, 1\] must be/);
  assert.throws(() => ops.layerNorm(x, 4, randn([4], { dtype: 'f16' })), /layer_norm: weight has dtype f16 but x has dtype f32/);
  assert.throws(() => ops.layerNorm(fromArray([1, 2], 'i32'), 2), /layer_norm: x has dtype i32; layer_norm needs a floating-point tensor/);
  assert.throws(() => ops.dispatch1('layer_norm', [x], { normalized_ndim: 4 }), /layer_norm: normalized_ndim 4 must be between 1 and the rank of x \[2, 3, 4\]/);
});

test('rms_norm: constant rows map to ±weight; a hand-worked row', () => {
  const x = fromArray([[2, 2, 2], [-0.5, -0.5, -0.5]]);
  assertClose(flat(ops.rmsNorm(x, null, 0)), [1, 1, 1, -1, -1, -1]);
  const w = fromArray([1, 2, 3]);
  assertClose(flat(ops.rmsNorm(x, w, 0)), [1, 2, 3, -1, -2, -3]);
  // eps = c² halves the mean square's weight: y = c / sqrt(2c²) = 1/sqrt(2)
  assertClose(flat(ops.rmsNorm(full([1, 4], 3), null, 9)), new Array(4).fill(Math.SQRT1_2));
  // [3, 4]: mean square 12.5
  const r = Math.sqrt(12.5);
  assertClose(flat(ops.rmsNorm(fromArray([3, 4]), null, 0)), [3 / r, 4 / r]);
  // the default eps (1e-6) is used when none is given
  assertClose(flat(ops.rmsNorm(fromArray([1e-3, 1e-3]))), [1e-3 / Math.sqrt(1e-6 + 1e-6), 1e-3 / Math.sqrt(2e-6)]);
});

test('rms_norm: errors', () => {
  const x = randn([2, 8], { seed: 7 });
  assert.throws(() => ops.rmsNorm(x, randn([4])), /rms_norm: weight \[4\] must be the last dim of x \[8\] for x \[2, 8\]/);
  assert.throws(() => ops.rmsNorm(fromArray([1, 2], 'i64')), /rms_norm: x has dtype i64/);
  assert.throws(() => ops.rmsNorm(fromArray(1)), /rms_norm: x must have at least one dim/);
});

/** group_norm written as the definition reads: loop over (n, group), gather the group's values. */
function groupNormLoop(x: Float64Array, shape: number[], groups: number, w: Float64Array | null, b: Float64Array | null, eps: number): number[] {
  const [n, c] = shape;
  const spatial = shape.slice(2).reduce((p, d) => p * d, 1);
  const cg = c / groups;
  const out = new Array<number>(x.length);
  for (let i = 0; i < n; i++) {
    for (let g = 0; g < groups; g++) {
      const idx: number[] = [];
      for (let ch = g * cg; ch < (g + 1) * cg; ch++) for (let s = 0; s < spatial; s++) idx.push((i * c + ch) * spatial + s);
      const mean = idx.reduce((acc, k) => acc + x[k], 0) / idx.length;
      const variance = idx.reduce((acc, k) => acc + (x[k] - mean) ** 2, 0) / idx.length;
      for (const k of idx) {
        const ch = Math.floor(k / spatial) % c;
        out[k] = ((x[k] - mean) / Math.sqrt(variance + eps)) * (w ? w[ch] : 1) + (b ? b[ch] : 0);
      }
    }
  }
  return out;
}

test('group_norm: matches an explicit loop (4-D, 3-D, with and without affine)', () => {
  for (const [shape, groups] of [[[2, 6, 3, 2], 3], [[1, 4, 5], 2], [[2, 4, 2, 2], 1], [[1, 4, 2, 3], 4]] as [number[], number][]) {
    const x = randn(shape, { seed: 8 });
    const w = randn([shape[1]], { seed: 9 }), b = randn([shape[1]], { seed: 10 });
    assertClose(flat(ops.groupNorm(x, groups, w, b, 1e-5)), groupNormLoop(flat(x), shape, groups, flat(w), flat(b), 1e-5), 1e-5, 1e-5, `${shape}/${groups}`);
    assertClose(flat(ops.groupNorm(x, groups)), groupNormLoop(flat(x), shape, groups, null, null, 1e-5), 1e-5, 1e-5, `${shape}/${groups} plain`);
  }
});

test('group_norm: hand-worked case', () => {
  // N=1, C=2, 2 elements each, one group per channel: each channel normalized to [-1, 1]
  const x = fromArray([[[1, 3], [10, 20]]]);
  assertClose(flat(ops.groupNorm(x, 2, fromArray([1, 2]), fromArray([0, 5]), 0)), [-1, 1, 3, 7]);
  // one group over all four values: mean 8.5, deviations [-7.5, -5.5, 1.5, 11.5], variance 221 / 4
  const sd = Math.sqrt(221 / 4);
  assertClose(flat(ops.groupNorm(x, 1, null, null, 0)), [-7.5 / sd, -5.5 / sd, 1.5 / sd, 11.5 / sd]);
});

test('group_norm: errors', () => {
  const x = randn([2, 6, 4], { seed: 11 });
  assert.throws(() => ops.groupNorm(x, 4), /group_norm: channels 6 of x \[2, 6, 4\] are not divisible by num_groups 4/);
  assert.throws(() => ops.groupNorm(x, 0), /group_norm: num_groups must be positive, got 0/);
  assert.throws(() => ops.groupNorm(randn([6]), 2), /group_norm: x must be \[N, C, \*\] \(rank >= 2\), got \[6\]/);
  assert.throws(() => ops.groupNorm(x, 3, randn([4])), /group_norm: weight \[4\] must be the channel dim \[6\] for x \[2, 6, 4\]/);
});

test('norm ops: symbolic shape inference keeps symbolic dims and skips checks it cannot decide', () => {
  const ln = ops.getOp('layer_norm');
  assert.deepEqual(ln.infer([{ dtype: 'f32', shape: ['batch', 'seq', 64] }, { dtype: 'f32', shape: [64] }, null], { normalized_ndim: 1, eps: 1e-5 }),
    [{ dtype: 'f32', shape: ['batch', 'seq', 64] }]);
  // a symbolic hidden dim cannot be shown to differ from a concrete weight
  assert.deepEqual(ln.infer([{ dtype: 'bf16', shape: ['batch', 'hidden'] }, { dtype: 'bf16', shape: [64] }, null], { normalized_ndim: 1, eps: 1e-5 })[0].shape,
    ['batch', 'hidden']);
  const rms = ops.getOp('rms_norm');
  assert.deepEqual(rms.infer([{ dtype: 'f16', shape: ['b', 's', 32] }, { dtype: 'f16', shape: [32] }], { eps: 1e-6 }), [{ dtype: 'f16', shape: ['b', 's', 32] }]);
  assert.throws(() => rms.infer([{ dtype: 'f16', shape: ['b', 32] }, { dtype: 'f16', shape: [16] }], { eps: 1e-6 }), /rms_norm: weight \[16\]/);
  const gn = ops.getOp('group_norm');
  assert.deepEqual(gn.infer([{ dtype: 'f32', shape: ['n', 'c', 'h', 'w'] }, null, null], { num_groups: 32, eps: 1e-5 })[0].shape, ['n', 'c', 'h', 'w']);
  assert.throws(() => gn.infer([{ dtype: 'f32', shape: ['n', 30, 'h'] }, null, null], { num_groups: 32, eps: 1e-5 }), /not divisible by num_groups 32/);
});
