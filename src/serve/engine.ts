// The engine interface the scheduler drives, and PagedServeEngine, its implementation over the
// PagedStepRunner (src/llm/paged-runner.ts).
//
// The scheduler decides, each iteration, which sequences run and how many of their tokens they feed
// (a ragged batch: decodes of one token, prefill chunks of many); the engine appends those tokens to
// each sequence's KV cache in ONE batched step of the compiled decoder (off the JS thread), and,
// where asked, samples the next token and reports its log-probabilities.
import { type Sampler, logSoftmax, topIndices } from '../llm/sampling.js';
import { type PagedStepRunner, type PagedSequence, type StepEntry } from '../llm/paged-runner.js';

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
