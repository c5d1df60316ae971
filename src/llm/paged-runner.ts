// The paged step runner: what every driver of a paged decoder shares (the generate loop in
// step-engine.ts, the server's engine in src/serve/engine.ts). It owns
//   - the KV page pools (one K and one V pool per layer, [numBlocks, kvHeads, blockSize, headDim]
//     f32 or f16, or int8 [.., headDim + 4] with a scale per row: src/ops/kv-int8.ts) and the block allocator;
//   - the prefix cache: every full page is keyed by a hash of its tokens and of the key of the page
//     before it (so a key names the whole prefix), reference-counted by the sequences using it, and
//     kept after its last user finishes until the pool needs the page (least recently used first).
//     A new sequence starts from the longest run of cached pages its tokens begin with; shared pages
//     are never written (a sequence only writes positions past the pages it matched);
//   - one step: the metadata of a ragged batch (ids, positions, slots, block tables, sequence
//     lengths, query starts, last-token rows), padded to power-of-two token and sequence counts so a
//     plan is lowered once per bucket, never per token (padding tokens write to slot -1 and attend to
//     nothing), and the compiled step run off the JS thread when the plan offers it.
// Drivers decide which sequences run and how many tokens each feeds; the runner does the rest.
import { createHash } from 'node:crypto';
import { Tensor } from '../tensor/tensor.js';
import { inferenceJit } from '../jit/index.js';
import type { JitOptions, InputSpec } from '../jit/options.js';
import type { RunOptions } from '../backends/backend.js';
import { KV_INT8_SCALE_BYTES } from '../ops/kv-int8.js';

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

/** What the runner needs of a decoder module. */
export interface StepDecoder {
  config: { numLayers: number; numKvHeads: number; headDim: number; vocabSize: number };
  /** Positions the model can embed (its rotary tables); contexts are capped to it. */
  maxPositions?: number;
  /** Persistent tensors the step reads besides the pools (LLaVA's image-feature rows): passed as
   *  forward's fourth argument, inputs of the compiled step (not constants), so the host may rewrite
   *  their contents between steps. Absent for text-only decoders, whose steps are unchanged. */
  stepState?: readonly Tensor[];
  /** Prompt ids must be below this (default config.vocabSize; LLaVA's image-row ids lie past the vocabulary). */
  inputIdLimit?: number;
  /** The KV storage the decoder was made for (quantize()'s kvCache 'int8' on the real kernels): the
   *  pools' default when the engine's options name none. */
  kvDtype?: KvCacheDtype;
  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[], state?: Tensor[]): Tensor;
}

/** Storage of the KV page pools. */
export type KvCacheDtype = 'f32' | 'f16' | 'int8';
export const KV_CACHE_DTYPES: readonly KvCacheDtype[] = ['f32', 'f16', 'int8'];

/** The shape and tensor dtype of one KV pool of the given storage. */
export function kvPoolLayout(kvDtype: KvCacheDtype, numBlocks: number, numKvHeads: number, blockSize: number, headDim: number): { dtype: 'f32' | 'f16' | 'i8'; shape: number[] } {
  if (kvDtype === 'int8') return { dtype: 'i8', shape: [numBlocks, numKvHeads, blockSize, headDim + KV_INT8_SCALE_BYTES] };
  return { dtype: kvDtype, shape: [numBlocks, numKvHeads, blockSize, headDim] };
}

