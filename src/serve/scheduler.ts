// Iteration-level (continuous) batching over a ServeEngine. Each step:
//   1. drop aborted sequences (their KV blocks go back to the pool);
//   2. make room: if the running sequences' next chunks need more KV blocks than are free, preempt
//      the lowest-priority, latest-arrived one by recompute (its blocks are freed; it goes back to
//      the front of the queue and later re-prefills prompt + generated tokens — nothing is lost);
//   3. schedule decodes of every running sequence first (one token each), then prefill chunks of
//      running sequences still prefilling, then admit waiting ones (priority, then FCFS) while the
//      token budget (maxBatchedTokens), the sequence limit and the free KV blocks allow; a long
//      prompt is prefilled in chunks, so it never stalls the others' decodes: beside decodes a
//      step's prefill is capped by prefillChunk and by what keeps the step within
//      maxDecodeSlowdown times a decode step of every sequence present (the batch the streams
//      will share once waiting prompts are admitted; step costs learned online, step-cost.ts);
//   4. run the step (awaited: the engine runs it off the JS thread, so requests keep arriving and
//      streams keep flowing meanwhile), then detokenize, check stop tokens / stop strings / length,
//      and notify.
// A sequence admitted (or re-admitted after a preemption) starts from the KV blocks the engine's
// prefix cache already holds for its leading tokens: those positions are not prefilled again.
import { Sampler, type SamplingOptions } from '../llm/sampling.js';
import { type Tokenizer, type TokenStreamDecoder } from '../llm/tokenizer/index.js';
import { type ServeEngine, type StepChunk, type TokenLogprob, blocksFor } from './engine.js';
import { StepCostModel } from './step-cost.js';

export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

export interface SequenceRequest {
  promptIds: readonly number[];
  sampling: SamplingOptions;
  maxTokens: number;
  stopTokens: ReadonlySet<number>;
  stop: readonly string[];
  /** Higher runs first (default 0); ties are first-come-first-served. */
  priority?: number;
  /** Report each generated token's log-probability and this many top alternatives (undefined: none). */
  logprobs?: number;
  /**
   * Tokens already generated for this request and sent to its client elsewhere (the Redis queue: the
   * instance running it died mid-way). The sequence continues after them: their KV is recomputed
   * (prefilled with the prompt, like a preempted sequence), they count against maxTokens and the
   * penalties, and their text is not sent again (stop strings and incomplete characters are tracked
   * as if this instance had generated them).
   */
  resume?: readonly number[];
}

export interface SequenceEvents {
  /** Text the new token completed (may be '' while a character or a possible stop string is pending). */
  onText(text: string, token: number, logprob?: TokenLogprob): void;
  onFinish(reason: FinishReason, info: { promptTokens: number; generatedTokens: number; error?: Error }): void;
}

export interface SchedulerOptions {
  /** Tokens one step may feed in all (decodes + prefill chunks). Default 512. */
  maxBatchedTokens?: number;
  /** Sequences running at once. Default 64. */
  maxRunning?: number;
  /** Sequences allowed to wait; more are refused (QueueFullError). Default 256. */
  maxWaiting?: number;
  /** Prompt tokens allowed to wait in all; more are refused. Default 65536. */
  maxWaitingTokens?: number;
  /**
   * Most prompt tokens one step prefills while other sequences are decoding (default: maxBatchedTokens).
   * A step costs about as much as the tokens it carries, so a smaller chunk keeps the running streams'
   * inter-token latency low while long prompts arrive, at the price of those prompts' time to first token.
   */
  prefillChunk?: number;
  /**
   * While sequences decode, size each step's prefill chunk so the step takes at most this many times
   * as long as a decode step of every sequence present would (running and waiting, up to
   * maxRunning: the batch the streams share once the waiting prompts decode too; step costs are
   * learned from the steps run; see
   * step-cost.ts), within [prefillFloor, prefillChunk]. Default 1.5 (DEFAULT_MAX_DECODE_SLOWDOWN):
   * a running stream's next token waits at most about 1.5 decode steps while prompts are prefilled
   * beside it. 0 turns it off (prefillChunk alone bounds the chunk).
   */
  maxDecodeSlowdown?: number;
  /** Prompt tokens a step carrying decodes may always prefill, so prompts progress however slow prefill is. Default 4 (DEFAULT_PREFILL_FLOOR). */
  prefillFloor?: number;
}

