// A quantized decoder serves through the StepEngine (eager steps: padding tokens, several
// sequences per step, the paged KV cache): greedy generation matches the same decoder stepped by
// hand one token at a time, and W8A8 + smoothing keeps most greedy tokens of the f32 model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StepEngine } from '../../src/llm/step-engine.js';
import { quantize, outlierModel, randomSequences } from '../../src/quant/index.js';
import { prefillArgs } from '../../src/quant/step.js';
import { trace } from '../../src/trace/index.js';

test('QuantizedDecoder in the StepEngine: greedy tokens, two sequences batched', async () => {
  const model = outlierModel({ numLayers: 1 });
  const calibration = randomSequences(2, 32, 256, 41);
  const q = quantize(model, { weights: 'int8', activations: 'int8', kvCache: 'int8', smoothing: 'smoothquant', shift: false, method: 'absmax', calibration, maxSamples: 32 });
  const [p1, p2] = randomSequences(2, 7, 256, 42);
  const engine = new StepEngine(q, { compile: false, maxContext: 64, blockSize: 8, prefixCaching: false });
  const [a, b] = await Promise.all([engine.generate(p1, { maxTokens: 6, temperature: 0 }), engine.generate(p2, { maxTokens: 6, temperature: 0 })]);
  assert.equal(a.tokens.length, 6);
  assert.equal(b.tokens.length, 6);
  // alone, one sequence at a time, the same tokens (batching and padding do not leak across sequences)
  const solo = new StepEngine(q, { compile: false, maxContext: 64, blockSize: 8, prefixCaching: false });
  assert.deepEqual((await solo.generate(p1, { maxTokens: 6, temperature: 0 })).tokens, a.tokens);
  const f32 = new StepEngine(model, { compile: false, maxContext: 64, blockSize: 8, prefixCaching: false });
  const ref = (await f32.generate(p1, { maxTokens: 6, temperature: 0 })).tokens;
  assert.ok(ref.filter((t, i) => t === a.tokens[i]).length >= 4, `f32 ${ref} vs quantized ${a.tokens}`);
});

test('compiled (the StepEngine default): same greedy tokens as eager, weights stay named parameters', async () => {
  const model = outlierModel({ numLayers: 1 });
  const q = quantize(model, { weights: 'int8', activations: 'int8', kvCache: 'int8', smoothing: 'smoothquant', shift: true, method: 'absmax', calibration: randomSequences(2, 32, 256, 43), maxSamples: 32 });
  const prompt = randomSequences(1, 5, 256, 44)[0];
  const opts = { maxContext: 64, blockSize: 8, prefixCaching: false } as const;
  const compiled = await new StepEngine(q, opts).generate(prompt, { maxTokens: 4, temperature: 0 });
  const eager = await new StepEngine(q, { ...opts, compile: false }).generate(prompt, { maxTokens: 4, temperature: 0 });
  assert.deepEqual(compiled.tokens, eager.tokens);
  // tracing the quantized decoder sees its weights as parameters, not literals baked into the graph
  const a = prefillArgs(q, [1, 2, 3], { allLogits: false });
  const r = trace((s: unknown, k: unknown, v: unknown) => q.forward(s as never, k as never, v as never), [a.step, a.kPools, a.vPools], { module: q });
  const big = r.graph.constants.filter((c) => c.kind === 'literal' && (c.data?.length ?? 0) > 64);
  assert.deepEqual(big.map((c) => c.name), []);
  // the quantized linears: w8_linear on the real kernels (activations quantized inside), fake_quant when simulated
  assert.ok(r.graph.nodes.some((n) => n.op === (q.options.kernel === 'simulated' ? 'fake_quant' : 'w8_linear')));
});

