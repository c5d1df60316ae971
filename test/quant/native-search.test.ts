// The calibration searches' native kernels (src/quant/native-search.ts) against the TypeScript
// numerics they replace: weight fake quantization bit for bit (int8 per row, int4 per group, FP8
// E4M3; column scales, zero rows, size-1 and odd sizes), and a site's candidate error on the
// native GEMM equal to the float64 TypeScript error up to f32 summation. PSS and AWQ pick the same
// factors either way on an outlier site. GPTQ's native factor and column loop give the TypeScript codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fakeQuantRows, fakeQuantWeight, type WeightFormat } from '../../src/quant/numerics.js';
import { fakeQuantWeightNative, matmulTNative, gramNative, nativeSearchAvailable, nativeGptqAvailable } from '../../src/quant/native-search.js';
import { awqSearch, pssSearch, siteError, type SiteProblem } from '../../src/quant/search.js';
import { normalSampler } from '../../src/quant/outlier-model.js';
import { absmaxQuantize, dequantMatrix, gptqQuantize } from '../../src/quant/gptq.js';

const skip = nativeSearchAvailable ? false : 'native addon not built';

function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): string | null {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i]) && !(a[i] === 0 && b[i] === 0)) return `index ${i}: ${a[i]} vs ${b[i]}`;
  return null;
}

test('native weight fake quantization equals numerics.ts bit for bit', { skip }, () => {
  const randn = normalSampler(11);
  const cases: [number, number, WeightFormat, number][] = [
    [1, 1, 'int8', 1], [3, 17, 'int8', 17], [16, 64, 'int8', 64], [5, 33, 'fp8', 33], [7, 128, 'fp8', 128],
    [1, 32, 'int4', 32], [9, 96, 'int4', 32], [4, 256, 'int4', 128], [2, 8, 'int4', 1],
  ];
  for (const [N, K, format, group] of cases) {
    // wide magnitudes (subnormal FP8 codes, int clamps at the scale's edge) and one all-zero row
    const W = Float32Array.from({ length: N * K }, (_, i) => randn() * 10 ** ((i % 5) - 2));
    if (N > 2) W.fill(0, K, 2 * K);
    const s = Float64Array.from({ length: K }, () => Math.exp(randn()));
    for (const colScale of [null, s]) {
      const scaled = colScale ? Float32Array.from(W, (w, i) => w * colScale[i % K]) : W;
      const want = fakeQuantWeight(scaled, N, K, format, group);
      const got = fakeQuantWeightNative(W, colScale, N, K, format, group);
      assert.equal(firstDifference(got, want), null, `${format} [${N}, ${K}] group ${group}${colScale ? ' with column scales' : ''}`);
    }
  }
});

test('native fake quantization refuses bad arguments with the reason', { skip }, () => {
  assert.throws(() => fakeQuantWeightNative(new Float32Array(12), null, 2, 6, 'int4', 4), /group that divides K/);
  assert.throws(() => fakeQuantWeightNative(new Float32Array(5), null, 2, 3, 'int8', 3), /N·K values/);
});

test('native GEMM for the searches: Y = X · Wᵀ', { skip }, () => {
  const randn = normalSampler(3);
  for (const [R, K, N] of [[1, 1, 1], [3, 7, 5], [17, 33, 19]]) {
    const X = Float32Array.from({ length: R * K }, randn), W = Float32Array.from({ length: N * K }, randn);
    const Y = matmulTNative(X, R, K, W, N);
    for (let r = 0; r < R; r++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += X[r * K + k] * W[n * K + k];
        assert.ok(Math.abs(Y[r * N + n] - acc) <= 1e-5 * (1 + Math.abs(acc)), `[${R}, ${K}, ${N}] (${r}, ${n}): ${Y[r * N + n]} vs ${acc}`);
      }
    }
  }
});

