// Request pulling across instances through a real redis-server on loopback: two instances share a
// burst sent to one of them; a cancelled stream frees the worker's blocks; an instance killed (SIGKILL,
// a separate process) in the middle of a request has it re-queued and finished by another instance,
// and the client gets the whole answer, each token once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, spawnQueueInstance, MODEL, postJson, metric, greedyText, sseData } from './serve-fixtures.js';
import { startRedis } from './redis-fixture.js';

const redis = await startRedis();
after(() => redis.stop());

const PROMPTS = ['the quick brown fox', 'hello world', 'tokenizers split text', 'a b c d', 'jumps over', 'lazy dog', 'pieces of text', 'brown'];

/** POSTs a streaming completion; returns the concatenated text and the events (calls onChunk per text event). */
async function streamText(url: string, body: object, onChunk?: (n: number) => void, signal?: AbortSignal): Promise<{ text: string; texts: string[]; finish: string | null; events: string[] }> {
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }), signal });
  if (r.status !== 200) assert.fail(`status ${r.status}: ${await r.text()}`);
  let finish: string | null = null, n = 0;
  const texts: string[] = [];
  const events: string[] = [];
  for await (const e of sseData(r)) {
    events.push(e);
    if (e === '[DONE]') continue;
    const c = JSON.parse(e);
    if (c.error) throw new Error(c.error.message);
    texts[c.choices[0].index] = (texts[c.choices[0].index] ?? '') + c.choices[0].text;
    finish = c.choices[0].finish_reason ?? finish;
    onChunk?.(++n);
  }
  return { text: texts[0] ?? '', texts, finish, events };
}

