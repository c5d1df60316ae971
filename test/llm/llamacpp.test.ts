// Greedy generation parity with llama.cpp (through node-llama-cpp, a dev dependency): the same GGUF
// file with seeded weights and the same prompt must give the same token ids. Skipped, with the
// reason printed, when node-llama-cpp is not installed or cannot start llama.cpp.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf } from '../../src/io/gguf/index.js';
import { LlamaEngine, greedyTokens, tokenizerFromGguf } from '../../src/llm/index.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';
import { loadLlama } from './llamacpp-peer.js';


const GENERATE = 32;

test('greedy generation matches llama.cpp token for token (F32 and F16 GGUF, GQA)', async (t) => {
  const llama = await loadLlama();
  if (typeof llama === 'string') {
    console.log(`skipping llama.cpp generation parity: ${llama}`);
    t.skip(llama);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-llamacpp-'));
  try {
    for (const [type, seed] of [['F32', 1], ['F32', 2], ['F16', 3]] as const) {
      const file = path.join(dir, `m-${type}-${seed}.gguf`);
      writeTinyLlamaGguf(file, { type, seed, layers: 2, heads: 4, kvHeads: 2 });
      const prompt = tokenizerFromGguf(readGguf(file)).encode('the quick brown fox jumps over');
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      // One llama.cpp thread: on a tiny model its per-step thread handoffs cost ~100x the math.
      const ctx = await model.createContext({ contextSize: 128, threads: 1 });
      const ref: number[] = [];
      for await (const tok of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
        ref.push(tok);
        if (ref.length >= GENERATE) break;
      }
      await ctx.dispose();
      await model.dispose();
      // llama.cpp stores K/V as f16 by default; so does this engine here, so both round the same way.
      const ours = greedyTokens(LlamaEngine.load(file, { kvDtype: 'f16' }), prompt, ref.length);
      assert.deepEqual(ours, ref, `${type} seed ${seed}: token ids differ from llama.cpp`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
