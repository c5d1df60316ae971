// quantize()'s option lmHead: the LM head (the linear producing the logits) becomes a site like the
// others — found by the observer pass only when asked for, its smoothing folded exactly into the
// final norm, its weight on w8_linear with the real kernels (one more than the 7 per layer), the
// plan saved and loaded with it — and a head tied to the embedding is refused with the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, outlierModel, randomSequences, teacherForcedLogits, saveQuantized, loadQuantized, type QuantizeOptions } from '../../src/quant/index.js';
import { prefillArgs } from '../../src/quant/step.js';
import { traceStep } from '../../src/quant/calibrate.js';
import { findQuantSites } from '../../src/quant/graph-passes.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import { compiledQuantStep } from './plan-fixture.js';

const model = outlierModel({ numLayers: 1 });
const calibration = randomSequences(2, 32, 256, 51);
const seq = randomSequences(1, 48, 256, 52)[0];
const base: QuantizeOptions = { weights: 'int8', activations: 'int8', kvCache: null, smoothing: 'smoothquant', shift: false, method: 'absmax', calibration, maxSamples: 32 };
const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const headWeight = 'lmHead';

test('observer pass: the LM head is a site only when asked for, folding into the final norm', () => {
  const r = traceStep(model, prefillArgs(model, [1, 2, 3], { allLogits: false }));
  const weightsOf = (head: boolean) => findQuantSites(r.graph, { head }).linears.flatMap((s) => s.consumers.map((c) => c.weight));
  assert.ok(!weightsOf(false).includes(headWeight));
  assert.ok(weightsOf(true).includes(headWeight), weightsOf(true).join(' '));
  const site = findQuantSites(r.graph, { head: true }).linears.find((s) => s.consumers.some((c) => c.weight === headWeight))!;
  assert.deepEqual(site.fold, { kind: 'norm', param: 'norm.weight' });
});

test('lmHead with smoothing alone is exact in f32, and the head weight really moved', () => {
  const ref = teacherForcedLogits(model, seq);
  const q = quantize(model, { ...base, weights: null, activations: null, lmHead: true });
  assert.ok(maxDiff(ref, teacherForcedLogits(q, seq)) < 1e-4, `max |Δlogit| = ${maxDiff(ref, teacherForcedLogits(q, seq))}`);
  const before = model.lmHead.data as Float32Array, after = q.params.get(headWeight)!.data as Float32Array;
  assert.ok(maxDiff(before, after) > 1e-3, 'the smoothing factors were folded into the head weight');
  assert.equal(q.report.length, 5, 'four sites per layer and the head');
});

test('lmHead: quantized head logits stay near f32 and differ from the f32-head model', () => {
  const ref = teacherForcedLogits(model, seq);
  const plain = teacherForcedLogits(quantize(model, { ...base, kernel: 'simulated' }), seq);
  const head = teacherForcedLogits(quantize(model, { ...base, kernel: 'simulated', lmHead: true }), seq);
  assert.ok(maxDiff(plain, head) > 1e-4, 'the head was quantized');
  const vocab = model.config.vocabSize, rows = seq.length;
  const argmax = (x: Float32Array, r: number) => { let b = 0; for (let j = 1; j < vocab; j++) if (x[r * vocab + j] > x[r * vocab + b]) b = j; return b; };
  let same = 0;
  for (let r = 0; r < rows; r++) if (argmax(head, r) === argmax(ref, r)) same++;
  assert.ok(same / rows >= 0.9, `top-1 vs f32 ${same}/${rows}`);
});

test('lmHead on the real kernels: 8 w8_linear (7 + the head), compiled logits match the interpreted graph', { skip: planAddon ? false : 'native plan executor not built' }, () => {
  for (const activationScheme of ['per-token', 'per-group'] as const) {
    const q = quantize(model, { ...base, activationScheme, lmHead: true });
    assert.equal(q.options.kernel, 'w8a8');
    const { exe, logits } = compiledQuantStep(model, q, seq);
    const names = exe.planStats()!.kernelNames;
    assert.equal(names.filter((n) => n === 'w8_linear').length, 8, names.join(' '));
    const interpreted = teacherForcedLogits(q, seq);
    const scale = interpreted.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(maxDiff(logits, interpreted) / scale < 1e-3, `${activationScheme}: vs interpreted ${maxDiff(logits, interpreted) / scale}`);
  }
});

test('lmHead: the artifact keeps the quantized head', () => {
  const q = quantize(model, { ...base, kernel: 'simulated', lmHead: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ij-lmhead-'));
  try {
    saveQuantized(q, dir);
    const loaded = loadQuantized(dir, outlierModel({ numLayers: 1, seed: 9 }));
    assert.deepEqual(loaded.plan, q.plan);
    assert.equal(loaded.options.lmHead, true);
    assert.deepEqual(teacherForcedLogits(loaded, seq), teacherForcedLogits(q, seq));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('lmHead: a head tied to the embedding is refused with the reason; a bad value names the option', () => {
  const tied = outlierModel({ numLayers: 1, tied: true });
  assert.throws(() => quantize(tied, { ...base, lmHead: true }), /option "lmHead" is true but the LM head reads the token embedding's weight "embed" \(tied embeddings\)/);
  assert.doesNotThrow(() => quantize(tied, base));
  assert.throws(() => quantize(model, { ...base, lmHead: 'yes' } as never), /option "lmHead" is "yes"; expected one of true, false/);
});
