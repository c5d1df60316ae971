// The orderings post-training quantization must show on a decoder with outlier channels, at tiny
// sizes (1 layer, 128 evaluation tokens): naive W8A8 degrades the model and does so because of the
// outliers (the same model without them quantizes fine); SmoothQuant and PSS recover it by a wide
// margin; PSS is not worse than SmoothQuant by more than noise; GPTQ's KL is at most absmax's;
// AWQ beats absmax; an INT8 KV cache adds little; the qgemm route runs the native int8 kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantize, outlierModel, randomSequences, agreement, teacherForcedLogits, type QuantizeOptions, type Agreement } from '../../src/quant/index.js';
import { traceStep } from '../../src/quant/calibrate.js';
import { prefillArgs } from '../../src/quant/step.js';
import { applyQuantPlan } from '../../src/quant/graph-passes.js';
import { isNativeAvailable } from '../../src/ops/dispatch.js';

const calibration = randomSequences(3, 32, 256, 21);
const evalSeqs = randomSequences(2, 64, 256, 22);
const none = { weights: null, activations: null, kvCache: null, smoothing: 'none', shift: false, method: 'absmax', calibration, maxSamples: 64 } as const;
const w8a8 = { ...none, weights: 'int8', activations: 'int8' } as const;

function measure(model: ReturnType<typeof outlierModel>): (o: QuantizeOptions) => Agreement {
  const ref = evalSeqs.map((s) => teacherForcedLogits(model, s));
  return (o) => agreement(ref, quantize(model, o), evalSeqs);
}

test('outlier model: naive W8A8 degrades it, smoothing recovers it, INT8 KV adds little', () => {
  const run = measure(outlierModel({ numLayers: 1 }));
  const naive = run(w8a8), perTensor = run({ ...w8a8, activationScheme: 'per-tensor' });
  const sq = run({ ...w8a8, smoothing: 'smoothquant' }), pss = run({ ...w8a8, smoothing: 'pss', pieces: 3 });
  const kv = run({ ...w8a8, smoothing: 'smoothquant', kvCache: 'int8' });
  const msg = JSON.stringify({ naive, perTensor, sq, pss, kv });
  assert.ok(naive.kl > 0.02 && perTensor.kl > naive.kl, msg);
  assert.ok(sq.kl < naive.kl / 20 && sq.top1 >= naive.top1 + 0.1, msg);
  // the floors for PSS: KL <= 0.01 and no worse than SmoothQuant (KL and top-1). PSS picks
  // per site between its factors and SmoothQuant's by calibration KL (pss-select.ts), so this holds
  // by construction on the calibration tokens; these are evaluation tokens. (Top-1 >= 99% is not
  // asserted: on 128 tokens one flip is 0.8%; bench/quant-accuracy.ts reports it over 1024.)
  assert.ok(pss.kl <= 0.01 && pss.kl < naive.kl / 20 && pss.kl <= sq.kl && pss.top1 >= sq.top1, msg);
  assert.ok(kv.kl - sq.kl < 0.005, msg);
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
