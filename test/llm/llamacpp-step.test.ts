// Greedy generation parity with llama.cpp (node-llama-cpp, a dev dependency) through the compiled
// path: the Llama decoder written as a paged step (src/llm/models/llama.ts), compiled by
// inferenceJit and driven by StepEngine, must give llama.cpp's token ids on F32 and F16 GGUF files
// with seeded weights (GQA; f16 weights computed as f32; KV pools f32 and f16). Skipped, with the reason
// printed, when node-llama-cpp is not installed or cannot start llama.cpp.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf } from '../../src/io/gguf/index.js';
import { StepEngine, tokenizerFromGguf } from '../../src/llm/index.js';
import { fromArray, inferenceJit, type Tensor } from '../../src/index.js';
import { PagedLlama } from '../../src/llm/models/index.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';
import { loadLlama } from './llamacpp-peer.js';


const GENERATE = 32;

test('compiled paged step: greedy generation matches llama.cpp token for token (F32 and F16 GGUF, GQA), alone and batched', async (t) => {
  const llama = await loadLlama();
  if (typeof llama === 'string') {
    console.log(`skipping llama.cpp generation parity: ${llama}`);
    t.skip(llama);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-llamacpp-step-'));
  try {
    const refs: number[][] = [], engines: StepEngine[] = [], prompts: number[][] = [];
    for (const [type, seed] of [['F32', 1], ['F32', 2], ['F16', 3]] as const) {
      const file = path.join(dir, `m-${type}-${seed}.gguf`);
      writeTinyLlamaGguf(file, { type, seed, layers: 2, heads: 4, kvHeads: 2 });
      const prompt = tokenizerFromGguf(readGguf(file)).encode('the quick brown fox jumps over');
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      const ctx = await model.createContext({ contextSize: 128, threads: 1 });
      const ref: number[] = [];
      for await (const tok of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
        ref.push(tok);
        if (ref.length >= GENERATE) break;
      }
      await ctx.dispose();
      await model.dispose();
      const engine = new StepEngine(PagedLlama.load(file, { maxPositions: 128 }), { maxContext: 128 });
      const ours = await engine.generate(prompt, { maxTokens: ref.length });
      assert.deepEqual(ours.tokens, ref, `${type} seed ${seed}: token ids differ from llama.cpp`);
      assert.match(engine.describe(), /^cpu plan/, engine.describe());
      // f16 KV pools, as llama.cpp's default cache
      const half = new StepEngine(engine.model, { maxContext: 128, kvDtype: 'f16' });
      assert.deepEqual((await half.generate(prompt, { maxTokens: ref.length })).tokens, ref, `${type} seed ${seed}, f16 KV: token ids differ from llama.cpp`);
      refs.push(ref); engines.push(engine); prompts.push(prompt);
    }
    // the same model serving two copies of the prompt plus a shorter one in shared steps
    const e = engines[0];
    const short = prompts[0].slice(0, 4);
    const [a, b, c] = await Promise.all([e.generate(prompts[0], { maxTokens: GENERATE }), e.generate(short, { maxTokens: 8 }), e.generate(prompts[0], { maxTokens: GENERATE })]);
    assert.deepEqual(a.tokens, refs[0]);
    assert.deepEqual(c.tokens, refs[0]);
    assert.deepEqual(b.tokens, (await e.generate(short, { maxTokens: 8 })).tokens);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Quantized weights through the compiled path: a Q8_0 file runs as Q8_0 blocks in the plan's qgemm
// (no f32 copy). llama.cpp's Q8_0 dot product quantizes the activations to Q8_0 blocks as our
// kernels do, but stores each block's scale as f16 where ours stays f32, so logits differ in the
// last bits and exact greedy parity breaks at the first near-tie (seen: 24 of 32 ids equal on seed
// 4). What holds, and is asserted: teacher-forced on llama.cpp's tokens, every one of them is our
// argmax or within a near-tie of it (its logit within 0.2% of the logit range below our maximum),
// and the greedy ids agree up to the first such near-tie.
/** A near-tie: the top two logits closer than this fraction of the logit range. */
const TIE = 2e-3;
const i32 = (v: number[], shape: number[]): Tensor => fromArray(new Int32Array(v), shape, 'i32');

/** Logits [vocab] after each prefix prompt + ref[0..i), from the compiled step fed one token at a time after the prompt. */
function teacherForced(model: PagedLlama, prompt: number[], ref: number[]): Float32Array[] {
  const BS = 16, MB = 8, c = model.config;
  const pool = () => Array.from({ length: c.numLayers }, () => fromArray(new Float32Array(MB * c.numKvHeads * BS * c.headDim), [MB, c.numKvHeads, BS, c.headDim], 'f32'));
  const k = pool(), v = pool();
  const spec = [{ shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] }, { shape: ['S', MB] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] }];
  const step = inferenceJit(model, { device: 'cpu', fallback: 'error', cache: 'memory', inputSpec: [...spec, ...new Array(2 * c.numLayers).fill(null)] });
  const table = i32([0, 1, 2, 3, 4, 5, 6, 7], [1, MB]);
  const run = (ids: number[], from: number): Float32Array => {
    const pos = ids.map((_, i) => from + i);
    const out = step({
      ids: i32(ids, [ids.length]), positions: i32(pos, [ids.length]), slots: i32(pos, [ids.length]), blockTables: table,
      seqLens: i32([from + ids.length], [1]), queryStart: i32([0, ids.length], [2]), lastIndex: i32([ids.length - 1], [1]),
    }, k, v) as Tensor;
    return Float32Array.from(out.data as Float32Array);
  };
  const logits = [run(prompt, 0)];
  for (let i = 0; i + 1 < ref.length; i++) logits.push(run([ref[i]], prompt.length + i));
  return logits;
}

test('compiled paged step on a Q8_0 GGUF: llama.cpp\'s greedy ids are ours up to near-ties', async (t) => {
  const llama = await loadLlama();
  if (typeof llama === 'string') {
    console.log(`skipping llama.cpp Q8_0 parity: ${llama}`);
    t.skip(llama);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-llamacpp-q8-'));
  try {
    for (const seed of [4, 5]) {
      const file = path.join(dir, `m-q8-${seed}.gguf`);
      writeTinyLlamaGguf(file, { type: 'Q8_0', seed, layers: 2, heads: 4, kvHeads: 2 });
      const prompt = tokenizerFromGguf(readGguf(file)).encode('the quick brown fox jumps over');
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      const ctx = await model.createContext({ contextSize: 128, threads: 1 });
      const ref: number[] = [];
      for await (const tok of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
        ref.push(tok);
        if (ref.length >= GENERATE) break;
      }
      await ctx.dispose();
      await model.dispose();
      const paged = PagedLlama.load(file, { maxPositions: 128 });
      for (const [name, w] of paged.namedParameters()) if (/\.(wq|wk|wv|wo|gate|up|down)$|^lmHead$/.test(name)) assert.equal(w.dtype, 'u8', `${name} is not a quantized weight`);
      let firstTie = ref.length, worst = 0;
      teacherForced(paged, prompt, ref).forEach((l, i) => {
        let max = -Infinity, min = Infinity, best = 0;
        l.forEach((x, j) => { if (x > max) { max = x; best = j; } min = Math.min(min, x); });
        const gap = max - l[ref[i]];
        worst = Math.max(worst, gap / (max - min));
        assert.ok(gap <= TIE * (max - min), `Q8_0 seed ${seed} token ${i}: llama.cpp chose ${ref[i]}, ${gap} below our argmax ${best} (logit range ${max - min})`);
        if (best !== ref[i] && firstTie === ref.length) firstTie = i;
        // a near-tie that we break the other way: from here on greedy paths may differ
        const second = l.reduce((m, x, j) => (j !== best && x > m ? x : m), -Infinity);
        if (max - second <= TIE * (max - min) && firstTie === ref.length) firstTie = i;
      });
      const engine = new StepEngine(paged, { maxContext: 128, kvDtype: 'f16' });
      const ours = await engine.generate(prompt, { maxTokens: ref.length });
      assert.deepEqual(ours.tokens.slice(0, firstTie), ref.slice(0, firstTie), `Q8_0 seed ${seed}: greedy ids differ before the first near-tie (token ${firstTie})`);
      console.log(`Q8_0 seed ${seed}: ${ours.tokens.findIndex((x, i) => x !== ref[i]) < 0 ? ref.length : ours.tokens.findIndex((x, i) => x !== ref[i])} of ${ref.length} greedy ids equal llama.cpp's; first near-tie at ${firstTie}; worst teacher-forced gap ${worst.toExponential(2)} of the logit range`);
      assert.match(engine.describe(), /^cpu plan/, engine.describe());
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
