// Request pulling across instances through Redis (`inferjit serve --queue redis://host:port`).
//
// Every instance on one queue plays two parts:
//   - origin: a request it accepts (HTTP or gRPC) is not run locally but pushed to the shared queue
//     (a Redis list of request ids; the request itself is a hash). The client's connection stays
//     here; the request's events (text pieces, the finish) come back on this instance's own Redis
//     stream, `<prefix>:out:<instance>`, read in order with XREAD.
//   - worker: it moves a request id from the queue to its own held list (BLMOVE, atomic) only while
//     its scheduler has free capacity (a free running slot and nobody waiting), runs it in its local
//     scheduler, and appends the events to the origin's stream.
// Liveness: each instance refreshes `<prefix>:alive:<instance>` (a key with a TTL). Every instance
// checks the others; one whose key expired has its held list moved back to the queue (one Lua script,
// so two survivors cannot both re-queue it), and another worker runs those requests again.
//
// No duplicate or inconsistent output reaches a client, by two rules:
//   1. fencing: taking a request increments its `attempt`; a worker appends an event only through a
//      script that checks the attempt is still its own (and the request still running), so a worker
//      that was declared dead but is still running is cut off at its next token, and it stops;
//   2. resume: the same script, as it appends a token event to the origin's stream, appends the token
//      to the request's `gen` key and counts the event in its hash, atomically. So `gen` holds exactly
//      the tokens the client has (or will read from its stream). A re-queued request's next worker
//      continues after them: it prefills prompt + `gen` (recompute, as for a preemption), numbers its
//      events from the count, and sends only new tokens. The client sees one continuous stream: no
//      token twice, none lost, no restart, whatever the sampling (a sampled request continues with
//      fresh draws from its seed; a greedy one is the uninterrupted answer up to float rounding).
//   Events are numbered, and the script keeps an event only if its number is the next one (so a batch
//   Redis runs twice, a client library's resend, is not applied twice). The origin too delivers event
//   k once, and fails the request with an error if one is missing rather than splice around a gap.
// Lost events: a worker whose event batch fails to reach Redis stops those requests and re-queues
// them (fenced: only if they are still its own), so the next worker resumes after what did arrive;
// a give-back or a claim that Redis refuses is retried until it answers (while an instance lives,
// nobody else touches its held list), and a request found in an instance's held list that it does
// not know (a BLMOVE whose reply was lost) is claimed by it after two checks. An
// origin that gets no event for a request for `eventTimeoutMs` (no live worker took it, or the one
// running it went silent without its liveness key expiring) ends it with an error saying which, and
// cancels it: a client never waits forever.
// Cancellation: the origin marks the request cancelled and removes it from the queue; the worker's
// next append is refused and it aborts the sequence (KV blocks freed at its next step).
// Coalescing: a worker's events are not sent one by one. The events a scheduler step produces (one
// token for each of its sequences, finishes) are gathered per origin and sent as ONE script call
// that checks each event's fencing and appends the accepted ones as ONE stream entry (a batch,
// field `b`: the events as JSON lines), so a step costs one round trip per origin, not one per token.
// Batches of one origin go out on one connection in order, so each request's events stay in order.
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { Gauge, Counter, type Registry } from 'prom-client';
import { type TokenLogprob } from './engine.js';
import { QueueFullError, type Scheduler, type SequenceEvents, type SequenceRequest, type FinishReason } from './scheduler.js';

export interface QueueOptions {
  /** redis://host:port[/db] */
  url: string;
  /** Key prefix; instances serving one model must share it (default `inferjit:<model name>`). */
  prefix?: string;
  /** This instance's id (default: random). */
  instanceId?: string;
  /** Liveness key TTL in ms (default 10000): an instance silent this long has its requests re-queued. */
  livenessTtlMs?: number;
  /** Whether this instance runs requests from the queue (default true; false: it only accepts and forwards). */
  pull?: boolean;
  /** Requests this instance may have in the queue or running elsewhere at once; more get 429 (default 1024). */
  maxOutstanding?: number;
  /**
   * A request accepted here that gets no event (token or finish) for this long ends with an error and
   * is cancelled (default 120000 ms): nobody took it from the queue, or the instance running it went
   * silent. Waiting in a long queue counts too: set it above the longest wait you accept.
   */
  eventTimeoutMs?: number;
}

