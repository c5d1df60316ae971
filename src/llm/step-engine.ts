// A generic serving engine over any decoder whose forward is one paged step (vLLM style):
//   forward(step, kPools, vPools) -> logits [seqs, vocab] of each sequence's last token
// with step = { ids, positions, slots, blockTables, seqLens, queryStart, lastIndex } (int32 tensors,
// see src/llm/models/llama.ts). The engine owns the KV page pools (one K and one V pool per
// layer, [numBlocks, kvHeads, blockSize, headDim] f32 or f16) and the block allocator, schedules the
// running sequences into steps (every decoding sequence gets one token, prefilling ones a chunk of
// their prompt within the step's token budget), builds each step's metadata, runs the step
// (compiled by inferenceJit: one native plan per (tokens, sequences) bucket, off the JS thread when
// the plan offers it), samples, streams tokens and cancels between steps.
//
// Prefix caching: every full page is keyed by a hash of its tokens and of the key of the page
// before it (so a key names the whole prefix), reference-counted by the sequences using it, and
// kept after its last user finishes until the pool needs the page (least recently used first).
// A new sequence starts from the longest run of cached pages its prompt begins with, so a repeated
// system prompt is not prefilled twice. Shared pages are never written: a sequence only writes
// positions past the pages it matched.
//
// Token counts and sequence counts are padded to powers of two (padding tokens write to slot -1
// and attend to nothing), so a plan is lowered once per bucket, never per generated token; the
// context length is data (seqLens, block tables), so it never changes a shape.
import { createHash } from 'node:crypto';
import { Tensor } from '../tensor/tensor.js';
import { fromArray } from '../tensor/creation.js';
import { inferenceJit } from '../jit/index.js';
import type { JitOptions, InputSpec } from '../jit/options.js';
import { Sampler, type SamplingOptions, SAMPLING_OPTION_NAMES } from './sampling.js';
import { checkOptionNames } from './errors.js';

/** One step's tokens and attention metadata (all int32). */
export interface StepInputs {
  ids: Tensor;
  positions: Tensor;
  slots: Tensor;
  blockTables: Tensor;
  seqLens: Tensor;
  queryStart: Tensor;
  lastIndex: Tensor;
}

/** What the engine needs of a decoder module. */
export interface StepDecoder {
  config: { numLayers: number; numKvHeads: number; headDim: number; vocabSize: number };
  /** Positions the model can embed (its rotary tables); contexts are capped to it. */
  maxPositions?: number;
  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor;
}

export interface StepEngineOptions {
  /** Positions per KV page (default 16). */
  blockSize?: number;
  /** Longest context of one sequence (default: the model's maxPositions, at most 2048). */
  maxContext?: number;
  /** Pages in the pool shared by all sequences (default: enough for maxSeqs full contexts). */
  numBlocks?: number;
  /** Most sequences in one step (default 16). */
  maxSeqs?: number;
  /** Most tokens in one step, a power of two (default 256): longer prompts prefill in chunks. */
  maxStepTokens?: number;
  /** Storage of the KV pools: 'f32' (default) or 'f16' (half the memory; rows rounded to nearest even, as llama.cpp's default cache). */
  kvDtype?: 'f32' | 'f16';
  /** Reuse the KV pages of prompt prefixes seen before (default true). */
  prefixCaching?: boolean;
  /** false: run the model's forward eagerly (the oracle); default: compile it with inferenceJit. */
  compile?: boolean;
  /** Extra options for inferenceJit. */
  jit?: JitOptions;
}

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

export class EngineCapacityError extends Error {
  constructor(message: string) { super(message); this.name = 'EngineCapacityError'; }
}

