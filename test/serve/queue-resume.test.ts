// Through a real redis-server on loopback: a request whose worker dies mid-stream (a separate process,
// SIGKILL) resumes on another instance after the tokens its client already has, sampled or greedy,
// with no token twice and none missing; a request nobody runs, or whose worker died with nobody left
// to resume it, ends with an error event naming the reason (eventTimeoutMs) instead of hanging.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, spawnQueueInstance, MODEL, postJson, metric, greedyText, sseData } from './serve-fixtures.js';
import { connectQueueRedis } from '../../src/serve/queue.js';
import { startRedis } from './redis-fixture.js';

// Each case takes seconds; the timeout turns a hang into a failure naming the case (one unexplained slow
// run was seen while the machine was loaded).
const redis = await startRedis();
after(() => redis.stop());

interface Streamed { text: string; tokens: string[]; finish: string | null; error: string | null; done: boolean; usage: { completion_tokens: number } | null }

/** Streams a completion with per-token logprobs (so every token the client gets is listed once); calls onChunk per chunk. */
async function stream(url: string, body: object, onChunk?: (n: number) => void): Promise<Streamed> {
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true, logprobs: 0, stream_options: { include_usage: true } }) });
  if (r.status !== 200) assert.fail(`status ${r.status}: ${await r.text()}`);
  const s: Streamed = { text: '', tokens: [], finish: null, error: null, done: false, usage: null };
  let n = 0;
  for await (const e of sseData(r)) {
    if (e === '[DONE]') { s.done = true; continue; }
    const c = JSON.parse(e);
    if (c.error) { s.error = c.error.message; continue; }
    if (c.usage) { s.usage = c.usage; continue; }
    s.text += c.choices[0].text;
    s.tokens.push(...(c.choices[0].logprobs?.tokens ?? []));
    s.finish = c.choices[0].finish_reason ?? s.finish;
    onChunk?.(++n);
  }
  return s;
}

type Started = Awaited<ReturnType<typeof startServer>>;

/** An origin that only forwards and one worker on `prefix` (liveness 3 s, events time out after 20 s), and an admin connection; all closed after `fn`. */
async function withOriginAndWorker(prefix: string, fn: (origin: Started, worker: Started, admin: ReturnType<typeof connectQueueRedis>) => Promise<void>): Promise<void> {
  const livenessTtlMs = 3000;
  const origin = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs, pull: false, eventTimeoutMs: 20000 } });
  const worker = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs } });
  const admin = connectQueueRedis(redis.url);
  await admin.connect();
  try {
    await fn(origin, worker, admin);
  } finally {
    await admin.config('SET', 'maxmemory', '0').catch(() => undefined);
    await admin.quit();
    await worker.server.close();
    await origin.server.close();
  }
}

test('a sampled stream whose worker is killed mid-way resumes on another instance: every token once, none missing', { timeout: 240_000 }, async () => {
  const prefix = 'resume', livenessTtlMs = 1000;
  const victim = await spawnQueueInstance(redis.url, prefix, livenessTtlMs);
  // The client's instance only forwards, so the victim runs the request.
  const origin = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs, pull: false } });
  let survivor: Promise<Awaited<ReturnType<typeof startServer>>> | null = null;
  try {
    const maxTokens = 200;
    // temperature 1, no seed: a re-run from the prompt would draw other tokens; a resume continues after the sent ones.
    const got = await stream(origin.url, { model: MODEL, prompt: 'the quick brown fox', max_tokens: maxTokens, temperature: 1, ignore_eos: true }, (n) => {
      if (n !== 5) return;
      victim.child.kill('SIGKILL');
      survivor = victim.exited.then(() => startServer({ queue: { url: redis.url, prefix, livenessTtlMs } }));
    });
    assert.ok(survivor, 'the victim was killed mid-stream');
    assert.equal(got.error, null);
    assert.equal(got.finish, 'length');
    assert.ok(got.done, 'the stream ended with [DONE]');
    assert.equal(got.tokens.length, maxTokens, 'the client got each of the max_tokens tokens once');
    assert.equal(got.usage?.completion_tokens, maxTokens);
    const s = await (survivor as unknown as Promise<Awaited<ReturnType<typeof startServer>>>);
    assert.equal(await metric(s.url, 'inferjit:queue_resumed_total'), 1);
    assert.equal(await metric(origin.url, 'inferjit:queue_replayed_events_total'), 0);
  } finally {
    victim.child.kill('SIGKILL');
    await (await (survivor as Promise<Awaited<ReturnType<typeof startServer>>> | null))?.server.close();
    await origin.server.close();
  }
});

