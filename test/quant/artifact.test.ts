// Quantized-model artifacts: saved (safetensors + JSON config, atomically) and loaded onto a decoder
// of the same architecture with different weights, without calibration, give bit-identical logits
// for int8 W8A8 + PSS + shift + INT8 KV, int4 GPTQ and FP8; E4M3 bits round-trip; a corrupt weights
// file or another architecture is refused with an error saying why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, outlierModel, randomSequences, teacherForcedLogits, saveQuantized, loadQuantized, type QuantizeOptions } from '../../src/quant/index.js';
import { encodeE4M3, decodeE4M3 } from '../../src/quant/packing.js';
import { roundE4M3 } from '../../src/quant/numerics.js';
import { isNativeAvailable } from '../../src/ops/dispatch.js';

const model = outlierModel({ numLayers: 1 });
const calibration = randomSequences(2, 32, 256, 31);
const seq = randomSequences(1, 40, 256, 32)[0];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-quant-'));
const base = { kvCache: null, smoothing: 'none', shift: false, method: 'absmax', calibration, maxSamples: 32, pieces: 2 } as const;

test('E4M3 bits: every finite code decodes to a value that encodes back to it', () => {
  for (let b = 0; b < 256; b++) {
    if ((b & 0x7f) === 0x7f) continue; // NaN in the "fn" variant
    const v = decodeE4M3(b);
    assert.ok(roundE4M3(v) === v, `byte ${b}: ${v} is not an E4M3 value`);
    if (b !== 0x80) assert.equal(encodeE4M3(v), b, `byte ${b} → ${v}`);
  }
});

test('save / load round trip gives identical logits, without calibration', () => {
  const cases: [string, QuantizeOptions][] = [
    ['w8a8-pss-shift-kv', { ...base, weights: 'int8', activations: 'int8', smoothing: 'pss', shift: true, kvCache: 'int8' }],
    ['w4-gptq', { ...base, weights: 'int4', activations: null, method: 'gptq', groupSize: 32, calibration: randomSequences(3, 64, 256, 33) }],
    ...(isNativeAvailable() ? [['w8a8-qgemm', { ...base, weights: 'int8', activations: 'int8', smoothing: 'smoothquant', shift: true, kernel: 'qgemm' }] as [string, QuantizeOptions]] : []),
    ...(isNativeAvailable() ? [['fp8-w8a8-kernel', { ...base, weights: 'fp8', activations: 'fp8', smoothing: 'smoothquant', kernel: 'w8a8' }] as [string, QuantizeOptions]] : []),
    ['fp8-per-tensor', { ...base, weights: 'fp8', activations: 'fp8', activationScheme: 'per-tensor', smoothing: 'smoothquant', kvCache: 'fp8' }],
    // activation scales per 32 values: the plan (actGroup) comes back, so the loaded graph quantizes alike
    ['w8a8-per-group', { ...base, weights: 'int8', activations: 'int8', activationScheme: 'per-group', smoothing: 'smoothquant', kernel: 'w8a8' }],
  ];
  // the loading decoder has other weights: everything must come from the file
  const other = outlierModel({ numLayers: 1, seed: 99 });
  for (const [name, o] of cases) {
    const q = quantize(model, o);
    const dir = path.join(tmp, name);
    saveQuantized(q, dir);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['model.safetensors', 'quant_config.json'], 'no temp files left behind');
    const loaded = loadQuantized(dir, other);
    assert.deepEqual(loaded.plan, q.plan);
    assert.equal(loaded.kvDtype, q.kvDtype, `${name}: the KV storage comes back with the options`);
    const a = teacherForcedLogits(q, seq), b = teacherForcedLogits(loaded, seq);
    assert.deepEqual(b, a, `${name}: logits differ after load`);
    // and they differ from the loading model's own f32 logits (the file really was used)
    assert.notDeepEqual(teacherForcedLogits(other, seq), b);
  }
});

test('a corrupt weights file, a missing config and another architecture are refused', () => {
  const q = quantize(model, { ...base, weights: 'int8', activations: 'int8' });
  const dir = path.join(tmp, 'corrupt');
  saveQuantized(q, dir);
  assert.throws(() => loadQuantized(dir, outlierModel({ numLayers: 2 })), /config.numLayers is 2 but the artifact was made for 1/);
  const f = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(f);
  bytes[bytes.length - 3] ^= 0xff;
  fs.writeFileSync(f, bytes);
  assert.throws(() => loadQuantized(dir, model), /SHA-256 .* do not match.*corrupt/);
  assert.throws(() => loadQuantized(path.join(tmp, 'nothing-here'), model), /no quant_config.json; save the model with saveQuantized/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
