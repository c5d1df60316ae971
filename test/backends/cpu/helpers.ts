// Shared helpers for the native-vs-reference tests: skipping when the addon is not built, running
// one computation on both backends, and element-wise comparison against a stated tolerance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backendInfo, type Tensor } from '../../../src/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';

export const U = 2 ** -24; // unit roundoff of fp32 (half an ulp of 1)

const info = backendInfo();
export const nativeSkip: string | false = info.native ? false : `native addon not available: ${info.reason}`;
if (nativeSkip) console.log(`# skipping native CPU kernel tests: ${nativeSkip}`);

/** A test that only runs when the native addon is loaded (and, with `options.skip`, only when
 *  that extra requirement, e.g. an instruction set, is met: the string says what is missing). */
export function nativeTest(name: string, fn: () => void | Promise<void>): void;
export function nativeTest(name: string, options: { skip: string | false }, fn: () => void | Promise<void>): void;
export function nativeTest(name: string, a: { skip: string | false } | (() => void | Promise<void>), b?: () => void | Promise<void>): void {
  const [extra, fn] = typeof a === 'function' ? [false as const, a] : [a.skip, b!];
  test(name, { skip: nativeSkip || extra }, fn);
}

/** The same computation on the reference kernels and on the native kernels. */
export function both<T>(fn: () => T): { ref: T; cpu: T } {
  return { ref: withEagerBackend('reference', fn), cpu: withEagerBackend('cpu', fn) };
}
export const onRef = <T>(fn: () => T): T => withEagerBackend('reference', fn);

/** Asserts |actual - expected| <= tol(i) for every element, reporting the worst offender. NaNs
 *  and infinities must match exactly. */
export function assertClose(actual: Tensor, expected: Tensor, tol: (i: number, expected: number) => number, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  assert.equal(actual.dtype, expected.dtype, `${what}: dtype`);
  const a = actual.toFlatArray(), e = expected.toFlatArray();
  let worst = -1, worstRatio = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(e[i]) || !Number.isFinite(a[i])) {
      if (!Object.is(a[i], e[i]) && !(Number.isNaN(a[i]) && Number.isNaN(e[i]))) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${e[i]}`);
      continue;
    }
    const t = tol(i, e[i]);
    const r = Math.abs(a[i] - e[i]) / (t || Number.MIN_VALUE);
    if (r > worstRatio) { worstRatio = r; worst = i; }
  }
  if (worstRatio > 1) {
    assert.fail(`${what}: element ${worst} is ${a[worst]}, expected ${e[worst]} (|diff| ${Math.abs(a[worst] - e[worst]).toExponential(3)} > tolerance ${tol(worst, e[worst]).toExponential(3)})`);
  }
}

/** Bitwise equality of two tensors' storage. */
export function assertSame(actual: Tensor, expected: Tensor, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  assert.equal(actual.dtype, expected.dtype, `${what}: dtype`);
  assert.deepEqual(actual.data, expected.data, `${what}: values`);
}

/** ||got − ref|| / ||ref|| over all elements (every element of `got` must be finite). */
export function relError(got: Tensor, ref: Tensor): number {
  assert.deepEqual(got.shape, ref.shape);
  const g = got.data as Float32Array, r = ref.data as Float32Array;
  let num = 0, den = 0;
  for (let i = 0; i < r.length; i++) {
    assert.ok(Number.isFinite(g[i]), `element ${i} is ${g[i]}`);
    num += (g[i] - r[i]) ** 2;
    den += r[i] ** 2;
  }
  return Math.sqrt(num / den);
}
