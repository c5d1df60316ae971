// Per-input-channel scale searches for one quantization site (the linears sharing one activation
// X [R, K] sampled at calibration). A candidate factor vector s divides X's channels and
// multiplies W's columns (exact in real arithmetic); each candidate is scored by the site's output
// error under the quantization the model will run with, each output channel's squared error
// relative to that channel's mean square on the sample:
//   err(s) = Σ_consumers Σ_n ‖ (Qa(X / s) · Qw(W · diag s)ᵀ − X · Wᵀ)[:, n] ‖² / mean_r (X · Wᵀ)[r, n]²
// Relative per output channel because per-channel weight scales make the quantized linear
// invariant to rescaling an output row (a later layer may undo it, as the SwiGLU up rows that
// feed down's outlier channels do): with the plain sum of squares a few 40–80× rows would decide
// the whole site's factors, and the search would ignore every other output.
// SmoothQuant: s_j = max|X_j|^α / max|W_j|^(1−α) with one α.
// PSS (piece-wise smoothing search): channels are split into `pieces` groups by 1-D k-means on
//   log max|X_j| (outlier channels land in their own piece); the best single α over the grid
//   (0, 0.05, …, 1, plus SmoothQuant's own α) starts the search (so PSS is never worse than
//   SmoothQuant on the calibration sample under this error), then coordinate descent: each piece in
//   turn tries every grid α with the others fixed and keeps the best, for two sweeps.
// AWQ: s_j = mean|X_j|^α normalised by sqrt(max s · min s), α over the grid 0…0.95 (α = 0 is
//   plain absmax rounding, so AWQ is never worse than absmax on the sample).
import { rotateWeight } from './rotation.js';
import { fakeQuantRows, fakeQuantWeight, fakeQuantValue, formatMax, type ActFormat, type WeightFormat } from './numerics.js';
import { fakeQuantWeightNative, matmulTNative, nativeSearchAvailable } from './native-search.js';

export interface SiteProblem {
  K: number;
  R: number;
  /** Sampled (already shifted) activation rows [R, K]. */
  X: Float32Array;
  /** Consumer weights [N, K] (f32, before smoothing). */
  weights: { W: Float32Array; N: number }[];
  /** Activation quantization: per token (dynamic), or per tensor with the static scale the model
   *  will use, max_j(absMax_j / s_j) over the calibration absmax (absMax given). */
  act: { format: ActFormat; perTensor: boolean; absMax?: ArrayLike<number>; block?: number } | null;
  weight: { format: WeightFormat; group: number } | null;
  /** The site is rotated (option rotate): the smoothed activation and weights are multiplied by
   *  the Hadamard H (rotation.ts) before they are quantized. */
  rotate?: boolean;
}

export const ALPHA_GRID: readonly number[] = Array.from({ length: 21 }, (_, i) => i / 20);

function matmulT(X: Float32Array | Float64Array, R: number, K: number, W: Float32Array, N: number): Float64Array {
  const Y = new Float64Array(R * N);
  for (let r = 0; r < R; r++) {
    const xo = r * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += X[xo + k] * W[wo + k];
      Y[r * N + n] = acc;
    }
  }
  return Y;
}

/** Returns err(s) for this site, with the f32 reference outputs computed once. `native` (default:
 *  where the addon is built) scores candidates on the native f32 GEMM and weight fake quantization
 *  (native-search.ts) instead of float64 TypeScript loops: the same rounding, products summed in f32. */
