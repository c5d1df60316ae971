// The Llama decoder written as a paged serving step (src/llm/models/llama.ts) and the generic
// StepEngine over it: the JIT-compiled step equals the eager step (logits within 1e-4, pools equal
// within fp32 rounding), runs as a native plan (no interpreter), greedy tokens through the engine
// equal the independent eager full-recompute model (examples/llm/llama.ts), batching 4 different
// prompts (prefill chunks + decodes mixed in one step) gives each prompt's tokens alone, plans are
// lowered per bucket (not per token), cancellation frees the pages, prefix caching keeps tokens
// exact, and an HF checkpoint with rotate-half rope and Llama-3 rope scaling loads and agrees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromArray, inferenceJit, type Tensor } from '../../src/index.js';
import { StepEngine, loadLlama, dequantizeMatrix, type StepInputs } from '../../src/llm/index.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import { PagedLlama, loadPagedLlama } from '../../src/llm/models/index.js';
import { LlamaForCausalLM } from '../../examples/llm/llama.js';
import { writeTinyLlamaGguf, unpermuteRows, writeHfFromGguf } from './llama-fixtures.js';

const skip = planAddon ? false : 'native plan executor not built';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-step-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'tiny.gguf');
const { vocab } = writeTinyLlamaGguf(file, { type: 'F32', seed: 5, layers: 2, heads: 4, kvHeads: 2, dim: 64 });

const i32 = (v: number[], shape: number[]): Tensor => fromArray(new Int32Array(v), shape, 'i32');
const pools = (m: PagedLlama, NB: number, BS: number): Tensor[] => Array.from({ length: m.config.numLayers }, () => fromArray(new Float32Array(NB * m.config.numKvHeads * BS * m.config.headDim), [NB, m.config.numKvHeads, BS, m.config.headDim], 'f32'));

for (const slidingWindow of [0, 3]) test(`compiled step == eager step (prefill of two sequences with padding, then a batched decode; window ${slidingWindow})`, { skip }, () => {
  const model = PagedLlama.load(file, { maxPositions: 128, slidingWindow });
  const BS = 4, NB = 8, MB = 4;
  const eagerK = pools(model, NB, BS), eagerV = pools(model, NB, BS), jitK = pools(model, NB, BS), jitV = pools(model, NB, BS);
  const spec = [{ shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] }, { shape: ['S', MB] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] }];
  const compiled = inferenceJit(model, { device: 'cpu', fallback: 'error', cache: 'memory', inputSpec: [...spec, ...new Array(4).fill(null)] });
  // sequence 0: 5 prompt tokens in blocks 3, 5; sequence 1: 3 tokens in block 1; 8 padded tokens
  const prefill: StepInputs = {
    ids: i32([1, 7, 9, 20, 4, 2, 30, 11], [8]), positions: i32([0, 1, 2, 3, 4, 0, 1, 2], [8]),
    slots: i32([12, 13, 14, 15, 20, 4, 5, 6], [8]), blockTables: i32([3, 5, 0, 0, 1, 0, 0, 0], [2, MB]),
    seqLens: i32([5, 3], [2]), queryStart: i32([0, 5, 8], [3]), lastIndex: i32([4, 7], [2]),
  };
  const decode: StepInputs = {
    ids: i32([17, 23], [2]), positions: i32([5, 3], [2]), slots: i32([21, 7], [2]), blockTables: i32([3, 5, 0, 0, 1, 0, 0, 0], [2, MB]),
    seqLens: i32([6, 4], [2]), queryStart: i32([0, 1, 2], [3]), lastIndex: i32([0, 1], [2]),
  };
  for (const [what, step] of [['prefill', prefill], ['decode', decode]] as const) {
    const want = model.forward(step, eagerK, eagerV);
    const got = compiled(step, jitK, jitV) as Tensor;
    assert.deepEqual(got.shape, [2, vocab]);
    const g = got.data as Float32Array, w = want.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(g[i] - w[i]) / Math.max(1, Math.abs(w[i])));
    assert.ok(worst < 1e-4, `${what}: max relative |compiled − eager| = ${worst}`);
    for (let l = 0; l < 2; l++) {
      const a = jitK[l].data as Float32Array, b = eagerK[l].data as Float32Array;
      let d = 0;
      for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
      assert.ok(d < 1e-4, `${what}: layer ${l} K pool differs by ${d}`);
    }
  }
  const exe = compiled.compiledEntries()[0].executable;
  assert.match(exe.describe!(), /^cpu plan/, exe.describe!());
  assert.equal(compiled.compiledEntries().length, 1, 'one graph serves every (T, S) bucket');
});