test('a request no instance takes ends with an error after eventTimeoutMs, and leaves the queue', { timeout: 240_000 }, async () => {
  const prefix = 'nobody';
  const origin = await startServer({ queue: { url: redis.url, prefix, pull: false, eventTimeoutMs: 800 } });
  try {
    const t0 = Date.now();
    const r = await postJson(`${origin.url}/v1/completions`, { model: MODEL, prompt: 'hello', max_tokens: 4 });
    assert.equal(r.status, 500);
    assert.match(r.json.error.message, /no instance took it from the shared queue in 0\.8 s \(are instances pulling from nobody/);
    assert.ok(Date.now() - t0 < 5000, 'it did not hang');
    const s = await stream(origin.url, { model: MODEL, prompt: 'hello', max_tokens: 4 });
    assert.match(s.error ?? '', /no instance took it/);
    assert.ok(s.done, 'then [DONE]');
    assert.equal(await metric(origin.url, 'inferjit:queue_event_timeouts_total'), 2);
    assert.equal(await metric(origin.url, 'inferjit:queue_length'), 0, 'the cancelled requests left the queue');
    assert.equal(await metric(origin.url, 'inferjit:queue_outstanding'), 0);
  } finally {
    await origin.server.close();
  }
});

test('a stream whose worker is killed with nobody left to resume it ends with an error event after its partial output', { timeout: 240_000 }, async () => {
  const prefix = 'orphan', livenessTtlMs = 600;
  const victim = await spawnQueueInstance(redis.url, prefix, livenessTtlMs);
  const origin = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs, pull: false, eventTimeoutMs: 2500 } });
  try {
    let killed = false;
    const got = await stream(origin.url, { model: MODEL, prompt: 'hello world', max_tokens: 400, temperature: 0, ignore_eos: true }, (n) => {
      if (n === 5) { victim.child.kill('SIGKILL'); killed = true; }
    });
    assert.ok(killed);
    assert.ok(got.tokens.length >= 5 && got.tokens.length < 400, `partial output (${got.tokens.length} tokens)`);
    // The origin re-queued it when the victim's key expired; nobody took it since.
    assert.match(got.error ?? '', /the request got no event: no instance took it from the shared queue in 2\.5 s/);
    assert.equal(got.finish, null);
    assert.ok(got.done);
    assert.equal(await metric(origin.url, 'inferjit:queue_requeued_total'), 1);
  } finally {
    victim.child.kill('SIGKILL');
    await origin.server.close();
  }
});

test('Redis drops every client connection mid-stream, twice: the stream still delivers the whole greedy answer, each token once', { timeout: 240_000 }, async () => {
  await withOriginAndWorker('chaos', async (origin, _worker, admin) => {
    const maxTokens = 300;
    const expected = await greedyText('tokenizers split text', maxTokens);
    const kills: Promise<unknown>[] = [];
    const got = await stream(origin.url, { model: MODEL, prompt: 'tokenizers split text', max_tokens: maxTokens, temperature: 0, ignore_eos: true }, (n) => {
      // Every connection but the admin's: XREAD, BLMOVE and the event scripts in flight fail or are resent.
      if (n === 5 || n === 40) kills.push(admin.call('CLIENT', 'KILL', 'TYPE', 'normal'));
    });
    assert.ok(Number(await kills[0]) >= 4, 'the instances\' connections were dropped');
    assert.equal(got.error, null);
    assert.equal(got.tokens.length, maxTokens, 'every token once');
    assert.equal(got.text, expected);
    assert.equal(got.finish, 'length');
  });
});

test('a worker paused past its liveness TTL (SIGSTOP) is declared dead; when it wakes its appends are refused and the client sees each token once', { timeout: 240_000 }, async () => {
  const prefix = 'zombie', livenessTtlMs = 800;
  const victim = await spawnQueueInstance(redis.url, prefix, livenessTtlMs);
  const origin = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs, pull: false } });
  let survivor: Promise<Awaited<ReturnType<typeof startServer>>> | null = null;
  try {
    const maxTokens = 300;
    const expected = await greedyText('a b c d', maxTokens);
    let resumedAt = 0, joined = false;
    const got = await stream(origin.url, { model: MODEL, prompt: 'a b c d', max_tokens: maxTokens, temperature: 0, ignore_eos: true }, (n) => {
      if (n === 5) {
        victim.child.kill('SIGSTOP');
        // Wake it once another instance has taken over: it still believes it runs the request.
        survivor = new Promise((r) => setTimeout(r, 3 * livenessTtlMs)).then(() => startServer({ queue: { url: redis.url, prefix, livenessTtlMs } }))
          .then((x) => { joined = true; return x; });
      }
      // A chunk after the survivor joined: it runs the request now.
      if (resumedAt === 0 && joined) { resumedAt = n; victim.child.kill('SIGCONT'); }
    });
    assert.ok(resumedAt > 5, 'the survivor resumed it, then the victim woke');
    assert.equal(got.error, null);
    assert.equal(got.tokens.length, maxTokens, 'every token once');
    assert.equal(got.text, expected);
    const s = await (survivor as unknown as Promise<Awaited<ReturnType<typeof startServer>>>);
    assert.equal(await metric(s.url, 'inferjit:queue_resumed_total'), 1);
    // Awake, it is an instance again (so that if it dies now, what it takes is re-queued).
    for (let i = 0; i < 100 && await metric(origin.url, 'inferjit:queue_instances') < 3; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await metric(origin.url, 'inferjit:queue_instances'), 3);
  } finally {
    victim.child.kill('SIGCONT');
    victim.child.kill('SIGKILL');
    await (await (survivor as Promise<Awaited<ReturnType<typeof startServer>>> | null))?.server.close();
    await origin.server.close();
  }
});