export function siteError(p: SiteProblem, options: { native?: boolean } = {}): (s: Float64Array) => number {
  const native = (options.native ?? true) && nativeSearchAvailable;
  const refs = p.weights.map(({ W, N }) => (native ? matmulTNative : matmulT)(p.X, p.R, p.K, W, N));
  // each output channel's squared error relative to its mean square on the sample
  const weightsOf = refs.map((Y, c) => {
    const N = p.weights[c].N, ms = new Float64Array(N);
    for (let i = 0; i < Y.length; i++) ms[i % N] += Y[i] * Y[i];
    let mean = 0;
    for (const v of ms) mean += v / N;
    return Float64Array.from(ms, (v) => 1 / Math.max(v, 1e-12 * mean, 1e-30));
  });
  // native: one weight and one output buffer per consumer, kept across candidates
  const scratch = native ? p.weights.map(({ N }) => ({ Ws: new Float32Array(N * p.K), Y: new Float32Array(p.R * N) })) : [];
  return (s) => {
    const Xs = new Float32Array(p.R * p.K);
    for (let i = 0; i < Xs.length; i++) Xs[i] = p.X[i] / s[i % p.K];
    if (p.rotate) rotateWeight(Xs, p.R, p.K); // each row ·H, like a weight row
    if (p.act?.perTensor && p.act.absMax) {
      let m = 0;
      for (let j = 0; j < p.K; j++) m = Math.max(m, p.act.absMax[j] / s[j]);
      const scale = Math.fround(m / formatMax(p.act.format));
      for (let i = 0; i < Xs.length; i++) Xs[i] = fakeQuantValue(Xs[i], scale, p.act.format);
    } else if (p.act) {
      const run = p.act.perTensor ? Xs.length : p.act.block ?? p.K;
      // runs of `run` values with their own absmax scale are the weight quantizer's rows
      if (native && Xs.length % run === 0) fakeQuantWeightNative(Xs, null, Xs.length / run, run, p.act.format, run, Xs);
      else fakeQuantRows(Xs, run, p.act.format);
    }
    let err = 0;
    p.weights.forEach(({ W, N }, c) => {
      let Ws: Float32Array;
      if (native && p.weight && !p.rotate) Ws = fakeQuantWeightNative(W, s, N, p.K, p.weight.format, p.weight.group, scratch[c].Ws);
      else {
        Ws = new Float32Array(N * p.K);
        for (let i = 0; i < Ws.length; i++) Ws[i] = W[i] * s[i % p.K];
        if (p.rotate) rotateWeight(Ws, N, p.K);
        if (p.weight) Ws = native ? fakeQuantWeightNative(Ws, null, N, p.K, p.weight.format, p.weight.group, scratch[c].Ws) : fakeQuantWeight(Ws, N, p.K, p.weight.format, p.weight.group);
      }
      const Y = native ? matmulTNative(Xs, p.R, p.K, Ws, N, scratch[c].Y) : matmulT(Xs, p.R, p.K, Ws, N);
      const ref = refs[c];
      const w = weightsOf[c];
      for (let i = 0; i < Y.length; i++) { const d = Y[i] - ref[i]; err += w[i % N] * d * d; }
    });
    return err;
  };
}

/** max_n |W[n, j]| over all consumers, per input channel j. */
export function weightColumnAbsMax(p: SiteProblem): Float64Array {
  const m = new Float64Array(p.K);
  for (const { W } of p.weights) for (let i = 0; i < W.length; i++) m[i % p.K] = Math.max(m[i % p.K], Math.abs(W[i]));
  return m;
}

const clampScale = (s: number): number => (Number.isFinite(s) && s > 0 ? Math.min(1e5, Math.max(1e-5, s)) : 1);

/** SmoothQuant's factor per channel; channels with no activation or weight keep 1. */
export function smoothQuantFactors(aAbs: ArrayLike<number>, wAbs: ArrayLike<number>, alpha: number | ArrayLike<number>): Float64Array {
  const s = new Float64Array(aAbs.length);
  for (let j = 0; j < s.length; j++) {
    const a = typeof alpha === 'number' ? alpha : alpha[j];
    s[j] = aAbs[j] > 0 && wAbs[j] > 0 ? clampScale(aAbs[j] ** a / wAbs[j] ** (1 - a)) : 1;
  }
  return s;
}