/** Greedy tokens from the eager full-recompute model (examples/llm/llama.ts, no paging at all). */
function eagerGreedy(model: LlamaForCausalLM, prompt: number[], count: number): number[] {
  const cache = model.newCache();
  const out: number[] = [];
  let logits = model.forward(fromArray(prompt, [1, prompt.length], 'i64'), cache);
  for (let i = 0; i < count; i++) {
    const V = logits.shape[2], d = logits.data as Float32Array, base = (logits.shape[1] - 1) * V;
    let best = 0;
    for (let j = 1; j < V; j++) if (d[base + j] > d[base + best]) best = j;
    out.push(best);
    if (i + 1 < count) logits = model.forward(fromArray([best], [1, 1], 'i64'), cache);
  }
  return out;
}

const prompts = [[1, 5, 9, 13, 2, 40, 41], [1, 77], [1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 60], [1, 100, 90, 80, 70]];

test('engine greedy tokens == eager full-recompute model; 4 prompts batched == each alone; buckets, not per-token plans', { skip }, async () => {
  const model = PagedLlama.load(file, { maxPositions: 128 });
  const oracle = LlamaForCausalLM.load(file);
  const N = 12;
  const alone: number[][] = [];
  for (const p of prompts) {
    const engine = new StepEngine(model, { maxContext: 64, blockSize: 4, maxStepTokens: 8 });
    const r = await engine.generate(p, { maxTokens: N });
    assert.equal(r.finishReason, 'length');
    alone.push(r.tokens);
    assert.equal(engine.freeBlocks, engine.numBlocks, 'pages returned');
  }
  prompts.forEach((p, i) => assert.deepEqual(alone[i], eagerGreedy(oracle, p, N), `prompt ${i}: engine vs eager model`));

  const engine = new StepEngine(model, { maxContext: 64, blockSize: 4, maxStepTokens: 8 });
  const streamed: number[] = [];
  const batched = await Promise.all(prompts.map((p, i) => engine.generate(p, { maxTokens: N }, i === 2 ? (t) => streamed.push(t) : undefined)));
  batched.forEach((r, i) => assert.deepEqual(r.tokens, alone[i], `prompt ${i}: batched vs alone`));
  assert.deepEqual(streamed, alone[2], 'streamed tokens');
  assert.match(engine.describe(), /^cpu plan/, engine.describe());
  // 19-token prompt in chunks of ≤ 8 tokens mixed with decodes: a handful of buckets for 4 × 12 tokens
  assert.ok(engine.stats.buckets.size <= 8, [...engine.stats.buckets].join(' '));
  assert.equal(engine.stats.asyncSteps, engine.stats.steps - 1, 'every step after the compiling one ran off the JS thread');
  assert.ok(engine.stats.steps < 4 * N, `${engine.stats.steps} steps for ${4 * N} tokens: sequences shared steps`);
});

