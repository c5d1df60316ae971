import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, F, Tensor, randn, fromArray, manualSeed } from '../../src/index.js';
import { assertClose, flat, linearLoop, layerNormLoop, geluScalar } from './util.js';

// Tolerance for f32 layers checked against float64 loops: each op rounds its f32 output once
// (relative error 2^-24 ≈ 6e-8), plus accumulation error of at most a few ulps per dot product of
// ≤ 64 terms; 1e-5 relative leaves room for kernels that accumulate in f32.
const TOL = 1e-5;

test('Linear equals x·Wᵀ + b computed by explicit loops, for batched inputs', () => {
  const fc = new nn.Linear(5, 3, { seed: 7 });
  const x = randn([2, 4, 5], { seed: 1 });
  const y = fc.forward(x);
  assert.deepEqual(y.shape, [2, 4, 3]);
  assertClose(flat(y), linearLoop(flat(x), flat(fc.weight), flat(fc.bias!), 8, 5, 3), TOL);
  const noBias = new nn.Linear(5, 3, { seed: 7, bias: false });
  assert.equal(noBias.bias, null);
  assert.deepEqual(noBias.namedParameters().map(([n]) => n), ['weight']);
  assertClose(flat(noBias.forward(x)), linearLoop(flat(x), flat(noBias.weight), null, 8, 5, 3), TOL);
});

test('Linear init is U(-1/√in, 1/√in), reproducible from a seed or from manualSeed', () => {
  const fc = new nn.Linear(16, 32, { seed: 1 });
  assert.deepEqual(fc.weight.shape, [32, 16]);
  assert.deepEqual(fc.bias!.shape, [32]);
  const w = flat(fc.weight);
  assert.ok(w.every((v) => Math.abs(v) <= 0.25), 'within the bound 1/√16');
  assert.ok(Math.max(...w) > 0.2 && Math.min(...w) < -0.2, 'spans the bound');
  assert.deepEqual(flat(new nn.Linear(16, 32, { seed: 1 }).weight), w);
  assert.notDeepEqual(flat(new nn.Linear(16, 32, { seed: 2 }).weight), w);
  assert.notDeepEqual(flat(fc.bias!), w.subarray(0, 32), 'weight and bias come from different streams');
  manualSeed(5);
  const a = new nn.Linear(4, 4);
  manualSeed(5);
  const b = new nn.Linear(4, 4);
  assert.deepEqual(flat(a.weight), flat(b.weight));
  assert.notDeepEqual(flat(new nn.Linear(4, 4).weight), flat(a.weight), 'the global stream advances');
  assert.equal(new nn.Linear(2, 2, { dtype: 'bf16' }).weight.dtype, 'bf16');
});

test('layer constructors reject bad arguments with specific errors', () => {
  assert.throws(() => new nn.Linear(0, 3), /Linear: inFeatures must be a positive integer, got 0/);
  assert.throws(() => new nn.Conv2d(3, 4, 3, { groups: 2 }), /Conv2d: inChannels \(3\) and outChannels \(4\) must both be divisible by groups \(2\)/);
  assert.throws(() => new nn.GroupNorm(3, 8), /GroupNorm: numChannels \(8\) must be divisible by numGroups \(3\)/);
  assert.throws(() => new nn.SelfAttention(10, 3), /SelfAttention: dim \(10\) must be divisible by numHeads \(3\)/);
  assert.throws(() => new nn.SelfAttention(12, 4, { numKVHeads: 3 }), /SelfAttention: numHeads \(4\) must be a multiple of numKVHeads \(3\)/);
  assert.throws(() => nn.activation('swish' as nn.ActivationName), /activation: unknown activation "swish"/);
});

test('LayerNorm module equals F.layerNorm and an explicit loop', () => {
  const ln = new nn.LayerNorm(6, { eps: 1e-3 });
  assert.deepEqual(ln.weight!.toArray(), [1, 1, 1, 1, 1, 1]);
  assert.deepEqual(ln.bias!.toArray(), [0, 0, 0, 0, 0, 0]);
  ln.weight = randn([6], { seed: 2 });
  ln.bias = randn([6], { seed: 3 });
  const x = randn([3, 2, 6], { seed: 4 });
  const y = ln.forward(x);
  assert.deepEqual(flat(y), flat(F.layerNorm(x, [6], ln.weight, ln.bias, 1e-3)));
  assertClose(flat(y), layerNormLoop(flat(x), 6, flat(ln.weight), flat(ln.bias), 1e-3), TOL);
  const plain = new nn.LayerNorm([2, 6], { elementwiseAffine: false });
  assert.deepEqual(plain.namedParameters(), []);
  assertClose(flat(plain.forward(x)), layerNormLoop(flat(x), 12, null, null, 1e-5), TOL);
});

