// The quantization numerics against hand-worked values, the fake_quant op against them, GPTQ
// against round-to-nearest on correlated inputs, and the PSS / AWQ searches against their
// starting points (they must never end worse than SmoothQuant's best α / plain absmax).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dispatch } from '../../src/ops/dispatch.js';
import { fromArray } from '../../src/tensor/creation.js';
import '../../src/quant/fake-quant-op.js';
import { roundE4M3, fakeQuantRows, fakeQuantValue } from '../../src/quant/numerics.js';
import { absmaxQuantize, gptqQuantize, dequantMatrix } from '../../src/quant/gptq.js';
import { pssSearch, awqSearch, siteError, type SiteProblem } from '../../src/quant/search.js';
import { normalSampler } from '../../src/quant/outlier-model.js';

test('FP8 E4M3 rounding: saturation, ties to even, subnormals', () => {
  assert.equal(roundE4M3(448), 448);
  assert.equal(roundE4M3(1e6), 448);
  assert.equal(roundE4M3(-500), -448);
  assert.equal(roundE4M3(1.0625), 1); // tie between 1 and 1.125: even mantissa
  assert.equal(roundE4M3(1.1875), 1.25); // tie between 1.125 and 1.25: even mantissa
  assert.equal(roundE4M3(0.3), 0.3125);
  assert.equal(roundE4M3(2 ** -6), 2 ** -6);
  assert.equal(roundE4M3(2 ** -9), 2 ** -9); // smallest subnormal
  assert.equal(roundE4M3(1.5 * 2 ** -9), 2 ** -8); // subnormal tie to even
  assert.equal(roundE4M3(2 ** -11), 0);
  assert.equal(roundE4M3(0), 0);
});

test('int8 fake quantization: per-row absmax scale, ±127 clamp, zeros stay zero', () => {
  const x = Float32Array.from([1, -2, 0.4, 127, 0, 0, 0, 0, 254, 3, -1, 1]);
  fakeQuantRows(x, 4, 'int8');
  assert.deepEqual([...x], [1, -2, 0, 127, 0, 0, 0, 0, 254, 4, -2, 2]); // row 3: scale 2, so 3 → 4, ±1 → ±2
  assert.equal(fakeQuantValue(1000, 1, 'int8'), 127);
  assert.equal(fakeQuantValue(5, 0, 'int8'), 0);
});

test('fake_quant op: per token, per tensor and static per-head scales match the numerics', () => {
  const randn = normalSampler(5);
  const T = 3, Hh = 2, D = 5;
  const v = Float32Array.from({ length: T * Hh * D }, () => randn() * 3);
  const x = fromArray(v, [T, Hh * D], 'f32');
  const [tok] = dispatch('fake_quant', [x, null], { format: 'int8', granularity: 'token' });
  const want = Float32Array.from(v);
  fakeQuantRows(want, Hh * D, 'int8');
  assert.deepEqual([...tok.data as Float32Array], [...want]);
  const [ten] = dispatch('fake_quant', [x, null], { format: 'fp8', granularity: 'tensor' });
  const wantT = Float32Array.from(v);
  fakeQuantRows(wantT, wantT.length, 'fp8');
  assert.deepEqual([...ten.data as Float32Array], [...wantT]);
  const scales = [0.05, 0.2];
  const [st] = dispatch('fake_quant', [fromArray(v, [T, Hh, D], 'f32'), fromArray(scales, [2], 'f32')], { format: 'int8', granularity: 'static' });
  const got = st.data as Float32Array;
  for (let i = 0; i < v.length; i++) assert.equal(got[i], Math.fround(fakeQuantValue(v[i], Math.fround(scales[Math.floor(i / D) % Hh]), 'int8')));
  assert.throws(() => dispatch('fake_quant', [x, fromArray([1], [1], 'f32')], { format: 'int8', granularity: 'token' }), /computes its scales; pass no scale input/);
  assert.throws(() => dispatch('fake_quant', [x, null], { format: 'int4', granularity: 'token' }), /attribute "format"/);
});

