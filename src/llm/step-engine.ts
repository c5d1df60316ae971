// The generate loop over a paged decoder: sequences arrive through generate()/stream(), and each
// step schedules the running ones (every decoding sequence gets one token, prefilling ones a chunk
// of their prompt within the step's token budget) onto one batched ragged step of the
// PagedStepRunner (src/llm/paged-runner.ts: KV pools, block allocator, prefix cache, step metadata,
// the compiled step off the JS thread), samples, streams tokens and cancels between steps.
// The server drives the same runner through its own scheduler (src/serve/engine.ts).
//
// The decoder's forward is one paged step (vLLM style):
//   forward(step, kPools, vPools) -> logits [seqs, vocab] of each sequence's last token
// with step = { ids, positions, slots, blockTables, seqLens, queryStart, lastIndex } (int32 tensors,
// see src/llm/models/llama.ts).
import { type Tensor } from '../tensor/tensor.js';
import { Sampler, type SamplingOptions, SAMPLING_OPTION_NAMES } from './sampling.js';
import { checkOptionNames } from './errors.js';
import { PagedStepRunner, EngineCapacityError, type PagedRunnerOptions, type PagedSequence, type StepDecoder, type StepEntry } from './paged-runner.js';

export { EngineCapacityError, type StepInputs, type StepDecoder } from './paged-runner.js';

export type StepEngineOptions = PagedRunnerOptions;

export interface SequenceOptions extends SamplingOptions {
  /** Most tokens to generate (default 128). */
  maxTokens?: number;
  /** Token ids that end the sequence (they are emitted, then the sequence stops). */
  stopTokens?: readonly number[];
  signal?: AbortSignal;
}

const SEQUENCE_OPTION_NAMES: readonly string[] = [...SAMPLING_OPTION_NAMES, 'maxTokens', 'stopTokens', 'signal'];

/** The sampling part of a sequence's options (the Sampler rejects names it does not know). */
function samplingOptionsOf(options: SequenceOptions): SamplingOptions {
  const picked: Record<string, unknown> = {};
  for (const k of SAMPLING_OPTION_NAMES) if (options[k] !== undefined) picked[k] = options[k];
  return picked as SamplingOptions;
}

export type StepFinishReason = 'stop-token' | 'length' | 'abort' | 'context';

interface Seq {
  id: number;
  paged: PagedSequence;
  tokens: number[];
  promptLength: number;
  sampler: Sampler;
  maxTokens: number;
  stop: Set<number>;
  signal: AbortSignal | null;
  generated: number[];
  finished: StepFinishReason | null;
  onToken: ((token: number) => void) | null;
  done: () => void;
  fail: (e: unknown) => void;
}

export class StepEngine {
  /** The pools, allocator, prefix cache and compiled step this loop drives. */
  readonly runner: PagedStepRunner;
  private readonly running: Seq[] = [];
  private nextId = 0;
  private loop: Promise<void> | null = null;

  constructor(readonly model: StepDecoder, options: StepEngineOptions = {}) {
    this.runner = new PagedStepRunner(model, options, 'StepEngine');
  }

  get blockSize(): number { return this.runner.blockSize; }
  get maxContext(): number { return this.runner.maxContext; }
  get numBlocks(): number { return this.runner.numBlocks; }
  get maxBlocks(): number { return this.runner.maxBlocks; }
  get maxSeqs(): number { return this.runner.maxSeqs; }
  get maxStepTokens(): number { return this.runner.maxStepTokens; }
  get kPools(): Tensor[] { return this.runner.kPools; }
  get vPools(): Tensor[] { return this.runner.vPools; }
  get prefixCaching(): boolean { return this.runner.prefixCaching; }
  /** Steps run, and the (tokens, sequences) buckets they used. */
  get stats(): PagedStepRunner['stats'] { return this.runner.stats; }

  /** The compiled step (bench/llm.ts profiles its executable). */
  get compiled(): PagedStepRunner['compiled'] { return this.runner.compiled; }

  /** How the compiled step runs (native plan or interpreter, and why), or 'eager'. */
  describe(): string { return this.runner.describe(); }

  /** Pages not held by any sequence (free, or cached and evictable). */
  get freeBlocks(): number { return this.runner.freeBlocks; }
  /** Pages holding a cached prefix that no sequence uses. */
  get cachedBlocks(): number { return this.runner.cachedBlocks; }