/**
 * The defaults favour the running streams' inter-token latency over new prompts' time to first token.
 * Step sizes are padded to a power of two, so a step of 16 decodes plus any prompt token computes 32
 * rows (about twice the time on a compute-bound CPU): a floor of 16 (the earlier default) put most
 * mixed steps in the next bucket. Measured on the 1.1B Q4_0 at 16 streams (bench/RESULTS.md, session 12):
 * p99 inter-token latency 109 → 66 ms (3.5× → 2.4× one stream's), throughput within noise (115 → 112
 * tok/s), time to first token p50 2.9 → 5.8 s; with 1024-token prompts arriving throughout, the streams'
 * throughput rose (70 → 80 tok/s) and their p99 latency halved. Servers that want prompts admitted
 * sooner raise both (2 and 16 were the earlier defaults).
 */
export const DEFAULT_MAX_DECODE_SLOWDOWN = 1.5;
export const DEFAULT_PREFILL_FLOOR = 4;

export class QueueFullError extends Error {
  constructor(message: string, readonly retryAfterSeconds: number) { super(message); this.name = 'QueueFullError'; }
}

/** One step as it ran: what it carried and how long the engine took. */
export interface StepInfo {
  /** Wall time of the engine's step (ms). */
  ms: number;
  sequences: number;
  /** Sequences that fed one token to get their next one (running streams waiting on this step). */
  decodes: number;
  /** Prompt (or re-prefill) tokens the step carried. */
  prefillTokens: number;
}

/** Observers of the scheduler (metrics). */
export interface SchedulerHooks {
  onPreempt?(): void;
  onStep?(info: StepInfo): void;
  /** A sequence was admitted: `queried` prompt positions were looked up in the prefix cache, `hit` of them found. */
  onPrefixLookup?(queried: number, hit: number): void;
}

interface Seq {
  id: number;
  req: SequenceRequest;
  events: SequenceEvents;
  sampler: Sampler;
  priority: number;
  arrival: number;
  generated: number[];
  /** Tokens (prompt, then generated) whose KV is in the engine. */
  computed: number;
  inEngine: boolean;
  aborted: boolean;
  decoder: TokenStreamDecoder | null;
  text: string;
  emitted: number;
}

export class Scheduler {
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private readonly all = new Map<number, Seq>();
  private nextId = 1;
  private arrivals = 0;
  private loop: Promise<void> | null = null;
  private closed = false;
  readonly maxBatchedTokens: number;
  readonly maxRunning: number;
  readonly maxWaiting: number;
  readonly maxWaitingTokens: number;
  readonly prefillChunk: number;
  readonly maxDecodeSlowdown: number;
  readonly prefillFloor: number;
  /** What steps cost, learned as they run (sizes the prefill chunk beside decodes). */
  readonly cost: StepCostModel;

  constructor(readonly engine: ServeEngine, readonly tokenizer: Tokenizer, options: SchedulerOptions = {}, private readonly hooks: SchedulerHooks = {}) {
    this.maxBatchedTokens = positiveInt('maxBatchedTokens', options.maxBatchedTokens ?? 512);
    this.cost = new StepCostModel(undefined, engine.stepTokensComputed?.bind(engine));
    // A step carries every running sequence's decode, so no more may run than one step holds.
    this.maxRunning = Math.min(positiveInt('maxRunning', options.maxRunning ?? 64), engine.maxStepSequences);
    this.maxWaiting = positiveInt('maxWaiting', options.maxWaiting ?? 256);
    this.maxWaitingTokens = positiveInt('maxWaitingTokens', options.maxWaitingTokens ?? 65536);
    this.prefillChunk = positiveInt('prefillChunk', options.prefillChunk ?? this.maxBatchedTokens);
    this.maxDecodeSlowdown = options.maxDecodeSlowdown ?? DEFAULT_MAX_DECODE_SLOWDOWN;
    if (!(this.maxDecodeSlowdown === 0 || this.maxDecodeSlowdown > 1) || !Number.isFinite(this.maxDecodeSlowdown)) {
      throw new RangeError(`Scheduler: maxDecodeSlowdown must be 0 (off) or a number above 1, got ${options.maxDecodeSlowdown}`);
    }
    this.prefillFloor = positiveInt('prefillFloor', options.prefillFloor ?? DEFAULT_PREFILL_FLOOR);
  }

  get numRunning(): number { return this.running.length; }
  get numWaiting(): number { return this.waiting.length; }
  /** Fraction of the KV pool in use. */
  get kvUsage(): number { return 1 - this.engine.freeBlocks() / this.engine.numBlocks; }

