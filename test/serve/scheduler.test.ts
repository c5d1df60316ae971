// The Scheduler over the real engine (no HTTP): priority then first-come-first-served, the waiting
// token bound, aborting a request that is still waiting, and the prefill chunk beside decodes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, QueueFullError, loadServedModel, PagedServeEngine, type SequenceRequest, type FinishReason, type StepChunk } from '../../src/serve/index.js';
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

test('prefillChunk: a prompt arriving while another sequence decodes is prefilled at most prefillChunk tokens per step; outputs unchanged', async () => {
  const steps: { id: number; n: number }[][] = [];
  class Recording extends PagedServeEngine {
    override step(chunks: readonly StepChunk[]) { steps.push(chunks.map((c) => ({ id: c.id, n: c.tokens.length }))); return super.step(chunks); }
  }
  const engine = new Recording((model.engine as PagedServeEngine).runner);
  const s = new Scheduler(engine, model.tokenizer, { maxBatchedTokens: 64, prefillChunk: 3 });
  const long = 'tokenizers split text into pieces and the quick brown fox jumps over the lazy dog';
  const texts = ['', ''];
  let bId = -1;
  const done = [0, 1].map(() => { let r!: (x: FinishReason) => void; return { p: new Promise<FinishReason>((res) => { r = res; }), r: (x: FinishReason) => r(x) }; });
  const [aId] = s.submit([{ req: request(ids('hello world'), 0, 16), events: {
    onText(t) {
      texts[0] += t;
      // the long prompt arrives once the first sequence decodes
      if (bId < 0) [bId] = s.submit([{ req: request(ids(long), 0, 6), events: { onText(u) { texts[1] += u; }, onFinish: done[1].r } }]);
    },
    onFinish: done[0].r,
  } }]);
  assert.deepEqual(await Promise.all(done.map((d) => d.p)), ['length', 'length']);
  const withDecode = steps.filter((st) => st.some((c) => c.id === aId) && st.some((c) => c.id === bId));
  assert.ok(withDecode.length >= 3, `the long prompt was prefilled over several steps beside the decode (${withDecode.length})`);
  for (const st of withDecode) assert.ok(st.find((c) => c.id === bId)!.n <= 3, JSON.stringify(st));
  assert.equal(texts[0], await greedyText('hello world', 16));
  assert.equal(texts[1], await greedyText(long, 6));
  assert.throws(() => new Scheduler(engine, model.tokenizer, { prefillChunk: 0 }), /prefillChunk must be a positive integer, got 0/);
});