  /** Generates from a prompt; resolves with the generated ids (streamed through onToken). */
  generate(prompt: readonly number[], options: SequenceOptions = {}, onToken?: (token: number) => void): Promise<{ tokens: number[]; finishReason: StepFinishReason }> {
    checkOptionNames('StepEngine.generate', options, SEQUENCE_OPTION_NAMES);
    if (prompt.length === 0) throw new RangeError('StepEngine.generate: the prompt is empty; give at least one token (e.g. BOS)');
    // a decoder may accept ids past its vocabulary (LLaVA: image rows); they are its to check
    const V = this.model.inputIdLimit ?? this.model.config.vocabSize;
    const bad = prompt.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad >= 0) throw new RangeError(`StepEngine.generate: prompt token ${bad} is ${prompt[bad]}, outside the vocabulary [0, ${V})`);
    if (prompt.length >= this.maxContext) throw new EngineCapacityError(`StepEngine.generate: the prompt has ${prompt.length} tokens but the context holds ${this.maxContext}`);
    return new Promise((resolve, reject) => {
      const seq: Seq = {
        id: this.nextId++, paged: this.runner.newSequence(), tokens: [...prompt], promptLength: prompt.length,
        sampler: new Sampler(samplingOptionsOf(options)), maxTokens: options.maxTokens ?? 128, stop: new Set(options.stopTokens ?? []),
        signal: options.signal ?? null, generated: [], finished: null, onToken: onToken ?? null,
        done: () => resolve({ tokens: seq.generated, finishReason: seq.finished! }),
        fail: reject,
      };
      this.runner.matchPrefix(seq.paged, seq.tokens);
      this.running.push(seq);
      this.kick();
    });
  }

  /** Starts the step loop unless it runs; restarts it when sequences arrived as it was ending. */
  private kick(): void {
    if (this.loop) return;
    this.loop = this.drive().catch((e) => {
      // a failed step fails every running sequence; their pages go back
      for (const s of this.running.splice(0)) { this.runner.release(s.paged); s.fail(e); }
    }).finally(() => {
      this.loop = null;
      if (this.running.length > 0) this.kick();
    });
  }

  /** Streams generated ids as an async iterator. */
  async *stream(prompt: readonly number[], options: SequenceOptions = {}): AsyncGenerator<number, StepFinishReason> {
    const queue: number[] = [];
    let wake: (() => void) | null = null;
    let end: { finishReason: StepFinishReason } | null = null, error: unknown = null;
    this.generate(prompt, options, (t) => { queue.push(t); wake?.(); }).then((r) => { end = r; wake?.(); }, (e) => { error = e ?? new Error('step failed'); wake?.(); });
    for (;;) {
      while (queue.length) yield queue.shift()!;
      if (error) throw error;
      if (end) return (end as { finishReason: StepFinishReason }).finishReason;
      await new Promise<void>((r) => { wake = r; });
      wake = null;
    }
  }

  // ---- the step loop ----

  private async drive(): Promise<void> {
    while (this.running.length > 0) {
      for (const s of [...this.running]) if (s.signal?.aborted) this.finish(s, 'abort');
      if (this.running.length === 0) break;
      await this.step();
      // let timers, sockets and new requests in between steps
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** One step: schedule, run on the runner, sample. */
  private async step(): Promise<void> {
    const batch: (StepEntry & { owner: Seq })[] = [];
    let budget = this.maxStepTokens;
    // decoding sequences first (one token each), then prompt chunks in arrival order
    const prefilling = (s: Seq) => Number(s.paged.cached < s.promptLength);
    const order = [...this.running].sort((a, b) => prefilling(a) - prefilling(b));
    for (const seq of order) {
      if (batch.length === this.maxSeqs || budget === 0) break;
      const pending = seq.tokens.length - seq.paged.cached;
      const n = Math.min(pending, budget);
      if (!this.runner.reserve(seq.paged, seq.paged.cached + n)) {
        if (batch.length === 0) throw new EngineCapacityError(`StepEngine: the KV pool (${this.numBlocks} pages of ${this.blockSize}) cannot hold sequence ${seq.id}; raise numBlocks`);
        break;
      }
      batch.push({ seq: seq.paged, tokens: seq.tokens, n, owner: seq });
      budget -= n;
    }
    const all = await this.runner.step(batch);
    const V = this.model.config.vocabSize;
    batch.forEach(({ owner: seq }, i) => {
      if (seq.paged.cached < seq.tokens.length) return; // still prefilling its prompt
      const token = seq.sampler.sample(all.subarray(i * V, (i + 1) * V), seq.tokens);
      seq.tokens.push(token);
      seq.generated.push(token);
      seq.onToken?.(token);
      if (seq.stop.has(token)) this.finish(seq, 'stop-token');
      else if (seq.generated.length >= seq.maxTokens) this.finish(seq, 'length');
      else if (seq.tokens.length >= this.maxContext) this.finish(seq, 'context');
    });
  }

  private finish(seq: Seq, why: StepFinishReason): void {
    seq.finished = why;
    this.running.splice(this.running.indexOf(seq), 1);
    this.runner.release(seq.paged);
    seq.done();
  }
}
