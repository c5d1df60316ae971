// An engine failure after a stream started reaches the client as an error event, then [DONE]; the
// failed sequence's blocks are freed and the server keeps serving. The failure is injected into one
// step of the real engine (nothing in the tiny model fails on its own).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { createServer, loadServedModel, PagedServeEngine, type StepChunk, type StepOutput } from '../../src/serve/index.js';
import { modelFile, MODEL, metric, postJson } from './serve-fixtures.js';

class FailOnceEngine extends PagedServeEngine {
  steps = 0;
  failAt = -1;
  override async step(chunks: readonly StepChunk[]): Promise<StepOutput[]> {
    if (++this.steps === this.failAt) throw new Error('injected failure: the device went away');
    return super.step(chunks);
  }
}

let engine!: FailOnceEngine;
const server = createServer({
  model: async () => {
    const m = loadServedModel(modelFile, { threads: 1 });
    engine = new FailOnceEngine((m.engine as PagedServeEngine).runner);
    return { ...m, engine };
  },
});
const url = await server.listen(0);
await server.ready;
after(() => server.close());

test('an error mid-stream is an error event followed by [DONE]', async () => {
  engine.failAt = engine.steps + 5;
  const raw = await (await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: 'the quick brown', max_tokens: 50, ignore_eos: true, stream: true }),
  })).text();
  const events = raw.split('\n\n').filter((e) => e).map((e) => e.replace(/^data: /, ''));
  assert.equal(events.at(-1), '[DONE]');
  const error = JSON.parse(events.at(-2)!);
  assert.match(error.error.message, /generation failed: injected failure: the device went away/);
  assert.equal(error.error.type, 'server_error');
  assert.ok(events.length >= 4, 'tokens were streamed before the failure');
  assert.equal(await metric(url, 'vllm:gpu_cache_usage_perc'), 0, 'the failed sequence freed its blocks');
  assert.equal(await metric(url, 'vllm:request_success_total{model_name="tiny.gguf",finished_reason="error"}'), 1);
});

test('the openai client surfaces the error event; non-streaming requests get a 500', async () => {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  engine.failAt = engine.steps + 3;
  const stream = await client.completions.create({ model: MODEL, prompt: 'hello', max_tokens: 50, stream: true, ignore_eos: true } as any);
  await assert.rejects(async () => { for await (const _ of stream as any) { /* drain */ } }, /injected failure/);
  engine.failAt = engine.steps + 2;
  const r = await postJson(`${url}/v1/completions`, { model: MODEL, prompt: 'hello', max_tokens: 20, ignore_eos: true });
  assert.equal(r.status, 500);
  assert.match(r.json.error.message, /injected failure/);
  const ok = await postJson(`${url}/v1/completions`, { model: MODEL, prompt: 'hello', max_tokens: 5, ignore_eos: true });
  assert.equal(ok.status, 200, 'the server keeps serving');
});