/** X [R, K] with correlated channels and a few large ones; W [N, K]. */
function problem(seed: number, R: number, K: number, N: number): { X: Float32Array; W: Float32Array; H: Float64Array } {
  const randn = normalSampler(seed);
  const Z = Float32Array.from({ length: R * K }, () => randn());
  const X = new Float32Array(R * K);
  for (let r = 0; r < R; r++) {
    for (let k = 0; k < K; k++) X[r * K + k] = Z[r * K + k] + 0.8 * Z[r * K + ((k + 1) % K)] + (k % 13 === 0 ? 20 * Z[r * K + k] : 0);
  }
  const W = Float32Array.from({ length: N * K }, () => randn() / Math.sqrt(K));
  const H = new Float64Array(K * K);
  for (let r = 0; r < R; r++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) H[i * K + j] += X[r * K + i] * X[r * K + j];
  return { X, W, H };
}

function outputError(X: Float32Array, W: Float32Array, Q: Float32Array, R: number, K: number, N: number): number {
  let e = 0;
  for (let r = 0; r < R; r++) for (let n = 0; n < N; n++) {
    let d = 0;
    for (let k = 0; k < K; k++) d += X[r * K + k] * (W[n * K + k] - Q[n * K + k]);
    e += d * d;
  }
  return e;
}

test('GPTQ: layer output error below round-to-nearest (int4 groups, int8 rows), odd block sizes included', () => {
  const R = 200, K = 64, N = 24;
  const { X, W, H } = problem(9, R, K, N);
  for (const [format, group, blockSize] of [['int4', 32, 128], ['int4', 64, 7], ['int8', 32, 128]] as const) {
    const rtn = outputError(X, W, dequantMatrix(absmaxQuantize(W, N, K, format, group)), R, K, N);
    const q = gptqQuantize(W, N, K, H, format, group, { blockSize });
    const gptq = outputError(X, W, dequantMatrix(q), R, K, N);
    assert.ok(gptq < 0.9 * rtn, `${format}/g${group}/b${blockSize}: GPTQ ${gptq} vs RTN ${rtn}`);
    // codes are in range and scales are the absmax ones (static groups)
    const lim = format === 'int4' ? [-8, 7] : [-127, 127];
    assert.ok(q.codes.every((c) => Number.isInteger(c) && c >= lim[0] && c <= lim[1]));
  }
  // block size does not change the result (the batched update is exact)
  const a = gptqQuantize(W, N, K, H, 'int4', 32, { blockSize: 128 }), b = gptqQuantize(W, N, K, H, 'int4', 32, { blockSize: 5 });
  const ea = outputError(X, W, dequantMatrix(a), R, K, N), eb = outputError(X, W, dequantMatrix(b), R, K, N);
  assert.ok(Math.abs(ea - eb) <= 1e-6 * ea, `${ea} vs ${eb}`);
});

test('PSS never ends worse than the best single-α SmoothQuant; AWQ never worse than absmax', () => {
  const R = 96, K = 64, N = 16;
  const { X, W } = problem(4, R, K, N);
  const aAbs = new Float64Array(K), mean = new Float64Array(K);
  for (let i = 0; i < X.length; i++) { aAbs[i % K] = Math.max(aAbs[i % K], Math.abs(X[i])); mean[i % K] += Math.abs(X[i]) / R; }
  const p: SiteProblem = { K, R, X, weights: [{ W, N }], act: { format: 'int8', perTensor: false }, weight: { format: 'int8', group: 32 } };
  const r = pssSearch(p, aAbs, 4);
  assert.ok(r.error <= r.smoothQuantError);
  assert.equal(r.error, siteError(p)(r.s));
  assert.ok(r.smoothQuantError < siteError(p)(new Float64Array(K).fill(1)), 'smoothing helps on outlier channels');
  const w4: SiteProblem = { ...p, act: null, weight: { format: 'int4', group: 32 } };
  const a = awqSearch(w4, mean);
  assert.ok(a.error <= a.absmaxError);
});
