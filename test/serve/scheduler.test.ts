// The Scheduler over the real engine (no HTTP): priority then first-come-first-served, the waiting
// token bound, and aborting a request that is still waiting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, QueueFullError, loadServedModel, type SequenceRequest, type FinishReason } from '../../src/serve/index.js';
import { modelFile, greedyText } from './serve-fixtures.js';

const model = loadServedModel(modelFile, { threads: 1 });
const ids = (text: string) => model.tokenizer.encode(text);
const request = (prompt: number[], priority = 0, maxTokens = 6): SequenceRequest => ({
  promptIds: prompt, sampling: { temperature: 0 }, maxTokens, stopTokens: new Set(), stop: [], priority,
});

function track(order: string[], name: string) {
  let resolve!: (r: FinishReason) => void;
  const done = new Promise<FinishReason>((r) => { resolve = r; });
  return { done, events: { onText() {}, onFinish(reason: FinishReason) { order.push(name); resolve(reason); } } };
}

test('higher priority runs first; equal priorities in arrival order', async () => {
  const s = new Scheduler(model.engine, model.tokenizer, { maxRunning: 1 });
  const order: string[] = [];
  const a = track(order, 'a'), b = track(order, 'b'), c = track(order, 'c');
  s.submit([{ req: request(ids('first')), events: a.events }]);
  s.submit([{ req: request(ids('second')), events: b.events }]);
  s.submit([{ req: request(ids('urgent'), 5), events: c.events }]);
  assert.deepEqual(await Promise.all([a.done, b.done, c.done]), ['length', 'length', 'length']);
  assert.deepEqual(order, ['c', 'a', 'b']);
  assert.equal(model.engine.freeBlocks(), model.engine.numBlocks);
});

test('the waiting prompt-token bound refuses a request, and an aborted waiting request never runs', async () => {
  const s = new Scheduler(model.engine, model.tokenizer, { maxRunning: 1, maxWaitingTokens: 10 });
  const order: string[] = [];
  const prompt = Array.from({ length: 8 }, (_, i) => 10 + i);
  const a = track(order, 'a'), b = track(order, 'b');
  s.submit([{ req: request(prompt), events: a.events }]);
  assert.throws(() => s.submit([{ req: request(prompt), events: b.events }]), (e: unknown) => e instanceof QueueFullError && /16 prompt tokens|8 prompt tokens waiting of at most 10/.test((e as Error).message));
  const c = track(order, 'c');
  const [cid] = s.submit([{ req: request([5]), events: c.events }]);
  s.abort(cid);
  assert.equal(await c.done, 'abort');
  assert.equal(await a.done, 'length');
  assert.deepEqual(order, ['c', 'a']);
  assert.throws(() => new Scheduler(model.engine, model.tokenizer, { maxRunning: 0 }), /maxRunning must be a positive integer, got 0/);
});

test('a budget of one token per step (prompts prefilled one token at a time) still gives each sequence its own greedy text', async () => {
  const s = new Scheduler(model.engine, model.tokenizer, { maxBatchedTokens: 1 });
  const prompts = ['the quick brown', 'hello world', 'a b c'];
  const texts = prompts.map(() => '');
  const done = prompts.map((p, i) => new Promise<FinishReason>((resolve) => {
    s.submit([{ req: request(ids(p), 0, 8), events: { onText(t) { texts[i] += t; }, onFinish: resolve } }]);
  }));
  assert.deepEqual(await Promise.all(done), ['length', 'length', 'length']);
  for (let i = 0; i < prompts.length; i++) assert.equal(texts[i], await greedyText(prompts[i], 8), prompts[i]);
});