test('a worker whose event batches Redis refuses gives the request back (retrying until Redis takes it); it resumes after what arrived', { timeout: 240_000 }, async () => {
  await withOriginAndWorker('refused', async (origin, worker, admin) => {
    const maxTokens = 300;
    const expected = await greedyText('the batches bounce', maxTokens);
    let refusing: Promise<unknown> | null = null;
    const got = await stream(origin.url, { model: MODEL, prompt: 'the batches bounce', max_tokens: maxTokens, temperature: 0, ignore_eos: true }, (n) => {
      if (n !== 5) return;
      // Every write fails with OOM for 300 ms: the worker's next event batch and its first tries to
      // give the request back are refused; then Redis takes writes again.
      refusing = admin.config('SET', 'maxmemory', '1').then(() => new Promise((r) => setTimeout(r, 300))).then(() => admin.config('SET', 'maxmemory', '0'));
    });
    assert.ok(refusing, 'Redis refused writes mid-stream');
    await refusing;
    assert.equal(got.error, null);
    assert.equal(got.tokens.length, maxTokens, 'every token once');
    assert.equal(got.text, expected);
    assert.equal(got.finish, 'length');
    assert.ok(await metric(worker.url, 'inferjit:queue_requeued_total') >= 1, 'the worker gave the request back');
    assert.ok(await metric(worker.url, 'inferjit:queue_resumed_total') >= 1, 'and resumed it after the tokens that arrived');
  });
});

test('a request sitting unclaimed in a live worker\'s held list (a BLMOVE whose reply was lost) is adopted and run', { timeout: 240_000 }, async () => {
  const prefix = 'stranded', livenessTtlMs = 600;
  const origin = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs, pull: false, eventTimeoutMs: 20000 } });
  const admin = connectQueueRedis(redis.url);
  await admin.connect();
  let worker: Awaited<ReturnType<typeof startServer>> | null = null;
  try {
    const expected = await greedyText('lost replies', 20);
    const got = stream(origin.url, { model: MODEL, prompt: 'lost replies', max_tokens: 20, temperature: 0, ignore_eos: true });
    // What the lost reply leaves behind: Redis moved the request into the worker's held list, the worker never saw it.
    let rid: string | null = null;
    for (let i = 0; i < 200 && !rid; i++) { rid = await admin.lmove(`${prefix}:queue`, `${prefix}:held:w1`, 'RIGHT', 'LEFT'); if (!rid) await new Promise((r) => setTimeout(r, 10)); }
    assert.ok(rid, 'the request reached the queue');
    worker = await startServer({ queue: { url: redis.url, prefix, livenessTtlMs, instanceId: 'w1' } });
    const s = await got;
    assert.equal(s.error, null);
    assert.equal(s.text, expected);
    assert.equal(await metric(worker.url, 'inferjit:queue_pulled_total'), 1);
    assert.equal(await admin.llen(`${prefix}:held:w1`), 0, 'and it left the held list when it finished');
  } finally {
    await admin.quit();
    await worker?.server.close();
    await origin.server.close();
  }
});

test('`inferjit serve` on a queue exits with 0 within seconds of SIGTERM, also after Redis dropped its connections mid-read', { timeout: 240_000 }, async () => {
  const admin = connectQueueRedis(redis.url);
  await admin.connect();
  try {
    for (let round = 0; round < 2; round++) {
      const { child, exited } = await spawnQueueInstance(redis.url, `exit${round}`, 3000);
      // Drop its connections while its pull loop blocks in BLMOVE and its event loop in XREAD: ioredis may
      // strand such a read, whose commandTimeout timer (11 s) would otherwise hold the process after close.
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'normal')) >= 1, 'the instance\'s connections were dropped');
      await new Promise((r) => setTimeout(r, 300));
      const t = performance.now();
      child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 6000))]);
      if (code === 'still running') child.kill('SIGKILL');
      assert.equal(code, 0, `round ${round}: exit ${String(code)} after ${Math.round(performance.now() - t)} ms`);
    }
  } finally {
    await admin.quit();
  }
});
