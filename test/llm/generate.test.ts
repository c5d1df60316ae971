// Streaming generation: chunks concatenate to the decoded tokens, stop tokens / stop strings /
// maxTokens end it with the right reason, and seeded sampling reproduces a run. generate() drives
// the StepEngine over the compiled model (src/llm/models/llama.ts), for F32 and quantized files alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generate, greedyTokens, loadPagedLlama, loadLlama, PagedLlama, StepEngine } from '../../src/llm/index.js';
import { inferenceJit } from '../../src/index.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-gen-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'm.gguf');
writeTinyLlamaGguf(file, { seed: 11 });
const loaded = loadPagedLlama(file, { maxContext: 128 });
const tokenizer = loaded.tokenizer!;
const engine = loaded.engine;

test('streamed text is the decode of the generated tokens; greedy equals greedyTokens', async () => {
  const run = generate(engine, tokenizer, 'the quick brown', { maxTokens: 20, ignoreEos: true });
  let text = '';
  const tokens: number[] = [];
  for await (const c of run) { text += c.text; if (c.token >= 0) tokens.push(c.token); }
  const s = run.stats!;
  assert.equal(s.finishReason, 'length');
  assert.equal(s.generatedTokens, 20);
  assert.deepEqual(tokens, s.tokens);
  assert.equal(text, tokenizer.decode(tokens));
  assert.deepEqual(tokens, await greedyTokens(engine, tokenizer.encode('the quick brown'), 20));
  assert.ok(s.prefillTokensPerSecond > 0 && s.decodeTokensPerSecond > 0);
  assert.equal(engine.freeBlocks, engine.numBlocks, 'the sequence is released');
});

test('stop tokens and stop strings end generation', async () => {
  const prompt = tokenizer.encode('the quick brown');
  const greedy = await greedyTokens(engine, prompt, 12);
  const stopAt = greedy[5];
  const first = greedy.indexOf(stopAt);
  const s1 = await generate(engine, tokenizer, prompt, { maxTokens: 12, stopTokens: [stopAt] }).complete();
  assert.equal(s1.finishReason, 'stop-token');
  assert.deepEqual(s1.tokens, greedy.slice(0, first));
  // A stop string taken from the middle of the greedy text: the output is cut right before it.
  const full = tokenizer.decode(greedy);
  const needle = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  const s2 = await generate(engine, tokenizer, prompt, { maxTokens: 12, stop: [needle], ignoreEos: true }).complete();
  assert.equal(s2.finishReason, 'stop-string');
  assert.equal(s2.text, full.slice(0, full.indexOf(needle)));
});

test('seeded sampling reproduces a run; different seeds differ', async () => {
  const o = { maxTokens: 24, temperature: 1.2, topK: 50, topP: 0.95, seed: 5, ignoreEos: true };
  const a = await generate(engine, tokenizer, 'hello', o).complete();
  const b = await generate(engine, tokenizer, 'hello', o).complete();
  const c = await generate(engine, tokenizer, 'hello', { ...o, seed: 6 }).complete();
  assert.deepEqual(a.tokens, b.tokens);
  assert.notDeepEqual(a.tokens, c.tokens);
});

test('breaking out of the stream cancels the sequence; an abort signal ends it with "abort"; maxTokens 0 generates nothing', async () => {
  const run = generate(engine, tokenizer, 'the quick brown', { maxTokens: 50, ignoreEos: true });
  let n = 0;
  for await (const c of run) { if (c.token >= 0 && ++n === 3) break; }
  // the engine drops the sequence at its next step boundary
  for (let i = 0; i < 50 && engine.freeBlocks !== engine.numBlocks; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(engine.freeBlocks, engine.numBlocks, 'the abandoned sequence released its pages');
  const ac = new AbortController();
  const gen = generate(engine, tokenizer, 'the quick brown', { maxTokens: 50, ignoreEos: true, signal: ac.signal });
  const seen: number[] = [];
  for await (const c of gen) { if (c.token >= 0) seen.push(c.token); if (seen.length === 2) ac.abort(); }
  assert.equal(gen.stats!.finishReason, 'abort');
  assert.ok(seen.length >= 2 && seen.length < 50, `${seen.length} tokens after the abort`);
  const none = await generate(engine, tokenizer, 'the quick brown', { maxTokens: 0 }).complete();
  assert.equal(none.generatedTokens, 0);
  assert.equal(none.finishReason, 'length');
});

test('a quantized (Q4_0) file generates through the same call; greedy equals greedyTokens', async () => {
  const q = path.join(dir, 'q4.gguf');
  writeTinyLlamaGguf(q, { seed: 11, type: 'Q4_0' });
  const l = loadPagedLlama(q, { maxContext: 64 });
  const s = await generate(l.engine, l.tokenizer, 'the quick brown', { maxTokens: 10, ignoreEos: true }).complete();
  assert.equal(s.generatedTokens, 10);
  assert.deepEqual(s.tokens, await greedyTokens(l.engine, l.tokenizer!.encode('the quick brown'), 10));
  assert.match(l.engine.describe(), /^cpu plan/);
});

// The same call on a model class the user wrote and decorated: a subclass of the Llama step with
// @inferenceJit generates through StepEngine exactly as the library's class does.
@inferenceJit({ device: 'cpu', cache: 'memory' })
class UserLlama extends PagedLlama {}

test('a user-decorated model class generates through the same call, with the same tokens', async () => {
  const l = loadLlama(file);
  const engineOf = (m: PagedLlama) => new StepEngine(m, { maxContext: 64 });
  const mine = engineOf(new UserLlama(l.config, l.weights, { maxPositions: 64 }));
  const s = await generate(mine, tokenizer, 'the quick brown', { maxTokens: 8, ignoreEos: true }).complete();
  assert.deepEqual(s.tokens, await greedyTokens(engineOf(new PagedLlama(l.config, l.weights, { maxPositions: 64 })), tokenizer.encode('the quick brown'), 8));
  assert.match(mine.describe(), /^cpu plan/);
});