/** What the HTTP handlers submit to: the local Scheduler, or the queue (same shape). */
export interface RequestSink {
  submit(group: { req: SequenceRequest; events: SequenceEvents }[]): number[];
  abort(id: number): void;
}

interface Payload {
  promptIds: number[];
  sampling: SequenceRequest['sampling'];
  maxTokens: number;
  stopTokens: number[];
  stop: string[];
  priority: number;
  logprobs?: number;
}

/** A request this instance accepted and forwarded (origin side). */
interface Outstanding { rid: string; events: SequenceEvents; promptTokens: number; delivered: number; generated: number; lastEventAt: number }
/** A request this instance took from the queue and runs (worker side). */
interface Held { rid: string; attempt: string; origin: string; seqId: number; next: number; stopped: boolean }
/** An event waiting in the outbox for its origin's next batch. */
interface OutEvent { h: Held; final: boolean; token: string; k: number; json: string }
/** One event as the origin reads it (a line of a batch). */
type QueueEvent = Record<string, string | number | TokenLogprob>;

// The scripts are plain strings (String.raw): a backslash in them reaches Lua as written.
// test/serve/queue-scripts.test.ts runs each one against a real redis-server.

// KEYS: meta, held list, gen. ARGV: rid, alive-key prefix, this instance. Takes a request moved to our
// held list: skips (and forgets) one that finished, was cancelled, or whose origin is gone. Answers
// the attempt, the payload, the origin, the events already sent and the tokens already generated
// (`gen`: "id,id,...,").
export const CLAIM = String.raw`
local st = redis.call('HGET', KEYS[1], 'state')
local origin = redis.call('HGET', KEYS[1], 'origin')
if (not st) or st == 'cancelled' or st == 'done' or redis.call('EXISTS', ARGV[2] .. origin) == 0 then
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  if st and st ~= 'done' then redis.call('DEL', KEYS[1], KEYS[3]) end
  return false
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[3])
local sent = redis.call('HGET', KEYS[1], 'sent') or '0'
local gen = redis.call('GET', KEYS[3]) or ''
return {tostring(attempt), redis.call('HGET', KEYS[1], 'payload'), origin, sent, gen}`;

// KEYS: origin's stream, origin's alive key, held list, then per event the request's meta and gen keys.
// ARGV: per event: attempt, rid, final ('1' or '0'), token ('' for none), its number k, the event as JSON.
// Keeps each event whose attempt still owns its request (and whose origin lives) and that is the
// request's next one (k equals the events sent so far, so a batch Redis runs twice, or one after a
// lost one, cannot double or skip anything): counts it in the meta's 'sent', appends its token to gen.
// The kept events go out as one stream entry (lines joined by a newline). Answers per event:
// 1 kept; 0 not this worker's any more (it must stop); 2 already sent (ignore); 3 an earlier event is
// missing (the worker must give the request back, to be resumed after what arrived).
export const EMIT_BATCH = String.raw`
local alive = redis.call('EXISTS', KEYS[2]) == 1
local kept, res = {}, {}
for i = 0, (#KEYS - 3) / 2 - 1 do
  local meta, gen = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local attempt, rid, final, token, k, ev = ARGV[6 * i + 1], ARGV[6 * i + 2], ARGV[6 * i + 3], ARGV[6 * i + 4], tonumber(ARGV[6 * i + 5]), ARGV[6 * i + 6]
  local sent = tonumber(redis.call('HGET', meta, 'sent') or '0')
  if final == '1' and k <= sent then redis.call('LREM', KEYS[3], 1, rid) end
  if not (alive and redis.call('HGET', meta, 'attempt') == attempt and redis.call('HGET', meta, 'state') == 'running') then
    res[#res + 1] = 0
  elseif k < sent then
    res[#res + 1] = 2
  elseif k > sent then
    res[#res + 1] = 3
  else
    kept[#kept + 1] = ev
    redis.call('HINCRBY', meta, 'sent', 1)
    if token ~= '' then redis.call('APPEND', gen, token .. ',') end
    if final == '1' then redis.call('HSET', meta, 'state', 'done') end
    res[#res + 1] = 1
  end
end
if #kept > 0 then redis.call('XADD', KEYS[1], 'MAXLEN', '~', 100000, '*', 'b', table.concat(kept, '\n')) end
return res`;