interface Seq {
  id: number;
  tokens: number[];
  /** Tokens already in the KV cache. */
  cached: number;
  promptLength: number;
  blocks: number[];
  /** Prefix-cache keys of the sequence's full pages so far (page i's key names pages 0..i). */
  pageKeys: string[];
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

const pow2 = (n: number): number => { let p = 1; while (p < n) p *= 2; return p; };

export class StepEngine {
  readonly blockSize: number;
  readonly maxContext: number;
  readonly numBlocks: number;
  readonly maxBlocks: number;
  readonly maxSeqs: number;
  readonly maxStepTokens: number;
  readonly kPools: Tensor[] = [];
  readonly vPools: Tensor[] = [];
  /** Steps run, and the (tokens, sequences) buckets they used. */
  readonly stats = { steps: 0, asyncSteps: 0, tokens: 0, paddedTokens: 0, buckets: new Set<string>(), prefixHitTokens: 0, evictions: 0 };
  readonly prefixCaching: boolean;
  private readonly run: (step: StepInputs, k: Tensor[], v: Tensor[]) => Tensor;
  private readonly compiled: { compiledEntries(): { executable: { runAsync?(inputs: Tensor[]): Promise<Tensor[]>; describe?(): string } }[] } | null;
  private readonly free: number[] = [];
  /** Prefix cache: page key -> page, and per page its key and reference count. */
  private readonly byKey = new Map<string, number>();
  private readonly keyOf = new Map<number, string>();
  private readonly refs = new Int32Array(0);
  /** Cached pages no sequence uses, least recently used first (Map keeps insertion order). */
  private readonly idle = new Map<number, true>();
  private readonly running: Seq[] = [];
  private nextId = 0;
  private loop: Promise<void> | null = null;

