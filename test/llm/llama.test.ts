// The Llama example model and the compiled paged step (src/llm/models/llama.ts through inferenceJit)
// on small seeded models: the compiled logits of every position (prefill and paged decode steps)
// against the eager full-recompute model run on the float64 reference kernels,
// across weight storages, GQA, tied heads, Llama-3 rope factors, f16 KV pages, and the Hugging
// Face (safetensors, rotate-half) form of the same model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromArray, type Tensor } from '../../src/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { readGguf } from '../../src/io/gguf/index.js';
import { StepEngine, PagedLlama, EngineCapacityError, loadLlama, dequantizeMatrix, llamaConfigFromHuggingFace, ropeInverseFrequencies } from '../../src/llm/index.js';
import { CompiledSequence, compiledModel } from './compiled-sequence.js';
import { setQuantPacking } from '../../src/backends/cpu/plan/rules/quant.js';
import { quantSpecOf } from '../../src/tensor/quantized.js';
import { LlamaForCausalLM } from '../../examples/llm/llama.js';
import { writeTinyLlamaGguf, unpermuteRows, writeHfFromGguf, type TinyLlamaSpec } from './llama-fixtures.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-llama-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const IDS = [1, 17, 93, 240, 5, 61, 8, 150, 33, 2, 77];

function referenceLogits(model: LlamaForCausalLM, ids: number[]): Float32Array {
  return withEagerBackend('reference', () => model.forward(fromArray(ids, [1, ids.length], 'i64'))).data as Float32Array;
}

/** Compiled logits for every position: a 6-token prefill (all logits) then one decode step per token. */
function nativeLogits(seq: CompiledSequence, ids: number[]): Float32Array {
  const V = seq.vocabSize, out = new Float32Array(ids.length * V);
  out.set(seq.forward(ids.slice(0, 6), true));
  for (let t = 6; t < ids.length; t++) out.set(seq.forward([ids[t]]), t * V);
  return out;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; };

function checkModel(spec: TinyLlamaSpec, tol: number, engineOptions = {}) {
  const file = path.join(dir, `m-${JSON.stringify(spec).replace(/[^a-z0-9]/gi, '')}.gguf`);
  writeTinyLlamaGguf(file, spec);
  const model = LlamaForCausalLM.load(file);
  const ref = referenceLogits(model, IDS);
  const got = nativeLogits(compiledModel(model.config, model.weights, { blockSize: 4, ...engineOptions }), IDS);
  const d = maxAbsDiff(ref, got);
  assert.ok(d < tol, `${JSON.stringify(spec)}: max |compiled - reference| = ${d} (tolerance ${tol})`);
  return { model, ref, got, file };
}

// fp32 weights: both paths compute the same fp32 products, the reference in float64; the native sums
// in fp32 with a different order, ~1e-6 relative over K <= 128 terms and 2 layers: 1e-4 absolute on
// logits of magnitude ~5.
test('f32 model with grouped-query attention: compiled prefill + paged decode = reference', () => {
  checkModel({ type: 'F32' }, 1e-4);
});

test('f16 and bf16 file weights (computed as f32 on the compiled path)', () => {
  checkModel({ type: 'F16', seed: 2 }, 1e-4);
  checkModel({ type: 'BF16', seed: 3 }, 1e-4);
});

test('tied head, multi-query attention (1 kv head), more layers, rope_freqs factors', () => {
  checkModel({ tied: true, kvHeads: 1, layers: 3, seed: 4 }, 1e-4);
  checkModel({ ropeFreqs: [1, 1, 2, 4, 8, 8, 8, 8], seed: 5, ropeBase: 500000 }, 1e-4);
});

// f16 KV pages round K and V to 11 significant bits (relative 2^-11 ≈ 5e-4): logits move by ~1e-3.
test('f16 KV cache stays close to the reference', () => {
  checkModel({ type: 'F32', seed: 6 }, 2e-2, { kvDtype: 'f16' });
});

// Q8_0/Q4_0 weights: the reference runs the dequantized weights on fp32 activations; the compiled
// path (qgemm on the stored blocks) also quantizes activations to int8 per 32 values (as llama.cpp). That adds ~0.4% relative
// noise per matmul input; over 2 layers logits of magnitude ~5 move by < 0.5.
test('GGUF Q8_0 and Q4_0 blocks run in place and track the dequantized reference', () => {
  checkModel({ type: 'Q8_0', seed: 7 }, 0.5);
  checkModel({ type: 'Q4_0', seed: 8 }, 0.5);
  checkModel({ type: 'F32', embedType: 'Q4_0', seed: 9 }, 1e-4); // quantized embedding rows are dequantized exactly
});

