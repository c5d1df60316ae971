// Helpers for the nn tests: closeness checks and float64 loop implementations used as independent
// expectations (they share no code with the op kernels).
import assert from 'node:assert/strict';
import { type Tensor } from '../../src/index.js';

/** Asserts |a - e| <= tol · (1 + |e|) elementwise. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'values'): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) assert.fail(`${what}[${i}]: got ${a}, expected ${e} (tol ${tol})`);
  }
}

export const flat = (t: Tensor): Float64Array => t.toFlatArray();

/** y[r, o] = Σ_i x[r, i]·w[o, i] + b[o] over rows r of a row-major [rows, inF] matrix. */
export function linearLoop(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, rows: number, inF: number, outF: number): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

/** LayerNorm of each length-n row (biased variance, as in PyTorch). */
export function layerNormLoop(x: ArrayLike<number>, n: number, w: ArrayLike<number> | null, b: ArrayLike<number> | null, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[r * n + i];
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[r * n + i] - mean) ** 2;
    v /= n;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < n; i++) y[r * n + i] = (x[r * n + i] - mean) * inv * (w ? w[i] : 1) + (b ? b[i] : 0);
  }
  return y;
}

/** Exact GELU via the erf series (independent of the op's erf). */
export function geluScalar(x: number): number {
  // erf(z) = 2/√π Σ (-1)^n z^(2n+1) / (n! (2n+1)); converges for the |z| < 4 used in tests.
  const z = x / Math.SQRT2;
  let term = z, sum = z;
  for (let n = 1; n < 200; n++) {
    term *= (-z * z) / n;
    sum += term / (2 * n + 1);
  }
  return 0.5 * x * (1 + (2 / Math.sqrt(Math.PI)) * sum);
}