  /**
   * Queues the sequences of one request together (all or none: a request with n choices is refused
   * whole when the queue cannot take all of them). Returns their ids, for abort().
   */
  submit(group: { req: SequenceRequest; events: SequenceEvents }[]): number[] {
    if (this.closed) throw new QueueFullError('the server is shutting down', 5);
    const tokens = group.reduce((s, g) => s + g.req.promptIds.length, 0);
    const waitingTokens = this.waiting.reduce((s, q) => s + q.req.promptIds.length, 0);
    // Requests that can start right away do not wait; count only what exceeds the free running slots.
    const free = Math.max(0, this.maxRunning - this.running.length - this.waiting.length);
    const queued = Math.max(0, group.length - free);
    if (this.waiting.length + queued > this.maxWaiting || (queued > 0 && waitingTokens + tokens > this.maxWaitingTokens)) {
      throw new QueueFullError(`the server is at capacity (${this.running.length} running, ${this.waiting.length} waiting of at most ${this.maxWaiting}, ${waitingTokens} prompt tokens waiting of at most ${this.maxWaitingTokens}); retry later`, 1);
    }
    const ids: number[] = [];
    for (const { req, events } of group) {
      const id = this.nextId++;
      const seq: Seq = {
        id, req, events, sampler: new Sampler(req.sampling), priority: req.priority ?? 0, arrival: this.arrivals++,
        generated: [], computed: 0, inEngine: false, aborted: false,
        decoder: this.tokenizer.streamDecoder({ stripDummyPrefix: false }), text: '', emitted: 0,
      };
      this.all.set(id, seq);
      ids.push(id);
      if (req.resume && !this.replay(seq, req.resume)) continue;
      this.enqueue(seq);
    }
    this.kick();
    return ids;
  }

  /** Marks a sequence aborted; it leaves and frees its KV blocks at the next step. */
  abort(id: number): void {
    const s = this.all.get(id);
    if (s) { s.aborted = true; this.kick(); }
  }

  /** Stops taking requests and aborts everything; resolves when the loop has stopped. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.all.values()) s.aborted = true;
    this.kick();
    await this.loop;
  }

  private enqueue(seq: Seq): void {
    // Priority order, FCFS within a priority; a preempted sequence keeps its original arrival, so it goes back in front of later ones.
    let i = this.waiting.findIndex((q) => q.priority < seq.priority || (q.priority === seq.priority && q.arrival > seq.arrival));
    if (i < 0) i = this.waiting.length;
    this.waiting.splice(i, 0, seq);
  }

  private kick(): void {
    if (this.loop) return;
    this.loop = this.run().catch((e) => {
      // A failure outside a step (a bug in scheduling): end every sequence with it, keep serving.
      for (const s of [...this.running, ...this.waiting]) this.finish(s, 'error', e as Error);
    }).finally(() => { this.loop = null; });
  }

  private async run(): Promise<void> {
    // Start on a later turn of the event loop: the caller of submit() sets up its listeners first,
    // and requests arriving together join the same first step.
    await new Promise((r) => setImmediate(r));
    while (this.running.length > 0 || this.waiting.length > 0) {
      await this.stepOnce();
      // Let the HTTP side run (new requests, disconnects, writes) between steps.
      await new Promise((r) => setImmediate(r));
    }
  }

  /** One scheduler iteration. */
  private async stepOnce(): Promise<void> {
    this.dropAborted();
    const chunks = this.schedule();
    if (chunks.length === 0) {
      if (this.running.length > 1) {
        // Admission counts a prompt's blocks before its chunks take them, so prefilling sequences
        // can together overcommit the pool: free one by recompute and try again next step.
        this.preempt();
      } else if (this.running.length === 1) {
        // Alone it holds the whole pool, which is at least its context: this cannot happen unless the engine is inconsistent.
        this.finish(this.running[0], 'error', new Error('the KV pool has no room for the only running sequence'));
      } else if (this.waiting.length > 0) {
        // Nothing can run and nothing will free blocks: the head of the queue can never fit.
        const s = this.waiting.shift()!;
        this.finish(s, 'error', new Error(`the prompt needs ${blocksFor(s.req.promptIds.length + 1, this.engine.blockSize)} KV blocks; the pool has ${this.engine.numBlocks}`));
      }
      return;
    }
    let outputs;
    const t0 = performance.now();
    try {
      outputs = await this.engine.step(chunks);
    } catch (e) {
      // The engine failed as a whole: end every sequence of the step with the error, keep serving.
      outputs = chunks.map((c) => ({ id: c.id, token: null, error: e as Error }));
    }
    const ms = performance.now() - t0;
    this.cost.observe(chunks.reduce((n, c) => n + c.tokens.length, 0), ms);
    if (this.hooks.onStep) {
      let decodes = 0, prefillTokens = 0;
      for (const c of chunks) {
        const s = this.all.get(c.id);
        // A decode feeds the one token generated last; anything else is (re-)prefill.
        if (s && c.tokens.length === 1 && s.computed >= s.req.promptIds.length) decodes++;
        else prefillTokens += c.tokens.length;
      }
      this.hooks.onStep({ ms, sequences: chunks.length, decodes, prefillTokens });
    }
    const byId = new Map(chunks.map((c) => [c.id, c]));
    for (const o of outputs) {
      const s = this.all.get(o.id);
      const c = byId.get(o.id);
      if (!s || !c) continue;
      s.computed += c.tokens.length;
      if (o.error) { this.finish(s, 'error', o.error); continue; }
      if (o.token !== null) this.accept(s, o.token, o.logprob);
    }
  }