// Longer prompts take the other prefill paths: from 16 rows on, dense weights run the packed fp32
// GEMM and quantized ones the 8-row tiles of the packed kernels; attention over T > 1 queries runs
// the tiled GEMM kernel, here also with start > 0 (a second prompt chunk over cached keys).
// 24-token prefill, a 10-token chunk, then decode steps; tolerances as for the short runs above.
const LONG_IDS = Array.from({ length: 38 }, (_, i) => 3 + ((i * 53 + 7) % 280));
function chunkedLogits(seq: CompiledSequence, ids: number[]): Float32Array {
  const V = seq.vocabSize, out = new Float32Array(ids.length * V);
  out.set(seq.forward(ids.slice(0, 24), true));
  out.set(seq.forward(ids.slice(24, 34), true), 24 * V);
  for (let t = 34; t < ids.length; t++) out.set(seq.forward([ids[t]]), t * V);
  return out;
}

test('long prompts: GEMM prefill, tiled attention over cached keys (chunked prefill) = reference', () => {
  const cases: [TinyLlamaSpec, number, object][] = [
    [{ type: 'F32', seed: 11 }, 1e-4, {}],
    [{ type: 'F16', seed: 12, kvHeads: 1 }, 1e-4, {}],
    [{ type: 'F32', seed: 13, heads: 4, kvHeads: 4 }, 2e-2, { kvDtype: 'f16' }],
    [{ type: 'Q4_0', seed: 14 }, 0.5, {}],
    [{ type: 'Q8_0', seed: 15, ffn: 96 }, 0.5, {}],
  ];
  for (const [spec, tol, options] of cases) {
    const file = path.join(dir, `long-${JSON.stringify(spec).replace(/[^a-z0-9]/gi, '')}.gguf`);
    writeTinyLlamaGguf(file, spec);
    const model = LlamaForCausalLM.load(file);
    const ref = referenceLogits(model, LONG_IDS);
    const got = chunkedLogits(compiledModel(model.config, model.weights, { blockSize: 4, ...options }), LONG_IDS);
    const d = maxAbsDiff(ref, got);
    assert.ok(d < tol, `${JSON.stringify(spec)}: max |compiled - reference| = ${d} (tolerance ${tol})`);
  }
});

// Packing Q8_0/Q4_0 rows 16 at a time is a pure relayout; the packed and GGUF-layout kernels quantize
// activations the same way and differ only in fp32 summation order (~1e-6 relative).
test('packed (x16) and GGUF-layout quantized weights give the same logits, tied head included', () => {
  for (const spec of [{ type: 'Q4_0', seed: 16, tied: true, embedType: 'Q4_0' }, { type: 'Q8_0', seed: 17 }] as TinyLlamaSpec[]) {
    const file = path.join(dir, `pack-${spec.seed}.gguf`);
    writeTinyLlamaGguf(file, spec);
    const loaded = loadLlama(file);
    // the plan reads a 16-row interleaved copy ('always') or the GGUF blocks in place ('never')
    const logitsWith = (packing: 'always' | 'never'): Float32Array => {
      const prev = setQuantPacking(packing);
      try { return chunkedLogits(compiledModel(loaded.config, loaded.weights), LONG_IDS); } finally { setQuantPacking(prev); }
    };
    const head = new PagedLlama(loaded.config, loaded.weights, { maxPositions: 64 }).lmHead;
    assert.equal(quantSpecOf(head)?.format, spec.type!.toLowerCase(), 'the (tied) head runs on the file blocks');
    const d = maxAbsDiff(logitsWith('always'), logitsWith('never'));
    assert.ok(d < 1e-3, `${spec.type}: packed vs GGUF layout ${d}`);
  }
});