// KEYS: meta, held list, queue. ARGV: rid, attempt. A worker gives back a request it can no longer
// run (its events did not reach Redis): if it is still this attempt's, it goes back to the queue's
// head (the next worker resumes after the tokens that did arrive); 1 if re-queued, 0 if not ours.
export const GIVE_BACK = String.raw`
redis.call('LREM', KEYS[2], 1, ARGV[1])
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued')
redis.call('RPUSH', KEYS[3], ARGV[1])
return 1`;

// KEYS: alive key, held list, queue, instance set, its stream. ARGV: instance id, request-key prefix.
// Re-queues a dead instance's requests (they run next; marked queued, not running) and forgets it;
// -1 if it is alive after all.
export const REAP = String.raw`
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = 0
while true do
  local rid = redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'RIGHT')
  if not rid then break end
  local meta = ARGV[2] .. rid
  if redis.call('HGET', meta, 'state') == 'running' then redis.call('HSET', meta, 'state', 'queued') end
  n = n + 1
end
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[5])
return n`;

export type QueueRedis = Redis & {
  claim(meta: string, held: string, gen: string, rid: string, alivePrefix: string, me: string): Promise<[string, string, string, string, string] | null>;
  appendEvents(numKeys: number, ...keysAndArgs: string[]): Promise<number[]>;
  giveBack(meta: string, held: string, queue: string, rid: string, attempt: string): Promise<number>;
  reap(alive: string, held: string, queue: string, instances: string, out: string, id: string, reqPrefix: string): Promise<number>;
};
type Scripted = QueueRedis;

/** How long a blocking read (XREAD BLOCK, BLMOVE) waits for work before the loop looks again. */
const BLOCK_MS = 1000;
/** A command (blocking ones: beyond their own wait) with no reply after this long fails. */
const COMMAND_TIMEOUT_MS = 10000;

/** A connection with the queue's scripts defined (not yet connected: lazyConnect). */
export function connectQueueRedis(url: string, connectionName?: string): QueueRedis {
  // Commands wait (offline queue) while the connection is re-established, at most COMMAND_TIMEOUT_MS
  // (BLOCK_MS more for the blocking reads). The timeout is also what settles a command ioredis strands:
  // a blocking command in flight when the connection drops can stay pending forever after the
  // reconnect or a disconnect() (ioredis issues 1285, 2193; seen here as a close() that never
  // returned), and a loop awaiting it would stop for good.
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 20, enableAutoPipelining: false, commandTimeout: COMMAND_TIMEOUT_MS + BLOCK_MS,
    ...(connectionName ? { connectionName } : {}) });
  // Connection errors surface as failed commands, handled where they are sent; ioredis reconnects.
  r.on('error', () => undefined);
  r.defineCommand('claim', { numberOfKeys: 3, lua: CLAIM });
  // the number of keys varies with the batch: given first at each call
  r.defineCommand('appendEvents', { lua: EMIT_BATCH });
  r.defineCommand('giveBack', { numberOfKeys: 3, lua: GIVE_BACK });
  r.defineCommand('reap', { numberOfKeys: 5, lua: REAP });
  return r as Scripted;
}

/** The Redis queue for one instance: a RequestSink (origin side) and a puller feeding `scheduler` (worker side). */
export class RedisQueue implements RequestSink {
  readonly instanceId: string;
  readonly prefix: string;
  private readonly ttl: number;
  private readonly eventTimeoutMs: number;
  private readonly maxOutstanding: number;
  private readonly cmd: Scripted;
  private readonly reader: Scripted;
  private readonly blocker: Scripted;
  private readonly outstanding = new Map<number, Outstanding>();
  private readonly byRid = new Map<string, number>();
  private readonly held = new Map<string, Held>();
  /** Requests of our held list being claimed, being given back, and seen there unclaimed at the last check (adoptStranded). */
  private readonly claiming = new Set<string>();
  private readonly givingBack = new Set<string>();
  private unclaimedSeen = new Set<string>();
  private nextId = 1;
  private closed = false;
  private timers: NodeJS.Timeout[] = [];
  private loops: Promise<void>[] = [];
  private wake: (() => void) | null = null;
  /** Events per origin not yet sent; flushed once the current step has handed out all of its own. */
  private readonly outbox = new Map<string, OutEvent[]>();
  private flushQueued = false;
  private readonly counters: { pushed: Counter; pulled: Counter; requeued: Counter; resumed: Counter; replayed: Counter; timedOut: Counter; batches: Counter };