  private dropAborted(): void {
    for (const list of [this.running, this.waiting]) {
      for (let i = list.length - 1; i >= 0; i--) if (list[i].aborted) this.finish(list[i], 'abort');
    }
  }

  private pending(s: Seq): number { return s.req.promptIds.length + s.generated.length - s.computed; }
  private tokensFrom(s: Seq, from: number, count: number): number[] {
    const P = s.req.promptIds.length, out: number[] = [];
    for (let i = from; i < from + count; i++) out.push(i < P ? s.req.promptIds[i] : s.generated[i - P]);
    return out;
  }

  private schedule(): StepChunk[] {
    const chunks: StepChunk[] = [];
    let budget = this.maxBatchedTokens;
    let free = this.engine.freeBlocks();
    const bs = this.engine.blockSize;
    // Decodes first: each running sequence past its prefill feeds its last token. Preempt (latest
    // arrival, lowest priority first) while their blocks do not fit.
    const decoding = () => this.running.filter((s) => s.computed >= s.req.promptIds.length && this.pending(s) === 1);
    for (;;) {
      const need = decoding().reduce((n, s) => n + this.engine.blocksNeeded(s.id, 1), 0);
      if (need <= free || this.running.length <= 1) break;
      this.preempt();
      free = this.engine.freeBlocks();
    }
    const skipped: Seq[] = [];
    for (const s of decoding()) {
      const need = this.engine.blocksNeeded(s.id, 1);
      if (need > free || budget < 1) { skipped.push(s); continue; }
      free -= need; budget -= 1;
      chunks.push(this.chunk(s, 1, true));
    }
    if (skipped.length > 0) {
      // More decodes than the budget: those left out go first next step, so none starves.
      const rest = this.running.filter((s) => !skipped.includes(s));
      this.running.splice(0, this.running.length, ...skipped, ...rest);
    }
    // While sequences decode, prompts get at most prefillChunk tokens of the step, and no more than
    // keeps the step within maxDecodeSlowdown times the decodes alone (the streams' latency).
    if (chunks.length > 0) {
      // The bound is relative to a decode step of every sequence present (up to maxRunning): a burst
      // of prompts arriving while few streams run is admitted at the pace the full batch allows.
      const sharing = Math.min(this.maxRunning, this.running.length + this.waiting.length);
      const cap = this.maxDecodeSlowdown > 0 ? this.cost.prefillCap(chunks.length, this.maxDecodeSlowdown, this.prefillFloor, this.prefillChunk, sharing) : this.prefillChunk;
      budget = Math.min(budget, cap);
    }
    // Then prefill chunks of running sequences that are still prefilling (or re-prefilling).
    for (const s of this.running) {
      if (budget <= 0) break;
      const pending = this.pending(s);
      if (chunks.some((c) => c.id === s.id) || pending === 0) continue;
      const n = this.fitTokens(s.id, Math.min(pending, budget), free);
      if (n <= 0) continue;
      free -= this.engine.blocksNeeded(s.id, n); budget -= n;
      chunks.push(this.chunk(s, n, n === pending));
    }
    // Then admit waiting sequences, in order, while they fit; the queue is strict (no overtaking),
    // so a long prompt at the head is not starved by short ones behind it.
    while (budget > 0 && this.waiting.length > 0 && this.running.length < this.maxRunning) {
      const s = this.waiting[0];
      const total = this.pending(s);
      // Admit only when the whole prompt (plus the first generated token) fits in the free blocks,
      // so an admitted sequence does not immediately force a preemption.
      if (blocksFor(total + 1, bs) > free) break;
      this.waiting.shift();
      // The engine starts it on the cached blocks its tokens begin with (those leave the free count).
      const before = this.engine.freeBlocks();
      const hit = this.engine.addSequence(s.id, s.sampler, this.tokensFrom(s, 0, total));
      free -= before - this.engine.freeBlocks();
      this.hooks.onPrefixLookup?.(total, hit);
      s.computed = hit;
      s.inEngine = true;
      this.running.push(s);
      const rest = total - hit;
      const n = Math.min(rest, budget);
      free -= this.engine.blocksNeeded(s.id, n); budget -= n;
      chunks.push(this.chunk(s, n, n === rest));
    }
    return chunks;
  }

