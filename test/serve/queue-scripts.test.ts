// Each Lua script of the Redis queue (src/serve/queue.ts) run against a real redis-server on
// loopback, case by case: it compiles as Redis loads it (a backslash escape lost or doubled in the
// TypeScript string shows up here as a Lua syntax error or as a wrong separator), and it does what
// the queue's rules (fencing, resume, re-queue) rely on.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { CLAIM, EMIT_BATCH, GIVE_BACK, REAP, connectQueueRedis, type QueueRedis } from '../../src/serve/queue.js';
import { startRedis } from './redis-fixture.js';

const redis = await startRedis();
let r: QueueRedis;
before(async () => { r = connectQueueRedis(redis.url); await r.connect(); });
after(async () => { await r.quit(); await redis.stop(); });

const P = 'scripts';
const k = (...parts: string[]) => [P, ...parts].join(':');

test('every script compiles in Redis', async () => {
  for (const [name, lua] of Object.entries({ CLAIM, EMIT_BATCH, GIVE_BACK, REAP })) {
    const sha = await r.script('LOAD', lua).catch((e: Error) => assert.fail(`${name}: ${e.message}`));
    assert.match(String(sha), /^[0-9a-f]{40}$/, name);
  }
});

/** A request queued by `origin` and moved to `worker`'s held list, as BLMOVE leaves it. */
async function queued(rid: string, origin = 'o', worker = 'w', fields: Record<string, string> = {}): Promise<void> {
  await r.del(k('req', rid), k('gen', rid));
  await r.hset(k('req', rid), { origin, payload: `{"p":"${rid}"}`, attempt: '0', state: 'queued', ...fields });
  await r.lpush(k('held', worker), rid);
}
const claim = (rid: string, worker = 'w') => r.claim(k('req', rid), k('held', worker), k('gen', rid), rid, k('alive', ''), worker);

test('CLAIM takes a live origin\'s request, and skips finished, cancelled, unknown and orphaned ones', async () => {
  await r.set(k('alive', 'o'), '1');
  await queued('c1');
  assert.deepEqual(await claim('c1'), ['1', '{"p":"c1"}', 'o', '0', '']);
  assert.deepEqual(await r.hmget(k('req', 'c1'), 'state', 'owner'), ['running', 'w']);
  assert.deepEqual(await r.lrange(k('held', 'w'), 0, -1), ['c1'], 'kept in the held list while it runs');
  // Taken again after a re-queue: a new attempt, and what was sent before comes along for the resume.
  await r.hset(k('req', 'c1'), 'sent', '3');
  await r.set(k('gen', 'c1'), '5,6,7,');
  assert.deepEqual(await claim('c1'), ['2', '{"p":"c1"}', 'o', '3', '5,6,7,']);

  await r.del(k('held', 'w'));
  await queued('done', 'o', 'w', { state: 'done' });
  assert.equal(await claim('done'), null);
  assert.equal(await r.exists(k('req', 'done')), 1, 'a finished request is its origin\'s to delete');
  await queued('cancelled', 'o', 'w', { state: 'cancelled' });
  await r.set(k('gen', 'cancelled'), '1,');
  assert.equal(await claim('cancelled'), null);
  assert.equal(await r.exists(k('req', 'cancelled'), k('gen', 'cancelled')), 0, 'a cancelled request is deleted');
  await r.lpush(k('held', 'w'), 'unknown');
  assert.equal(await claim('unknown'), null);
  await queued('orphan', 'dead-origin');
  assert.equal(await claim('orphan'), null);
  assert.equal(await r.exists(k('req', 'orphan')), 0, 'nobody is left to read it');
  assert.deepEqual(await r.lrange(k('held', 'w'), 0, -1), [], 'each skipped one left the held list');
});

/** Arguments of one EMIT_BATCH call: events as [rid, attempt, final, token, k, json]. */
function batch(origin: string, worker: string, events: [string, string, boolean, string, number, string][]): string[] {
  const keys = [k('out', origin), k('alive', origin), k('held', worker)];
  const argv: string[] = [];
  for (const [rid, attempt, final, token, n, json] of events) {
    keys.push(k('req', rid), k('gen', rid));
    argv.push(attempt, rid, final ? '1' : '0', token, String(n), json);
  }
  return [String(keys.length), ...keys, ...argv];
}
const emit = (events: [string, string, boolean, string, number, string][], origin = 'o', worker = 'w') =>
  r.appendEvents(...(batch(origin, worker, events) as [number, ...string[]]));

