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
import { nativeSearchAvailable, quantizeWeightNative, nativeGptqAvailable, gptqInverseFactorNative, gptqColumnsNative } from './native-search.js';

export interface QuantizedMatrix {
  format: WeightFormat;
  N: number;
  K: number;
  group: number;
  /** [N, K]; weight = code · scale. int8 / int4: the integer codes, one byte each (at 1B scale a
   *  Float32Array of codes per weight was gigabytes per PSS build); fp8: the scaled E4M3 values. */
  codes: Int8Array | Float32Array;
  /** [N] (int8, fp8) or [N, K / group] (int4). */
  scales: Float32Array;
}

const groupOf = (m: { format: WeightFormat; K: number; group: number }): number => (m.format === 'int4' ? m.group : m.K);

/** A zeroed codes array for `n` weights of `format` (QuantizedMatrix.codes' type for it). */
export function codeArray(format: WeightFormat, n: number): Int8Array | Float32Array {
  return format === 'fp8' ? new Float32Array(n) : new Int8Array(n);
}

/** Codes a kernel wrote as f32 in the storage QuantizedMatrix keeps (integer codes as bytes: exact,
 *  they lie in [-127, 127]). */
export function compactCodes(format: WeightFormat, codes: Float32Array): Int8Array | Float32Array {
  return format === 'fp8' ? codes : new Int8Array(codes);
}

/** Round-to-nearest with absmax scales (on the native kernel where it is built: the same values).
 *  `values`, when given, receives the dequantized weights (dequantMatrix's result) from the same pass. */
export function absmaxQuantize(W: Float32Array, N: number, K: number, format: WeightFormat, group: number, options: { native?: boolean; values?: Float32Array } = {}): QuantizedMatrix {
  if ((options.native ?? true) && nativeSearchAvailable && (format !== 'int4' || K % group === 0)) {
    const { codes, scales } = quantizeWeightNative(W, N, K, format, group, options.values);
    return { format, N, K, group, codes: compactCodes(format, codes), scales };
  }
  const scales = weightScales(W, N, K, format, group);
  const g = format === 'int4' ? group : K, groups = K / g;
  const codes = codeArray(format, N * K);
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

const notPositiveDefinite = (column: number): RangeError =>
  new RangeError(`gptq: the damped Hessian is not positive definite at column ${column}; calibrate on more tokens or raise the damping`);

/** Lower Cholesky factor of a symmetric positive definite [K, K] matrix (throws if not SPD). */
function cholesky(A: Float64Array, K: number): Float64Array {
  const L = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * K + j];
      for (let k = 0; k < j; k++) s -= L[i * K + k] * L[j * K + k];
      if (i === j) {
        if (!(s > 0)) throw notPositiveDefinite(i);
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

/** H⁻¹'s upper Cholesky factor U (H⁻¹ = Uᵀ U) in Hessian order (columns by decreasing H diagonal,
 *  `perm`), of H with dead columns (zero diagonal) set to 1 and `damp` of the mean diagonal added:
 *  native (row-major `flat`) or TypeScript. */
interface InverseFactor { perm: number[]; U: (i: number, j: number) => number; flat: Float64Array | null }

/** Factors by Hessian array: the weights of one site (q/k/v, gate/up) share their input's Hessian,
 *  and the factor is the O(K³) part. The arrays quantize() passes are never changed afterwards. */
const factors = new WeakMap<Float64Array, Map<string, InverseFactor>>();

function inverseFactor(Hin: Float64Array, K: number, dampRatio: number, native: boolean): InverseFactor {
  const key = `${dampRatio} ${native}`;
  const cached = factors.get(Hin)?.get(key);
  if (cached) return cached;
  const H = Float64Array.from(Hin);
  for (let i = 0; i < K; i++) if (H[i * K + i] === 0) H[i * K + i] = 1;
  let meanDiag = 0;
  for (let i = 0; i < K; i++) meanDiag += H[i * K + i] / K;
  const damp = dampRatio * meanDiag;
  for (let i = 0; i < K; i++) H[i * K + i] += damp;
  const perm = Array.from({ length: K }, (_, i) => i).sort((a, b) => H[b * K + b] - H[a * K + a]);
  const Hp = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) Hp[i * K + j] = H[perm[i] * K + perm[j]];
  let factor: InverseFactor;
  if (native) {
    const flat = gptqInverseFactorNative(Hp, K);
    if (!(flat instanceof Float64Array)) throw notPositiveDefinite(flat.notPositiveDefiniteAt);
    factor = { perm, U: (i, j) => flat[i * K + j], flat };
  } else {
    // the lower factor of H⁻¹ is Uᵀ
    const Lh = cholesky(inverseSpd(Hp, K), K);
    factor = { perm, U: (i, j) => Lh[j * K + i], flat: null };
  }
  if (!factors.has(Hin)) factors.set(Hin, new Map());
  factors.get(Hin)!.set(key, factor);
  return factor;
}

/** GPTQ on the Hessian H = Σ x xᵀ of the weight's input: columns in decreasing H diagonal order,
 *  each rounded and its error spread over the columns not yet rounded through H⁻¹'s Cholesky
 *  factor. On the native kernels where they are built (native/quant/gptq.cc: the same loop, the
 *  factor computed another way, equal to rounding), else in TypeScript. */
export function gptqQuantize(Win: Float32Array, N: number, K: number, Hin: Float64Array, format: WeightFormat, group: number, options: { damp?: number; blockSize?: number; native?: boolean } = {}): QuantizedMatrix {
  const native = (options.native ?? true) && nativeGptqAvailable;
  const W = Float64Array.from(Win);
  // a column no calibration token reached carries no information: its weights are zeroed
  for (let i = 0; i < K; i++) if (Hin[i * K + i] === 0) for (let n = 0; n < N; n++) W[n * K + i] = 0;
  const scales = weightScales(Float32Array.from(W), N, K, format, group);
  const g = format === 'int4' ? group : K, groups = K / g;
  const { perm, U, flat } = inverseFactor(Hin, K, options.damp ?? 0.01, native);
  const B = options.blockSize ?? 128;
  if (flat) {
    const Wp = new Float64Array(N * K);
    for (let n = 0; n < N; n++) for (let i = 0; i < K; i++) Wp[n * K + i] = W[n * K + perm[i]];
    const out = new Float32Array(N * K);
    gptqColumnsNative(Wp, N, K, flat, scales, g, Int32Array.from(perm), format, B, out);
    return { format, N, K, group, codes: compactCodes(format, out), scales };
  }
  const codes = codeArray(format, N * K);
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