  private constructor(options: QueueOptions, private readonly scheduler: Scheduler, modelName: string, registry?: Registry) {
    this.instanceId = options.instanceId ?? `${process.pid}-${randomBytes(4).toString('hex')}`;
    this.prefix = options.prefix ?? `inferjit:${modelName}`;
    this.ttl = options.livenessTtlMs ?? 10000;
    if (!Number.isInteger(this.ttl) || this.ttl < 100) throw new RangeError(`queue: livenessTtlMs must be an integer >= 100, got ${options.livenessTtlMs}`);
    this.maxOutstanding = options.maxOutstanding ?? 1024;
    this.eventTimeoutMs = options.eventTimeoutMs ?? 120000;
    if (!Number.isInteger(this.eventTimeoutMs) || this.eventTimeoutMs < 100) throw new RangeError(`queue: eventTimeoutMs must be an integer >= 100, got ${options.eventTimeoutMs}`);
    // Named (CLIENT LIST shows each instance's three connections, and which is which).
    const name = (part: string) => `inferjit-${this.instanceId.replace(/[^\w.:-]/g, '_')}-${part}`;
    this.cmd = connectQueueRedis(options.url, name('cmd'));
    this.reader = connectQueueRedis(options.url, name('events'));
    this.blocker = connectQueueRedis(options.url, name('pull'));
    const registers = registry ? [registry] : [];
    const self = this;
    this.counters = {
      pushed: new Counter({ name: 'inferjit:queue_pushed_total', help: 'Requests this instance accepted and pushed to the shared queue.', registers }),
      pulled: new Counter({ name: 'inferjit:queue_pulled_total', help: 'Requests this instance took from the shared queue and ran.', registers }),
      requeued: new Counter({ name: 'inferjit:queue_requeued_total', help: 'Requests this instance put back on the queue because the instance running them died.', registers }),
      resumed: new Counter({ name: 'inferjit:queue_resumed_total', help: 'Requests this instance took over mid-generation, continuing after the tokens already sent (their KV recomputed).', registers }),
      replayed: new Counter({ name: 'inferjit:queue_replayed_events_total', help: 'Events that reached this instance twice (dropped, not sent to the client again).', registers }),
      timedOut: new Counter({ name: 'inferjit:queue_event_timeouts_total', help: 'Requests accepted here that ended with an error after getting no event for eventTimeoutMs.', registers }),
      batches: new Counter({ name: 'inferjit:queue_event_batches_total', help: 'Event batches this instance sent to origins (one Redis call each; a step\'s events for one origin go in one batch).', registers }),
    };
    new Gauge({
      name: 'inferjit:queue_length', help: 'Requests waiting in the shared queue.', registers,
      async collect() { this.set(self.closed ? 0 : await self.cmd.llen(self.key('queue')).catch(() => 0)); },
    });
    new Gauge({ name: 'inferjit:queue_held', help: 'Queue requests this instance is running.', registers, collect() { this.set(self.held.size); } });
    new Gauge({ name: 'inferjit:queue_outstanding', help: 'Requests this instance accepted that are queued or running (here or elsewhere).', registers, collect() { this.set(self.outstanding.size); } });
    new Gauge({
      name: 'inferjit:queue_instances', help: 'Instances on the shared queue.', registers,
      async collect() { this.set(self.closed ? 0 : await self.cmd.scard(self.key('instances')).catch(() => 0)); },
    });
  }

  /** Connects, announces this instance and starts its loops. */
  static async connect(options: QueueOptions, scheduler: Scheduler, modelName: string, registry?: Registry): Promise<RedisQueue> {
    const q = new RedisQueue(options, scheduler, modelName, registry);
    try {
      await Promise.all([q.cmd.connect(), q.reader.connect(), q.blocker.connect()]);
    } catch (e) {
      q.cmd.disconnect(); q.reader.disconnect(); q.blocker.disconnect();
      throw new Error(`queue: cannot connect to ${options.url}: ${(e as Error).message}`);
    }
    await q.heartbeat();
    await q.cmd.sadd(q.key('instances'), q.instanceId);
    q.timers.push(setInterval(() => { q.heartbeat().catch(() => undefined); }, Math.max(50, Math.floor(q.ttl / 3))));
    q.timers.push(setInterval(() => { q.reapDead().catch(() => undefined); }, Math.max(50, Math.floor(q.ttl / 2))));
    q.timers.push(setInterval(() => q.checkSilent(), Math.min(1000, Math.max(50, Math.floor(q.eventTimeoutMs / 4)))));
    q.loops.push(q.readLoop());
    if (options.pull ?? true) {
      q.loops.push(q.pullLoop());
      q.timers.push(setInterval(() => { q.adoptStranded().catch(() => undefined); }, Math.max(100, Math.floor(q.ttl / 2))));
    }
    return q;
  }

