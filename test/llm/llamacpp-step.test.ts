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