test('engine: abort between steps, stop tokens, stream, eager mode agrees', { skip }, async () => {
  const model = PagedLlama.load(file, { maxPositions: 128 });
  const engine = new StepEngine(model, { maxContext: 64, blockSize: 4 });
  const ac = new AbortController();
  const seen: number[] = [];
  const r = await engine.generate(prompts[0], { maxTokens: 50, signal: ac.signal }, (t) => { seen.push(t); if (seen.length === 3) ac.abort(); });
  assert.equal(r.finishReason, 'abort');
  assert.equal(r.tokens.length, 3);
  assert.equal(engine.freeBlocks, engine.numBlocks);
  const full = await engine.generate(prompts[1], { maxTokens: 6 });
  const stopped = await engine.generate(prompts[1], { maxTokens: 6, stopTokens: [full.tokens[2]] });
  assert.equal(stopped.finishReason, 'stop-token');
  assert.deepEqual(stopped.tokens, full.tokens.slice(0, full.tokens.indexOf(full.tokens[2]) + 1));
  const out: number[] = [];
  for await (const t of engine.stream(prompts[3], { maxTokens: 5 })) out.push(t);
  const eager = new StepEngine(model, { maxContext: 64, blockSize: 4, compile: false });
  assert.deepEqual(out, (await eager.generate(prompts[3], { maxTokens: 5 })).tokens, 'compiled stream == eager engine');
  // f16 pools: compiled and eager round the rows the same way
  const half = new StepEngine(model, { maxContext: 64, blockSize: 4, kvDtype: 'f16' });
  const halfEager = new StepEngine(model, { maxContext: 64, blockSize: 4, kvDtype: 'f16', compile: false });
  assert.equal(half.kPools[0].dtype, 'f16');
  assert.deepEqual((await half.generate(prompts[2], { maxTokens: 8 })).tokens, (await halfEager.generate(prompts[2], { maxTokens: 8 })).tokens, 'f16 pools');
  assert.throws(() => new StepEngine(model, { kvDtype: 'bf16' as 'f16' }), /kvDtype must be one of 'f32', 'f16', 'int8', got bf16/);
  assert.throws(() => engine.generate([1, vocab], {}), /prompt token 1 is \d+, outside the vocabulary/);
  assert.throws(() => engine.generate(new Array(64).fill(1), {}), /the prompt has 64 tokens but the context holds 64/);
});

test('int8 KV pools: compiled agrees with the eager engine; greedy tokens agree with f32 pools on most steps; a quarter of the f32 pool memory', { skip }, async (t) => {
  const model = PagedLlama.load(file, { maxPositions: 128 });
  const N = 12;
  const int8 = new StepEngine(model, { maxContext: 64, blockSize: 4, maxStepTokens: 8, kvDtype: 'int8' });
  // The same prefill chunks on both sides: a chunk's queries may take the decode kernel (int16-rounded
  // dots on int8 pools) or the prefill tile path depending on its size, which differ by ~2^-16.
  const int8Eager = new StepEngine(model, { maxContext: 64, blockSize: 4, maxStepTokens: 8, kvDtype: 'int8', compile: false });
  const f32 = new StepEngine(model, { maxContext: 64, blockSize: 4, maxStepTokens: 8 });
  assert.equal(int8.kPools[0].dtype, 'i8');
  assert.deepEqual(int8.kPools[0].shape, [f32.kPools[0].shape[0], 2, 4, 16 + 4], '[blocks, kvHeads, blockSize, headDim + 4]');
  assert.ok(int8.kPools[0].data.byteLength / f32.kPools[0].data.byteLength < 0.32, 'int8 pool bytes vs f32');
  let same = 0, total = 0, firstDiff: number[] = [];
  for (const p of prompts) {
    const a = (await int8.generate(p, { maxTokens: N })).tokens;
    // compiled vs eager on int8 pools: eager kv_write / paged_attention run the plan's native cores
    // (src/backends/cpu/kernels/llm.ts), so the greedy tokens are the same
    assert.deepEqual(a, (await int8Eager.generate(p, { maxTokens: N })).tokens, 'int8 pools: compiled == eager');
    const want = (await f32.generate(p, { maxTokens: N })).tokens;
    // greedy decoding compounds a flip: count the steps before the first divergence
    const k = want.findIndex((t, i) => a[i] !== t);
    firstDiff.push(k < 0 ? N : k);
    same += k < 0 ? N : k; total += N;
  }
  t.diagnostic(`int8 vs f32 greedy: ${same}/${total} tokens before the first divergence (per prompt ${firstDiff.join(', ')})`);
  assert.match(int8.describe(), /^cpu plan/, int8.describe());
  // observed on this tiny random model (2 layers, dim 64, random weights: close logits): 37-38/48, one prompt
  // diverging at its 3rd-4th token, one at its 10th-12th (f16 pools: 48/48); the accuracy benchmark measures KL on
  // the outlier model instead
  assert.ok(same / total >= 0.75, `int8 vs f32 greedy: ${same}/${total} tokens before the first divergence (per prompt ${firstDiff.join(', ')})`);
  assert.equal(int8.freeBlocks, int8.numBlocks, 'pages returned');
});

