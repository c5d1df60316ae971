// quantize() on a small in-memory decoder with outlier channels: option errors name the option;
// the observer pass finds the four sites of each layer and where their factors fold; smoothing and
// the shift alone are exact in f32 (logits move < 1e-4); the simulated W8A8 / W4 / KV paths run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantize, outlierModel, randomSequences, teacherForcedLogits, type QuantizeOptions } from '../../src/quant/index.js';
import { prefillArgs } from '../../src/quant/step.js';
import { traceStep, flatInputs } from '../../src/quant/calibrate.js';
import { findQuantSites, exposeObservedValues } from '../../src/quant/graph-passes.js';
import { interpret } from '../../src/backends/reference/interpret.js';
import * as F from '../../src/nn/functional.js';

const model = outlierModel({ numLayers: 1 });
const calibration = randomSequences(2, 32, 256, 3);
const base: QuantizeOptions = { weights: 'int8', activations: 'int8', kvCache: null, smoothing: 'none', shift: false, method: 'absmax', calibration };
const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

test('quantize: unknown and invalid options are errors naming the option', () => {
  assert.throws(() => quantize(model, { ...base, smoothng: 'pss' } as never), /unknown option "smoothng".*did you mean "smoothing"/);
  assert.throws(() => quantize(model, { ...base, weights: 'int3' } as never), /option "weights" is "int3"; expected one of "int8", "int4", "fp8", null/);
  assert.throws(() => quantize(model, { ...base, kvCache: 'int4' } as never), /option "kvCache"/);
  assert.throws(() => quantize(model, { ...base, shift: 'yes' } as never), /option "shift"/);
  assert.throws(() => quantize(model, { ...base, method: 'awq', smoothing: 'pss' }), /"method" 'awq'.*"smoothing"/);
  assert.throws(() => quantize(model, { ...base, method: 'gptq', weights: null }), /"method" is "gptq" but "weights" is null/);
  assert.throws(() => quantize(model, { ...base, alpha: 1.5 }), /option "alpha" must be a number in \[0, 1\]/);
  assert.throws(() => quantize(model, { ...base, weights: 'int4', groupSize: 48 }), /option "groupSize" must be 32, 64 or 128/);
  assert.throws(() => quantize(model, { ...base, calibration: [] }), /option "calibration" must be a non-empty array/);
  assert.throws(() => quantize(model, { ...base, calibration: [[1, 2, 9999]] }), /token 2 of a sequence is 9999/);
  assert.throws(() => quantize(model, { ...base, weights: 'int4', activations: null, method: 'gptq' }), /method 'gptq' needs at least as many calibration tokens as the widest linear input \(128 channels\), got 64/);
  const { calibration: _, ...missing } = base;
  assert.throws(() => quantize(model, missing as never), /option "calibration" is required/);
});

test('onProgress reports each phase in order, counting up to its total, and is not kept with the model', () => {
  assert.throws(() => quantize(model, { ...base, onProgress: 5 } as never), /option "onProgress" must be a function/);
  for (const smoothing of ['none', 'pss'] as const) {
    const events: { phase: string; done: number; total: number }[] = [];
    const q = quantize(model, { ...base, smoothing, pieces: 2, maxSamples: 32, onProgress: (p) => events.push({ ...p }) });
    const sites = q.report.length, weights = q.weights.size;
    assert.equal(sites, 4, 'q/k/v, o, gate/up and down of the one layer');
    const phases = [...new Set(events.map((e) => e.phase))];
    assert.deepEqual(phases, smoothing === 'pss' ? ['calibrate', 'sites', 'weights', 'select'] : ['calibrate', 'sites', 'weights'], `${smoothing}: phases in order, each once`);
    const counts = (phase: string): string => events.filter((e) => e.phase === phase).map((e) => `${e.done}/${e.total}`).join(' ');
    const upTo = (from: number, n: number): string => Array.from({ length: n - from + 1 }, (_, i) => `${from + i}/${n}`).join(' ');
    assert.equal(counts('calibrate'), upTo(1, calibration.length));
    assert.equal(counts('sites'), upTo(1, sites), `${smoothing}: one search per site (PSS's trial builds search nothing and report nothing)`);
    assert.equal(counts('weights'), upTo(1, weights));
    if (smoothing === 'pss') assert.equal(counts('select'), upTo(0, sites));
    assert.ok(!('onProgress' in q.options), 'the callback is not part of the options saved with the model');
  }
});

