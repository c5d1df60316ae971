// Native kernels for the calibration searches (search.ts) and quantize()'s weight rounding
// (gptq.ts absmaxQuantize): the f32 GEMM that scores a candidate's output and the weight fake quantization (native/quant/fake_quant.cc, the same rounding as
// numerics.ts bit for bit). A PSS search evaluates ~180 candidates per site; in TypeScript one
// candidate on a 1.1B layer's gate/up site (2048 × 11264 weights, 128 sampled rows) took ~5 s,
// so a 22-layer model needed hours. Where the addon is missing the searches stay in TypeScript.
import { addon } from '../backends/cpu/addon.js';
import type { WeightFormat } from './numerics.js';

interface FakeQuantAddon {
  fakeQuantWeight(w: Float32Array, colScale: Float64Array | null, N: number, K: number, format: number, group: number, out: Float32Array | null,
    codes: Float32Array | null, scales: Float32Array | null): void;
}

interface GptqAddon {
  gptqInverseFactor(H: Float64Array, K: number, U: Float64Array): number;
  gptqColumns(W: Float64Array, N: number, K: number, U: Float64Array, scales: Float32Array, groupSize: number, perm: Int32Array, format: number,
    block: number, codes: Float32Array): void;
}

const fq = addon as unknown as Partial<FakeQuantAddon & GptqAddon> | null;

/** Whether the searches can run on the native kernels in this process. */
export const nativeSearchAvailable: boolean = addon !== null && typeof fq?.fakeQuantWeight === 'function';

const FORMAT_CODES: Record<WeightFormat, number> = { int8: 0, int4: 1, fp8: 2 };

/** Y [R, N] = X [R, K] · Wᵀ (W row-major [N, K]) on the native f32 GEMM, into `Y` when given. The
 *  searches pass kept buffers: a fresh 100 MB array per candidate costs more in page faults than
 *  the GEMM itself (~13 µs per 4 KiB page on the VMs we measure on). */
export function matmulTNative(X: Float32Array, R: number, K: number, W: Float32Array, N: number, Y = new Float32Array(R * N)): Float32Array {
  addon!.gemm(R, N, K, X, null, false, W, null, true, Y, null, null, false, 0, null, null, 1, 1);
  return Y;
}

/** G [K, K] = Xᵀ X for rows X [T, K] (the Gram matrix GPTQ's Hessian sums), on the native f32 GEMM. */
export function gramNative(X: Float32Array, T: number, K: number, G = new Float32Array(K * K)): Float32Array {
  addon!.gemm(K, K, T, X, null, true, X, null, false, G, null, null, false, 0, null, null, 1, 1);
  return G;
}

/** numerics.ts fakeQuantWeight(W · diag(colScale)) on the native kernel (colScale null: W itself). */
export function fakeQuantWeightNative(W: Float32Array, colScale: Float64Array | null, N: number, K: number, format: WeightFormat, group: number,
  out = new Float32Array(N * K)): Float32Array {
  (fq as FakeQuantAddon).fakeQuantWeight(W, colScale, N, K, FORMAT_CODES[format], group, out, null, null);
  return out;
}

/** numerics.ts weightScales and weightCode of every value (gptq.ts absmaxQuantize) on the native
 *  kernel; `values`, when given, receives code · scale rounded to f32 (the dequantized weights). */
export function quantizeWeightNative(W: Float32Array, N: number, K: number, format: WeightFormat, group: number, values: Float32Array | null = null): { codes: Float32Array; scales: Float32Array } {
  const codes = new Float32Array(N * K), scales = new Float32Array(N * (format === 'int4' ? K / group : 1));
  (fq as FakeQuantAddon).fakeQuantWeight(W, null, N, K, FORMAT_CODES[format], group, values, codes, scales);
  return { codes, scales };
}

/** Whether GPTQ's factor and column loop can run natively (native/quant/gptq.cc). */
export const nativeGptqAvailable: boolean = addon !== null && typeof fq?.gptqColumns === 'function';

/** U, the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U) as a row-major [K, K] array, or the column where H is not positive definite. */
export function gptqInverseFactorNative(H: Float64Array, K: number): Float64Array | { notPositiveDefiniteAt: number } {
  const U = new Float64Array(K * K);
  const bad = (fq as GptqAddon).gptqInverseFactor(H, K, U);
  return bad >= 0 ? { notPositiveDefiniteAt: bad } : U;
}

/** GPTQ's column loop (gptq.ts) on W [N, K] whose columns are in Hessian order (column i is the weight's perm[i]); codes at the weight's own columns. */
export function gptqColumnsNative(W: Float64Array, N: number, K: number, U: Float64Array, scales: Float32Array, groupSize: number, perm: Int32Array,
  format: WeightFormat, block: number, codes: Float32Array): void {
  (fq as GptqAddon).gptqColumns(W, N, K, U, scales, groupSize, perm, FORMAT_CODES[format], block, codes);
}
