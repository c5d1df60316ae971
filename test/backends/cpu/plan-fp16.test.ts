// precision 'fp16' on device 'cpu': the native plans store GEMM weights as f16 panels (F16C converts
// them as the GEMM loads them) and compute everything in fp32. Checked on one linear layer against
// a float64 reference with a bound derived from f16's 11-bit significand and the reduction length,
// end to end on the tiny transformer, and on a model whose parameters are f16 tensors (packed
// straight from f16 storage, no fp32 copy of any GEMM weight).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, inferenceJit, randn, fromArray, type Tensor } from '../../../src/index.js';
import { jitRunner } from '../../../src/jit/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { TinyTransformer } from '../../../examples/models/transformer.js';
import type { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { reducedPrecisionSupport } from '../../../src/backends/cpu/bf16.js';
import { U, relError } from './helpers.js';

const support = reducedPrecisionSupport();
const skip = !planAddon ? 'native plan executor not built' : !support.f16Storage ? `no fp16 storage here: ${support.f16Missing}` : false;

/** f16's unit roundoff (11-bit significand) and the spacing of its subnormals. */
const U16 = 2 ** -11, F16_SUBNORMAL_STEP = 2 ** -24;

const executable = (compiled: object): PlanExecutable =>
  jitRunner(compiled)!.compiledEntries()[0].executable as unknown as PlanExecutable;

class OneLinear extends nn.Module {
  fc: nn.Linear;
  constructor(inF: number, outF: number) { super(); this.fc = new nn.Linear(inF, outF, { seed: 4 }); }
  forward(x: Tensor): Tensor { return this.fc.forward(x); }
}

/** y = x·Wᵀ + b in float64 with W as given (Float64Array rows of K). */
function linear64(x: Float32Array, w: ArrayLike<number>, b: Float32Array, M: number, K: number, N: number): { y: Float64Array; mag: Float64Array; xAbs: Float64Array } {
  const y = new Float64Array(M * N), mag = new Float64Array(M * N), xAbs = new Float64Array(M);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) xAbs[i] += Math.abs(x[i * K + k]);
    for (let j = 0; j < N; j++) {
      let s = b[j], m = Math.abs(b[j]);
      for (let k = 0; k < K; k++) { s += x[i * K + k] * w[j * K + k]; m += Math.abs(x[i * K + k] * w[j * K + k]); }
      y[i * N + j] = s;
      mag[i * N + j] = m;
    }
  }
  return { y, mag, xAbs };
}

test('fp16 linear: within the bound of f16 weight rounding plus fp32 accumulation; exact f16 rounding of the weights', { skip }, () => {
  for (const [M, K, N] of [[5, 300, 77], [1, 17, 33], [64, 1024, 40]]) {
    const model = new OneLinear(K, N);
    const x = randn([M, K], { seed: K });
    const y = inferenceJit(model, { cache: 'memory', precision: 'fp16' }).forward(x) as Tensor;
    const got = y.data as Float32Array, xs = x.data as Float32Array, b = model.fc.bias!.data as Float32Array;
    const w = model.fc.weight.data as Float32Array;
    // (a) against the exact fp32 weights: each product picks up the weight's f16 rounding,
    //     |δw| <= max(2^-11·|w|, 2^-25) (round to nearest; subnormals have absolute steps of 2^-24),
    //     and the fp32 sum of K + 1 terms adds at most (K + 2)·u·Σ|x w|.
    const exact = linear64(xs, w, b, M, K, N);
    for (let i = 0; i < M * N; i++) {
      const row = Math.floor(i / N);
      const bound = U16 * exact.mag[i] + (F16_SUBNORMAL_STEP / 2) * exact.xAbs[row] + (K + 2) * U * exact.mag[i] + U * Math.abs(exact.y[i]);
      assert.ok(Math.abs(got[i] - exact.y[i]) <= bound, `M=${M} K=${K} N=${N} element ${i}: ${got[i]} vs ${exact.y[i]} (bound ${bound})`);
    }
    // (b) against the weights rounded to f16 (by the tensor cast: round to nearest even) only the
    //     fp32 accumulation remains: the plan read each weight as exactly that f16 value.
    const w16 = model.fc.weight.cast('f16').cast('f32').data as Float32Array;
    const rounded = linear64(xs, w16, b, M, K, N);
    let offExact = 0, offRounded = 0;
    for (let i = 0; i < M * N; i++) {
      const bound = (K + 2) * U * rounded.mag[i] + U * Math.abs(rounded.y[i]);
      assert.ok(Math.abs(got[i] - rounded.y[i]) <= bound, `M=${M} K=${K} N=${N} element ${i} vs f16 weights: ${got[i]} vs ${rounded.y[i]} (bound ${bound})`);
      offExact += (got[i] - exact.y[i]) ** 2;
      offRounded += (got[i] - rounded.y[i]) ** 2;
    }
    // f16 rounding (2^-11) dwarfs fp32 accumulation (2^-24 per step): if the plan had kept fp32
    // weights, it would be much closer to the exact result than to the rounded one
    assert.ok(offExact > 100 * offRounded, `M=${M} K=${K} N=${N}: ${offExact} vs ${offRounded}: the weights were not stored as f16`);
  }
});

