// The engine interface the scheduler drives, and PagedServeEngine, its implementation over the
// PagedStepRunner (src/llm/paged-runner.ts).
//
// The scheduler decides, each iteration, which sequences run and how many of their tokens they feed
// (a ragged batch: decodes of one token, prefill chunks of many); the engine appends those tokens to
// each sequence's KV cache in ONE batched step of the compiled decoder (off the JS thread), and,
// where asked, samples the next token and reports its log-probabilities.
import { type Sampler, logSoftmax, topIndices } from '../llm/sampling.js';
import { type PagedStepRunner, type PagedSequence, type StepEntry, pow2 } from '../llm/paged-runner.js';
import { Tensor } from '../tensor/tensor.js';

/** One sequence's share of a step: feed `tokens` (appended to its KV cache); sample after them when `sample`. */
export interface StepChunk {
  id: number;
  tokens: readonly number[];
  sample: boolean;
  /** Report the sampled token's log-probability and this many most likely alternatives (0..20); undefined: none. */
  logprobs?: number;
}

/** A token's log-probability under the model's distribution (the raw logits, before penalties and temperature). */
export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The most likely tokens, most likely first (as many as the chunk asked for). */
  top: { token: number; logprob: number }[];
}

/** The step's result for one sequence: the sampled token (when asked), or the error that stopped it. */
export interface StepOutput {
  id: number;
  token: number | null;
  logprob?: TokenLogprob;
  error?: Error;
}

export interface ServeEngine {
  /** Positions per KV block. */
  readonly blockSize: number;
  /** KV blocks in the pool. */
  readonly numBlocks: number;
  /** KV blocks free now (cached prefix blocks nobody uses count as free: they are evicted on demand). */
  freeBlocks(): number;
  /** Most positions one sequence may hold (context length, bounded by the pool). */
  readonly maxContext: number;
  readonly vocabSize: number;
  /** Most sequences one step may carry. */
  readonly maxStepSequences: number;
  /** Prompt positions served from the prefix cache so far (not recomputed). */
  readonly prefixHitTokens: number;
  /**
   * Starts sequence `id` whose known tokens are `tokens` (prompt, plus tokens generated before a
   * preemption). `sampler` carries the sequence's sampling state across a preemption (free, then
   * add again: the random stream continues where it was). Returns how many leading tokens are
   * already in the KV cache (a prefix-cache hit): the caller feeds from there.
   */
  addSequence(id: number, sampler: Sampler, tokens: readonly number[]): number;
  /** KV blocks sequence `id` must newly take to hold `extra` more positions (a fresh sequence: see blocksFor). */
  blocksNeeded(id: number, extra: number): number;
  /** Runs one iteration over the chunks. Per-sequence failures come back as outputs with `error`; a rejection fails the whole step. */
  step(chunks: readonly StepChunk[]): Promise<StepOutput[]>;
  /** Drops the sequence and returns its KV blocks to the pool (no-op for an unknown id). */
  free(id: number): void;
  /**
   * Prepares every step shape a scheduler with these limits can produce (steps of at most
   * `maxTokens` tokens and `maxSeqs` sequences), so that no step pays for compiling one while
   * requests are running. Optional: engines with nothing to prepare leave it out.
   */
  warmup?(maxTokens: number, maxSeqs: number): Promise<WarmupReport>;
  /** Step shapes compiled (plans lowered) since the engine was made; flat after warmup() while serving. */
  readonly plansBuilt?: number;
  /** Tokens a step carrying `tokens` tokens computes (its padded size), where the engine pads steps; what the step cost follows. */
  stepTokensComputed?(tokens: number): number;
}

/** What warmup() did. */
export interface WarmupReport { buckets: number; plansBuilt: number; ms: number }

/** The (tokens, sequences) step buckets PagedStepRunner pads to: powers of two, sequences <= tokens. */
export function stepBuckets(maxTokens: number, maxSeqs: number): { T: number; S: number }[] {
  const out: { T: number; S: number }[] = [];
  const maxT = pow2(maxTokens), maxS = pow2(maxSeqs);
  for (let T = 1; T <= maxT; T *= 2) for (let S = 1; S <= Math.min(T, maxS); S *= 2) out.push({ T, S });
  return out;
}

/** What warmup() needs of the compiled step's executable (the cpu plan executable has it; others may not). */
interface PlanCapable {
  plansBuilt?: number;
  reservePlans?(n: number): void;
  planStats?(inputs: Tensor[]): unknown;
}

interface SeqState { paged: PagedSequence; sampler: Sampler; history: number[] }

/** ServeEngine over a PagedStepRunner: every scheduler iteration is one batched ragged step. */
export class PagedServeEngine implements ServeEngine {
  private readonly seqs = new Map<number, SeqState>();

  constructor(readonly runner: PagedStepRunner, private readonly poolContext = Math.min(runner.maxContext, runner.numBlocks * runner.blockSize)) {}

  get blockSize(): number { return this.runner.blockSize; }
  get numBlocks(): number { return this.runner.numBlocks; }
  get maxContext(): number { return this.poolContext; }
  get vocabSize(): number { return this.runner.vocabSize; }
  get maxStepSequences(): number { return this.runner.maxSeqs; }
  get prefixHitTokens(): number { return this.runner.stats.prefixHitTokens; }
  freeBlocks(): number { return this.runner.freeBlocks; }
  /** PagedStepRunner pads every step to the next power of two of tokens. */
  stepTokensComputed(tokens: number): number { return pow2(tokens); }

  private executable(): PlanCapable | null {
    return (this.runner.compiled?.compiledEntries()[0]?.executable as PlanCapable | undefined) ?? null;
  }

