// GPTQ (Frantar et al. 2022) for one weight [N, K] given the Hessian H = Σ x xᵀ of its input:
// columns are quantized one at a time in descending diag(H) order ("act order": the channels with
// the most input energy go first, while most columns are still free to absorb their error), and
// each column's rounding error is spread over the not-yet-quantized columns through the upper
// Cholesky factor of H⁻¹, in blocks of 128 columns with the update of later blocks batched.
// Damping: 1% of mean(diag H) on the diagonal; channels never seen (diag 0) get H_ii = 1 and their
// weights are zeroed. Scales are fixed up front from the weight's abs max per row (int8/fp8) or
// per group (int4) ("static groups"), so act order does not reshuffle groups and the result is
// stored in the ordinary group-wise layout.
import { type WeightFormat, weightScales, weightCode } from './numerics.js';
import { nativeSearchAvailable, quantizeWeightNative } from './native-search.js';

export interface QuantizedMatrix {
  format: WeightFormat;
  N: number;
  K: number;
  group: number;
  /** Integer codes (int8/int4) or the scaled E4M3 values (fp8), [N, K]; weight = code · scale. */
  codes: Float32Array;
  /** [N] (int8, fp8) or [N, K / group] (int4). */
  scales: Float32Array;
}

const groupOf = (m: { format: WeightFormat; K: number; group: number }): number => (m.format === 'int4' ? m.group : m.K);

/** Round-to-nearest with absmax scales (on the native kernel where it is built: the same values).
 *  `values`, when given, receives the dequantized weights (dequantMatrix's result) from the same pass. */
export function absmaxQuantize(W: Float32Array, N: number, K: number, format: WeightFormat, group: number, options: { native?: boolean; values?: Float32Array } = {}): QuantizedMatrix {
  if ((options.native ?? true) && nativeSearchAvailable && (format !== 'int4' || K % group === 0)) return { format, N, K, group, ...quantizeWeightNative(W, N, K, format, group, options.values) };
  const scales = weightScales(W, N, K, format, group);
  const g = format === 'int4' ? group : K, groups = K / g;
  const codes = new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) codes[n * K + k] = weightCode(W[n * K + k], scales[n * groups + Math.floor(k / g)], format);
  const q: QuantizedMatrix = { format, N, K, group, codes, scales };
  if (options.values) dequantMatrix(q, options.values);
  return q;
}

/** The f32 weight a quantized matrix stands for (the one function both the in-memory model and a
 *  loaded artifact use, so both compute identical logits). */
export function dequantMatrix(m: QuantizedMatrix, out = new Float32Array(m.N * m.K)): Float32Array {
  const g = groupOf(m), groups = m.K / g;
  for (let n = 0; n < m.N; n++) {
    for (let gi = 0; gi < groups; gi++) {
      const scale = m.scales[n * groups + gi], from = n * m.K + gi * g;
      for (let i = from; i < from + g; i++) out[i] = m.codes[i] * scale;
    }
  }
  return out;
}

/** Lower Cholesky factor of a symmetric positive definite [K, K] matrix (throws if not SPD). */
function cholesky(A: Float64Array, K: number): Float64Array {
  const L = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * K + j];
      for (let k = 0; k < j; k++) s -= L[i * K + k] * L[j * K + k];
      if (i === j) {
        if (!(s > 0)) throw new RangeError(`gptq: the damped Hessian is not positive definite at column ${i}; calibrate on more tokens or raise the damping`);
        L[i * K + i] = Math.sqrt(s);
      } else L[i * K + j] = s / L[j * K + j];
    }
  }
  return L;
}

/** Inverse of an SPD matrix from its lower Cholesky factor. */
function inverseSpd(A: Float64Array, K: number): Float64Array {
  const L = cholesky(A, K);
  // Linv = L⁻¹ (lower), then A⁻¹ = Linvᵀ Linv
  const Li = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    Li[i * K + i] = 1 / L[i * K + i];
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= L[i * K + k] * Li[k * K + j];
      Li[i * K + j] = s / L[i * K + i];
    }
  }
  const inv = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < K; k++) s += Li[k * K + i] * Li[k * K + j];
      inv[i * K + j] = s; inv[j * K + i] = s;
    }
  }
  return inv;
}

export function gptqQuantize(Win: Float32Array, N: number, K: number, Hin: Float64Array, format: WeightFormat, group: number, options: { damp?: number; blockSize?: number } = {}): QuantizedMatrix {
  const W = Float64Array.from(Win);
  const H = Float64Array.from(Hin);
  for (let i = 0; i < K; i++) {
    if (H[i * K + i] === 0) { H[i * K + i] = 1; for (let n = 0; n < N; n++) W[n * K + i] = 0; }
  }
  let meanDiag = 0;
  for (let i = 0; i < K; i++) meanDiag += H[i * K + i] / K;
  const damp = (options.damp ?? 0.01) * meanDiag;
  for (let i = 0; i < K; i++) H[i * K + i] += damp;

  const scales = weightScales(Float32Array.from(W), N, K, format, group);
  const g = format === 'int4' ? group : K, groups = K / g;
  const perm = Array.from({ length: K }, (_, i) => i).sort((a, b) => H[b * K + b] - H[a * K + a]);
  const Hp = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) Hp[i * K + j] = H[perm[i] * K + perm[j]];
  // U: upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U), from the lower factor of H⁻¹
  const Lh = cholesky(inverseSpd(Hp, K), K);
  const U = (i: number, j: number): number => Lh[j * K + i];

  const codes = new Float32Array(N * K);
  const B = options.blockSize ?? 128;
  for (let b0 = 0; b0 < K; b0 += B) {
    const b1 = Math.min(K, b0 + B);
    const Err = new Float64Array(N * (b1 - b0));
    for (let i = b0; i < b1; i++) {
      const col = perm[i], d = U(i, i);
      for (let n = 0; n < N; n++) {
        const w = W[n * K + col];
        const sc = scales[n * groups + Math.floor(col / g)];
        const c = weightCode(w, sc, format);
        codes[n * K + col] = c;
        const e = (w - c * sc) / d;
        Err[n * (b1 - b0) + (i - b0)] = e;
        for (let j = i + 1; j < b1; j++) W[n * K + perm[j]] -= e * U(i, j);
      }
    }
    // batched update of the columns after this block
    for (let n = 0; n < N; n++) {
      for (let j = b1; j < K; j++) {
        let s = 0;
        for (let i = b0; i < b1; i++) s += Err[n * (b1 - b0) + (i - b0)] * U(i, j);
        W[n * K + perm[j]] -= s;
      }
    }
  }
  return { format, N, K, group, codes, scales };
}
