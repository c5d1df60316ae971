// quantize() on a PagedLlama loaded from a real GGUF file (written by our own writer, tied
// embeddings, GQA): W8A8 + SmoothQuant + INT8 KV stays close to f32, int4 GPTQ beats absmax given enough calibration tokens, the LM head
// (tied to the embeddings) is left in f32, and the artifact reloads onto a fresh load of the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PagedLlama } from '../../src/llm/models/llama.js';
import { quantize, randomSequences, agreement, teacherForcedLogits, saveQuantized, loadQuantized } from '../../src/quant/index.js';
import { writeTinyLlamaGguf } from '../llm/llama-fixtures.js';

test('GGUF PagedLlama: W8A8 + SmoothQuant + INT8 KV, int4 GPTQ, artifact reload', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-quant-gguf-'));
  try {
    const file = path.join(dir, 'tiny.gguf');
    const { vocab } = writeTinyLlamaGguf(file, { dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, tied: true, seed: 5 });
    const model = PagedLlama.load(file, { maxPositions: 128 });
    const calibration = randomSequences(2, 32, vocab, 51);
    const evalSeqs = randomSequences(2, 48, vocab, 52);
    const ref = evalSeqs.map((s) => teacherForcedLogits(model, s));
    const w8 = quantize(model, { weights: 'int8', activations: 'int8', kvCache: 'int8', smoothing: 'smoothquant', shift: false, method: 'absmax', calibration, maxSamples: 32 });
    const a = agreement(ref, w8, evalSeqs);
    assert.ok(a.top1 > 0.9 && a.kl < 0.01, JSON.stringify(a));
    assert.ok(!w8.weights.has('embed'), 'the tied embedding / LM head stays f32');
    assert.equal(w8.weights.size, 2 * 7);
    // GPTQ needs more calibration tokens than input channels: with 64 tokens for K = 96 its Hessian
    // is rank-deficient and it overfits (KL above absmax's); with 512 it beats absmax
    const long = randomSequences(8, 64, vocab, 53);
    const w4 = (method: 'absmax' | 'gptq') => agreement(ref, quantize(model, { weights: 'int4', activations: null, kvCache: null, smoothing: 'none', shift: false, method, calibration: long, groupSize: 32 }), evalSeqs);
    const absmax = w4('absmax'), gptq = w4('gptq');
    assert.ok(gptq.kl > 0 && gptq.kl < absmax.kl, JSON.stringify({ absmax, gptq }));
    saveQuantized(w8, path.join(dir, 'w8'));
    const loaded = loadQuantized(path.join(dir, 'w8'), PagedLlama.load(file, { maxPositions: 128 }));
    assert.deepEqual(teacherForcedLogits(loaded, evalSeqs[0]), teacherForcedLogits(w8, evalSeqs[0]));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
