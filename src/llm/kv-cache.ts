// Paged KV cache: a pool of fixed-size pages per layer, shared by all sequences, and a block table
// per sequence mapping its logical blocks to pages (vLLM's PagedAttention layout). Sequences grow a
// page at a time and give their pages back when freed, so many sequences of unknown length share
// one preallocated pool without fragmentation.
//
// Page layout (what native/llm/paged_attention.h reads), one K and one V array per layer:
//   [numBlocks][numKvHeads][blockSize][headDim]  as fp32 (Float32Array) or f16 bits (Uint16Array)
// Position p of a sequence is page table[p / blockSize], slot p % blockSize.

export type KvDType = 'f32' | 'f16';

export interface PagedKvCacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Total pages in the pool (shared by all sequences). */
  numBlocks: number;
  /** Positions per page (default 16). */
  blockSize?: number;
  dtype?: KvDType;
}

export class KvCacheFullError extends Error {
  constructor(message: string) { super(message); this.name = 'KvCacheFullError'; }
}

interface SequenceState { table: number[]; length: number; tableArray: Int32Array | null }

export class PagedKvCache {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly dtype: KvDType;
  /** Per layer: the K and V page arrays. */
  readonly k: (Float32Array | Uint16Array)[] = [];
  readonly v: (Float32Array | Uint16Array)[] = [];
  private readonly free: number[] = [];
  private readonly sequences = new Map<number, SequenceState>();
  private nextId = 0;

  constructor(options: PagedKvCacheOptions) {
    const { numLayers, numKvHeads, headDim, numBlocks } = options;
    this.blockSize = options.blockSize ?? 16;
    this.dtype = options.dtype ?? 'f32';
    for (const [k, v] of Object.entries({ numLayers, numKvHeads, headDim, numBlocks, blockSize: this.blockSize })) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`PagedKvCache: ${k} must be a positive integer, got ${v}`);
    }
    if (this.dtype !== 'f32' && this.dtype !== 'f16') throw new TypeError(`PagedKvCache: dtype must be 'f32' or 'f16', got ${String(this.dtype)}`);
    this.numLayers = numLayers; this.numKvHeads = numKvHeads; this.headDim = headDim; this.numBlocks = numBlocks;
    const n = numBlocks * numKvHeads * this.blockSize * headDim;
    for (let l = 0; l < numLayers; l++) {
      this.k.push(this.dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n));
      this.v.push(this.dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n));
    }
    // Hand out low page numbers first (pop from the end).
    for (let b = numBlocks - 1; b >= 0; b--) this.free.push(b);
  }

  /** Bytes held by the page arrays. */
  get bytes(): number { return this.k.reduce((s, a) => s + a.byteLength, 0) * 2; }
  get freeBlocks(): number { return this.free.length; }
  /** Positions a sequence can hold at most (the whole pool). */
  get capacity(): number { return this.numBlocks * this.blockSize; }

  /** Starts an empty sequence and returns its id. */
  allocate(): number {
    const id = this.nextId++;
    this.sequences.set(id, { table: [], length: 0, tableArray: null });
    return id;
  }

  /** Returns the sequence's pages to the pool. */
  release(seq: number): void {
    const s = this.state(seq, 'release');
    for (let i = s.table.length - 1; i >= 0; i--) this.free.push(s.table[i]);
    this.sequences.delete(seq);
  }

  has(seq: number): boolean { return this.sequences.has(seq); }
  length(seq: number): number { return this.state(seq, 'length').length; }

  /**
   * Makes room for `count` more positions (allocating pages as needed) and returns the block table
   * covering them. The length advances by `count`: the caller writes those positions next.
   * Throws KvCacheFullError, leaving the sequence unchanged, when the pool has too few free pages.
   */
  extend(seq: number, count: number): Int32Array {
    const s = this.state(seq, 'extend');
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`PagedKvCache.extend: count must be a non-negative integer, got ${count}`);
    const need = Math.ceil((s.length + count) / this.blockSize) - s.table.length;
    if (need > this.free.length) {
      throw new KvCacheFullError(`PagedKvCache: sequence ${seq} needs ${need} more pages of ${this.blockSize} positions for ${count} tokens, but only ${this.free.length} of ${this.numBlocks} are free`);
    }
    for (let i = 0; i < need; i++) s.table.push(this.free.pop()!);
    if (need > 0 || s.tableArray === null) s.tableArray = Int32Array.from(s.table);
    s.length += count;
    return s.tableArray;
  }

  /** Drops positions past `length` (e.g. to rewind a sequence), freeing pages no longer needed. */
  truncate(seq: number, length: number): void {
    const s = this.state(seq, 'truncate');
    if (!Number.isInteger(length) || length < 0 || length > s.length) {
      throw new RangeError(`PagedKvCache.truncate: length must be in [0, ${s.length}], got ${length}`);
    }
    const keep = Math.ceil(length / this.blockSize);
    while (s.table.length > keep) this.free.push(s.table.pop()!);
    s.tableArray = Int32Array.from(s.table);
    s.length = length;
  }

  /** The sequence's block table (page of each logical block). */
  blockTable(seq: number): Int32Array {
    const s = this.state(seq, 'blockTable');
    if (s.tableArray === null) s.tableArray = Int32Array.from(s.table);
    return s.tableArray;
  }

  /** Offset (in elements) of (layer's array, position, kv head) — the layout the kernels use. */
  offset(seq: number, pos: number, kvHead: number): number {
    const s = this.state(seq, 'offset');
    if (pos < 0 || pos >= s.length) throw new RangeError(`PagedKvCache.offset: position ${pos} is outside the sequence's ${s.length} positions`);
    const page = s.table[Math.floor(pos / this.blockSize)];
    return ((page * this.numKvHeads + kvHead) * this.blockSize + (pos % this.blockSize)) * this.headDim;
  }

  private state(seq: number, op: string): SequenceState {
    const s = this.sequences.get(seq);
    if (!s) throw new RangeError(`PagedKvCache.${op}: no sequence ${seq} (allocate() one first, or it was released)`);
    return s;
  }
}