  private chunk(s: Seq, n: number, sample: boolean): StepChunk {
    return { id: s.id, tokens: this.tokensFrom(s, s.computed, n), sample, ...(sample && s.req.logprobs !== undefined ? { logprobs: s.req.logprobs } : {}) };
  }

  /** Most of `want` tokens sequence `id` can append within `free` blocks. */
  private fitTokens(id: number, want: number, free: number): number {
    if (this.engine.blocksNeeded(id, want) <= free) return want;
    let lo = 0, hi = want;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.engine.blocksNeeded(id, mid) <= free) lo = mid; else hi = mid - 1; }
    return lo;
  }

  /** Preempts the lowest-priority, latest-arrived running sequence by recompute. */
  private preempt(): void {
    let victim = 0;
    for (let i = 1; i < this.running.length; i++) {
      const a = this.running[i], b = this.running[victim];
      if (a.priority < b.priority || (a.priority === b.priority && a.arrival > b.arrival)) victim = i;
    }
    const [s] = this.running.splice(victim, 1);
    this.engine.free(s.id);
    s.inEngine = false;
    s.computed = 0;
    this.enqueue(s);
    this.hooks.onPreempt?.();
  }

  /**
   * Takes up `tokens` as generated before, silently (their text was sent). False when they already
   * end the sequence (length, a stop string): it finished here, as it would have where it ran.
   */
  private replay(s: Seq, tokens: readonly number[]): boolean {
    for (const t of tokens) {
      this.accept(s, t, undefined, true);
      if (!this.all.has(s.id)) return false;
    }
    return true;
  }

  /** Takes a generated token; `silent` (a resumed request's earlier tokens) updates the text state without sending it. */
  private accept(s: Seq, token: number, logprob?: TokenLogprob, silent = false): void {
    const r = s.req;
    if (r.stopTokens.has(token)) { this.flushText(s); this.finish(s, 'stop'); return; }
    s.generated.push(token);
    let piece = s.decoder ? s.decoder.push(token) : '';
    s.text += piece;
    let stopped = false;
    if (r.stop.length > 0) {
      const longest = r.stop.reduce((m, x) => Math.max(m, x.length), 0);
      const from = Math.max(0, s.emitted - longest);
      let cut = -1;
      for (const x of r.stop) { const at = s.text.indexOf(x, from); if (at >= 0 && (cut < 0 || at < cut)) cut = at; }
      if (cut >= 0) { s.text = s.text.slice(0, cut); stopped = true; }
      // Hold back a tail that could still grow into a stop string.
      const safe = stopped ? s.text.length : Math.max(s.emitted, s.text.length - (longest - 1));
      piece = s.text.slice(s.emitted, safe);
      s.emitted = safe;
    } else {
      s.emitted = s.text.length;
    }
    if (!silent) s.events.onText(piece, token, logprob);
    if (stopped) { this.finish(s, 'stop'); return; }
    const length = r.promptIds.length + s.generated.length;
    if (s.generated.length >= r.maxTokens || length >= this.engine.maxContext) { this.flushText(s); this.finish(s, 'length'); }
  }

  /** Hands out text held back (an incomplete character, a possible stop-string prefix) at the end. */
  private flushText(s: Seq): void {
    if (s.decoder) s.text += s.decoder.flush();
    if (s.emitted < s.text.length) { s.events.onText(s.text.slice(s.emitted), -1); s.emitted = s.text.length; }
  }

  private finish(s: Seq, reason: FinishReason, error?: Error): void {
    if (s.inEngine) { this.engine.free(s.id); s.inEngine = false; }
    let i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    i = this.waiting.indexOf(s);
    if (i >= 0) this.waiting.splice(i, 1);
    if (!this.all.delete(s.id)) return;
    try {
      s.events.onFinish(reason, { promptTokens: s.req.promptIds.length, generatedTokens: s.generated.length, error });
    } catch { /* a listener's failure must not stop the loop */ }
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`Scheduler: ${name} must be a positive integer, got ${v}`);
  return v;
}
