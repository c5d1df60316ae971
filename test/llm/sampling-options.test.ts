// Sampling options of issues 15 and 21: presence / frequency penalties and logit bias (hand-computed
// logits), a random seed when none is given (reported so a run can be reproduced), greedy still
// deterministic, and unknown option names rejected by Sampler and generate().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Sampler } from '../../src/llm/sampling.js';
import { UnknownOptionError } from '../../src/llm/errors.js';
import { loadPagedLlama, generate, type GenerateOptions, type SamplingOptions } from '../../src/llm/index.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';

test('presence penalty subtracts once per seen token, frequency penalty once per occurrence', () => {
  // logits [3, 2.5, 2.9]; history [0, 0, 0, 2]
  const l = Float32Array.from([3, 2.5, 2.9]);
  const h = [0, 0, 0, 2];
  assert.equal(new Sampler({ temperature: 0 }).sample(l, h), 0);
  // presence 0.45: [2.55, 2.5, 2.45] -> 0
  assert.equal(new Sampler({ presencePenalty: 0.45 }).sample(l, h), 0);
  // presence 0.6: [2.4, 2.5, 2.3] -> 1
  assert.equal(new Sampler({ presencePenalty: 0.6 }).sample(l, h), 1);
  // frequency 0.2: [3 - 0.6, 2.5, 2.9 - 0.2] = [2.4, 2.5, 2.7] -> 2
  assert.equal(new Sampler({ frequencyPenalty: 0.2 }).sample(l, h), 2);
  // a window of 1 sees only token 2: frequency 0.5 -> [3, 2.5, 2.4] -> 0
  assert.equal(new Sampler({ frequencyPenalty: 0.5, repetitionWindow: 1 }).sample(l, h), 0);
  // negative values encourage repetition: presence -1 on [1, 2, 1.5] with token 0 seen -> 0 wins
  assert.equal(new Sampler({ presencePenalty: -1.5 }).sample(Float32Array.from([1, 2, 1.5]), [0]), 0);
});

test('logit bias shifts the given ids; -Infinity bans a token in every mode', () => {
  const l = Float32Array.from([1, 3, 2]);
  assert.equal(new Sampler({ logitBias: { 0: 2.5 } }).sample(l), 0);
  assert.equal(new Sampler({ logitBias: new Map([[1, -Infinity]]) }).sample(l), 2);
  const s = new Sampler({ temperature: 1.5, seed: 3, logitBias: { 1: -Infinity } });
  for (let i = 0; i < 500; i++) assert.notEqual(s.sample(l), 1);
  // The caller's logits are not modified.
  assert.deepEqual(Array.from(l), [1, 3, 2]);
  assert.throws(() => new Sampler({ logitBias: { [-1]: 1 } }), /logitBias .*keys must be token ids/);
  assert.throws(() => new Sampler({ logitBias: { 2: NaN } }), /logitBias\[2\] must be a number/);
});

test('no seed: each Sampler draws a random seed (reported); greedy stays deterministic', () => {
  const l = Float32Array.from(Array.from({ length: 64 }, (_, i) => Math.sin(i)));
  const runs = Array.from({ length: 4 }, () => { const s = new Sampler({ temperature: 1 }); return { seed: s.seed, draws: Array.from({ length: 32 }, () => s.sample(l)) }; });
  assert.ok(new Set(runs.map((r) => r.seed)).size > 1, 'seeds differ');
  assert.ok(new Set(runs.map((r) => r.draws.join(','))).size > 1, 'unseeded runs differ');
  // The reported seed reproduces the run.
  const again = new Sampler({ temperature: 1, seed: runs[0].seed });
  assert.deepEqual(Array.from({ length: 32 }, () => again.sample(l)), runs[0].draws);
  assert.equal(new Sampler().sample(l), new Sampler().sample(l));
  assert.throws(() => new Sampler({ seed: 2 ** 32 }), /seed must be an integer in \[0, 2\^32\)/);
  assert.throws(() => new Sampler({ seed: 1.5 }), /seed must be an integer/);
});

test('unknown sampling options are errors naming the option and the valid ones', () => {
  const typo = { temprature: 0.7 } as unknown as SamplingOptions;
  assert.throws(() => new Sampler(typo), (e: unknown) => e instanceof UnknownOptionError && e instanceof TypeError &&
    /sampling: unknown option "temprature" \(did you mean "temperature"\?\); valid options: temperature, topK, .*presencePenalty, frequencyPenalty, logitBias, seed/.test(e.message));
  assert.throws(() => new Sampler({ top_k: 5 } as unknown as SamplingOptions), /unknown option "top_k" \(did you mean "topK"\?\)/);
});

test('generate(): unknown options throw at the call; the seed used is reported and reproduces the run', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-sampling-'));
  try {
    const file = path.join(dir, 'm.gguf');
    writeTinyLlamaGguf(file, { seed: 4 });
    const { engine } = loadPagedLlama(file, { maxContext: 64 });
    assert.throws(() => generate(engine, null, [1, 2], { maxToken: 3 } as unknown as GenerateOptions),
      (e: unknown) => e instanceof UnknownOptionError && /generate: unknown option "maxToken" \(did you mean "maxTokens"\?\); valid options: .*maxTokens, stopTokens, stop/.test(e.message));
    assert.throws(() => generate(engine, null, [1, 2], { temperature: -1 }), /sampling: temperature must be >= 0/);
    const o = { maxTokens: 12, temperature: 1.5, ignoreEos: true };
    const a = await generate(engine, null, [1, 2, 3], o).complete();
    const b = await generate(engine, null, [1, 2, 3], { ...o, seed: a.seed }).complete();
    assert.deepEqual(b.tokens, a.tokens);
    assert.equal(b.seed, a.seed);
    // Penalties reach the sampler through generate(): a huge frequency penalty never repeats a token.
    const c = await generate(engine, null, [1], { maxTokens: 20, frequencyPenalty: 1e6, presencePenalty: 0, ignoreEos: true }).complete();
    assert.equal(new Set(c.tokens).size, c.tokens.length);
    assert.ok(!c.tokens.includes(1));
    // a logit bias of -Infinity bans a token; a large positive bias forces one
    const greedy = await generate(engine, null, [1, 2, 3], { maxTokens: 6, ignoreEos: true }).complete();
    const banned = await generate(engine, null, [1, 2, 3], { maxTokens: 6, ignoreEos: true, logitBias: { [greedy.tokens[0]]: -Infinity } }).complete();
    assert.notEqual(banned.tokens[0], greedy.tokens[0]);
    assert.ok(!banned.tokens.includes(greedy.tokens[0]));
    const forced = await generate(engine, null, [1, 2, 3], { maxTokens: 4, ignoreEos: true, logitBias: new Map([[42, 1e4]]) }).complete();
    assert.deepEqual(forced.tokens, [42, 42, 42, 42]);
    // presence penalty: a token already present is pushed down once, so greedy output changes vs none
    const seen = await generate(engine, null, [1], { maxTokens: 20, presencePenalty: 1e6, ignoreEos: true }).complete();
    assert.equal(new Set(seen.tokens).size, seen.tokens.length, 'presencePenalty 1e6: no token repeats');
    // with no seed, two sampled runs draw different seeds
    const r1 = await generate(engine, null, [1, 2, 3], o).complete(), r2 = await generate(engine, null, [1, 2, 3], o).complete();
    assert.notEqual(r1.seed, r2.seed);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
