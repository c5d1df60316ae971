// RETIRING — kept only because src/serve's adapter (SequentialLlamaEngine) still drives it while
// the server moves to StepEngine (helper serve17); delete this file, its export in src/llm/index.ts
// and native/llm/llama.cc together when that lands. Everything else (generate(), chat(),
// examples, tests) runs the model's own code compiled by the JIT (src/llm/step-engine.ts).
//
// The native Llama runtime: weights handed to native/llm/llama.cc once (pointers into the
// arrays loaded from the file, no copies), a paged KV cache, and forward(), which runs a prefill
// chunk or one decode step of one sequence in a single native call on the persistent thread pool.
import { type LlamaConfig, ropeInverseFrequencies } from './config.js';
import { PagedKvCache, type KvDType } from './kv-cache.js';
import {
  type LlamaWeights, type WeightPrecision, type LoadedLlama, type WeightMatrix,
  loadLlama, quantizeWeights, nativeWeightSpec, llmAddon, weightBytes, packWeights, packMatrix, packedKernelsFast,
} from './weights.js';
import { type GgufFile } from '../io/gguf/index.js';
import { checkThreadCount, setNumThreads } from '../backends/cpu/index.js';
import { InvalidTokenIdError } from './errors.js';

export interface EngineOptions {
  /** 'fp32' (default) runs weights as stored (f32/f16/bf16/Q8_0/Q4_0); 'int8'/'int4' quantize the linear layers at load. */
  precision?: WeightPrecision;
  /** int4 group size (32, 64, 128; default 32). */
  groupSize?: number;
  /** KV cache storage (default 'f32'). */
  kvDtype?: KvDType;
  /** Positions per KV page (default 16). */
  blockSize?: number;
  /** Positions the KV pool holds across all sequences (default: the model's context length, at most 4096). */
  cacheTokens?: number;
  /** Native thread pool size, a whole number from 1 to 1024 (default: physical cores). */
  threads?: number;
  /**
   * Interleave Q8_0/Q4_0 weights 16 rows at a time at load (a second copy while loading; the GGUF
   * layout is dropped unless the caller keeps it). Default: when the build's packed kernels are
   * the fast path (AVX-512 VNNI).
   */
  pack?: boolean;
}

export class LlamaEngine {
  readonly cache: PagedKvCache;
  readonly weights: LlamaWeights;
  private readonly model: object;
  private readonly native = llmAddon('LlamaEngine');
  /** The prepared weights, kept referenced: the native model points into them. */
  private readonly keepAlive: unknown[];

  constructor(readonly config: LlamaConfig, weights: LlamaWeights, options: EngineOptions = {}, readonly gguf?: GgufFile) {
    if (options.threads !== undefined) { checkThreadCount(options.threads, 'LlamaEngine: options.threads'); setNumThreads(options.threads); }
    const quantized = quantizeWeights(weights, options.precision ?? 'fp32', { groupSize: options.groupSize });
    this.weights = (options.pack ?? packedKernelsFast()) ? packWeights(quantized) : quantized;
    const w = this.weights, c = config;
    const norm = (v: Float32Array) => nativeWeightSpec({ format: 'f32', rows: 1, cols: v.length, data: v, scales: null, groupSize: 32 });
    const specs = [nativeWeightSpec(w.embed), norm(w.outNorm), nativeWeightSpec(w.output)];
    for (const l of w.layers) {
      specs.push(norm(l.attnNorm), ...[l.wq, l.wk, l.wv, l.wo].map(nativeWeightSpec), norm(l.ffnNorm), ...[l.gate, l.up, l.down].map(nativeWeightSpec));
    }
    const invFreq = ropeInverseFrequencies(c, w.ropeFreqFactors);
    this.model = this.native.llmCreate(
      [c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.vocabSize, c.ropeDim, c.ropeInterleaved ? 1 : 0, c.rmsNormEps],
      invFreq, specs);
    const blockSize = options.blockSize ?? 16;
    const tokens = options.cacheTokens ?? Math.min(c.maxPositionEmbeddings, 4096);
    this.cache = new PagedKvCache({
      numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim,
      numBlocks: Math.max(1, Math.ceil(tokens / blockSize)), blockSize, dtype: options.kvDtype ?? 'f32',
    });
    this.native.llmAttachCache(this.model, this.cache.k, this.cache.v, this.cache.numBlocks, blockSize, this.cache.dtype === 'f16');
    this.keepAlive = [specs];
  }

  /** Loads a .gguf file or a Hugging Face checkpoint directory. */
  static load(source: string | LoadedLlama, options: EngineOptions = {}): LlamaEngine {
    // Weights run as stored: pack each matrix as it is read, so the file layout is never held in full.
    const packNow = (options.precision ?? 'fp32') === 'fp32' && (options.pack ?? packedKernelsFast());
    const m = typeof source === 'string' ? loadLlama(source, packNow ? { transform: packMatrix } : {}) : source;
    return new LlamaEngine(m.config, m.weights, options, m.gguf);
  }

  get vocabSize(): number { return this.config.vocabSize; }
  /** Bytes of the weights as executed (after any load-time quantization). */
  get weightBytes(): number { return weightBytes(this.weights); }

  /** Starts a sequence in the KV cache. */
  newSequence(): number { return this.cache.allocate(); }
  releaseSequence(seq: number): void { this.cache.release(seq); }

  /**
   * Appends `tokens` to sequence `seq` and returns the logits of its last position ([vocab]), or of
   * every new position ([tokens.length · vocab]) when allLogits. One native call for the whole
   * chunk (prefill) or step (decode).
   */
  forward(seq: number, tokens: ArrayLike<number>, options: { allLogits?: boolean; out?: Float32Array } = {}): Float32Array {
    const T = tokens.length;
    if (T === 0) throw new RangeError('LlamaEngine.forward: tokens is empty');
    const ids = checkTokenIds(tokens, this.config.vocabSize);
    const start = this.cache.length(seq);
    if (start + T > this.config.maxPositionEmbeddings) {
      // Not an error for rotary models, but past the trained context the output degrades: say so once.
      warnContext(this.config.maxPositionEmbeddings);
    }
    const table = this.cache.extend(seq, T);
    const rows = options.allLogits ? T : 1;
    const logits = options.out ?? new Float32Array(rows * this.config.vocabSize);
    try {
      this.native.llmForward(this.model, ids, start, table, logits, options.allLogits ?? false);
    } catch (e) {
      this.cache.truncate(seq, start);
      throw e;
    }
    return logits;
  }

  /** The matrices the engine runs, by role (for inspection and tests). */
  matrices(): { name: string; matrix: WeightMatrix }[] {
    const out = [{ name: 'output', matrix: this.weights.output }];
    this.weights.layers.forEach((l, i) => {
      for (const k of ['wq', 'wk', 'wv', 'wo', 'gate', 'up', 'down'] as const) out.push({ name: `layers.${i}.${k}`, matrix: l[k] });
    });
    return out;
  }
}

/**
 * The ids as an Int32Array, each checked to be an integer in [0, vocab) first: Int32Array.from
 * would coerce silently (2^32 + 5 -> 5, 1.7 -> 1, NaN -> 0, "5" -> 5) and run a token nobody asked for.
 */
function checkTokenIds(tokens: ArrayLike<number>, vocab: number): Int32Array {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= vocab) throw new InvalidTokenIdError('LlamaEngine.forward', t, i, vocab);
  }
  return tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
}

let warned = false;
function warnContext(n: number): void {
  if (warned) return;
  warned = true;
  console.warn(`inferjit: the sequence is longer than the model's trained context (${n} positions); expect degraded output`);
}
