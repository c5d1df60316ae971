// Steps for running a paged decoder (src/llm/models, forward(step, kPools, vPools)) outside the
// serving engine: one sequence prefilled in fresh page pools (of the decoder's kvDtype), either returning the last token's
// logits (as serving does) or, teacher-forced, every position's logits. The latter sets
// lastIndex to every row: the decoder gathers the rows lastIndex names, so [T] indices give
// [T, vocab] logits in one pass, which is how calibration and the accuracy benchmark see all
// positions at once.
import { Tensor } from '../tensor/tensor.js';
import { fromArray, zeros } from '../tensor/creation.js';
import type { StepInputs, StepDecoder } from '../llm/step-engine.js';
import { kvPoolLayout } from '../llm/paged-runner.js';

export interface PrefillArgs { step: StepInputs; kPools: Tensor[]; vPools: Tensor[] }

const i32 = (v: number[], shape: number[]): Tensor => fromArray(Int32Array.from(v), shape, 'i32');

/** One sequence of `tokens` at positions 0..T-1 in fresh pools of `blockSize`-slot pages. */
export function prefillArgs(decoder: StepDecoder, tokens: readonly number[], options: { allLogits: boolean; blockSize?: number }): PrefillArgs {
  const T = tokens.length;
  if (T < 1) throw new RangeError('quantize: a calibration / evaluation sequence needs at least one token');
  const { vocabSize, numLayers, numKvHeads, headDim } = decoder.config;
  for (const [i, t] of tokens.entries()) {
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new RangeError(`quantize: token ${i} of a sequence is ${t}; token ids must be integers in [0, ${vocabSize})`);
  }
  if (decoder.maxPositions !== undefined && T > decoder.maxPositions) {
    throw new RangeError(`quantize: a sequence of ${T} tokens is longer than the model's ${decoder.maxPositions} positions; split it`);
  }
  const bs = options.blockSize ?? 16;
  const blocks = Math.ceil(T / bs);
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  const step: StepInputs = {
    ids: i32([...tokens], [T]),
    positions: i32(range(T), [T]),
    slots: i32(range(T), [T]),
    blockTables: i32(range(blocks), [1, blocks]),
    seqLens: i32([T], [1]),
    queryStart: i32([0, T], [2]),
    lastIndex: options.allLogits ? i32(range(T), [T]) : i32([T - 1], [1]),
  };
  // the decoder's own KV storage (int8 pages for quantize()'s int8 cache on the real kernels)
  const layout = kvPoolLayout(decoder.kvDtype ?? 'f32', blocks, numKvHeads, bs, headDim);
  const pool = (): Tensor => zeros(layout.shape, layout.dtype);
  return { step, kPools: range(numLayers).map(pool), vPools: range(numLayers).map(pool) };
}

/** Teacher-forced logits [T, vocab] of every position of `tokens` (row t predicts token t + 1). */
export function teacherForcedLogits(decoder: StepDecoder, tokens: readonly number[]): Float32Array {
  const { step, kPools, vPools } = prefillArgs(decoder, tokens, { allLogits: true });
  const out = decoder.forward(step, kPools, vPools);
  return Float32Array.from(out.toFlatArray());
}
