// Continuous batching through the real server: concurrent requests (chunked prefill, preemption by
// recompute on a small KV pool) produce exactly what each produces alone; overload is refused with
// 429 while accepted requests all finish; a client that disconnects has its KV blocks freed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, MODEL, postJson, metric, greedyText } from './serve-fixtures.js';

const PROMPTS = ['the quick brown fox jumps over the lazy dog', 'hello world', 'tokenizers split text into pieces', 'a b c d e f g'];

test('concurrent requests with chunked prefill and preemption match each run alone', async () => {
  // 6 blocks of 8 positions: four sequences of up to ~40 positions cannot all hold their KV at once.
  const { server, url } = await startServer({ engine: { threads: 1, cacheTokens: 48, blockSize: 8 }, scheduler: { maxBatchedTokens: 6 } });
  try {
    const results = await Promise.all(PROMPTS.map((prompt) => postJson(`${url}/v1/completions`, { model: MODEL, prompt, max_tokens: 20, temperature: 0, ignore_eos: true })));
    for (let i = 0; i < PROMPTS.length; i++) {
      assert.equal(results[i].status, 200, JSON.stringify(results[i].json));
      assert.equal(results[i].json.choices[0].text, await greedyText(PROMPTS[i], 20), `prompt ${i}`);
      assert.equal(results[i].json.usage.completion_tokens, 20);
    }
    assert.ok(await metric(url, 'vllm:num_preemptions_total') > 0, 'the small pool forced preemptions');
    assert.equal(await metric(url, 'vllm:gpu_cache_usage_perc'), 0, 'every block is back');
    assert.equal(await metric(url, 'vllm:generation_tokens_total'), 80);
  } finally {
    await server.close();
  }
});

test('overload gets 429 with Retry-After; nothing already accepted is lost', async () => {
  const { server, url } = await startServer({ scheduler: { maxRunning: 1, maxWaiting: 2 } });
  try {
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => postJson(`${url}/v1/completions`, { model: MODEL, prompt: PROMPTS[i % 4], max_tokens: 15, ignore_eos: true, temperature: 0 })));
    const refused = results.filter((r) => r.status === 429);
    const ok = results.filter((r) => r.status === 200);
    assert.equal(refused.length + ok.length, 8, results.map((r) => r.status).join(','));
    assert.ok(refused.length >= 1, 'some requests were refused');
    assert.ok(ok.length >= 2, 'the queue took some');
    for (const r of refused) {
      assert.equal(r.headers.get('retry-after'), '1');
      assert.match(r.json.error.message, /at capacity/);
    }
    for (const r of ok) {
      assert.equal(r.json.usage.completion_tokens, 15);
      assert.equal(r.json.choices[0].finish_reason, 'length');
    }
    assert.equal(await metric(url, 'vllm:request_success_total{model_name="tiny.gguf",finished_reason="length"}'), ok.length);
  } finally {
    await server.close();
  }
});

test('a disconnected stream is removed and its KV blocks freed (metrics show it)', async () => {
  const { server, url } = await startServer();
  try {
    const controller = new AbortController();
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: controller.signal,
      body: JSON.stringify({ model: MODEL, prompt: 'the quick brown', max_tokens: 490, ignore_eos: true, stream: true }),
    });
    const reader = r.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^data: \{/);
    assert.equal(await metric(url, 'vllm:num_requests_running'), 1);
    assert.ok(await metric(url, 'vllm:gpu_cache_usage_perc') > 0, 'the stream holds KV blocks');
    controller.abort();
    const deadline = Date.now() + 5000;
    while (await metric(url, 'vllm:num_requests_running') !== 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    assert.equal(await metric(url, 'vllm:num_requests_running'), 0);
    assert.equal(await metric(url, 'vllm:gpu_cache_usage_perc'), 0, 'its blocks are free');
    assert.equal(await metric(url, 'vllm:request_success_total{model_name="tiny.gguf",finished_reason="abort"}'), 1);
    assert.ok(await metric(url, 'vllm:generation_tokens_total') < 490, 'it stopped early');
    // And the server serves the next request.
    const next = await postJson(`${url}/v1/completions`, { model: MODEL, prompt: 'hi', max_tokens: 3, ignore_eos: true });
    assert.equal(next.json.usage.completion_tokens, 3);
  } finally {
    await server.close();
  }
});
