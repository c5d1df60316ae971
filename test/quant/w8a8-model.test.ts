// quantize() with the real 8-bit kernels: on the outlier decoder, int8 W8A8 and FP8 (weights and
// activations) produce graphs whose quantized linears are w8_linear nodes (the default kernel
// where the native kernels are built), those graphs lower to the plan's w8a8_gemm / fp8_gemm
// kernels (describe() names them), and the compiled logits match both the interpreted graph (the
// TypeScript reference of w8_linear) and the simulated path (fake_quant + f32 linear on the
// dequantized weights).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantize, outlierModel, randomSequences, teacherForcedLogits, type QuantizeOptions } from '../../src/quant/index.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import type { QuantizedDecoder } from '../../src/quant/decoder.js';
import { compiledQuantStep } from './plan-fixture.js';

const skip = planAddon ? false : 'native plan executor not built';
const model = outlierModel({ numLayers: 1 });
const calibration = randomSequences(2, 32, 256, 41);
const seq = randomSequences(1, 48, 256, 42)[0];
const base = { kvCache: null, shift: false, method: 'absmax', calibration, maxSamples: 32, smoothing: 'smoothquant' } as const;

const compiled = (q: QuantizedDecoder) => compiledQuantStep(model, q, seq);

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / m;
}
function top1Agreement(a: Float32Array, b: Float32Array, vocab: number): number {
  const argmax = (x: Float32Array, r: number): number => { let best = 0; for (let j = 1; j < vocab; j++) if (x[r * vocab + j] > x[r * vocab + best]) best = j; return best; };
  let same = 0;
  const rows = a.length / vocab;
  for (let r = 0; r < rows; r++) if (argmax(a, r) === argmax(b, r)) same++;
  return same / rows;
}

for (const [name, o, kernel] of [
  ['int8 W8A8', { ...base, weights: 'int8', activations: 'int8' }, 'w8a8_gemm'],
  ['FP8 weights and activations', { ...base, weights: 'fp8', activations: 'fp8' }, 'fp8_gemm'],
  ['FP8 weights, f32 activations', { ...base, weights: 'fp8', activations: null }, 'fp8_gemm'],
] as [string, QuantizeOptions, string][]) {
  test(`${name}: quantize() emits w8_linear, the plan runs ${kernel}, logits match the reference and the simulated path`, { skip }, () => {
    const real = quantize(model, o);
    assert.equal(real.options.kernel, 'w8a8', 'the real kernels are the default where the native addon is built');
    const { exe, logits } = compiled(real);
    assert.equal(exe.path, 'plan', exe.describe());
    const names = exe.planStats()!.kernelNames;
    assert.equal(names.filter((n) => n === 'w8_linear').length, 7, `q, k, v, o, gate, up, down: ${names.join(' ')}`);
    assert.ok(!names.includes('fake_quant'));
    assert.match(exe.describe(), /w8_linear/);
    const vocab = model.config.vocabSize;
    // the native kernel against the interpreted graph (the w8_linear reference kernel): the same
    // quantization decisions, the sums in another order (fp32 attention, norms, FP8 dot products)
    const interpreted = teacherForcedLogits(real, seq);
    assert.ok(maxRelDiff(logits, interpreted) < 1e-3, `vs interpreted: ${maxRelDiff(logits, interpreted)}`);
    // against simulated quantization: the same formats, rounding x / s in f64 instead of f32
    const simulated = teacherForcedLogits(quantize(model, { ...o, kernel: 'simulated' }), seq);
    assert.ok(maxRelDiff(logits, simulated) < 2e-2, `vs simulated: ${maxRelDiff(logits, simulated)}`);
    assert.ok(top1Agreement(logits, simulated, vocab) >= 0.97, `top-1 vs simulated ${top1Agreement(logits, simulated, vocab)}`);
  });
}

test("kernel 'w8a8' refuses formats it does not run, naming them", () => {
  assert.throws(() => quantize(model, { ...base, weights: 'int4', activations: 'int8', kernel: 'w8a8' }), /"kernel" 'w8a8' runs int8 weights with int8 activations, or fp8 weights/);
  assert.throws(() => quantize(model, { ...base, weights: 'int8', activations: 'int8', activationScheme: 'per-tensor', kernel: 'w8a8' }), /quantizes activations per token/);
  // where it does not apply, the default stays simulated
  assert.equal(quantize(model, { ...base, weights: 'int8', activations: null }).options.kernel, 'simulated');
});

test("activationScheme 'per-group': w8_linear with activation scales per 32 values, on w8a8_gemm; closer to f32 than per token", { skip }, () => {
  const o = { ...base, smoothing: 'none', weights: 'int8', activations: 'int8', activationScheme: 'per-group' } as const;
  const real = quantize(model, o);
  assert.equal(real.options.kernel, 'w8a8');
  const { exe, logits } = compiled(real);
  assert.equal(exe.path, 'plan', exe.describe());
  const names = exe.planStats()!.kernelNames;
  assert.equal(names.filter((n) => n === 'w8_linear').length, 7, names.join(' '));
  const interpreted = teacherForcedLogits(real, seq);
  assert.ok(maxRelDiff(logits, interpreted) < 1e-3, `vs interpreted: ${maxRelDiff(logits, interpreted)}`);
  // the outlier channels coarsen only their own blocks of 32: naive per-group lands much nearer f32
  const f32 = teacherForcedLogits(model, seq);
  const perToken = compiled(quantize(model, { ...o, activationScheme: 'per-token' })).logits;
  const err = (x: Float32Array): number => x.reduce((a, v, i) => a + (v - f32[i]) ** 2, 0);
  // (the int8 weights' own rounding is common to both)
  assert.ok(err(logits) < 0.75 * err(perToken), `squared logit error per group ${err(logits)} vs per token ${err(perToken)}`);
});

test("activationScheme 'per-group' runs int8 W8A8 on kernel 'w8a8' only, and says what to change", () => {
  const o = { ...base, weights: 'int8', activations: 'int8', activationScheme: 'per-group' } as const;
  assert.throws(() => quantize(model, { ...o, weights: 'fp8', activations: 'fp8' }), /'per-group' .* runs int8 weights with int8 activations; got weights "fp8"/);
  assert.throws(() => quantize(model, { ...o, kernel: 'qgemm' }), /runs on kernel 'w8a8'.*quantizes per 32 values by itself/);
  assert.throws(() => quantize(model, { ...o, kernel: 'simulated' }), /runs on kernel 'w8a8' .* got kernel 'simulated'/);
});