test('prefix caching: a repeated prompt reuses its pages, tokens unchanged; LRU eviction under pool pressure', { skip }, async () => {
  const model = PagedLlama.load(file, { maxPositions: 128 });
  const system = [1, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31];
  const questions = [[40, 41, 42], [50, 51], [60, 61, 62, 63, 64]];
  const plain = new StepEngine(model, { maxContext: 64, blockSize: 4, prefixCaching: false });
  const want: number[][] = [];
  for (const q of questions) want.push((await plain.generate([...system, ...q], { maxTokens: 6 })).tokens);
  assert.equal(plain.stats.prefixHitTokens, 0);

  const cached = new StepEngine(model, { maxContext: 64, blockSize: 4 });
  for (const [i, q] of questions.entries()) {
    const before = cached.stats.tokens;
    const r = await cached.generate([...system, ...q], { maxTokens: 6 });
    assert.deepEqual(r.tokens, want[i], `question ${i}: same tokens with prefix caching`);
    const computed = cached.stats.tokens - before;
    // the first run prefills everything; later ones start after the 20 cached system-prompt positions
    if (i === 0) assert.equal(computed, system.length + q.length + 5);
    else assert.equal(computed, system.length + q.length + 5 - 20, `question ${i}: ${computed} tokens computed`);
  }
  assert.equal(cached.stats.prefixHitTokens, 40);
  assert.ok(cached.cachedBlocks > 0 && cached.freeBlocks === cached.numBlocks, 'finished sequences leave evictable cached pages');
  // the same prompt twice at once: both run, shared pages are only read
  const [a, b] = await Promise.all([cached.generate([...system, ...questions[1]], { maxTokens: 6 }), cached.generate([...system, ...questions[1]], { maxTokens: 6 })]);
  assert.deepEqual(a.tokens, want[1]);
  assert.deepEqual(b.tokens, want[1]);

  // a pool of 9 pages: every new prompt evicts cached pages of earlier ones, results stay exact
  const tight = new StepEngine(model, { maxContext: 36, blockSize: 4, numBlocks: 9 });
  const loose = new StepEngine(model, { maxContext: 36, blockSize: 4, prefixCaching: false });
  for (const p of [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [1, 9, 8, 7, 6, 5, 4, 3, 2]]) {
    assert.deepEqual((await tight.generate(p, { maxTokens: 10 })).tokens, (await loose.generate(p, { maxTokens: 10 })).tokens, `prompt ${p.join(',')}`);
  }
  assert.ok(tight.stats.evictions > 0, 'pages were evicted');
  assert.ok(tight.stats.prefixHitTokens > 0, 'and prefixes still hit');
});

test('HF checkpoint (rotate-half rope, Llama-3 rope scaling; Mistral sliding window) through loadPagedLlama: engine == eager', { skip }, async () => {
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
    rms_norm_eps: c.rmsNormEps, rope_theta: 500000, max_position_embeddings: 256, tie_word_embeddings: false,
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  });
  const { engine, tokenizer, model } = loadPagedLlama(hfDir, { maxContext: 128, blockSize: 8 });
  assert.equal(tokenizer, null, 'no tokenizer.json: ids only');
  assert.equal(model.config.ropeInterleaved, false);
  assert.equal(model.config.ropeScaling?.type, 'llama3');
  const oracle = LlamaForCausalLM.load(hfDir);
  for (const p of [prompts[0], prompts[2]]) {
    // 70 positions: past original_max_position_embeddings, where the scaled frequencies matter
    const r = await engine.generate(p, { maxTokens: 50 });
    assert.deepEqual(r.tokens, eagerGreedy(oracle, p, 50), `prompt of ${p.length}`);
  }
  // Mistral: a sliding window in config.json reaches the attention; compiled == eager engine
  const cfg = JSON.parse(fs.readFileSync(path.join(hfDir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(hfDir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'mistral', sliding_window: 8 }));
  const mistral = loadPagedLlama(hfDir, { maxContext: 64, blockSize: 4 });
  assert.equal(mistral.model.slidingWindow, 8);
  const eager = new StepEngine(mistral.model, { maxContext: 64, blockSize: 4, compile: false });
  const windowed = await mistral.engine.generate(prompts[2], { maxTokens: 12 });
  assert.deepEqual(windowed.tokens, (await eager.generate(prompts[2], { maxTokens: 12 })).tokens);
  assert.notDeepEqual(windowed.tokens, eagerGreedy(oracle, prompts[2], 12), 'the window changes the output of a 20-token prompt');
});