// A transformer chains ~4 GEMMs per block; each rounds its weights to f16 (relative 2^-11 per
// product, and a dot product's error is at most that relative to Σ|x·w|, usually far less since the
// signs vary). Residual streams and LayerNorm keep activations O(1), so errors add rather than
// multiply: 4·depth·2^-11 bounds ||y - y_ref|| / ||y_ref||. Below 1e-6 would mean fp32 weights.
test('transformer compiled in fp16: describe() says fp16, f16 weights, relative error vs eager fp32', { skip }, () => {
  const depth = 2;
  const model = new TinyTransformer({ dim: 64, heads: 4, depth });
  const fast = inferenceJit(model, { cache: 'memory', precision: 'fp16', inputSpec: [{ shape: [2, 'seq', 64] }] });
  for (const [seq, seed] of [[16, 1], [37, 2]]) {
    const x = randn([2, seq, 64], { seed });
    const got = fast.forward(x) as Tensor;
    const ref = withEagerBackend('cpu', () => model.forward(x));
    const err = relError(got, ref);
    assert.ok(err < 4 * depth * U16, `seq ${seq}: relative error ${err}`);
    assert.ok(err > 1e-6, `seq ${seq}: relative error ${err} is fp32-sized: f16 weights were not used`);
  }
  const exe = executable(fast);
  assert.equal(exe.path, 'plan');
  assert.match(exe.describe(), /^cpu plan fp16 \(8 f16 weights: 8 packed here, 0 loaded from the disk cache, 0 read from f16 storage; 0 f16 constants widened to f32\)/);
  const s = exe.planStats()!;
  assert.equal(s.precision, 'fp16');
  assert.equal(s.f16Weights, s.packedWeights);
  assert.equal(s.bf16Attention, 0, 'attention stays fp32');
});

test('a model with f16 parameters compiles in fp16: weights packed from f16 storage, f16 in and out, fp32 compute', { skip }, () => {
  const m16 = new TinyTransformer({ dim: 64, heads: 4, depth: 2 }).to('f16');
  // the oracle: the same (f16-valued) weights in f32, run eagerly in fp32
  const m32 = new TinyTransformer({ dim: 64, heads: 4, depth: 2 });
  m32.loadStateDict(new Map([...m16.namedParameters()].map(([n, t]) => [n, t.cast('f32')])));
  const fast = inferenceJit(m16, { cache: 'memory', precision: 'fp16' });
  const x16 = randn([2, 9, 64], { seed: 5 }).cast('f16');
  const got = fast.forward(x16) as Tensor;
  assert.equal(got.dtype, 'f16');
  const ref = withEagerBackend('cpu', () => m32.forward(x16.cast('f32')));
  // The plan computes what the fp32 model computes (fp32 kernels: ulp-level differences, 1e-5 of
  // the largest output covers them) and rounds the result to f16 once (2^-11 relative).
  const g = got.cast('f32').toFlatArray(), r = ref.toFlatArray();
  const big = r.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (let i = 0; i < r.length; i++) {
    assert.ok(Math.abs(g[i] - r[i]) <= U16 * Math.abs(r[i]) + 1e-5 * big, `element ${i}: ${g[i]} vs ${r[i]}`);
  }
  const exe = executable(fast);
  const s = exe.planStats()!, w = exe.weightStats();
  assert.equal(s.f16Weights, 8);
  assert.equal(w.from16Bit, 8, 'every GEMM weight was packed from its f16 storage');
  assert.ok(s.widened.length > 0 && s.widened.every((n) => !/\.(qkv|proj|fc1|fc2)\.weight$/.test(n)), `widened: ${s.widened.join(', ')}`);
  assert.ok(s.kernelNames[0].startsWith('input 0 (f16 -> f32)') && s.kernelNames.at(-1)!.startsWith('output 0 (f32 -> f16)'), s.kernelNames.join(', '));
  assert.match(exe.describe(), /^cpu plan fp16 \(8 f16 weights: 8 packed here, 0 loaded from the disk cache, 8 read from f16 storage; \d+ f16 constants widened to f32\)/);
});

