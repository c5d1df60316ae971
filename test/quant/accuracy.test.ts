// The orderings post-training quantization must show on a decoder with outlier channels, at tiny
// sizes (1 layer, 1024 teacher-forced evaluation tokens, the same for every variant): naive W8A8
// degrades the model and does so because of the outliers (the same model without them quantizes
// fine); SmoothQuant and PSS recover it by a wide margin; PSS meets the floors (top-1 >= 99%,
// KL <= 0.01, KL no worse than SmoothQuant) and reaches the per-token int8 floor (the KL of naive
// W8A8 on the outlier-free model); GPTQ's KL is at most absmax's; AWQ beats absmax; an INT8 KV
// cache adds little; the qgemm route runs the native int8 kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantize, outlierModel, randomSequences, agreement, teacherForcedLogits, type QuantizeOptions, type Agreement } from '../../src/quant/index.js';
import { traceStep } from '../../src/quant/calibrate.js';
import { prefillArgs } from '../../src/quant/step.js';
import { applyQuantPlan } from '../../src/quant/graph-passes.js';
import { isNativeAvailable } from '../../src/ops/dispatch.js';

const calibration = randomSequences(3, 32, 256, 21);
// 8 × 128 = 1024 tokens: one top-1 flip is 0.1%, so the 99% floor is measurable
const evalSeqs = randomSequences(8, 128, 256, 22);
const none = { weights: null, activations: null, kvCache: null, smoothing: 'none', shift: false, method: 'absmax', calibration, maxSamples: 64 } as const;
const w8a8 = { ...none, weights: 'int8', activations: 'int8' } as const;

function measure(model: ReturnType<typeof outlierModel>): (o: QuantizeOptions) => Agreement {
  const ref = evalSeqs.map((s) => teacherForcedLogits(model, s));
  return (o) => agreement(ref, quantize(model, o), evalSeqs);
}

test('outlier model: naive W8A8 degrades it, smoothing recovers it, PSS meets the floors, INT8 KV adds little', () => {
  const run = measure(outlierModel({ numLayers: 1 }));
  const naive = run(w8a8), perTensor = run({ ...w8a8, activationScheme: 'per-tensor' });
  const sq = run({ ...w8a8, smoothing: 'smoothquant' }), pss = run({ ...w8a8, smoothing: 'pss', pieces: 3 });
  const sqKv = run({ ...w8a8, smoothing: 'smoothquant', kvCache: 'int8' }), pssKv = run({ ...w8a8, smoothing: 'pss', pieces: 3, kvCache: 'int8' });
  // the floor: no smoothing can make per-token int8 activations × per-channel int8 weights better
  // than on a model that has no outliers to begin with
  const floor = measure(outlierModel({ numLayers: 1, hiddenOutliers: [], ffnOutliers: [] }))(w8a8);
  const msg = JSON.stringify({ naive, perTensor, sq, pss, sqKv, pssKv, floor });
  assert.ok(naive.kl > 0.02 && perTensor.kl > naive.kl, msg);
  assert.ok(sq.kl < naive.kl / 20 && sq.top1 >= naive.top1 + 0.1, msg);
  // the floors for PSS. PSS picks per site between its factors and SmoothQuant's by
  // calibration KL (pss-select.ts), so KL <= SmoothQuant's holds by construction on the calibration
  // tokens; these are evaluation tokens. Measured: PSS 99.32% / 1.34e-4, SmoothQuant 98.63% /
  // 2.00e-4, floor 99.22% / 1.31e-4 (other evaluation seeds: PSS 99.12-99.32%).
  assert.ok(pss.tokens >= 1024 && pss.top1 >= 0.99 && pss.kl <= 0.01, msg);
  assert.ok(pss.kl <= sq.kl && pss.top1 >= sq.top1, msg);
  // PSS is at the int8 floor (within 10% of its KL): what is left is rounding, not outliers
  assert.ok(pss.kl <= 1.1 * floor.kl, msg);
  assert.ok(sqKv.kl - sq.kl <= 0.005 && pssKv.kl - pss.kl <= 0.005, msg);
});