test('observer pass: per layer q/k/v fold into the attention norm, o has no producer, gate/up into the ffn norm, down into up', () => {
  const r = traceStep(model, prefillArgs(model, [1, 2, 3], { allLogits: false }));
  const sites = findQuantSites(r.graph);
  const summary = sites.linears.map((s) => `${s.consumers.map((c) => c.weight.split('.').pop()).join('+')}:${s.fold.kind}${'param' in s.fold ? `=${s.fold.param}` : 'weight' in s.fold ? `=${s.fold.weight}` : ''}`);
  assert.deepEqual(summary, ['wq+wk+wv:norm=layers.0.attnNorm.weight', 'wo:none', 'gate+up:norm=layers.0.ffnNorm.weight', 'down:linear=layers.0.mlp.up']);
  assert.equal(sites.kv.length, 2);
});

test('smoothing (SmoothQuant, PSS) and the shift alone are exact in f32: logits move < 1e-4', () => {
  const seq = randomSequences(1, 24, 256, 11)[0];
  const ref = teacherForcedLogits(model, seq);
  for (const extra of [{ smoothing: 'smoothquant', shift: false }, { smoothing: 'pss', shift: false }, { smoothing: 'smoothquant', shift: true }] as const) {
    const q = quantize(model, { ...base, weights: null, activations: null, ...extra, pieces: 2, maxSamples: 32 });
    const d = maxDiff(ref, teacherForcedLogits(q, seq));
    assert.ok(d < 1e-4, `${JSON.stringify(extra)}: max |Δlogit| = ${d}`);
    // the factors really moved the weights (an identity rewrite would pass trivially)
    assert.ok(q.report[0].outlierRatio > 20, `outlier ratio ${q.report[0].outlierRatio}`);
    const norm = q.params.get('layers.0.attnNorm.weight')!.data as Float32Array;
    assert.ok(Math.max(...norm.map(Math.abs)) < 30, 'the outlier gain was folded out of the norm');
  }
});

test('simulated quantization runs for every weight / activation / KV format and changes the logits a little', () => {
  const seq = randomSequences(1, 24, 256, 12)[0];
  const ref = teacherForcedLogits(model, seq);
  const cases: Partial<QuantizeOptions>[] = [
    { weights: 'int8', activations: 'int8', smoothing: 'smoothquant' },
    { weights: 'fp8', activations: 'fp8', smoothing: 'smoothquant' },
    { weights: 'int4', activations: null, method: 'gptq', groupSize: 32, calibration: randomSequences(4, 64, 256, 14) },
    { weights: 'int4', activations: null, method: 'awq', groupSize: 32 },
    { weights: null, activations: null, kvCache: 'int8' },
    { weights: null, activations: null, kvCache: 'fp8' },
  ];
  for (const c of cases) {
    const q = quantize(model, { ...base, ...c, maxSamples: 32 });
    const d = maxDiff(ref, teacherForcedLogits(q, seq));
    assert.ok(d > 1e-6 && d < 2, `${JSON.stringify(c)}: max |Δlogit| = ${d}`);
  }
});

test('observer pass keeps the step output and exposes the activations the linears read', () => {
  const args = prefillArgs(model, randomSequences(1, 9, 256, 13)[0], { allLogits: true });
  const eager = model.forward(args.step, args.kPools, args.vPools).toFlatArray();
  const fresh = prefillArgs(model, Array.from(args.step.ids.toFlatArray()), { allLogits: true });
  const r = traceStep(model, fresh);
  const { graph, sites } = exposeObservedValues(r.graph);
  assert.equal(graph.outputs.length, r.graph.outputs.length + sites.linears.length + sites.kv.length);
  const outs = interpret(graph, flatInputs(fresh), r.constants);
  assert.ok(maxDiff(Float32Array.from(outs[0].toFlatArray()), Float32Array.from(eager)) < 1e-5);
  // the first site's activation is the attention RMSNorm of the embeddings
  const x = F.embedding(fresh.step.ids, model.embed);
  const normed = model.layers.at(0).attnNorm.forward(x).toFlatArray();
  assert.ok(maxDiff(Float32Array.from(outs[1].toFlatArray()), Float32Array.from(normed)) < 1e-6);
});