test('fp16 plan: an in-place weight update is seen (the panels are packed again)', { skip }, () => {
  const model = new TinyTransformer({ dim: 32, heads: 2, depth: 1 });
  const fast = inferenceJit(model, { device: 'cpu', cache: 'memory', precision: 'fp16' });
  const x = randn([1, 6, 32], { seed: 5 });
  fast.forward(x);
  const w = model.blocks.at(0).mlp.fc1.weight;
  w.copyFrom(randn(w.shape, { seed: 6 }).mul(0.5));
  const err = relError(fast.forward(x) as Tensor, withEagerBackend('cpu', () => model.forward(x)));
  assert.ok(err < 4 * U16, `after the update: relative error ${err}`);
  assert.ok(err > 1e-6, `after the update: relative error ${err} is fp32-sized`);
});

test('plan cast kernel: f32 <-> f16 and f32 -> bf16 match the tensor cast bit for bit (ties, subnormals, overflow, NaN)', { skip: !planAddon ? 'native plan executor not built' : false }, () => {
  const h = 2 ** -11;
  const values = [0, -0, 1, -1, 1 + h, 1 + h / 2, 1 + 3 * h / 2, 65504, 65519.99, 65520, -1e6, 2 ** -14, 2 ** -24, 2 ** -25, 2 ** -25 * 1.5, 3 * 2 ** -26,
    1e-8, Infinity, -Infinity, NaN, 0.1, -3.14159, 1234.5678];
  const x = fromArray(values, [values.length]);
  const toHalf = inferenceJit((t: Tensor) => t.mul(1).cast('f16'), { cache: 'memory' });
  const half = toHalf(x) as Tensor;
  const exe = executable(toHalf);
  assert.equal(exe.path, 'plan', exe.describe());
  const want = withEagerBackend('reference', () => x.cast('f16'));
  const got16 = half.data as Uint16Array, want16 = want.data as Uint16Array;
  values.forEach((v, i) => {
    if (Number.isNaN(v)) assert.ok((got16[i] & 0x7c00) === 0x7c00 && (got16[i] & 0x3ff) !== 0, 'NaN stays NaN');
    else assert.equal(got16[i], want16[i], `f16 of ${v}: 0x${got16[i].toString(16)} vs 0x${want16[i].toString(16)}`);
  });
  const toFloat = inferenceJit((t: Tensor) => t.cast('f32').mul(1), { cache: 'memory' });
  const back = toFloat(want) as Tensor;
  const show = (a: ArrayLike<number>): (number | string)[] => Array.from(a, (v) => (Number.isNaN(v) ? 'NaN' : v));
  assert.deepEqual(show(back.data as Float32Array), show(want.toFlatArray()));
  // bf16 the same way: ties at 2^-8, values past bf16's range, subnormals
  const b8 = 2 ** -8;
  const bvals = [0, -0, 1 + b8 / 2, 1 + 3 * b8 / 2, 3.3895313892515355e38, 3.4e38, 1e-39, 2 ** -133, 0.1, -7.77, NaN, Infinity];
  const bx = fromArray(bvals, [bvals.length]);
  const toBf16 = inferenceJit((t: Tensor) => t.mul(1).cast('bf16'), { cache: 'memory' });
  const gotB = (toBf16(bx) as Tensor).data as Uint16Array, wantB = withEagerBackend('reference', () => bx.cast('bf16')).data as Uint16Array;
  bvals.forEach((v, i) => {
    if (Number.isNaN(v)) assert.ok((gotB[i] & 0x7f80) === 0x7f80 && (gotB[i] & 0x7f) !== 0, 'NaN stays NaN');
    else assert.equal(gotB[i], wantB[i], `bf16 of ${v}: 0x${gotB[i].toString(16)} vs 0x${wantB[i].toString(16)}`);
  });
});

for (const [precision, dtype] of [['fp16', 'f16'], ['bf16', 'bf16']] as const) {
  const skipHere = skip || (precision === 'bf16' && !support.bf16 ? `no bf16 here: ${support.missing}` : false);
  test(`${precision} plans keep the rounding of an explicit cast to ${dtype} (widening only drops none)`, { skip: skipHere }, () => {
    const x = randn([3, 50], { seed: 12 }).mul(100);
    const fn = (t: Tensor): Tensor => t.mul(3).cast(dtype).cast('f32').add(1);
    const fast = inferenceJit(fn, { cache: 'memory', precision });
    const got = fast(x) as Tensor;
    assert.equal(executable(fast).path, 'plan');
    assert.deepEqual(got.data, withEagerBackend('reference', () => fn(x)).data, `${precision}: the cast to ${dtype} must still round`);
  });
}
