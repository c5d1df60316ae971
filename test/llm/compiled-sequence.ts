// One sequence on the compiled paged step (src/llm/models/llama.ts via inferenceJit) with every
// position's logits on demand: the tests that check logits per position use it.
import { fromArray, inferenceJit, Tensor } from '../../src/index.js';
import { PagedLlama, type LlamaConfig, type LlamaWeights, type LoadPrecision } from '../../src/llm/index.js';

/** One sequence on the compiled paged step (KV pages 0, 1, 2, ... in order): forward() appends
 *  tokens and returns the last position's logits, or every new position's with allLogits (the chunk
 *  runs as one step of T one-query sequences over the same pages: each token's K/V is written
 *  before any attention reads, so query i sees positions 0..from+i, exactly a causal prefill). */
export class CompiledSequence {
  private pos = 0;
  private readonly k: Tensor[];
  private readonly v: Tensor[];
  private readonly step: (...a: unknown[]) => unknown;
  readonly vocabSize: number;
  constructor(readonly model: PagedLlama, readonly options: { blockSize?: number; kvDtype?: 'f32' | 'f16'; compile?: boolean } = {}) {
    const c = model.config, BS = options.blockSize ?? 4, MB = Math.ceil(model.maxPositions / BS);
    const pool = () => Array.from({ length: c.numLayers }, () => Tensor.empty(options.kvDtype ?? 'f32', [MB, c.numKvHeads, BS, c.headDim]));
    this.k = pool(); this.v = pool();
    this.vocabSize = c.vocabSize;
    const spec = [{ shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] }, { shape: ['S', MB] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] }];
    // compile: false runs the same step eagerly (the fuzz tests: no plan per mutated model)
    this.step = options.compile === false ? ((st: never, k: Tensor[], v: Tensor[]) => model.forward(st, k, v)) as never : inferenceJit(model, { device: 'cpu', fallback: 'error', cache: 'memory', inputSpec: [...spec, ...new Array(2 * c.numLayers).fill(null)] }) as never;
    this.mb = MB;
  }
  private readonly mb: number;
  forward(ids: number[], allLogits = false): Float32Array {
    const T = ids.length, from = this.pos, S = allLogits ? T : 1;
    const i32 = (v: number[], shape: number[]) => fromArray(new Int32Array(v), shape, 'i32');
    const pos = ids.map((_, i) => from + i);
    const table = Array.from({ length: this.mb }, (_, i) => i);
    const out = this.step({
      ids: i32(ids, [T]), positions: i32(pos, [T]), slots: i32(pos, [T]),
      blockTables: i32(Array.from({ length: S }, () => table).flat(), [S, this.mb]),
      seqLens: i32(allLogits ? pos.map((p) => p + 1) : [from + T], [S]),
      queryStart: i32(allLogits ? Array.from({ length: T + 1 }, (_, i) => i) : [0, T], [S + 1]),
      lastIndex: i32(allLogits ? pos.map((_, i) => i) : [T - 1], [S]),
    }, this.k, this.v) as Tensor;
    this.pos += T;
    return Float32Array.from(out.data as Float32Array);
  }
}

export const compiledModel = (config: LlamaConfig, weights: LlamaWeights,
  options: { blockSize?: number; kvDtype?: 'f32' | 'f16'; precision?: LoadPrecision; groupSize?: number } = {}): CompiledSequence =>
  new CompiledSequence(new PagedLlama(config, weights, { maxPositions: 64, precision: options.precision, groupSize: options.groupSize }), options);