/** 1-D k-means of log magnitudes: piece index per channel (pieces ordered by magnitude). */
export function pieceAssignment(aAbs: ArrayLike<number>, pieces: number): Int32Array {
  const K = aAbs.length;
  const v = Float64Array.from(aAbs, (a) => Math.log(Math.max(a, 1e-12)));
  const sorted = [...v].sort((a, b) => a - b);
  const k = Math.min(pieces, K);
  // quantile init, then Lloyd iterations
  let centers = Array.from({ length: k }, (_, i) => sorted[Math.min(K - 1, Math.floor(((i + 0.5) * K) / k))]);
  const assign = new Int32Array(K);
  for (let it = 0; it < 50; it++) {
    for (let j = 0; j < K; j++) {
      let best = 0;
      for (let c = 1; c < k; c++) if (Math.abs(v[j] - centers[c]) < Math.abs(v[j] - centers[best])) best = c;
      assign[j] = best;
    }
    const next = centers.map((c, i) => {
      let sum = 0, n = 0;
      for (let j = 0; j < K; j++) if (assign[j] === i) { sum += v[j]; n++; }
      return n > 0 ? sum / n : c;
    });
    if (next.every((c, i) => c === centers[i])) break;
    centers = next;
  }
  return assign;
}

export interface PssResult { s: Float64Array; alphas: number[]; assign: Int32Array; error: number; smoothQuantAlpha: number; smoothQuantError: number }

/** Options of the searches: `native` as siteError's, or `error`, a scorer siteError already made for this site. */
export interface SearchOptions { native?: boolean; error?: (s: Float64Array) => number }

export function pssSearch(p: SiteProblem, aAbs: Float64Array, pieces: number, smoothQuantAlpha = 0.5, options: SearchOptions = {}): PssResult {
  const err = options.error ?? siteError(p, options);
  const wAbs = weightColumnAbsMax(p);
  let bestGlobal = smoothQuantAlpha, bestGlobalErr = Infinity;
  for (const a of [smoothQuantAlpha, ...ALPHA_GRID.filter((x) => x !== smoothQuantAlpha)]) {
    const e = err(smoothQuantFactors(aAbs, wAbs, a));
    if (e < bestGlobalErr) { bestGlobalErr = e; bestGlobal = a; }
  }
  const assign = pieceAssignment(aAbs, pieces);
  const k = Math.max(...assign) + 1;
  const alphas = new Array<number>(k).fill(bestGlobal);
  const perChannel = (al: number[]): Float64Array => Float64Array.from(assign, (i) => al[i]);
  let bestErr = bestGlobalErr;
  for (let sweep = 0; sweep < 2; sweep++) {
    for (let piece = 0; piece < k; piece++) {
      for (const a of ALPHA_GRID) {
        if (a === alphas[piece]) continue;
        const trial = [...alphas];
        trial[piece] = a;
        const e = err(smoothQuantFactors(aAbs, wAbs, perChannel(trial)));
        if (e < bestErr) { bestErr = e; alphas[piece] = a; }
      }
    }
  }
  return { s: smoothQuantFactors(aAbs, wAbs, perChannel(alphas)), alphas, assign, error: bestErr, smoothQuantAlpha: bestGlobal, smoothQuantError: bestGlobalErr };
}

export function awqSearch(p: SiteProblem, meanAbs: Float64Array, options: SearchOptions = {}): { s: Float64Array; alpha: number; error: number; absmaxError: number } {
  const err = options.error ?? siteError(p, options);
  let best = { s: new Float64Array(p.K).fill(1), alpha: 0, error: Infinity };
  let absmaxError = Infinity;
  for (const a of ALPHA_GRID.filter((x) => x < 1)) {
    const s = Float64Array.from(meanAbs, (m) => (m > 0 ? m ** a : 1));
    let lo = Infinity, hi = 0;
    for (const v of s) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const norm = Math.sqrt(lo * hi);
    for (let j = 0; j < s.length; j++) s[j] = clampScale(s[j] / norm);
    const e = err(s);
    if (a === 0) absmaxError = e;
    if (e < best.error) best = { s, alpha: a, error: e };
  }
  return { ...best, absmaxError };
}
