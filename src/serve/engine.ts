// The engine interface the scheduler drives, and its implementation today over LlamaEngine.
//
// The scheduler decides, each iteration, which sequences run and how many of their tokens they feed
// (a ragged batch: decodes of one token, prefill chunks of many); the engine appends those tokens to
// each sequence's KV cache and, where asked, samples the next token. A batched ragged step engine
// runs the whole batch in one native call; SequentialLlamaEngine runs it one sequence at a time
// (one LlamaEngine.forward call per sequence per step, round-robin), so it batches nothing — it
// exists so the server and scheduler run end to end now, and the batched engine slots in behind
// the same interface.
import { type LlamaEngine } from '../llm/engine.js';
import { type Sampler } from '../llm/sampling.js';

/** One sequence's share of a step: feed `tokens` (appended to its KV cache); sample after them when `sample`. */
export interface StepChunk {
  id: number;
  tokens: readonly number[];
  sample: boolean;
}

/** The step's result for one sequence: the sampled token (when asked), or the error that stopped it. */
export interface StepOutput {
  id: number;
  token: number | null;
  error?: Error;
}

export interface ServeEngine {
  /** Positions per KV block. */
  readonly blockSize: number;
  /** KV blocks in the pool. */
  readonly numBlocks: number;
  /** KV blocks free now. */
  freeBlocks(): number;
  /** Most positions one sequence may hold (context length, bounded by the pool). */
  readonly maxContext: number;
  readonly vocabSize: number;
  /**
   * Starts sequence `id` with an empty KV cache. `sampler` carries the sequence's sampling state
   * across a preemption (free, then add again: the random stream continues where it was).
   */
  addSequence(id: number, sampler: Sampler): void;
  /** KV blocks sequence `id` must newly take to hold `extra` more positions (0 if it does not exist yet: see blocksFor). */
  blocksNeeded(id: number, extra: number): number;
  /** Runs one iteration over the chunks. Per-sequence failures come back as outputs with `error`; the rest still run. */
  step(chunks: readonly StepChunk[]): StepOutput[];
  /** Drops the sequence and returns its KV blocks to the pool (no-op for an unknown id). */
  free(id: number): void;
}

interface SeqState { kv: number; sampler: Sampler; history: number[] }

/** ServeEngine over one LlamaEngine: every chunk of a step is its own native call (no batching). */
export class SequentialLlamaEngine implements ServeEngine {
  private readonly seqs = new Map<number, SeqState>();

  constructor(readonly llama: LlamaEngine) {}

  get blockSize(): number { return this.llama.cache.blockSize; }
  get numBlocks(): number { return this.llama.cache.numBlocks; }
  get maxContext(): number { return Math.min(this.llama.cache.capacity, this.llama.config.maxPositionEmbeddings); }
  get vocabSize(): number { return this.llama.vocabSize; }
  freeBlocks(): number { return this.llama.cache.freeBlocks; }

  addSequence(id: number, sampler: Sampler): void {
    if (this.seqs.has(id)) throw new Error(`SequentialLlamaEngine: sequence ${id} already exists`);
    this.seqs.set(id, { kv: this.llama.newSequence(), sampler, history: [] });
  }

  blocksNeeded(id: number, extra: number): number {
    const s = this.seqs.get(id);
    const length = s ? this.llama.cache.length(s.kv) : 0;
    const held = Math.ceil(length / this.blockSize);
    return Math.max(0, Math.ceil((length + extra) / this.blockSize) - held);
  }

  step(chunks: readonly StepChunk[]): StepOutput[] {
    const out: StepOutput[] = [];
    for (const c of chunks) {
      const s = this.seqs.get(c.id);
      if (!s) { out.push({ id: c.id, token: null, error: new Error(`sequence ${c.id} is not in the engine`) }); continue; }
      try {
        const logits = this.llama.forward(s.kv, c.tokens);
        for (const t of c.tokens) s.history.push(t);
        // The penalties look at everything fed so far: the prompt and the tokens generated.
        out.push({ id: c.id, token: c.sample ? s.sampler.sample(logits, s.history) : null });
      } catch (e) {
        out.push({ id: c.id, token: null, error: e as Error });
      }
    }
    return out;
  }

  free(id: number): void {
    const s = this.seqs.get(id);
    if (!s) return;
    this.llama.releaseSequence(s.kv);
    this.seqs.delete(id);
  }
}

/** KV blocks a fresh sequence of `positions` takes. */
export function blocksFor(positions: number, blockSize: number): number {
  return Math.ceil(positions / blockSize);
}