function outlierSite(seed: number, weight: WeightFormat): SiteProblem {
  const randn = normalSampler(seed);
  const R = 24, K = 64, N = 40;
  const gains = Float32Array.from({ length: K }, (_, j) => (j % 16 === 3 ? 60 : 1));
  const X = Float32Array.from({ length: R * K }, (_, i) => randn() * gains[i % K]);
  const W = Float32Array.from({ length: N * K }, () => randn() * 0.1);
  return { K, R, X, weights: [{ W, N }, { W: W.slice(0, 8 * K), N: 8 }], act: { format: 'int8', perTensor: false }, weight: { format: weight, group: 32 } };
}

test('a site error on the native kernels equals the TypeScript error; PSS and AWQ pick the same factors', { skip }, () => {
  for (const weight of ['int8', 'int4', 'fp8'] as WeightFormat[]) {
    const p = outlierSite(21, weight);
    const native = siteError(p, { native: true }), ts = siteError(p, { native: false });
    const randn = normalSampler(4);
    for (let t = 0; t < 4; t++) {
      const s = Float64Array.from({ length: p.K }, () => Math.exp(randn()));
      const a = native(s), b = ts(s);
      assert.ok(Math.abs(a - b) <= 1e-4 * b, `${weight}: native ${a} vs TypeScript ${b}`);
    }
  }
  const p = outlierSite(22, 'int8');
  const aAbs = new Float64Array(p.K), meanAbs = new Float64Array(p.K);
  for (let i = 0; i < p.X.length; i++) { aAbs[i % p.K] = Math.max(aAbs[i % p.K], Math.abs(p.X[i])); meanAbs[i % p.K] += Math.abs(p.X[i]) / p.R; }
  const pssNative = pssSearch(p, aAbs, 4), pssTs = pssSearch(p, aAbs, 4, 0.5, { native: false });
  assert.deepEqual(pssNative.alphas, pssTs.alphas);
  assert.ok(Math.abs(pssNative.error - pssTs.error) <= 1e-4 * pssTs.error);
  const awqNative = awqSearch(p, meanAbs), awqTs = awqSearch(p, meanAbs, { native: false });
  assert.equal(awqNative.alpha, awqTs.alpha);
});

test('absmaxQuantize on the native kernel: the same codes and scales as numerics.ts, and the same dequantized values as dequantMatrix', { skip }, () => {
  const randn = normalSampler(12);
  for (const [N, K, format, group] of [[1, 1, 'int8', 1], [7, 33, 'int8', 33], [5, 64, 'int4', 32], [3, 96, 'int4', 96], [6, 40, 'fp8', 40]] as [number, number, WeightFormat, number][]) {
    const W = Float32Array.from({ length: N * K }, (_, i) => randn() * 10 ** ((i % 4) - 2));
    W.fill(0, 0, K); // an all-zero row: scale 0, codes 0
    const native = absmaxQuantize(W, N, K, format, group), ts = absmaxQuantize(W, N, K, format, group, { native: false });
    assert.equal(firstDifference(native.scales, ts.scales), null, `${format} [${N}, ${K}] scales`);
    assert.equal(firstDifference(native.codes, ts.codes), null, `${format} [${N}, ${K}] codes`);
    // integer codes are kept as bytes (a quarter of f32's memory), E4M3 values as f32, on both paths
    for (const q of [native, ts]) assert.equal(q.codes.constructor, format === 'fp8' ? Float32Array : Int8Array, `${format} codes storage`);
    // the dequantized weights from the quantizing pass (quantize() takes them so; no second pass)
    const values = new Float32Array(N * K).fill(NaN), tsValues = new Float32Array(N * K).fill(NaN);
    absmaxQuantize(W, N, K, format, group, { values });
    absmaxQuantize(W, N, K, format, group, { native: false, values: tsValues });
    assert.equal(firstDifference(values, dequantMatrix(ts)), null, `${format} [${N}, ${K}] native dequantized values`);
    assert.equal(firstDifference(tsValues, dequantMatrix(ts)), null, `${format} [${N}, ${K}] TypeScript dequantized values`);
  }
});