export interface PagedRunnerOptions {
  /** Positions per KV page (default 16). */
  blockSize?: number;
  /** Longest context of one sequence (default: the model's maxPositions, at most 2048). */
  maxContext?: number;
  /** Pages in the pool shared by all sequences (default: enough for maxSeqs full contexts). */
  numBlocks?: number;
  /** Most sequences in one step (default 16). */
  maxSeqs?: number;
  /** Most tokens in one step, a power of two (default 256). */
  maxStepTokens?: number;
  /** Storage of the KV pools: 'f32' (default), 'f16' (half the memory; rows rounded to nearest even, as llama.cpp's default cache)
   *  or 'int8' (about a quarter: each row of a kv head quantized at write with its own absmax scale, dequantized inside paged attention). */
  kvDtype?: KvCacheDtype;
  /** Reuse the KV pages of prompt prefixes seen before (default true). */
  prefixCaching?: boolean;
  /** false: run the model's forward eagerly (the oracle); default: compile it with inferenceJit. */
  compile?: boolean;
  /** Extra options for inferenceJit. */
  jit?: JitOptions;
}

/** A sequence's hold on the pool: its pages, their prefix keys, and how many positions are in the cache. */
export interface PagedSequence {
  blocks: number[];
  /** Prefix-cache keys of the sequence's full pages so far (page i's key names pages 0..i). */
  pageKeys: string[];
  /** Positions whose K/V are in the pool. */
  cached: number;
}

/** One sequence's share of a step: positions `seq.cached .. seq.cached + n` of `tokens` (its whole known token list). */
export interface StepEntry {
  seq: PagedSequence;
  tokens: ArrayLike<number>;
  n: number;
}

export class EngineCapacityError extends Error {
  constructor(message: string) { super(message); this.name = 'EngineCapacityError'; }
}

const REUSE_OUTPUTS: RunOptions = { reuseOutputs: true };

export const pow2 = (n: number): number => { let p = 1; while (p < n) p *= 2; return p; };

type Compiled = { compiledEntries(): { executable: { runAsync?(inputs: Tensor[], options?: RunOptions): Promise<Tensor[]>; describe?(): string } }[] };

/** One (tokens, sequences) bucket's step inputs, refilled in place every step. */
interface Bucket {
  step: StepInputs;
  /** The compiled step's flat inputs: the metadata tensors, the K and V pools, then the decoder's step state. */
  flat: Tensor[];
  label: string;
}

export class PagedStepRunner {
  readonly blockSize: number;
  readonly maxContext: number;
  readonly numBlocks: number;
  readonly maxBlocks: number;
  readonly maxSeqs: number;
  readonly maxStepTokens: number;
  readonly kPools: Tensor[] = [];
  readonly vPools: Tensor[] = [];
  readonly vocabSize: number;
  /** Steps run, and the (tokens, sequences) buckets they used. */
  readonly stats = {
    steps: 0, asyncSteps: 0, tokens: 0, paddedTokens: 0, buckets: new Set<string>(), prefixHitTokens: 0, evictions: 0,
    /** Milliseconds step() spent on the JS thread outside the run itself (metadata in, bookkeeping out). */
    hostMs: 0,
  };
  readonly prefixCaching: boolean;
  private readonly run: (step: StepInputs, k: Tensor[], v: Tensor[]) => Tensor;
  /** The decoder's stepState (empty for text-only decoders). */
  private readonly state: Tensor[];
  /** The inferenceJit-compiled step (null when running eagerly); its entries' executables run the plans. */
  readonly compiled: Compiled | null;
  private readonly free: number[] = [];
  /** Prefix cache: page key -> page, and per page its key and reference count. */
  private readonly byKey = new Map<string, number>();
  private readonly keyOf = new Map<number, string>();
  private readonly refs: Int32Array;
  /** Cached pages no sequence uses, least recently used first (Map keeps insertion order). */
  private readonly idle = new Map<number, true>();
  /** Step input tensors per (tokens, sequences) bucket, reused (see metadata()). */
  private readonly buffers = new Map<number, Bucket>();
  private stepping = false;