  private key(...parts: string[]): string { return [this.prefix, ...parts].join(':'); }

  /** Refreshes the liveness key, and the membership: an instance paused past its TTL was reaped and forgotten, and must be seen again. */
  private heartbeat(): Promise<unknown> {
    return this.cmd.multi().set(this.key('alive', this.instanceId), '1', 'PX', this.ttl).sadd(this.key('instances'), this.instanceId).exec();
  }

  // ---- origin side ----

  submit(group: { req: SequenceRequest; events: SequenceEvents }[]): number[] {
    if (this.closed) throw new QueueFullError('the server is shutting down', 5);
    if (this.outstanding.size + group.length > this.maxOutstanding) {
      throw new QueueFullError(`this instance has ${this.outstanding.size} requests in the shared queue or running, at most ${this.maxOutstanding}; retry later`, 1);
    }
    const ids: number[] = [];
    for (const { req, events } of group) {
      const id = this.nextId++;
      const rid = `${this.instanceId}:${id}`;
      // A seed makes a re-run after a worker died draw the same tokens (see the header).
      const sampling = { ...req.sampling, seed: req.sampling.seed ?? randomBytes(4).readUInt32LE() };
      const payload: Payload = {
        promptIds: [...req.promptIds], sampling, maxTokens: req.maxTokens, stopTokens: [...req.stopTokens], stop: [...req.stop], priority: req.priority ?? 0,
        ...(req.logprobs !== undefined ? { logprobs: req.logprobs } : {}),
      };
      this.outstanding.set(id, { rid, events, promptTokens: req.promptIds.length, delivered: 0, generated: 0, lastEventAt: Date.now() });
      this.byRid.set(rid, id);
      this.cmd.multi()
        .hset(this.key('req', rid), 'origin', this.instanceId, 'payload', JSON.stringify(payload), 'attempt', '0', 'state', 'queued')
        .lpush(this.key('queue'), rid)
        .exec()
        .then(() => this.counters.pushed.inc(), (e) => this.fail(id, new Error(`the shared queue is unreachable: ${(e as Error).message}`)));
      ids.push(id);
    }
    return ids;
  }

  abort(id: number): void {
    const o = this.outstanding.get(id);
    if (!o) return;
    this.finishLocal(id, 'abort');
    this.cancel(o.rid);
  }

  /** Whoever runs it stops at its next token (its append is refused); still queued, it is removed. */
  private cancel(rid: string): void {
    this.cmd.multi().hset(this.key('req', rid), 'state', 'cancelled').lrem(this.key('queue'), 1, rid).del(this.key('gen', rid)).exec().catch(() => undefined);
  }

  private finishLocal(id: number, reason: FinishReason, error?: Error): void {
    const o = this.outstanding.get(id);
    if (!o) return;
    this.outstanding.delete(id);
    this.byRid.delete(o.rid);
    try { o.events.onFinish(reason, { promptTokens: o.promptTokens, generatedTokens: o.generated, error }); } catch { /* the listener's problem */ }
  }

  private fail(id: number, error: Error): void {
    const o = this.outstanding.get(id);
    if (!o) return;
    this.finishLocal(id, 'error', error);
    this.cancel(o.rid);
  }