test('activation rows fake-quantized by the native kernel equal fakeQuantRows (per token, per 32, per tensor; int8 and fp8)', { skip }, () => {
  const randn = normalSampler(13);
  for (const format of ['int8', 'fp8'] as const) {
    for (const [R, K, run] of [[1, 1, 1], [5, 33, 33], [4, 64, 32], [3, 40, 120]]) {
      const X = Float32Array.from({ length: R * K }, (_, i) => randn() * (i % 9 === 2 ? 50 : 1));
      const want = Float32Array.from(X);
      fakeQuantRows(want, run, format);
      const got = fakeQuantWeightNative(Float32Array.from(X), null, (R * K) / run, run, format, run);
      assert.equal(firstDifference(got, want), null, `${format} [${R}, ${K}] runs of ${run}`);
    }
  }
});

test('GPTQ on the native kernels (factor and column loop) gives the TypeScript codes: int8 / int4 / fp8, odd K, one row, dead columns, several blocks', { skip: nativeGptqAvailable ? false : 'native addon not built' }, () => {
  const randn = normalSampler(14);
  const cases: [number, number, WeightFormat, number, number][] = [
    [1, 1, 'int8', 1, 128], [3, 33, 'int8', 33, 8], [17, 96, 'int4', 32, 16], [5, 40, 'fp8', 40, 128], [24, 256, 'int4', 128, 64], [2, 130, 'int8', 130, 128],
  ];
  for (const [N, K, format, group, blockSize] of cases) {
    const R = 2 * K + 3;
    const X = Float64Array.from({ length: R * K }, (_, i) => randn() * (i % K === 1 ? 30 : 1));
    if (K > 4) for (let r = 0; r < R; r++) X[r * K + K - 2] = 0; // a column no token reaches
    const H = new Float64Array(K * K);
    for (let r = 0; r < R; r++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) H[i * K + j] += X[r * K + i] * X[r * K + j];
    const W = Float32Array.from({ length: N * K }, () => randn() * 0.05);
    const what = `${format} [${N}, ${K}] block ${blockSize}`;
    const native = gptqQuantize(W, N, K, H, format, group, { blockSize }), ts = gptqQuantize(W, N, K, H, format, group, { blockSize, native: false });
    assert.equal(firstDifference(native.scales, ts.scales), null, `${what}: scales`);
    let differing = 0;
    for (let i = 0; i < N * K; i++) if (native.codes[i] !== ts.codes[i]) differing++;
    // the native factor is computed another way (equal to rounding): a code may flip at a rounding tie, no more
    assert.ok(differing <= Math.max(1, 1e-3 * N * K), `${what}: ${differing} of ${N * K} codes differ`);
    if (K > 4) for (let n = 0; n < N; n++) assert.equal(native.codes[n * K + K - 2], 0, `${what}: a dead column's weights are zero`);
  }
  // an indefinite Hessian is refused the same way on both paths
  const bad = Float64Array.from([1, 2, 2, 1]);
  for (const native of [true, false]) {
    assert.throws(() => gptqQuantize(Float32Array.from([1, 2]), 1, 2, bad, 'int8', 2, { native }), /gptq: the damped Hessian is not positive definite at column \d; calibrate on more tokens/);
  }
});

test('the Gram matrix Xᵀ X for GPTQ\'s Hessian on the native GEMM equals a float64 loop to f32 rounding (T, K = 1, odd, above the vector width)', { skip }, () => {
  const randn = normalSampler(15);
  for (const [T, K] of [[1, 1], [5, 7], [33, 17], [64, 40]]) {
    const X = Float32Array.from({ length: T * K }, (_, i) => randn() * (i % K === 2 ? 25 : 1));
    const G = gramNative(X, T, K);
    for (let i = 0; i < K; i++) {
      for (let j = 0; j < K; j++) {
        let want = 0, scale = 0;
        for (let t = 0; t < T; t++) { want += X[t * K + i] * X[t * K + j]; scale += Math.abs(X[t * K + i] * X[t * K + j]); }
        assert.ok(Math.abs(G[i * K + j] - want) <= 1e-5 * scale + 1e-30, `[${T}, ${K}] G[${i}, ${j}] = ${G[i * K + j]}, want ${want}`);
      }
    }
  }
});