  constructor(readonly model: StepDecoder, options: PagedRunnerOptions = {}, owner = 'PagedStepRunner') {
    const { numLayers, numKvHeads, headDim } = model.config;
    this.vocabSize = model.config.vocabSize;
    this.blockSize = options.blockSize ?? 16;
    this.maxContext = options.maxContext ?? Math.min(model.maxPositions ?? 2048, 2048);
    if (model.maxPositions !== undefined && this.maxContext > model.maxPositions) {
      throw new RangeError(`${owner}: maxContext ${this.maxContext} exceeds the ${model.maxPositions} positions the model embeds`);
    }
    this.maxSeqs = options.maxSeqs ?? 16;
    this.maxStepTokens = options.maxStepTokens ?? 256;
    if (pow2(this.maxStepTokens) !== this.maxStepTokens) throw new RangeError(`${owner}: maxStepTokens must be a power of two, got ${this.maxStepTokens}`);
    this.maxBlocks = Math.ceil(this.maxContext / this.blockSize);
    this.numBlocks = options.numBlocks ?? this.maxBlocks * this.maxSeqs;
    for (const [k, v] of Object.entries({ blockSize: this.blockSize, maxContext: this.maxContext, numBlocks: this.numBlocks, maxSeqs: this.maxSeqs })) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${owner}: ${k} must be a positive integer, got ${v}`);
    }
    const kvDtype = options.kvDtype ?? model.kvDtype ?? 'f32';
    if (!KV_CACHE_DTYPES.includes(kvDtype)) throw new TypeError(`${owner}: kvDtype must be one of ${KV_CACHE_DTYPES.map((d) => `'${d}'`).join(', ')}, got ${String(kvDtype)}`);
    const pool = kvPoolLayout(kvDtype, this.numBlocks, numKvHeads, this.blockSize, headDim);
    for (let l = 0; l < numLayers; l++) {
      // Written once here so every page is faulted in now, as llama.cpp clears its KV buffer at
      // load: a fresh allocation is lazily mapped, and the first kv_write to each page otherwise
      // pays a page fault inside the step (35 µs per kv_write call vs 1.2 µs on touched pages).
      const k = Tensor.empty(pool.dtype, pool.shape), v = Tensor.empty(pool.dtype, pool.shape);
      k.data.fill(0 as never); v.data.fill(0 as never);
      this.kPools.push(k);
      this.vPools.push(v);
    }
    for (let b = this.numBlocks - 1; b >= 0; b--) this.free.push(b);
    this.refs = new Int32Array(this.numBlocks);
    this.prefixCaching = options.prefixCaching ?? true;
    this.state = [...(model.stepState ?? [])];
    const state = this.state;
    if (options.compile === false) {
      this.compiled = null;
      this.run = state.length ? (s, k, v) => model.forward(s, k, v, state) : (s, k, v) => model.forward(s, k, v);
    } else {
      const spec: (InputSpec | null)[] = [
        { shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] },
        { shape: ['S', this.maxBlocks] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] },
        ...new Array<null>(2 * numLayers + state.length).fill(null),
      ];
      const c = inferenceJit(model as unknown as { forward: StepDecoder['forward'] }, { device: 'cpu', fallback: 'error', cache: 'memory', ...options.jit, inputSpec: spec });
      this.compiled = c as unknown as Compiled;
      const f = c as unknown as (s: StepInputs, k: Tensor[], v: Tensor[], st?: Tensor[]) => Tensor;
      this.run = state.length ? (s, k, v) => f(s, k, v, state) : (s, k, v) => f(s, k, v);
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

  newSequence(): PagedSequence { return { blocks: [], pageKeys: [], cached: 0 }; }

  /** Pages the sequence must newly take to hold `length` positions. */
  blocksNeeded(seq: PagedSequence, length: number): number {
    return Math.max(0, Math.ceil(length / this.blockSize) - seq.blocks.length);
  }

  /** Gives the sequence pages up to `length` positions; false (taking nothing) when the pool is out of pages. */
  reserve(seq: PagedSequence, length: number): boolean {
    const need = this.blocksNeeded(seq, length);
    if (need === 0) return true;
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

  /** Returns the sequence's pages (cached ones stay cached, evictable) and empties it. */
  release(seq: PagedSequence): void {
    for (let i = seq.blocks.length - 1; i >= 0; i--) {
      const b = seq.blocks[i];
      if (--this.refs[b] > 0) continue;
      if (this.keyOf.has(b)) this.idle.set(b, true);
      else this.free.push(b);
    }
    seq.blocks = [];
    seq.pageKeys = [];
    seq.cached = 0;
  }

  /** The key of page `index` of a token list whose previous page has key `prev`. */
  private pageKey(prev: string, tokens: ArrayLike<number>, index: number): string {
    const h = createHash('sha256').update(prev);
    const page = new Int32Array(this.blockSize);
    for (let i = 0; i < this.blockSize; i++) page[i] = tokens[index * this.blockSize + i];
    h.update(page);
    return h.digest('base64');
  }

  /**
   * Starts an empty sequence on the cached pages its tokens begin with (all but the last token,
   * which must run to give the next logits). Returns the positions it skips (0 without a hit).
   */
  matchPrefix(seq: PagedSequence, tokens: ArrayLike<number>): number {
    if (!this.prefixCaching || seq.blocks.length > 0) return 0;
    let prev = '', hit = 0;
    for (let i = 0; (i + 1) * this.blockSize <= tokens.length - 1; i++) {
      const key = this.pageKey(prev, tokens, i);
      const b = this.byKey.get(key);
      if (b === undefined) break;
      if (this.refs[b]++ === 0) this.idle.delete(b);
      seq.blocks.push(b);
      seq.pageKeys.push(key);
      hit += this.blockSize;
      prev = key;
    }
    seq.cached = hit;
    this.stats.prefixHitTokens += hit;
    return hit;
  }

  /** Publishes the pages the sequence's cached positions complete. A page whose key another page
   *  already holds (a twin prefix computed concurrently) stays private; the key chain goes on,
   *  since keys name contents, not pages. */
  private registerFull(seq: PagedSequence, tokens: ArrayLike<number>): void {
    for (let i = seq.pageKeys.length; (i + 1) * this.blockSize <= seq.cached; i++) {
      const key = this.pageKey(seq.pageKeys[i - 1] ?? '', tokens, i);
      seq.pageKeys.push(key);
      const b = seq.blocks[i];
      if (!this.byKey.has(key) && !this.keyOf.has(b)) { this.byKey.set(key, b); this.keyOf.set(b, key); }
    }
  }

  /**
   * Runs one step over the entries (each must have reserved its pages): writes their K/V, advances
   * each `seq.cached` by its `n`, and returns the logits of each entry's last token
   * ([entries, vocab], row i for entry i). The compiled step writes them into buffers kept per
   * bucket: the array is valid until the next step (read or copy it before stepping again).
   */
  async step(batch: readonly StepEntry[]): Promise<Float32Array> {
    const t0 = performance.now();
    if (this.stepping) throw new Error('PagedStepRunner.step: a step is already running; await it first (steps share their input buffers)');
    if (batch.length === 0) throw new RangeError('PagedStepRunner.step: the batch is empty');
    if (batch.length > this.maxSeqs) throw new EngineCapacityError(`PagedStepRunner.step: ${batch.length} sequences in one step; at most maxSeqs = ${this.maxSeqs}`);
    let real = 0;
    for (const { seq, n, tokens } of batch) {
      if (!(n >= 1) || seq.cached + n > tokens.length) throw new RangeError(`PagedStepRunner.step: a sequence with ${seq.cached} cached of ${tokens.length} tokens cannot feed ${n}`);
      if (seq.blocks.length * this.blockSize < seq.cached + n) throw new EngineCapacityError('PagedStepRunner.step: a sequence has not reserved pages for its tokens (call reserve first)');
      if (seq.cached + n > this.maxContext) throw new EngineCapacityError(`PagedStepRunner.step: a sequence would hold ${seq.cached + n} positions; the context holds ${this.maxContext}`);
      real += n;
    }
    const T = pow2(real), S = pow2(batch.length);
    const bucket = this.metadata(T, S);
    const step = bucket.step;
    const ids = step.ids.data as Int32Array, positions = step.positions.data as Int32Array, slots = step.slots.data as Int32Array;
    const tables = step.blockTables.data as Int32Array, lens = step.seqLens.data as Int32Array;
    const starts = step.queryStart.data as Int32Array, last = step.lastIndex.data as Int32Array;
    let t = 0;
    const bs = this.blockSize;
    for (let i = 0; i < batch.length; i++) {
      const { seq, n, tokens } = batch[i];
      starts[i] = t;
      for (let k = 0; k < n; k++, t++) {
        const p = seq.cached + k;
        ids[t] = tokens[p];
        positions[t] = p;
        slots[t] = seq.blocks[(p / bs) | 0] * bs + (p % bs);
      }
      starts[i + 1] = t;
      lens[i] = seq.cached + n;
      last[i] = t - 1;
      tables.set(seq.blocks, i * this.maxBlocks);
      // entries past the sequence's pages are never read (seqLens bounds them); zero them anyway
      tables.fill(0, i * this.maxBlocks + seq.blocks.length, (i + 1) * this.maxBlocks);
    }
    // padding: tokens write nowhere (slot -1) and padded sequences attend to nothing (length 0)
    ids.fill(0, t); positions.fill(0, t); slots.fill(-1, t);
    for (let i = batch.length; i < S; i++) { starts[i + 1] = t; lens[i] = 0; last[i] = 0; }
    tables.fill(0, batch.length * this.maxBlocks);
    const t1 = performance.now();
    this.stepping = true;
    let logits: Tensor;
    try {
      logits = await this.runStep(bucket);
    } finally {
      this.stepping = false;
    }
    const t2 = performance.now();
    this.stats.steps++; this.stats.tokens += real; this.stats.paddedTokens += T - real; this.stats.buckets.add(bucket.label);
    for (const { seq, n, tokens } of batch) {
      seq.cached += n;
      if (this.prefixCaching) this.registerFull(seq, tokens);
    }
    this.stats.hostMs += t1 - t0 + performance.now() - t2;
    return logits.data as Float32Array;
  }

  /**
   * The step's input tensors for a (tokens, sequences) bucket, allocated once per bucket and
   * refilled in place every step (steps never overlap: step() awaits its run before the next).
   */
  private metadata(T: number, S: number): Bucket {
    const key = T * 65536 + S;
    let m = this.buffers.get(key);
    if (!m) {
      const i32 = (shape: number[]) => Tensor.empty('i32', shape);
      const step = { ids: i32([T]), positions: i32([T]), slots: i32([T]), blockTables: i32([S, this.maxBlocks]), seqLens: i32([S]), queryStart: i32([S + 1]), lastIndex: i32([S]) };
      const flat = [step.ids, step.positions, step.slots, step.blockTables, step.seqLens, step.queryStart, step.lastIndex, ...this.kPools, ...this.vPools, ...this.state];
      m = { step, flat, label: `T=${T},S=${S}` };
      this.buffers.set(key, m);
    }
    return m;
  }

  /**
   * Runs the step: off the JS thread through the plan's async path once compiled, else
   * synchronously. The plan writes the logits into its kept output buffers (reuseOutputs): the
   * caller has consumed the previous step's logits before it steps again (see step()).
   */
  private async runStep(bucket: Bucket): Promise<Tensor> {
    const entry = this.compiled?.compiledEntries()[0];
    if (entry?.executable.runAsync) {
      this.stats.asyncSteps++;
      return (await entry.executable.runAsync(bucket.flat, REUSE_OUTPUTS))[0];
    }
    return this.run(bucket.step, this.kPools, this.vPools);
  }
}