test('activation scales per 32 values (per-group, the w8a8 kernel): naive W8A8 degrades less, PSS meets the floors there too', () => {
  const run = measure(outlierModel({ numLayers: 1 }));
  const g = { ...w8a8, activationScheme: 'per-group' } as const;
  const naiveToken = run(w8a8), naive = run(g), sq = run({ ...g, smoothing: 'smoothquant' }), pss = run({ ...g, smoothing: 'pss', pieces: 3 });
  const msg = JSON.stringify({ naiveToken, naive, sq, pss });
  // an outlier channel coarsens only its block of 32, not the token (measured KL 0.038 vs 0.063)
  assert.ok(naive.kl < 0.75 * naiveToken.kl, msg);
  // measured: PSS 99.02% / 1.01e-4, SmoothQuant 99.22% / 1.59e-4 (2-layer bench model, 4096 tokens:
  // PSS 99.15% / 1.91e-4, SmoothQuant 98.95% / 2.90e-4)
  assert.ok(pss.tokens >= 1024 && pss.top1 >= 0.99 && pss.kl <= 0.01, msg);
  assert.ok(pss.kl <= sq.kl, msg);
});

test('the same model without outlier channels quantizes fine naively (the outliers are the cause)', () => {
  const run = measure(outlierModel({ numLayers: 1, hiddenOutliers: [], ffnOutliers: [] }));
  const naive = run(w8a8);
  assert.ok(naive.kl < 0.005 && naive.top1 > 0.95, JSON.stringify(naive));
});

test('W4: GPTQ at most absmax KL, AWQ below absmax', () => {
  const run = measure(outlierModel({ numLayers: 1 }));
  // GPTQ needs more calibration tokens than input channels (128 here)
  const w4 = { ...none, weights: 'int4', groupSize: 32, calibration: randomSequences(4, 64, 256, 23) } as const;
  const absmax = run(w4), gptq = run({ ...w4, method: 'gptq' }), awq = run({ ...w4, method: 'awq' });
  const msg = JSON.stringify({ absmax, gptq, awq });
  assert.ok(gptq.kl <= absmax.kl, msg);
  assert.ok(awq.kl < absmax.kl, msg);
});

test("kernel 'qgemm': linears run as quant_linear on the native int8 kernel (activations per 32 values), smoothing still recovers", { skip: !isNativeAvailable() && 'native kernels not built' }, () => {
  const m = outlierModel({ numLayers: 1 });
  const run = measure(m);
  const naive = run({ ...w8a8, kernel: 'qgemm' }), sq = run({ ...w8a8, kernel: 'qgemm', smoothing: 'smoothquant' });
  assert.ok(sq.kl < naive.kl / 20 && sq.top1 > 0.97, JSON.stringify({ naive, sq }));
  // the rewritten graph: 7 quant_linear (q, k, v, o, gate, up, down), no fake_quant, LM head stays linear
  const q = quantize(m, { ...w8a8, kernel: 'qgemm', smoothing: 'smoothquant' });
  const r = traceStep(m, prefillArgs(m, [1, 2, 3], { allLogits: false }));
  const g = applyQuantPlan(r.graph, q.plan, (n) => ({ dtype: q.params.get(n)!.dtype, shape: [...q.params.get(n)!.shape] }));
  const count = (op: string): number => g.nodes.filter((n) => n.op === op).length;
  assert.deepEqual([count('quant_linear'), count('fake_quant'), count('linear')], [7, 0, 1]);
  assert.throws(() => quantize(m, { ...w8a8, kernel: 'qgemm', activations: null }), /"kernel" 'qgemm' always quantizes activations/);
  assert.throws(() => quantize(m, { ...w8a8, kernel: 'qgemm', weights: 'fp8' }), /"kernel" 'qgemm' runs int8 \/ int4 weights/);
});
