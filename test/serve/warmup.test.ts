// Serving latency under load: every step shape is compiled before the server answers (no plan is
// lowered on the JS thread while streams run), and the scheduler's step observer sees each step's
// decodes and prefill tokens, with the prefill tokens of a step that carries decodes within prefillChunk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, MODEL, postJson, metric, greedyText, modelFile } from './serve-fixtures.js';
import { Scheduler, loadServedModel, stepBuckets, type PagedServeEngine, type SequenceRequest, type FinishReason, type StepInfo } from '../../src/serve/index.js';

test('stepBuckets: powers of two, at most as many sequences as tokens, bounded by the limits', () => {
  assert.deepEqual(stepBuckets(1, 1), [{ T: 1, S: 1 }]);
  assert.deepEqual(stepBuckets(3, 2), [{ T: 1, S: 1 }, { T: 2, S: 1 }, { T: 2, S: 2 }, { T: 4, S: 1 }, { T: 4, S: 2 }]);
  const b = stepBuckets(64, 8);
  assert.equal(b.length, 1 + 2 + 3 + 4 + 4 + 4 + 4);
  assert.ok(b.every(({ T, S }) => S <= T && T <= 64 && S <= 8));
});

test('after the warm-up no step lowers a plan: mixed prompt lengths at once, outputs unchanged, metrics show it', async () => {
  const { server, url } = await startServer({ scheduler: { maxRunning: 8, maxBatchedTokens: 64, prefillChunk: 8 } });
  try {
    const engine = server.scheduler!.engine as PagedServeEngine;
    const expected = stepBuckets(64, 8);
    assert.equal(engine.plansBuilt, expected.length, 'every bucket was lowered before the server became ready');
    assert.equal(await metric(url, 'inferjit:plans_built'), expected.length);
    // Prompts of 1 to 40 tokens, 8 at once: steps of many (tokens, sequences) shapes.
    const prompts = Array.from({ length: 8 }, (_, i) => Array.from({ length: 1 + ((i * 11) % 40) }, (_, k) => 20 + ((i * 7 + k * 3) % 200)));
    const results = await Promise.all(prompts.map((prompt) => postJson(`${url}/v1/completions`, { model: MODEL, prompt, max_tokens: 6, temperature: 0, ignore_eos: true })));
    for (let i = 0; i < prompts.length; i++) {
      assert.equal(results[i].status, 200, JSON.stringify(results[i].json));
      assert.equal(results[i].json.choices[0].text, await greedyText(prompts[i], 6), `prompt ${i} (${prompts[i].length} tokens)`);
    }
    const stats = engine.runner.stats;
    assert.ok(stats.buckets.size >= 3, `the load used several step shapes (${[...stats.buckets].join(' ')})`);
    for (const k of stats.buckets) {
      const [T, S] = k.match(/\d+/g)!.map(Number);
      assert.ok(expected.some((b) => b.T === T && b.S === S), `bucket ${k} is one warmup() prepared`);
    }
    assert.equal(engine.plansBuilt, expected.length, 'no plan was lowered while serving');
    assert.ok(await metric(url, 'inferjit:step_duration_seconds_count{model_name="tiny.gguf",kind="mixed"}') > 0, 'mixed steps observed');
  } finally {
    await server.close();
  }
});

test('warmup: false leaves the plans to the first steps that need them', async () => {
  const { server } = await startServer({ warmup: false, scheduler: { maxRunning: 4, maxBatchedTokens: 16 } });
  try {
    assert.equal((server.scheduler!.engine as PagedServeEngine).plansBuilt, 0);
  } finally {
    await server.close();
  }
});

test('the step observer: a step carrying decodes prefills at most prefillChunk tokens, and every token is accounted for', async () => {
  const model = loadServedModel(modelFile, { threads: 1, maxSeqs: 8, maxStepTokens: 64 });
  const steps: StepInfo[] = [];
  const s = new Scheduler(model.engine, model.tokenizer, { maxBatchedTokens: 64, prefillChunk: 5, maxRunning: 8 }, { onStep: (i) => steps.push(i) });
  // Distinct from the first token on, so the prefix cache serves none of them.
  const req = (n: number, maxTokens: number): SequenceRequest => ({
    promptIds: Array.from({ length: n }, (_, k) => 30 + ((n * 7 + k * 13) % 100)), sampling: { temperature: 0 }, maxTokens, stopTokens: new Set(), stop: [],
  });
  const run = (r: SequenceRequest) => new Promise<FinishReason>((resolve) => { s.submit([{ req: r, events: { onText() {}, onFinish: resolve } }]); });
  // One stream starts decoding, then long prompts keep arriving while it decodes.
  const first = run(req(3, 24));
  const later: Promise<FinishReason>[] = [];
  for (let i = 0; i < 3; i++) { await new Promise((r) => setTimeout(r, 5)); later.push(run(req(30 + i, 2))); }
  assert.deepEqual(await Promise.all([first, ...later]), ['length', 'length', 'length', 'length']);
  const mixed = steps.filter((x) => x.decodes > 0 && x.prefillTokens > 0);
  assert.ok(mixed.length >= 3, `long prompts were prefilled beside decodes (${mixed.length} mixed steps)`);
  for (const x of steps) if (x.decodes > 0) assert.ok(x.prefillTokens <= 5, `a step with ${x.decodes} decodes prefilled ${x.prefillTokens} tokens (cap 5)`);
  for (const x of steps) assert.ok(x.ms >= 0 && x.sequences >= 1);
  const prefilled = steps.reduce((a, x) => a + x.prefillTokens, 0);
  assert.equal(prefilled, 3 + 30 + 31 + 32, 'every prompt token was prefilled exactly once');
  await s.close();
});