  constructor(readonly model: StepDecoder, options: StepEngineOptions = {}) {
    const { numLayers, numKvHeads, headDim } = model.config;
    this.blockSize = options.blockSize ?? 16;
    this.maxContext = options.maxContext ?? Math.min(model.maxPositions ?? 2048, 2048);
    if (model.maxPositions !== undefined && this.maxContext > model.maxPositions) {
      throw new RangeError(`StepEngine: maxContext ${this.maxContext} exceeds the ${model.maxPositions} positions the model embeds`);
    }
    this.maxSeqs = options.maxSeqs ?? 16;
    this.maxStepTokens = options.maxStepTokens ?? 256;
    if (pow2(this.maxStepTokens) !== this.maxStepTokens) throw new RangeError(`StepEngine: maxStepTokens must be a power of two, got ${this.maxStepTokens}`);
    this.maxBlocks = Math.ceil(this.maxContext / this.blockSize);
    this.numBlocks = options.numBlocks ?? this.maxBlocks * this.maxSeqs;
    for (const [k, v] of Object.entries({ blockSize: this.blockSize, maxContext: this.maxContext, numBlocks: this.numBlocks, maxSeqs: this.maxSeqs })) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`StepEngine: ${k} must be a positive integer, got ${v}`);
    }
    const poolShape = [this.numBlocks, numKvHeads, this.blockSize, headDim];
    const kvDtype = options.kvDtype ?? 'f32';
    if (kvDtype !== 'f32' && kvDtype !== 'f16') throw new TypeError(`StepEngine: kvDtype must be 'f32' or 'f16', got ${String(kvDtype)}`);
    for (let l = 0; l < numLayers; l++) {
      this.kPools.push(Tensor.empty(kvDtype, poolShape));
      this.vPools.push(Tensor.empty(kvDtype, poolShape));
    }
    for (let b = this.numBlocks - 1; b >= 0; b--) this.free.push(b);
    this.refs = new Int32Array(this.numBlocks);
    this.prefixCaching = options.prefixCaching ?? true;
    if (options.compile === false) {
      this.compiled = null;
      this.run = (s, k, v) => model.forward(s, k, v);
    } else {
      const spec: (InputSpec | null)[] = [
        { shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] },
        { shape: ['S', this.maxBlocks] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] },
        ...new Array<null>(2 * numLayers).fill(null),
      ];
      const c = inferenceJit(model as unknown as { forward: StepDecoder['forward'] }, { device: 'cpu', fallback: 'error', cache: 'memory', ...options.jit, inputSpec: spec });
      this.compiled = c as unknown as StepEngine['compiled'];
      this.run = (s, k, v) => (c as unknown as (s: StepInputs, k: Tensor[], v: Tensor[]) => Tensor)(s, k, v);
    }
  }

  /** How the compiled step runs (native plan or interpreter, and why), or 'eager'. */
  describe(): string {
    if (!this.compiled) return 'eager';
    const e = this.compiled.compiledEntries()[0];
    return e?.executable.describe?.() ?? 'not compiled yet';
  }

  /** Pages not held by any sequence (free, or cached and evictable). */
  get freeBlocks(): number { return this.free.length + this.idle.size; }
  /** Pages holding a cached prefix that no sequence uses. */
  get cachedBlocks(): number { return this.idle.size; }

  /** Generates from a prompt; resolves with the generated ids (streamed through onToken). */
  generate(prompt: readonly number[], options: SequenceOptions = {}, onToken?: (token: number) => void): Promise<{ tokens: number[]; finishReason: StepFinishReason }> {
    checkOptionNames('StepEngine.generate', options, SEQUENCE_OPTION_NAMES);
    if (prompt.length === 0) throw new RangeError('StepEngine.generate: the prompt is empty; give at least one token (e.g. BOS)');
    const V = this.model.config.vocabSize;
    const bad = prompt.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad >= 0) throw new RangeError(`StepEngine.generate: prompt token ${bad} is ${prompt[bad]}, outside the vocabulary [0, ${V})`);
    if (prompt.length >= this.maxContext) throw new EngineCapacityError(`StepEngine.generate: the prompt has ${prompt.length} tokens but the context holds ${this.maxContext}`);
    return new Promise((resolve, reject) => {
      const seq: Seq = {
        id: this.nextId++, tokens: [...prompt], cached: 0, promptLength: prompt.length, blocks: [], pageKeys: [],
        sampler: new Sampler(samplingOptionsOf(options)), maxTokens: options.maxTokens ?? 128, stop: new Set(options.stopTokens ?? []),
        signal: options.signal ?? null, generated: [], finished: null, onToken: onToken ?? null,
        done: () => resolve({ tokens: seq.generated, finishReason: seq.finished! }),
        fail: reject,
      };
      if (this.prefixCaching) this.matchPrefix(seq);
      this.running.push(seq);
      this.kick();
    });
  }

  /** Starts the step loop unless it runs; restarts it when sequences arrived as it was ending. */
  private kick(): void {
    if (this.loop) return;
    this.loop = this.drive().catch((e) => {
      // a failed step fails every running sequence; their pages go back
      for (const s of this.running.splice(0)) { this.release(s); s.fail(e); }
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

  /** One step: schedule, build metadata, run, sample. */
  private async step(): Promise<void> {
    const batch: { seq: Seq; n: number }[] = [];
    let budget = this.maxStepTokens;
    // decoding sequences first (one token each), then prompt chunks in arrival order
    const order = [...this.running].sort((a, b) => Number(a.cached < a.promptLength) - Number(b.cached < b.promptLength));
    for (const seq of order) {
      if (batch.length === this.maxSeqs || budget === 0) break;
      const pending = seq.tokens.length - seq.cached;
      const n = Math.min(pending, budget);
      if (!this.reserve(seq, seq.cached + n)) {
        if (batch.length === 0) throw new EngineCapacityError(`StepEngine: the KV pool (${this.numBlocks} pages of ${this.blockSize}) cannot hold sequence ${seq.id}; raise numBlocks`);
        break;
      }
      batch.push({ seq, n });
      budget -= n;
    }
    const real = batch.reduce((a, b) => a + b.n, 0);
    const T = pow2(real), S = pow2(batch.length);
    const ids = new Int32Array(T), positions = new Int32Array(T), slots = new Int32Array(T).fill(-1);
    const tables = new Int32Array(S * this.maxBlocks), lens = new Int32Array(S), starts = new Int32Array(S + 1), last = new Int32Array(S);
    let t = 0;
    batch.forEach(({ seq, n }, i) => {
      starts[i] = t;
      for (let k = 0; k < n; k++, t++) {
        const p = seq.cached + k;
        ids[t] = seq.tokens[p];
        positions[t] = p;
        slots[t] = seq.blocks[Math.floor(p / this.blockSize)] * this.blockSize + (p % this.blockSize);
      }
      starts[i + 1] = t;
      lens[i] = seq.cached + n;
      last[i] = t - 1;
      tables.set(seq.blocks, i * this.maxBlocks);
    });
    for (let i = batch.length; i < S; i++) starts[i + 1] = t;
    const step: StepInputs = {
      ids: fromArray(ids, [T], 'i32'), positions: fromArray(positions, [T], 'i32'), slots: fromArray(slots, [T], 'i32'),
      blockTables: fromArray(tables, [S, this.maxBlocks], 'i32'), seqLens: fromArray(lens, [S], 'i32'),
      queryStart: fromArray(starts, [S + 1], 'i32'), lastIndex: fromArray(last, [S], 'i32'),
    };
    const logits = await this.runStep(step);
    this.stats.steps++; this.stats.tokens += real; this.stats.paddedTokens += T - real; this.stats.buckets.add(`T=${T},S=${S}`);
    const V = this.model.config.vocabSize, all = logits.data as Float32Array;
    batch.forEach(({ seq, n }, i) => {
      seq.cached += n;
      if (this.prefixCaching) this.registerFull(seq, seq.cached);
      if (seq.cached < seq.tokens.length) return; // still prefilling its prompt
      const token = seq.sampler.sample(all.subarray(i * V, (i + 1) * V), seq.tokens);
      seq.tokens.push(token);
      seq.generated.push(token);
      seq.onToken?.(token);
      if (seq.stop.has(token)) this.finish(seq, 'stop-token');
      else if (seq.generated.length >= seq.maxTokens) this.finish(seq, 'length');
      else if (seq.tokens.length >= this.maxContext) this.finish(seq, 'context');
    });
  }

  /** Runs the step: off the JS thread through the plan's async path once compiled, else synchronously. */
  private async runStep(step: StepInputs): Promise<Tensor> {
    const entry = this.compiled?.compiledEntries()[0];
    if (entry?.executable.runAsync) {
      const inputs = [step.ids, step.positions, step.slots, step.blockTables, step.seqLens, step.queryStart, step.lastIndex, ...this.kPools, ...this.vPools];
      this.stats.asyncSteps++;
      return (await entry.executable.runAsync(inputs))[0];
    }
    return this.run(step, this.kPools, this.vPools);
  }

  /** Gives the sequence pages up to `length` positions; false when the pool is out of pages. */
  private reserve(seq: Seq, length: number): boolean {
    const need = Math.ceil(length / this.blockSize) - seq.blocks.length;
    if (need <= 0) return true;
    if (need > this.freeBlocks) return false;
    for (let i = 0; i < need; i++) {
      let b = this.free.pop();
      if (b === undefined) {
        // evict the least recently used cached prefix page
        b = this.idle.keys().next().value as number;
        this.idle.delete(b);
        this.byKey.delete(this.keyOf.get(b)!);
        this.keyOf.delete(b);
        this.stats.evictions++;
      }
      this.refs[b] = 1;
      seq.blocks.push(b);
    }
    return true;
  }

  private release(seq: Seq): void {
    for (const b of seq.blocks.reverse()) {
      if (--this.refs[b] > 0) continue;
      if (this.keyOf.has(b)) this.idle.set(b, true);
      else this.free.push(b);
    }
    seq.blocks = [];
  }

  /** The key of page `index` of a token list whose previous page has key `prev`. */
  private pageKey(prev: string, tokens: readonly number[], index: number): string {
    const h = createHash('sha256').update(prev);
    h.update(Int32Array.from(tokens.slice(index * this.blockSize, (index + 1) * this.blockSize)));
    return h.digest('base64');
  }

  /** Starts a new sequence on the cached pages its prompt begins with (all but its last token,
   *  which must run to give the first logits). */
  private matchPrefix(seq: Seq): void {
    let prev = '';
    for (let i = 0; (i + 1) * this.blockSize <= seq.tokens.length - 1; i++) {
      const key = this.pageKey(prev, seq.tokens, i);
      const b = this.byKey.get(key);
      if (b === undefined) break;
      if (this.refs[b]++ === 0) this.idle.delete(b);
      seq.blocks.push(b);
      seq.pageKeys.push(key);
      seq.cached += this.blockSize;
      this.stats.prefixHitTokens += this.blockSize;
      prev = key;
    }
  }

  /** Publishes the pages position `to` completed. A page whose key another page already holds
   *  (a twin prefix computed concurrently) stays private; the key chain goes on, since keys name
   *  contents, not pages. */
  private registerFull(seq: Seq, to: number): void {
    for (let i = seq.pageKeys.length; (i + 1) * this.blockSize <= to; i++) {
      const key = this.pageKey(seq.pageKeys[i - 1] ?? '', seq.tokens, i);
      seq.pageKeys.push(key);
      const b = seq.blocks[i];
      if (!this.byKey.has(key) && !this.keyOf.has(b)) { this.byKey.set(key, b); this.keyOf.set(b, key); }
    }
  }

  private finish(seq: Seq, why: StepFinishReason): void {
    seq.finished = why;
    this.running.splice(this.running.indexOf(seq), 1);
    this.release(seq);
    seq.done();
  }
}
