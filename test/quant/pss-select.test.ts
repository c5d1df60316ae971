// PSS's model-level selection is built and scored incrementally (pss-select.ts): trial builds take
// untouched weights from a memo and the calibration runs reuse every value before the changed
// site. It must choose exactly what full rebuilds and full runs choose, bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantize, outlierModel, randomSequences, teacherForcedLogits, type QuantizeOptions } from '../../src/quant/index.js';
import type { QuantizedDecoder } from '../../src/quant/decoder.js';

const calibration = randomSequences(2, 24, 256, 31);
const evaluation = randomSequences(1, 40, 256, 32);
const base = { weights: 'int8', activations: 'int8', kvCache: null, smoothing: 'pss', pieces: 3, shift: false, method: 'absmax', calibration, maxSamples: 48 } as const;

const bytes = (d: ArrayBufferView): Buffer => Buffer.from(d.buffer, d.byteOffset, d.byteLength);

function assertSameModel(a: QuantizedDecoder, b: QuantizedDecoder, what: string): void {
  assert.deepEqual(a.report, b.report, `${what}: the same choice and factors at every site`);
  assert.deepEqual(a.plan, b.plan, `${what}: the same plan`);
  assert.deepEqual([...a.params.keys()].sort(), [...b.params.keys()].sort(), `${what}: the same parameters`);
  for (const [name, t] of a.params) {
    const u = b.params.get(name)!;
    assert.deepEqual([t.dtype, t.shape], [u.dtype, u.shape], `${what}: ${name}`);
    assert.ok(bytes(t.data).equals(bytes(u.data)), `${what}: parameter ${name} bit for bit`);
  }
  for (const seq of evaluation) {
    assert.ok(bytes(teacherForcedLogits(a, seq)).equals(bytes(teacherForcedLogits(b, seq))), `${what}: logits bit for bit`);
  }
}

for (const [name, options] of [
  ['W8A8 PSS', base],
  ['W8A8 PSS + shift, simulated kernel', { ...base, shift: true, kernel: 'simulated' }],
  ['int4 weights PSS, 3 layers', { ...base, weights: 'int4', activations: null, groupSize: 32 }],
] as [string, QuantizeOptions][]) {
  test(`PSS selection, incremental vs full rebuilds: ${name} — the same model bit for bit`, () => {
    const model = outlierModel({ numLayers: name.includes('3 layers') ? 3 : 2 });
    const fast = quantize(model, options);
    const full = quantize(model, options, { incremental: false });
    assertSameModel(fast, full, name);
    // the selection made choices that differ between sites, or the comparison would be weak
    const sources = new Set(fast.report.map((r) => r.alphas.join('/')));
    assert.ok(sources.size > 1, `${name}: sites chose different factors (${[...sources].join(' | ')})`);
  });
}