test('EMIT_BATCH appends a step\'s events as one entry of newline-separated lines and keeps gen and sent with them', async () => {
  await r.set(k('alive', 'o'), '1');
  await r.del(k('out', 'o'), k('held', 'w'));
  for (const rid of ['e1', 'e2']) { await queued(rid); await claim(rid); }
  const ev = (rid: string, n: number) => JSON.stringify({ rid, k: n, text: 'a\nb' });
  assert.deepEqual(await emit([['e1', '1', false, '10', 0, ev('e1', 0)], ['e2', '1', false, '20', 0, ev('e2', 0)], ['e1', '1', false, '11', 1, ev('e1', 1)]]), [1, 1, 1]);
  const entries = await r.xrange(k('out', 'o'), '-', '+');
  assert.equal(entries.length, 1, 'one stream entry for the batch');
  const [field, value] = entries[0][1];
  assert.equal(field, 'b');
  const lines = value.split('\n');
  assert.equal(lines.length, 3, `three lines joined by a real newline, not a backslash and an n: ${JSON.stringify(value)}`);
  assert.deepEqual(lines.map((l) => JSON.parse(l)), [{ rid: 'e1', k: 0, text: 'a\nb' }, { rid: 'e2', k: 0, text: 'a\nb' }, { rid: 'e1', k: 1, text: 'a\nb' }]);
  assert.equal(await r.get(k('gen', 'e1')), '10,11,');
  assert.equal(await r.hget(k('req', 'e1'), 'sent'), '2');

  // The same batch again (a client library's resend) changes nothing; a gap is refused; an event
  // without a token (a final text flush) is counted but adds nothing to gen.
  assert.deepEqual(await emit([['e1', '1', false, '11', 1, ev('e1', 1)], ['e1', '1', false, '13', 3, ev('e1', 3)], ['e2', '1', false, '', 1, ev('e2', 1)]]), [2, 3, 1]);
  assert.equal(await r.get(k('gen', 'e1')), '10,11,');
  assert.equal(await r.get(k('gen', 'e2')), '20,');
  assert.equal(await r.hget(k('req', 'e2'), 'sent'), '2');

  // Fencing: an old attempt, a cancelled request, a dead origin are refused.
  await claim('e1'); // attempt 2 now
  assert.deepEqual(await emit([['e1', '1', false, '12', 2, ev('e1', 2)]]), [0]);
  await r.hset(k('req', 'e2'), 'state', 'cancelled');
  assert.deepEqual(await emit([['e2', '1', false, '21', 2, ev('e2', 2)]]), [0]);
  await r.del(k('alive', 'o'));
  assert.deepEqual(await emit([['e1', '2', false, '12', 2, ev('e1', 2)]]), [0]);
  assert.equal((await r.xrange(k('out', 'o'), '-', '+')).length, 2, 'nothing refused reached the stream');
  await r.set(k('alive', 'o'), '1');

  // A final event marks the request done and leaves the held list; a refused final leaves it too.
  assert.deepEqual(await emit([['e1', '2', true, '', 2, ev('e1', 2)]]), [1]);
  assert.equal(await r.hget(k('req', 'e1'), 'state'), 'done');
  assert.deepEqual(await emit([['e2', '1', true, '', 2, ev('e2', 2)]]), [0]);
  assert.deepEqual(await r.lrange(k('held', 'w'), 0, -1), []);
});

test('GIVE_BACK re-queues a request only for the attempt that holds it', async () => {
  await r.set(k('alive', 'o'), '1');
  await r.del(k('queue'), k('held', 'w'));
  await queued('g1');
  await claim('g1');
  assert.equal(await r.giveBack(k('req', 'g1'), k('held', 'w'), k('queue'), 'g1', '7'), 0, 'not this attempt');
  await r.lpush(k('held', 'w'), 'g1');
  assert.equal(await r.giveBack(k('req', 'g1'), k('held', 'w'), k('queue'), 'g1', '1'), 1);
  assert.equal(await r.hget(k('req', 'g1'), 'state'), 'queued');
  assert.deepEqual(await r.lrange(k('queue'), 0, -1), ['g1']);
  assert.deepEqual(await r.lrange(k('held', 'w'), 0, -1), []);
  assert.equal(await r.giveBack(k('req', 'g1'), k('held', 'w'), k('queue'), 'g1', '1'), 0, 'given back once');
});

test('REAP re-queues a dead instance\'s held requests as queued and forgets it, and leaves a live one alone', async () => {
  await r.set(k('alive', 'o'), '1');
  await r.del(k('queue'), k('held', 'dead'));
  await queued('r1', 'o', 'dead'); await claim('r1', 'dead');
  await queued('r2', 'o', 'dead', { state: 'done' });
  await r.sadd(k('instances'), 'dead', 'live');
  await r.xadd(k('out', 'dead'), '*', 'b', '{}');
  const reap = (id: string) => r.reap(k('alive', id), k('held', id), k('queue'), k('instances'), k('out', id), id, k('req', ''));
  await r.set(k('alive', 'live'), '1', 'PX', 10000);
  assert.equal(await reap('live'), -1);
  assert.equal(await reap('dead'), 2);
  assert.deepEqual((await r.lrange(k('queue'), 0, -1)).sort(), ['r1', 'r2']);
  assert.equal(await r.hget(k('req', 'r1'), 'state'), 'queued', 'no longer shown as running');
  assert.equal(await r.hget(k('req', 'r2'), 'state'), 'done', 'a finished one stays finished (CLAIM skips it)');
  assert.deepEqual(await r.smembers(k('instances')), ['live']);
  assert.equal(await r.exists(k('out', 'dead'), k('held', 'dead')), 0);
});