test('RMSNorm equals x / sqrt(mean(x²) + eps) · weight', () => {
  const norm = new nn.RMSNorm(4, { eps: 1e-6 });
  norm.weight = fromArray([1, 2, 0.5, -1]);
  const x = randn([3, 4], { seed: 9 });
  const xv = flat(x), expected = new Float64Array(12);
  for (let r = 0; r < 3; r++) {
    let ms = 0;
    for (let i = 0; i < 4; i++) ms += xv[r * 4 + i] ** 2 / 4;
    for (let i = 0; i < 4; i++) expected[r * 4 + i] = (xv[r * 4 + i] / Math.sqrt(ms + 1e-6)) * [1, 2, 0.5, -1][i];
  }
  assertClose(flat(norm.forward(x)), expected, TOL);
  assert.throws(() => norm.forward(randn([2, 5])), /RMSNorm: last dim of x \[2, 5\] must be 4/);
});

test('GroupNorm normalizes each group of channels over all positions', () => {
  const gn = new nn.GroupNorm(2, 4);
  gn.weight = fromArray([1, 2, 3, 4]);
  gn.bias = fromArray([0, 1, 0, -1]);
  const x = randn([2, 4, 3], { seed: 11 });
  const xv = flat(x), expected = new Float64Array(24);
  for (let n = 0; n < 2; n++) {
    for (let g = 0; g < 2; g++) {
      const start = n * 12 + g * 6; // 2 channels × 3 positions per group
      const group = xv.subarray(start, start + 6);
      const mean = group.reduce((s, v) => s + v, 0) / 6;
      const variance = group.reduce((s, v) => s + (v - mean) ** 2, 0) / 6;
      for (let j = 0; j < 6; j++) {
        const c = g * 2 + Math.floor(j / 3);
        expected[start + j] = ((group[j] - mean) / Math.sqrt(variance + 1e-5)) * [1, 2, 3, 4][c] + [0, 1, 0, -1][c];
      }
    }
  }
  assertClose(flat(gn.forward(x)), expected, TOL);
});

test('Conv2d output shape follows stride, padding, dilation and groups', () => {
  const x = randn([2, 4, 9, 9], { seed: 1 });
  const shape = (c: nn.Conv2d): readonly number[] => c.forward(x).shape;
  assert.deepEqual(shape(new nn.Conv2d(4, 8, 3, { seed: 0 })), [2, 8, 7, 7]);
  assert.deepEqual(shape(new nn.Conv2d(4, 8, 3, { stride: 2, padding: 1, seed: 0 })), [2, 8, 5, 5]);
  assert.deepEqual(shape(new nn.Conv2d(4, 6, [3, 1], { padding: [1, 0], dilation: 2, seed: 0 })), [2, 6, 7, 9]);
  const grouped = new nn.Conv2d(4, 8, 1, { groups: 4, bias: false, seed: 0 });
  assert.deepEqual(grouped.weight.shape, [8, 1, 1, 1]);
  assert.deepEqual(shape(grouped), [2, 8, 9, 9]);
  const patch = new nn.Conv2d(4, 16, 3, { stride: 3, seed: 0 });
  assert.deepEqual(patch.weight.shape, [16, 4, 3, 3]);
  assert.deepEqual(shape(patch), [2, 16, 3, 3]);
});

test('Conv2d values match a direct loop', () => {
  const conv = new nn.Conv2d(2, 3, 2, { stride: 1, padding: 1, seed: 4 });
  const x = randn([1, 2, 3, 3], { seed: 5 });
  const xv = flat(x), w = flat(conv.weight), b = flat(conv.bias!);
  const expected = new Float64Array(3 * 4 * 4);
  for (let o = 0; o < 3; o++) for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) {
    let s = b[o];
    for (let c = 0; c < 2; c++) for (let ki = 0; ki < 2; ki++) for (let kj = 0; kj < 2; kj++) {
      const r = i + ki - 1, q = j + kj - 1;
      if (r >= 0 && r < 3 && q >= 0 && q < 3) s += xv[c * 9 + r * 3 + q] * w[((o * 2 + c) * 2 + ki) * 2 + kj];
    }
    expected[(o * 4 + i) * 4 + j] = s;
  }
  assertClose(flat(conv.forward(x)), expected, TOL);
});