  get plansBuilt(): number { return this.executable()?.plansBuilt ?? 0; }

  /**
   * Lowers the native plan of every (tokens, sequences) bucket up front. Lowering runs on the JS
   * thread (tens of ms per plan), and the plan cache keeps 8 by default while a server cycles
   * through dozens of buckets, so without this a running stream's next token waited behind a
   * lowering now and then: the inter-token latency spikes under load. Plans are lowered without
   * running them (planStats); only the first, tracing step runs, on one position of a scratch
   * sequence whose page goes straight back to the pool.
   */
  async warmup(maxTokens: number, maxSeqs: number): Promise<WarmupReport> {
    const t0 = performance.now();
    const r = this.runner;
    const buckets = stepBuckets(Math.min(maxTokens, r.maxStepTokens), Math.min(maxSeqs, r.maxSeqs));
    if (!r.compiled) return { buckets: 0, plansBuilt: 0, ms: 0 };
    const before = this.plansBuilt;
    if (!this.executable()) {
      // The first call traces and compiles the step: run one real position of a scratch sequence.
      const seq = r.newSequence();
      if (!r.reserve(seq, 1)) throw new Error('PagedServeEngine.warmup: the KV pool has no free block');
      try {
        await r.step([{ seq, tokens: [0], n: 1 }]);
      } finally {
        r.release(seq);
      }
    }
    const exe = this.executable();
    if (!exe?.planStats || !exe.reservePlans) return { buckets: 0, plansBuilt: this.plansBuilt - before, ms: performance.now() - t0 };
    exe.reservePlans(buckets.length);
    const i32 = (shape: number[]) => Tensor.empty('i32', shape);
    for (const { T, S } of buckets) {
      // The plan depends on the shapes only; the contents are never read.
      exe.planStats([i32([T]), i32([T]), i32([T]), i32([S, r.maxBlocks]), i32([S]), i32([S + 1]), i32([S]), ...r.kPools, ...r.vPools]);
      // Let the event loop breathe between plans (health checks answer while the server warms up).
      await new Promise((res) => setImmediate(res));
    }
    return { buckets: buckets.length, plansBuilt: this.plansBuilt - before, ms: performance.now() - t0 };
  }

  addSequence(id: number, sampler: Sampler, tokens: readonly number[]): number {
    if (this.seqs.has(id)) throw new Error(`PagedServeEngine: sequence ${id} already exists`);
    const paged = this.runner.newSequence();
    const hit = this.runner.matchPrefix(paged, tokens);
    this.seqs.set(id, { paged, sampler, history: tokens.slice(0, hit) });
    return hit;
  }

  blocksNeeded(id: number, extra: number): number {
    const s = this.seqs.get(id);
    return s ? this.runner.blocksNeeded(s.paged, s.paged.cached + extra) : blocksFor(extra, this.blockSize);
  }

  async step(chunks: readonly StepChunk[]): Promise<StepOutput[]> {
    const out: StepOutput[] = [];
    const run: { chunk: StepChunk; state: SeqState }[] = [];
    const entries: StepEntry[] = [];
    for (const c of chunks) {
      const s = this.seqs.get(c.id);
      if (!s) { out.push({ id: c.id, token: null, error: new Error(`sequence ${c.id} is not in the engine`) }); continue; }
      if (c.tokens.length === 0) { out.push({ id: c.id, token: null, error: new Error(`sequence ${c.id}: a step chunk needs at least one token`) }); continue; }
      if (entries.length === this.runner.maxSeqs) { out.push({ id: c.id, token: null, error: new Error(`more than ${this.runner.maxSeqs} sequences in one step (the engine's maxSeqs)`) }); continue; }
      if (!this.runner.reserve(s.paged, s.paged.cached + c.tokens.length)) {
        out.push({ id: c.id, token: null, error: new Error(`the KV pool (${this.numBlocks} blocks of ${this.blockSize}) has no room for ${c.tokens.length} more positions of sequence ${c.id}`) });
        continue;
      }
      for (const t of c.tokens) s.history.push(t);
      entries.push({ seq: s.paged, tokens: s.history, n: c.tokens.length });
      run.push({ chunk: c, state: s });
    }
    if (entries.length === 0) return out;
    const logits = await this.runner.step(entries);
    const V = this.runner.vocabSize;
    run.forEach(({ chunk, state }, i) => {
      if (!chunk.sample) { out.push({ id: chunk.id, token: null }); return; }
      try {
        const row = logits.subarray(i * V, (i + 1) * V);
        // The penalties look at everything fed so far: the prompt and the tokens generated.
        const token = state.sampler.sample(row, state.history);
        out.push({ id: chunk.id, token, ...(chunk.logprobs !== undefined ? { logprob: tokenLogprob(row, token, chunk.logprobs) } : {}) });
      } catch (e) {
        out.push({ id: chunk.id, token: null, error: e as Error });
      }
    });
    return out;
  }

  free(id: number): void {
    const s = this.seqs.get(id);
    if (!s) return;
    this.runner.release(s.paged);
    this.seqs.delete(id);
  }
}

/** The chosen token's log-probability and the `top` most likely tokens', from one row of logits. */
export function tokenLogprob(logits: Float32Array, token: number, top: number): TokenLogprob {
  const lp = logSoftmax(logits);
  return { token, logprob: lp[token], top: top > 0 ? topIndices(lp, top).map((t) => ({ token: t, logprob: lp[t] })) : [] };
}

/** KV blocks a fresh sequence of `positions` takes. */
export function blocksFor(positions: number, blockSize: number): number {
  return Math.ceil(positions / blockSize);
}
