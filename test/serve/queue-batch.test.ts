// The Redis queue's event batching: the tokens of concurrent requests travel to their origin in
// fewer Redis calls than events (a step's events for one origin go as one batch), and every
// request still gets all of its tokens, in order, exactly once (its greedy text alone).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, MODEL, postJson, metric, greedyText } from './serve-fixtures.js';
import { startRedis } from './redis-fixture.js';

const redis = await startRedis();
after(() => redis.stop());

test('concurrent requests through the queue: batched events, each text whole and in order', async () => {
  const { server, url } = await startServer({ queue: { url: redis.url, prefix: `batch:${process.pid}` } });
  try {
    const prompts = ['the quick brown fox', 'hello world', 'a b c d e f g', 'tokenizers split text'];
    const N = 12;
    const results = await Promise.all(prompts.map((prompt) => postJson(`${url}/v1/completions`, { model: MODEL, prompt, max_tokens: N, temperature: 0, ignore_eos: true })));
    for (let i = 0; i < prompts.length; i++) {
      assert.equal(results[i].status, 200, JSON.stringify(results[i].json));
      assert.equal(results[i].json.choices[0].text, await greedyText(prompts[i], N), prompts[i]);
      assert.equal(results[i].json.usage.completion_tokens, N);
    }
    const events = prompts.length * (N + 1);
    const batches = await metric(url, 'inferjit:queue_event_batches_total');
    assert.ok(batches > 0 && batches < events, `${batches} batches for ${events} events: a step's events went together`);
  } finally {
    await server.close();
  }
});