  /** Ends, with an error saying why, the requests accepted here that got no event for eventTimeoutMs. */
  private checkSilent(): void {
    const now = Date.now();
    for (const [id, o] of this.outstanding) {
      if (now - o.lastEventAt < this.eventTimeoutMs) continue;
      // Once: a second check while the state is being read must not fail it again.
      o.lastEventAt = Infinity;
      const seconds = `${(this.eventTimeoutMs / 1000).toFixed(1)} s`;
      this.cmd.hmget(this.key('req', o.rid), 'state', 'owner').then(([state, owner]) => {
        return state === 'queued'
          ? `no instance took it from the shared queue in ${seconds} (are instances pulling from ${this.prefix}, with free capacity?)`
          : state === 'running'
            ? `the instance running it (${owner}) sent nothing for ${seconds}`
            : `no event came back for ${seconds} (its state in Redis: ${state ?? 'gone'})`;
      }, (e: Error) => `no event came back for ${seconds}, and Redis does not answer (${e.message})`).then((why) => {
        // Finished meanwhile, or an event came after all (it reset the clock): nothing to end.
        if (this.outstanding.get(id)?.lastEventAt !== Infinity) return;
        this.counters.timedOut.inc();
        this.fail(id, new Error(`queue: the request got no event: ${why}; it was cancelled, retry it`));
      });
    }
  }

