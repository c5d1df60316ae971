// Streaming generation: chunks concatenate to the decoded tokens, stop tokens / stop strings /
// maxTokens end it with the right reason, and seeded sampling reproduces a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf } from '../../src/io/gguf/index.js';
import { LlamaEngine, generate, greedyTokens, tokenizerFromGguf } from '../../src/llm/index.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-gen-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'm.gguf');
writeTinyLlamaGguf(file, { seed: 11 });
const tokenizer = tokenizerFromGguf(readGguf(file));
const engine = LlamaEngine.load(file);

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
  assert.deepEqual(tokens, greedyTokens(engine, tokenizer.encode('the quick brown'), 20));
  assert.ok(s.prefillTokensPerSecond > 0 && s.decodeTokensPerSecond > 0);
  assert.equal(engine.cache.freeBlocks, engine.cache.numBlocks, 'the sequence is released');
});

test('stop tokens and stop strings end generation', async () => {
  const prompt = tokenizer.encode('the quick brown');
  const greedy = greedyTokens(engine, prompt, 12);
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