test('two instances on one queue share a burst sent to one of them; output equals the reference', async () => {
  const queue = { url: redis.url, prefix: 'share', livenessTtlMs: 2000 };
  const a = await startServer({ scheduler: { maxRunning: 2 }, queue });
  const b = await startServer({ scheduler: { maxRunning: 2 }, queue });
  try {
    const results = await Promise.all(PROMPTS.map((prompt) => postJson(`${a.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 16, temperature: 0, ignore_eos: true })));
    for (let i = 0; i < PROMPTS.length; i++) {
      assert.equal(results[i].status, 200, JSON.stringify(results[i].json));
      assert.equal(results[i].json.choices[0].text, await greedyText(PROMPTS[i], 16), `prompt ${i}`);
      assert.equal(results[i].json.usage.completion_tokens, 16);
    }
    assert.equal(await metric(a.url, 'inferjit:queue_pushed_total'), 8);
    assert.equal(await metric(b.url, 'inferjit:queue_pushed_total'), 0, 'nothing was sent to b');
    const pulledA = await metric(a.url, 'inferjit:queue_pulled_total'), pulledB = await metric(b.url, 'inferjit:queue_pulled_total');
    assert.equal(pulledA + pulledB, 8);
    assert.ok(pulledB >= 2, `b took a share of the burst (a ${pulledA}, b ${pulledB})`);
    assert.ok(pulledA >= 2, `a took a share of the burst (a ${pulledA}, b ${pulledB})`);
    assert.equal(await metric(a.url, 'inferjit:queue_length'), 0);
    assert.equal(await metric(a.url, 'inferjit:queue_instances'), 2);
    assert.equal(await metric(a.url, 'inferjit:queue_outstanding'), 0);
    // The accepting instance counts the tokens of its requests (wherever they ran), each once.
    assert.equal(await metric(a.url, 'vllm:generation_tokens_total'), 8 * 16);
    assert.equal(await metric(b.url, 'vllm:generation_tokens_total'), 0);

    // Streaming through the queue gives the same text, sent once.
    const s = await streamText(b.url, { model: MODEL, prompt: PROMPTS[0], max_tokens: 16, temperature: 0, ignore_eos: true });
    assert.equal(s.text, await greedyText(PROMPTS[0], 16));
    assert.equal(s.finish, 'length');
    assert.equal(s.events.at(-1), '[DONE]');

    // A client that goes away mid-stream: the instance running it stops and frees its blocks.
    const ac = new AbortController();
    // 8 choices of 400 tokens on 2 + 2 running slots: far longer than the 3 chunks the client waits for.
    await streamText(a.url, { model: MODEL, prompt: PROMPTS[1], max_tokens: 400, n: 8, temperature: 0, ignore_eos: true }, (n) => { if (n === 3) ac.abort(); }, ac.signal)
      .then(() => assert.fail('the stream was aborted'), (e) => assert.equal((e as Error).name, 'AbortError'));
    for (let i = 0; i < 250 && (a.server.scheduler!.kvUsage > 0 || b.server.scheduler!.kvUsage > 0 || a.server.queue!['held'].size + b.server.queue!['held'].size > 0); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(a.server.scheduler!.kvUsage + b.server.scheduler!.kvUsage, 0, 'every block is back on both');
    assert.equal(await metric(a.url, 'inferjit:queue_held') + await metric(b.url, 'inferjit:queue_held'), 0);
  } finally {
    await b.server.close();
    await a.server.close();
  }
});

test('a request held by an instance killed mid-way is re-queued, finished by another, and delivered whole', async () => {
  const prefix = 'kill';
  const livenessTtlMs = 1500;
  // The victim: a separate process (the CLI), killed with SIGKILL, so it cleans nothing up.
  // It runs one sequence at a time, so of the request's 3 choices one runs and the others wait in the queue.
  const { child: victim, exited } = await spawnQueueInstance(redis.url, prefix, livenessTtlMs);
  // The client's instance only forwards (it runs nothing), so the victim takes the request.
  const origin = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs, pull: false } });
  let survivor: ReturnType<typeof startServer> | null = null;
  try {
    const maxTokens = 400;
    const expected = await greedyText(PROMPTS[0], maxTokens);
    const got = await streamText(origin.url, { model: MODEL, prompt: PROMPTS[0], max_tokens: maxTokens, n: 3, temperature: 0, ignore_eos: true }, (n) => {
      if (n !== 5) return;
      victim.kill('SIGKILL');
      // Another instance joins; it (or the origin) notices the victim's liveness key expired and re-queues the request.
      survivor = exited.then(() => startServer({ queue: { url: redis.url, prefix, livenessTtlMs } }));
    });
    assert.deepEqual(got.texts, [expected, expected, expected], 'the whole answer, each token once');
    assert.equal(got.finish, 'length');
    assert.ok(survivor, 'the victim was killed mid-request');
    const s = await (survivor as unknown as ReturnType<typeof startServer>);
    assert.ok(await metric(s.url, 'inferjit:queue_pulled_total') >= 2, 'the survivor ran the rest');
    assert.equal(await metric(s.url, 'inferjit:queue_requeued_total') + await metric(origin.url, 'inferjit:queue_requeued_total'), 1);
    assert.equal(await metric(s.url, 'inferjit:queue_resumed_total'), 1, 'the survivor resumed the killed choice after the tokens the client had');
    assert.equal(await metric(origin.url, 'inferjit:queue_replayed_events_total'), 0, 'nothing was sent twice, nor regenerated');
    assert.equal(await metric(origin.url, 'inferjit:queue_instances'), 2, 'the dead instance was forgotten');
  } finally {
    victim.kill('SIGKILL');
    await (await (survivor as ReturnType<typeof startServer> | null))?.server.close();
    await origin.server.close();
  }
});

test('an instance that shuts down puts the requests it runs back on the queue; another finishes them', async () => {
  const queue = { url: redis.url, prefix: 'close', livenessTtlMs: 2000 };
  const origin = await startServer({ queue: { ...queue, pull: false } });
  const leaving = await startServer({ queue });
  let closing: Promise<void> | null = null;
  let joining: ReturnType<typeof startServer> | null = null;
  try {
    const expected = await greedyText(PROMPTS[2], 300);
    const got = await streamText(origin.url, { model: MODEL, prompt: PROMPTS[2], max_tokens: 300, temperature: 0, ignore_eos: true }, (n) => {
      if (n !== 5) return;
      closing = leaving.server.close();
      joining = closing.then(() => startServer({ queue }));
    });
    assert.equal(got.text, expected, 'the whole answer, each token once');
    assert.ok(closing, 'the instance left mid-request');
    const j = await (joining as unknown as ReturnType<typeof startServer>);
    assert.equal(await metric(j.url, 'inferjit:queue_pulled_total'), 1);
    assert.equal(await metric(j.url, 'inferjit:queue_requeued_total') + await metric(origin.url, 'inferjit:queue_requeued_total'), 0, 'handed back, not reaped');
    assert.equal(await metric(j.url, 'inferjit:queue_resumed_total'), 1, 'it resumed after the tokens the client had');
    assert.equal(await metric(origin.url, 'inferjit:queue_replayed_events_total'), 0);
  } finally {
    await closing;
    await (await (joining as ReturnType<typeof startServer> | null))?.server.close();
    await origin.server.close();
  }
});