test('the Hugging Face form of the same model (rotate-half rotary, HF names) gives the same logits', () => {
  const file = path.join(dir, 'hf-src.gguf');
  writeTinyLlamaGguf(file, { type: 'F32', seed: 10 });
  const g = loadLlama(file);
  const c = g.config, hd = c.headDim;
  const t = (m: { rows: number; cols: number }, v: Float32Array): Tensor => fromArray(v, [m.rows, m.cols], 'f32');
  const tensors = new Map<string, Tensor>();
  tensors.set('model.embed_tokens.weight', t(g.weights.embed, dequantizeMatrix(g.weights.embed)));
  tensors.set('model.norm.weight', fromArray(g.weights.outNorm, [c.hiddenSize], 'f32'));
  tensors.set('lm_head.weight', t(g.weights.output, dequantizeMatrix(g.weights.output)));
  g.weights.layers.forEach((l, i) => {
    const p = `model.layers.${i}.`;
    tensors.set(`${p}input_layernorm.weight`, fromArray(l.attnNorm, [c.hiddenSize], 'f32'));
    tensors.set(`${p}post_attention_layernorm.weight`, fromArray(l.ffnNorm, [c.hiddenSize], 'f32'));
    tensors.set(`${p}self_attn.q_proj.weight`, t(l.wq, unpermuteRows(dequantizeMatrix(l.wq), c.numHeads, hd, c.hiddenSize)));
    tensors.set(`${p}self_attn.k_proj.weight`, t(l.wk, unpermuteRows(dequantizeMatrix(l.wk), c.numKvHeads, hd, c.hiddenSize)));
    tensors.set(`${p}self_attn.v_proj.weight`, t(l.wv, dequantizeMatrix(l.wv)));
    tensors.set(`${p}self_attn.o_proj.weight`, t(l.wo, dequantizeMatrix(l.wo)));
    tensors.set(`${p}mlp.gate_proj.weight`, t(l.gate, dequantizeMatrix(l.gate)));
    tensors.set(`${p}mlp.up_proj.weight`, t(l.up, dequantizeMatrix(l.up)));
    tensors.set(`${p}mlp.down_proj.weight`, t(l.down, dequantizeMatrix(l.down)));
  });
  const hfDir = path.join(dir, 'hf');
  writeHfFromGguf(hfDir, tensors, {
    model_type: 'llama', vocab_size: c.vocabSize, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads, num_key_value_heads: c.numKvHeads,
    rms_norm_eps: c.rmsNormEps, rope_theta: c.ropeTheta, max_position_embeddings: 512, tie_word_embeddings: false,
  });
  const hf = loadLlama(hfDir);
  assert.equal(hf.config.ropeInterleaved, false);
  const ggufLogits = nativeLogits(compiledModel(g.config, g.weights), IDS);
  const hfLogits = nativeLogits(compiledModel(hf.config, hf.weights), IDS);
  const hfRef = referenceLogits(new LlamaForCausalLM(hf.config, hf.weights), IDS);
  assert.ok(maxAbsDiff(ggufLogits, hfLogits) < 1e-4, `gguf vs hf compiled: ${maxAbsDiff(ggufLogits, hfLogits)}`);
  assert.ok(maxAbsDiff(hfRef, hfLogits) < 1e-4, `hf reference vs compiled: ${maxAbsDiff(hfRef, hfLogits)}`);
});

test('configs: GGUF metadata, HF config.json with Llama-3 rope scaling', () => {
  const file = path.join(dir, 'cfg.gguf');
  writeTinyLlamaGguf(file, { kvHeads: 1, tied: true });
  const c = loadLlama(file).config;
  assert.deepEqual([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.tieWordEmbeddings, c.ropeInterleaved],
    [64, 2, 4, 1, 16, 128, true, true]);
  assert.equal(readGguf(file).getNumber('llama.rope.dimension_count'), 16);
  const hf = llamaConfigFromHuggingFace({
    model_type: 'llama', vocab_size: 128256, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
    num_attention_heads: 32, num_key_value_heads: 8, rope_theta: 500000,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  });
  const inv = ropeInverseFrequencies(hf);
  // Pair 0 (wavelength 2π < 8192/4): unchanged. The last pair (wavelength ~ 2π·500000^(62/64) > 8192): divided by 32.
  assert.equal(inv[0], 1);
  const last = Math.pow(500000, -62 / 64);
  assert.ok(Math.abs(inv[31] - last / 32) < 1e-18);
  // A medium pair interpolates: wavelen between 2048 and 8192.
  const i = inv.findIndex((_, k) => { const w = (2 * Math.PI) / Math.pow(500000, (-2 * k) / 64); return w >= 2048 && w <= 8192; });
  const base = Math.pow(500000, (-2 * i) / 64), smooth = (8192 / ((2 * Math.PI) / base) - 1) / 3;
  assert.ok(Math.abs(inv[i] - ((1 - smooth) * base / 32 + smooth * base)) < 1e-15);
  assert.throws(() => llamaConfigFromHuggingFace({ model_type: 'gpt2' }), /model_type "gpt2" is not a Llama-family model/);
});

test('errors: out-of-vocabulary ids, a full KV pool', async () => {
  const file = path.join(dir, 'err.gguf');
  const { vocab } = writeTinyLlamaGguf(file, {});
  const engine = new StepEngine(PagedLlama.load(file, { maxPositions: 16 }), { maxContext: 16, blockSize: 4, numBlocks: 1 });
  assert.throws(() => engine.generate([1, vocab]), /prompt token 1 is \d+, outside the vocabulary \[0, \d+\)/);
  assert.equal(engine.freeBlocks, 1, 'a refused prompt takes no page');
  await assert.rejects(engine.generate([1, 2, 3, 4, 5, 6]), (e: unknown) => e instanceof EngineCapacityError && /the KV pool \(1 pages of 4\) cannot hold sequence \d+; raise numBlocks/.test((e as Error).message));
  assert.equal(engine.freeBlocks, 1, 'the failed sequence gave its page back');
});