test('Embedding selects rows by id', () => {
  const emb = new nn.Embedding(10, 4, { seed: 3 });
  assert.deepEqual(emb.weight.shape, [10, 4]);
  const ids = fromArray([[7, 0], [7, 9]], 'i64');
  const y = emb.forward(ids);
  assert.deepEqual(y.shape, [2, 2, 4]);
  const w = flat(emb.weight);
  const row = (i: number): number[] => Array.from(w.subarray(i * 4, i * 4 + 4));
  assert.deepEqual(Array.from(flat(y)), [...row(7), ...row(0), ...row(7), ...row(9)]);
});

test('activation modules compute their functions', () => {
  const x = fromArray([-3, -1, -0.25, 0, 0.5, 2]);
  const xs = Array.from(flat(x));
  const check = (m: nn.Module, f: (v: number) => number): void => assertClose(flat(m.forward(x)), xs.map(f), TOL, m.constructor.name);
  check(new nn.ReLU(), (v) => Math.max(v, 0));
  check(new nn.SiLU(), (v) => v / (1 + Math.exp(-v)));
  check(new nn.Tanh(), Math.tanh);
  check(new nn.Sigmoid(), (v) => 1 / (1 + Math.exp(-v)));
  check(new nn.GELU(), geluScalar);
  check(new nn.GELU({ approximate: 'tanh' }), (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
  assert.equal(new nn.Identity().forward(x), x);
});

test('Sequential applies its modules in order and names them by index', () => {
  const fc = new nn.Linear(3, 3, { seed: 1 });
  const seq = new nn.Sequential(fc, new nn.ReLU(), new nn.Linear(3, 2, { seed: 2 }));
  assert.deepEqual(seq.namedParameters().map(([n]) => n), ['0.weight', '0.bias', '2.weight', '2.bias']);
  const x = randn([4, 3], { seed: 3 });
  const h = linearLoop(flat(x), flat(fc.weight), flat(fc.bias!), 4, 3, 3).map((v) => Math.max(v, 0));
  const expected = linearLoop(h, flat((seq[2] as nn.Linear).weight), flat((seq[2] as nn.Linear).bias!), 4, 3, 2);
  assertClose(flat(seq.forward(x)), expected, TOL);
  // order matters: ReLU first gives a different result
  const swapped = new nn.Sequential(new nn.ReLU(), fc);
  const expectedSwapped = linearLoop(flat(x).map((v) => Math.max(v, 0)), flat(fc.weight), flat(fc.bias!), 4, 3, 3);
  assertClose(flat(swapped.forward(x)), expectedSwapped, TOL);
});

test('MLP is fc2(act(fc1(x)))', () => {
  const mlp = new nn.MLP(4, 8, { activation: 'silu', seed: 5, outDim: 2 });
  assert.deepEqual(mlp.namedParameters().map(([n, t]) => `${n}${JSON.stringify(t.shape)}`), ['fc1.weight[8,4]', 'fc1.bias[8]', 'fc2.weight[2,8]', 'fc2.bias[2]']);
  const x = randn([3, 4], { seed: 6 });
  const h = linearLoop(flat(x), flat(mlp.fc1.weight), flat(mlp.fc1.bias!), 3, 4, 8).map((v) => v / (1 + Math.exp(-v)));
  assertClose(flat(mlp.forward(x)), linearLoop(h, flat(mlp.fc2.weight), flat(mlp.fc2.bias!), 3, 8, 2), TOL);
  // sublayers draw distinct seeds
  assert.notDeepEqual(flat(mlp.fc1.weight).subarray(0, 8), flat(mlp.fc2.weight).subarray(0, 8));
});

test('a seeded composite layer is reproducible and independent of the global generator', () => {
  manualSeed(1);
  const a = new nn.MLP(4, 8, { seed: 9 });
  manualSeed(2);
  const b = new nn.MLP(4, 8, { seed: 9 });
  for (const [[n, ta], [, tb]] of a.namedParameters().map((p, i) => [p, b.namedParameters()[i]] as const)) {
    assert.deepEqual(flat(ta), flat(tb), n);
  }
});

test('layers accept Tensors of other float dtypes end to end', () => {
  const fc = new nn.Linear(4, 2, { seed: 1, dtype: 'bf16' });
  const y = fc.forward(randn([3, 4], { seed: 2, dtype: 'bf16' }));
  assert.equal(y.dtype, 'bf16');
  assert.ok(y instanceof Tensor);
});
