// A small Llama-shaped decoder whose activations carry the outlier channels real LLMs have
// (a few hidden channels 30–100× larger than the rest, as in LLM.int8() / SmoothQuant's analysis),
// built in memory as a PagedLlama: random weights, then chosen RMSNorm gains multiplied by a large
// factor with the consuming weight columns divided by it (and likewise SwiGLU "up" rows against
// "down" columns), so the f32 function is unchanged while the quantized inputs of q/k/v, gate/up
// and down have outlier channels. Used by the tests and bench/quant-accuracy.ts.
import { PagedLlama } from '../llm/models/llama.js';
import type { LlamaConfig } from '../llm/config.js';
import type { LlamaWeights, WeightMatrix } from '../llm/weights.js';

export interface OutlierModelOptions {
  vocabSize?: number; hiddenSize?: number; intermediateSize?: number; numLayers?: number;
  numHeads?: number; numKvHeads?: number; maxPositions?: number;
  /** Outlier hidden channels and their gains (default 3 channels at 30×, 60×, 100×; [] = none). */
  hiddenOutliers?: { channel: number; gain: number }[];
  /** Outlier channels of the down projection's input (default 2 at 40× and 80×). */
  ffnOutliers?: { channel: number; gain: number }[];
  /** Standard deviation of the logits' scale (default 1: peaky enough that top-1 is meaningful). */
  logitScale?: number;
  /** The LM head reads the embedding table (tied embeddings; default false). */
  tied?: boolean;
  seed?: number;
}

/** mulberry32: reproducible uniform samples in [0, 1) without a dependency. */
export function uniformSampler(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Box-Muller over uniformSampler. */
export function normalSampler(seed: number): () => number {
  const uniform = uniformSampler(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export function outlierModel(options: OutlierModelOptions = {}): PagedLlama {
  const V = options.vocabSize ?? 256, D = options.hiddenSize ?? 64, F = options.intermediateSize ?? 128;
  const L = options.numLayers ?? 2, H = options.numHeads ?? 4, Hkv = options.numKvHeads ?? 2, hd = D / H;
  const randn = normalSampler(options.seed ?? 1);
  const mat = (rows: number, cols: number, std: number): WeightMatrix => {
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < data.length; i++) data[i] = randn() * std;
    return { format: 'f32', rows, cols, data, scales: null, groupSize: 32 };
  };
  const hiddenOut = options.hiddenOutliers ?? [{ channel: 3, gain: 30 }, { channel: 17, gain: 60 }, { channel: Math.min(D - 1, 42), gain: 100 }];
  const ffnOut = options.ffnOutliers ?? [{ channel: 5, gain: 40 }, { channel: Math.min(F - 1, 77), gain: 80 }];
  const norm = (): Float32Array => Float32Array.from({ length: D }, () => 1 + 0.1 * randn());
  // scale a channel of a norm output by g and divide the columns that read it by g
  const boostColumn = (gains: Float32Array, weights: WeightMatrix[], c: number, g: number): void => {
    gains[c] *= g;
    for (const w of weights) for (let n = 0; n < w.rows; n++) (w.data as Float32Array)[n * w.cols + c] /= g;
  };
  const layers = Array.from({ length: L }, () => {
    const l = {
      attnNorm: norm(), ffnNorm: norm(),
      wq: mat(H * hd, D, 1 / Math.sqrt(D)), wk: mat(Hkv * hd, D, 1 / Math.sqrt(D)), wv: mat(Hkv * hd, D, 1 / Math.sqrt(D)),
      wo: mat(D, H * hd, 0.5 / Math.sqrt(D)),
      gate: mat(F, D, 1 / Math.sqrt(D)), up: mat(F, D, 1 / Math.sqrt(D)), down: mat(D, F, 0.5 / Math.sqrt(F)),
    };
    for (const { channel, gain } of hiddenOut) {
      boostColumn(l.attnNorm, [l.wq, l.wk, l.wv], channel, gain);
      boostColumn(l.ffnNorm, [l.gate, l.up], channel, gain);
    }
    for (const { channel, gain } of ffnOut) {
      for (let k = 0; k < D; k++) (l.up.data as Float32Array)[channel * D + k] *= gain;
      for (let n = 0; n < D; n++) (l.down.data as Float32Array)[n * F + channel] /= gain;
    }
    return l;
  });
  const embed = mat(V, D, 1);
  const weights: LlamaWeights = {
    embed, outNorm: norm(), output: options.tied ? embed : mat(V, D, (options.logitScale ?? 1) * 3 / Math.sqrt(D)), layers,
  };
  const config: LlamaConfig = {
    vocabSize: V, hiddenSize: D, intermediateSize: F, numLayers: L, numHeads: H, numKvHeads: Hkv, headDim: hd, ropeDim: hd,
    ropeTheta: 10000, ropeScaling: null, ropeInterleaved: false, rmsNormEps: 1e-5, maxPositionEmbeddings: options.maxPositions ?? 512, tieWordEmbeddings: options.tied ?? false,
  };
  return new PagedLlama(config, weights, { maxPositions: options.maxPositions ?? 512 });
}

/** Reproducible token sequences (uniform ids) for calibration and evaluation. */
export function randomSequences(count: number, length: number, vocabSize: number, seed: number): number[][] {
  const uniform = uniformSampler(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(uniform() * vocabSize)));
}
