// Mixtral (src/llm/models/mixtral.ts): a Mixtral-shaped GGUF file (8 experts, top-2, written by our
// GGUF writer the way llama.cpp's converter writes Mixtral) loads through loadCausalLM as
// PagedMixtral, compiles to a cpu plan whose kernels include moe, gives the same greedy tokens
// compiled and eager, and the same token ids as llama.cpp (node-llama-cpp) on F32 weights.
// The llama.cpp part is skipped, with the reason printed, when node-llama-cpp cannot run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf } from '../../src/io/gguf/index.js';
import { StepEngine, tokenizerFromGguf, loadCausalLM, PagedLlama } from '../../src/llm/index.js';
import { PagedMixtral, isMixtralGguf } from '../../src/llm/models/index.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import { writeTinyMixtralGguf } from './mixtral-fixtures.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';
import { loadLlama } from './llamacpp-peer.js';

const skip = planAddon ? false : 'native plan executor not built';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-mixtral-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const GENERATE = 24;
const SPEC = { seed: 5, layers: 2, heads: 4, kvHeads: 2, dim: 64, ffn: 96, experts: 8, expertsPerToken: 2 } as const;

test('a Mixtral GGUF (architecture "llama" with llama.expert_count) loads as PagedMixtral; a dense llama file still loads as PagedLlama', { skip }, () => {
  const moeFile = path.join(dir, 'moe.gguf'), denseFile = path.join(dir, 'dense.gguf');
  writeTinyMixtralGguf(moeFile, SPEC);
  writeTinyLlamaGguf(denseFile, { seed: 3, layers: 1, heads: 2, kvHeads: 1, dim: 32 });
  assert.ok(isMixtralGguf(readGguf(moeFile)));
  assert.ok(!isMixtralGguf(readGguf(denseFile)));
  const m = loadCausalLM(moeFile, { maxContext: 64 });
  assert.equal(m.architecture, 'llama');
  assert.ok(m.model instanceof PagedMixtral);
  assert.equal((m.model as PagedMixtral).config.numExperts, 8);
  assert.equal((m.model as PagedMixtral).config.expertsPerToken, 2);
  assert.ok(loadCausalLM(denseFile, { maxContext: 32 }).model instanceof PagedLlama);
});

test('Mixtral: compiled step == eager step (greedy tokens), and the plan runs the moe kernel', { skip }, async () => {
  const file = path.join(dir, 'moe-eager.gguf');
  writeTinyMixtralGguf(file, { ...SPEC, seed: 6 });
  const prompt = tokenizerFromGguf(readGguf(file)).encode('the quick brown fox');
  const model = PagedMixtral.load(file, { maxPositions: 64 });
  const compiled = new StepEngine(model, { maxContext: 64 });
  const eager = new StepEngine(model, { maxContext: 64, compile: false });
  const a = await compiled.generate(prompt, { maxTokens: 12 });
  const b = await eager.generate(prompt, { maxTokens: 12 });
  assert.deepEqual(a.tokens, b.tokens);
  assert.match(compiled.describe(), /^cpu plan/, compiled.describe());
  assert.match(compiled.describe(), /\bmoe\b/, compiled.describe());
});

test('Mixtral on Q4_0 weights: experts stay quantized (moe reads the blocks), compiled == eager', { skip }, async () => {
  const file = path.join(dir, 'moe-q4.gguf');
  writeTinyMixtralGguf(file, { ...SPEC, seed: 7, type: 'Q4_0' });
  const prompt = tokenizerFromGguf(readGguf(file)).encode('over the lazy dog');
  const model = PagedMixtral.load(file, { maxPositions: 64 });
  assert.equal(model.layers[0].moe.gate.dtype, 'u8', 'the expert stack is the file\'s Q4_0 blocks');
  const compiled = new StepEngine(model, { maxContext: 64 });
  const eager = new StepEngine(model, { maxContext: 64, compile: false });
  assert.deepEqual((await compiled.generate(prompt, { maxTokens: 10 })).tokens, (await eager.generate(prompt, { maxTokens: 10 })).tokens);
  assert.match(compiled.describe(), /kernels: .*\bmoe×2\b/, compiled.describe());
  assert.match(compiled.describe(), /\bquant_linear\b/, compiled.describe());
});

test('Mixtral greedy generation matches llama.cpp token for token (F32 GGUF, 8 experts, top-2)', { skip }, async (t) => {
  const llama = await loadLlama();
  if (typeof llama === 'string') {
    console.log(`skipping llama.cpp Mixtral parity: ${llama}`);
    t.skip(llama);
    return;
  }
  for (const seed of [11, 12]) {
    const file = path.join(dir, `moe-${seed}.gguf`);
    writeTinyMixtralGguf(file, { ...SPEC, seed });
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
    const { engine } = loadCausalLM(file, { maxContext: 128 });
    const ours = await engine.generate(prompt, { maxTokens: ref.length });
    assert.deepEqual(ours.tokens, ref, `seed ${seed}: token ids differ from llama.cpp`);
    assert.match(engine.describe(), /^cpu plan/, engine.describe());
  }
});

test('a Hugging Face Mixtral directory is a specific error that points to GGUF', () => {
  const hf = path.join(dir, 'hf-mixtral');
  fs.mkdirSync(hf, { recursive: true });
  fs.writeFileSync(path.join(hf, 'config.json'), JSON.stringify({ model_type: 'mixtral' }));
  assert.throws(() => loadCausalLM(hf), /Mixtral loads from GGUF files/);
});
