// Calibration: the decoder's step is traced once per sequence length, the observer pass
// (graph-passes.ts) exposes every quantization site's activation as an output, and the reference
// interpreter runs that graph eagerly on each calibration sequence. The observers here fold each
// activation into running statistics: per-channel abs max, min and max (for the shift), mean |x|
// (AWQ), the uncentred Hessian X^T X and the channel sums (GPTQ, only when asked), a bounded sample
// of rows (the smoothing / PSS / AWQ searches score candidates on it), and per-head abs max of
// every KV cache write.
import { trace, type TraceResult } from '../trace/index.js';
import { flattenArgs } from '../trace/tree.js';
import { interpret } from '../backends/reference/interpret.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Graph } from '../ir/graph.js';
import type { StepDecoder } from '../llm/step-engine.js';
import type { Module } from '../nn/module.js';
import { prefillArgs, type PrefillArgs } from './step.js';
import { checkRotatable } from './rotation.js';
import { gramNative, nativeSearchAvailable } from './native-search.js';
import { exposeObservedValues, siteKey, type QuantSites, type Fold } from './graph-passes.js';

export type QuantizableDecoder = StepDecoder & Module;

export interface LinearStats {
  key: string;
  weights: string[];
  biases: (string | null)[];
  fold: Fold;
  K: number;
  rows: number;
  absMax: Float64Array;
  min: Float64Array;
  max: Float64Array;
  sumAbs: Float64Array;
  /** Σ x (GPTQ's centring under a shift) and Σ x xᵀ [K, K] (only with hessian: true). */
  sum: Float64Array;
  hessian: Float64Array | null;
  /** Up to maxSamples rows [samples, K], taken evenly across the calibration tokens. */
  samples: Float32Array[];
  /** Whether the site is rotated (option rotate). The statistics above are of the unrotated
   *  activation: smoothing acts on it, before the rotation (quantize.ts). */
  rotated: boolean;
}
export interface KvStats { heads: number; absMax: Float64Array }
export interface CalibrationStats { linears: LinearStats[]; kv: KvStats[]; tokens: number }

/** The step traced for one shape: graph and parameter map (module tensors by name). */
export function traceStep(model: QuantizableDecoder, args: PrefillArgs): TraceResult {
  return trace((s: unknown, k: unknown, v: unknown) => model.forward(s as never, k as never, v as never), [args.step, args.kPools, args.vPools], { module: model });
}

export const flatInputs = (args: PrefillArgs): Tensor[] => flattenArgs([args.step, args.kPools, args.vPools]).tensors;

export function calibrate(model: QuantizableDecoder, sequences: readonly (readonly number[])[], options: { hessian: boolean; maxSamples?: number; rotate?: 'none' | 'down' | 'all'; lmHead?: boolean; onSequence?: ((done: number, total: number) => void) | null }): CalibrationStats {
  const maxSamples = options.maxSamples ?? 128;
  const totalTokens = sequences.reduce((n, s) => n + s.length, 0);
  const stride = Math.max(1, Math.floor(totalTokens / maxSamples));
  const traced = new Map<number, { graph: Graph; constants: Map<string, Tensor>; sites: QuantSites }>();
  let linears: LinearStats[] | null = null;
  let kv: KvStats[] | null = null;
  let seen = 0, done = 0;
  const gramScratch = new Map<number, Float32Array>();
  for (const tokens of sequences) {
    const args = prefillArgs(model, tokens, { allLogits: false });
    let t = traced.get(tokens.length);
    if (!t) {
      const r = traceStep(model, args);
      const { graph, sites } = exposeObservedValues(r.graph, { head: options.lmHead });
      if (sites.tiedHead) {
        throw new TypeError(`quantize: option "lmHead" is true but the LM head reads the token embedding's weight "${sites.tiedHead}" (tied embeddings): quantizing it would change the embedding too; leave "lmHead" out for this model`);
      }
      t = { graph, constants: r.constants, sites };
      traced.set(tokens.length, t);
    }
    const outs = interpret(t.graph, flatInputs(args), t.constants);
    const base = t.graph.outputs.length - t.sites.linears.length - t.sites.kv.length;
    linears ??= t.sites.linears.map((s, i) => {
      const K = outs[base + i].shape[outs[base + i].rank - 1];
      return {
        key: siteKey(s), weights: s.consumers.map((c) => c.weight), biases: s.consumers.map((c) => c.bias), fold: s.fold, K, rows: 0,
        absMax: new Float64Array(K), min: new Float64Array(K).fill(Infinity), max: new Float64Array(K).fill(-Infinity),
        sumAbs: new Float64Array(K), sum: new Float64Array(K), hessian: options.hessian ? new Float64Array(K * K) : null, samples: [],
        rotated: options.rotate === 'all' || (options.rotate === 'down' && s.gated),
      };
    });
    kv ??= t.sites.kv.map((_, i) => {
      const o = outs[base + t!.sites.linears.length + i];
      return { heads: o.shape[1], absMax: new Float64Array(o.shape[1]) };
    });
    linears.forEach((st, i) => observeLinear(st, outs[base + i].data as Float32Array, seen, stride, maxSamples, gramScratch));
    kv.forEach((st, i) => {
      const o = outs[base + linears!.length + i];
      const d = o.data as Float32Array, hd = o.shape[2];
      for (let j = 0; j < d.length; j++) {
        const h = Math.floor(j / hd) % st.heads;
        st.absMax[h] = Math.max(st.absMax[h], Math.abs(d[j]));
      }
    });
    seen += tokens.length;
    options.onSequence?.(++done, sequences.length);
  }
  if (!linears || !kv) throw new RangeError('quantize: calibration needs at least one token sequence');
  return { linears, kv, tokens: seen };
}

function observeLinear(st: LinearStats, x: Float32Array, seenBefore: number, stride: number, maxSamples: number, gramScratch: Map<number, Float32Array>): void {
  const K = st.K, T = x.length / K;
  if (st.rotated) checkRotatable(K); // refuses a K it cannot rotate, before any work
  if (st.hessian && nativeSearchAvailable) {
    // Σ x xᵀ of the sequence's rows on the native GEMM (f32 within a sequence, accumulated in f64
    // across sequences): per token in TypeScript it was K² multiply-adds, minutes per 1B layer at
    // the thousands of tokens GPTQ calibrates on
    // one [K, K] scratch per width for the whole calibration: a fresh 127 MB array per sequence
    // (K = 5632) cost more in page faults than the GEMM
    let G = gramScratch.get(K);
    if (!G) { G = new Float32Array(K * K); gramScratch.set(K, G); }
    gramNative(x, T, K, G);
    for (let i = 0; i < K * K; i++) st.hessian[i] += G[i];
  }
  for (let t = 0; t < T; t++) {
    const row = x.subarray(t * K, (t + 1) * K);
    for (let k = 0; k < K; k++) {
      const v = row[k];
      const a = Math.abs(v);
      if (a > st.absMax[k]) st.absMax[k] = a;
      if (v < st.min[k]) st.min[k] = v;
      if (v > st.max[k]) st.max[k] = v;
      st.sumAbs[k] += a;
      st.sum[k] += v;
    }
    if (st.hessian && !nativeSearchAvailable) {
      const H = st.hessian;
      for (let i = 0; i < K; i++) {
        const xi = row[i];
        if (xi === 0) continue;
        const o = i * K;
        for (let j = 0; j < K; j++) H[o + j] += xi * row[j];
      }
    }
    if ((seenBefore + t) % stride === 0 && st.samples.length < maxSamples) st.samples.push(Float32Array.from(row));
    st.rows++;
  }
}