  /** Reads this instance's event stream and hands each event to its request, once, in order. */
  private async readLoop(): Promise<void> {
    const stream = this.key('out', this.instanceId);
    // This instance's id is new, so its stream holds only events for its requests: read from the start.
    let last = '0-0';
    while (!this.closed) {
      let res: [string, [string, string[]][]][] | null;
      try {
        res = await this.reader.xread('COUNT', 1000, 'BLOCK', BLOCK_MS, 'STREAMS', stream, last) as typeof res;
      } catch {
        if (this.closed) return;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (!res) continue;
      for (const [entryId, flat] of res[0][1]) {
        last = entryId;
        for (let i = 0; i < flat.length; i += 2) {
          if (flat[i] !== 'b') continue;
          for (const line of flat[i + 1].split('\n')) {
            let ev: QueueEvent;
            try { ev = JSON.parse(line) as QueueEvent; } catch { continue; /* not ours to read */ }
            this.onEvent(ev);
          }
        }
      }
      this.cmd.xtrim(stream, 'MINID', last).catch(() => undefined);
    }
  }

  private onEvent(f: QueueEvent): void {
    const id = this.byRid.get(String(f.rid));
    if (id === undefined) return;
    const o = this.outstanding.get(id)!;
    const k = Number(f.k), token = Number(f.token ?? -1);
    // A resumed worker numbers its events after those sent (see the header), so a repeat or a gap
    // means the stream itself lost or doubled an entry: drop a repeat, and fail on a gap rather than
    // splice around it.
    if (k < o.delivered) { this.counters.replayed.inc(); return; }
    if (k > o.delivered) {
      this.fail(id, new Error(`queue: events ${o.delivered}..${k - 1} of the request never arrived (the Redis stream lost them); retry it`));
      return;
    }
    o.delivered++;
    o.lastEventAt = Date.now();
    if (f.type === 't') {
      if (token >= 0) o.generated++;
      o.events.onText(String(f.text), token, f.logprob as TokenLogprob | undefined);
      return;
    }
    this.cmd.del(this.key('req', String(f.rid)), this.key('gen', String(f.rid))).catch(() => undefined);
    o.generated = Number(f.generated);
    this.finishLocal(id, f.reason as FinishReason, f.error ? new Error(String(f.error)) : undefined);
  }

  // ---- worker side ----

  /** Free capacity of the local scheduler: pull only what it would admit at once. */
  private hasCapacity(): boolean {
    const s = this.scheduler;
    // A pulled request waits in the scheduler until its next step admits it: numWaiting covers it.
    return s.numWaiting === 0 && s.numRunning < s.maxRunning;
  }

  private async pullLoop(): Promise<void> {
    const queue = this.key('queue');
    const heldList = this.key('held', this.instanceId);
    while (!this.closed) {
      if (!this.hasCapacity()) {
        // Wait for one of ours to finish (or a short while: local capacity can free otherwise).
        await new Promise<void>((r) => { this.wake = r; setTimeout(r, 50); });
        this.wake = null;
        continue;
      }
      let rid: string | null;
      try {
        rid = await this.blocker.blmove(queue, heldList, 'RIGHT', 'LEFT', BLOCK_MS / 1000);
      } catch {
        if (this.closed) return;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (!rid || this.closed) continue;
      await this.claimAndRun(rid);
      // Let the scheduler admit it before looking at the capacity again.
      await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * Claims a request that is in our held list and runs it. While we live nobody else takes a request
   * from our held list, so one whose claim fails (Redis unreachable, out of memory) is claimed again
   * until Redis answers; closing re-queues the held list instead.
   */
  private async claimAndRun(rid: string): Promise<void> {
    this.claiming.add(rid);
    try {
      for (let tries = 0; !this.closed; tries++) {
        let claimed;
        try {
          claimed = await this.cmd.claim(this.key('req', rid), this.key('held', this.instanceId), this.key('gen', rid), rid, this.key('alive', ''), this.instanceId);
        } catch {
          await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** Math.min(tries, 6))));
          continue;
        }
        if (!claimed) return;
        const [attempt, payload, origin, sent, gen] = claimed;
        this.run(rid, attempt, JSON.parse(payload) as Payload, origin, Number(sent), gen === '' ? [] : gen.slice(0, -1).split(',').map(Number));
        return;
      }
    } finally {
      this.claiming.delete(rid);
    }
  }

  /**
   * Claims requests found in our held list that we neither run nor claim nor give back, seen so on
   * two checks in a row: a BLMOVE whose reply was lost with its connection moved one there (Redis
   * did the move; ioredis resent the command or failed it), and nothing else would ever run it.
   */
  private async adoptStranded(): Promise<void> {
    const listed = await this.cmd.lrange(this.key('held', this.instanceId), 0, -1);
    const seen = new Set<string>();
    for (const rid of listed) {
      if (this.held.has(rid) || this.claiming.has(rid) || this.givingBack.has(rid)) continue;
      if (this.unclaimedSeen.has(rid)) void this.claimAndRun(rid); else seen.add(rid);
    }
    this.unclaimedSeen = seen;
  }

  /** Runs a request taken from the queue; `sent` events (`generated` tokens) of it reached its origin from an earlier attempt. */
  private run(rid: string, attempt: string, p: Payload, origin: string, sent: number, generated: number[]): void {
    this.counters.pulled.inc();
    if (generated.length > 0) this.counters.resumed.inc();
    const h: Held = { rid, attempt, origin, seqId: -1, next: sent, stopped: false };
    const send = (final: boolean, fields: { type: string; token?: number } & Record<string, string | number | TokenLogprob>) => {
      if (h.stopped) return;
      const token = fields.type === 't' && fields.token! >= 0 ? String(fields.token) : '';
      const k = h.next++;
      this.post({ h, final, token, k, json: JSON.stringify({ rid, k, ...fields }) });
    };
    const req: SequenceRequest = {
      promptIds: p.promptIds, sampling: p.sampling, maxTokens: p.maxTokens, stopTokens: new Set(p.stopTokens), stop: p.stop, priority: p.priority,
      ...(p.logprobs !== undefined ? { logprobs: p.logprobs } : {}),
      ...(generated.length > 0 ? { resume: generated } : {}),
    };
    this.held.set(rid, h);
    try {
      [h.seqId] = this.scheduler.submit([{
        req,
        events: {
          onText: (text, token, logprob) => send(false, { type: 't', text, token, ...(logprob ? { logprob } : {}) }),
          onFinish: (reason, info) => {
            this.held.delete(rid);
            this.wake?.();
            // Aborted here (closing, or stopped above): the request is someone else's now, say nothing.
            if (reason === 'abort') return;
            send(true, { type: 'f', reason, generated: info.generatedTokens, ...(info.error ? { error: info.error.message } : {}) });
          },
        },
      }]);
    } catch {
      // The scheduler refused it (closing): put it back for another instance.
      this.held.delete(rid);
      this.cmd.multi().lrem(this.key('held', this.instanceId), 1, rid).rpush(this.key('queue'), rid).exec().catch(() => undefined);
    }
  }

  /** Queues an event for its origin's next batch (sent when the current step has handed out all of its events). */
  private post(e: OutEvent): void {
    let box = this.outbox.get(e.h.origin);
    if (!box) { box = []; this.outbox.set(e.h.origin, box); }
    box.push(e);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // A step hands out its tokens in one synchronous pass: a microtask runs after all of them.
    queueMicrotask(() => this.flush());
  }

  /** Sends each origin's waiting events as one script call (one round trip, one stream entry). */
  private flush(): void {
    this.flushQueued = false;
    for (const [origin, events] of this.outbox) {
      this.outbox.delete(origin);
      const keys = [this.key('out', origin), this.key('alive', origin), this.key('held', this.instanceId)];
      const argv: string[] = [];
      for (const e of events) {
        keys.push(this.key('req', e.h.rid), this.key('gen', e.h.rid));
        argv.push(e.h.attempt, e.h.rid, e.final ? '1' : '0', e.token, String(e.k), e.json);
      }
      this.counters.batches.inc();
      this.cmd.appendEvents(keys.length, ...keys, ...argv).then((kept) => {
        const lost = new Set<Held>();
        events.forEach((e, i) => {
          // Cancelled, taken over by another worker, or the origin died: stop working on it.
          if (kept[i] === 0 && !e.final) this.stop(e.h);
          // An earlier batch of it was lost: what arrived is in Redis; let a worker resume from there.
          if (kept[i] === 3) lost.add(e.h);
        });
        for (const h of lost) this.giveBack(h);
      }, () => {
        // The batch may or may not have been applied (the script is atomic: all of it or none).
        // Either way Redis knows what the origin got: stop, and hand each request back to the queue
        // for a worker to resume after that (a finished one too: its finish may be what was lost).
        for (const h of new Set(events.map((e) => e.h))) this.giveBack(h);
      });
    }
  }

  /** Stops a request and puts it back on the queue, if it is still this attempt's. */
  private giveBack(h: Held, tries = 0): void {
    if (!h.stopped) this.stop(h, false);
    this.givingBack.add(h.rid);
    this.cmd.giveBack(this.key('req', h.rid), this.key('held', this.instanceId), this.key('queue'), h.rid, h.attempt)
      .then((n) => { this.givingBack.delete(h.rid); if (n === 1) this.counters.requeued.inc(); }, () => {
        // Redis refused it too (unreachable, out of memory): the request sits in our held list, and
        // while we live nobody else re-queues it, so try again until it goes (the script is fenced:
        // a late success cannot take it from a newer attempt). Closing re-queues the held list itself.
        if (this.closed) { this.givingBack.delete(h.rid); return; }
        setTimeout(() => this.giveBack(h, tries + 1), Math.min(2000, 50 * 2 ** Math.min(tries, 6))).unref();
      });
  }

  /** Stops running a request: `forget` drops it from the held list (it is someone else's or cancelled); close() keeps it there to re-queue. */
  private stop(h: Held, forget = true): void {
    if (h.stopped) return;
    h.stopped = true;
    this.scheduler.abort(h.seqId);
    if (forget) this.cmd.lrem(this.key('held', this.instanceId), 1, h.rid).catch(() => undefined);
  }

  /** Re-queues the requests of instances whose liveness key expired. */
  private async reapDead(): Promise<void> {
    if (this.closed) return;
    const ids = await this.cmd.smembers(this.key('instances'));
    for (const id of ids) {
      if (id === this.instanceId) continue;
      const n = await this.cmd.reap(this.key('alive', id), this.key('held', id), this.key('queue'), this.key('instances'), this.key('out', id), id, this.key('req', ''));
      if (n > 0) this.counters.requeued.inc(n);
    }
  }

  /**
   * Leaves the queue: requests accepted here end as aborted (their clients are going away with this
   * server); requests running here go back to the queue for the other instances.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.wake?.();
    for (const h of this.held.values()) this.stop(h, false);
    for (const id of [...this.outstanding.keys()]) this.abort(id);
    const heldList = this.key('held', this.instanceId);
    // Stop pulling first: a BLMOVE still waiting could otherwise take a request back after we re-queue it.
    this.blocker.disconnect();
    this.reader.disconnect();
    // Each loop returns once its pending read settles; one that ioredis stranded settles only at its
    // command timeout, and nothing is left for it to do: do not hold the shutdown for it.
    await Promise.race([Promise.allSettled(this.loops), new Promise((r) => setTimeout(r, 2 * BLOCK_MS).unref())]);
    try {
      // Leaving is dying politely: the same script re-queues what we held (marked queued) and forgets us.
      await this.cmd.del(this.key('alive', this.instanceId));
      await this.cmd.reap(this.key('alive', this.instanceId), heldList, this.key('queue'), this.key('instances'), this.key('out', this.instanceId), this.instanceId, this.key('req', ''));
    } catch { /* Redis is gone: the others re-queue our requests when our liveness key expires */ }
    await this.cmd.quit().catch(() => undefined);
  }
}