test("kvCache 'int8' on the real kernels runs on the engine's int8 page pools (no fake_quant on the cache writes); simulated keeps per-head scales", async () => {
  const model = outlierModel({ numLayers: 1 });
  const base = { weights: 'int8', activations: 'int8', smoothing: 'smoothquant', shift: false, method: 'absmax', calibration: randomSequences(2, 32, 256, 45), maxSamples: 32 } as const;
  const pools = quantize(model, { ...base, kvCache: 'int8', kernel: 'w8a8' });
  const simulated = quantize(model, { ...base, kvCache: 'int8', kernel: 'simulated' });
  assert.equal(pools.kvDtype, 'int8');
  assert.equal(pools.plan.kv, null);
  assert.equal(simulated.kvDtype, undefined);
  assert.equal(simulated.plan.kv?.format, 'int8');
  const opts = { maxContext: 64, blockSize: 8, prefixCaching: false } as const;
  const engine = new StepEngine(pools, opts);
  assert.equal(engine.runner.kPools[0].dtype, 'i8', 'the decoder\'s kvDtype is the engine\'s default');
  assert.equal(new StepEngine(pools, { ...opts, kvDtype: 'f32' }).runner.kPools[0].dtype, 'f32', 'an explicit kvDtype wins');
  const prompt = randomSequences(1, 6, 256, 46)[0];
  const compiled = await engine.generate(prompt, { maxTokens: 4, temperature: 0 });
  const eager = await new StepEngine(pools, { ...opts, compile: false }).generate(prompt, { maxTokens: 4, temperature: 0 });
  assert.deepEqual(compiled.tokens, eager.tokens);
  // the int8 pages really hold the cache: the logits differ from the same decoder on f32 pages
  const a = prefillArgs(pools, prompt, { allLogits: false });
  assert.equal(a.kPools[0].dtype, 'i8');
  const int8Logits = pools.forward(a.step, a.kPools, a.vPools).toFlatArray();
  const f32Pools = quantize(model, { ...base, kvCache: null, kernel: 'w8a8' });
  const b = prefillArgs(f32Pools, prompt, { allLogits: false });
  assert.notDeepEqual(int8Logits, f32Pools.forward(b.step, b.kPools, b.vPools).toFlatArray());
});

test("kvCache 'int8' alone (no linear quantized) runs on the int8 page pools; kernel 'simulated' asks for per-head scales", async () => {
  const model = outlierModel({ numLayers: 1 });
  const base = { weights: null, activations: null, smoothing: 'none', shift: false, method: 'absmax', calibration: randomSequences(2, 32, 256, 47), maxSamples: 32 } as const;
  const pools = quantize(model, { ...base, kvCache: 'int8' });
  assert.equal(pools.options.kernel, undefined, 'no linear to run: no kernel chosen');
  assert.equal(pools.kvDtype, 'int8');
  assert.equal(pools.plan.kv, null, 'no fake_quant on the cache writes');
  const simulated = quantize(model, { ...base, kvCache: 'int8', kernel: 'simulated' });
  assert.equal(simulated.kvDtype, undefined);
  assert.equal(simulated.plan.kv?.format, 'int8');
  const prompt = randomSequences(1, 6, 256, 48)[0];
  const a = prefillArgs(pools, prompt, { allLogits: false });
  assert.equal(a.kPools[0].dtype, 'i8');
  // the int8 pages change the logits a little: the cache really is int8, and nothing else moved
  const int8Logits = Float32Array.from(pools.forward(a.step, a.kPools, a.vPools).toFlatArray());
  const b = prefillArgs(model, prompt, { allLogits: false });
  const f32Logits = Float32Array.from(model.forward(b.step, b.kPools, b.vPools).toFlatArray());
  const d = int8Logits.reduce((m, v, i) => Math.max(m, Math.abs(v - f32Logits[i])), 0);
  assert.ok(d > 0 && d < 0.1, `max |Δlogit| ${d}`);
  const engine = new StepEngine(pools, { maxContext: 64, blockSize: 8, prefixCaching: false });
  assert.equal(engine.runner.kPools[0].dtype, 'i8');
});
