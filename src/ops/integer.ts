// Exact integer arithmetic for the reference kernels. Float kernels compute in float64 and round
// once; that is wrong for integers: an i64 beyond 2^53 is not a float64, and an i32 product can
// exceed 2^53. Integer ops here compute exactly and WRAP on overflow, as C, NumPy and PyTorch do:
// i64 in BigInt (a BigInt64Array store wraps mod 2^64), i8/u8/i32 in JS numbers (every sum of two
// 32-bit values is exact, products use Math.imul) stored through their typed array, which wraps.
import { Tensor } from '../tensor/tensor.js';
import { type DType, type Storage, allocStorage } from '../tensor/dtype.js';
import { values, concrete } from './kernel-utils.js';
import type { TensorMeta } from './registry.js';

/** Dtypes whose arithmetic runs here (bool arithmetic stays 0/1 logic on the float path). */
export const isIntegerDType = (d: DType): boolean => d === 'i8' || d === 'u8' || d === 'i32' || d === 'i64';

/** Exact values of an integer or bool tensor as BigInts. */
export function bigValues(t: Tensor): BigInt64Array {
  if (t.dtype === 'i64') return t.data as BigInt64Array;
  const v = values(t), out = new BigInt64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = BigInt(v[i]);
  return out;
}

/** A tensor of `meta` (an integer dtype) from exact results that the storage wraps into range:
 *  numbers below 2^53 in magnitude for i8/u8/i32, BigInts for i64. */
export function wrappedTensor(meta: TensorMeta, v: ArrayLike<number> | ArrayLike<bigint>): Tensor {
  const s = allocStorage(meta.dtype, v.length) as unknown as { [i: number]: number | bigint };
  if (meta.dtype === 'i64' && typeof v[0] === 'number') for (let i = 0; i < v.length; i++) s[i] = BigInt(v[i] as number);
  else for (let i = 0; i < v.length; i++) s[i] = v[i];
  return Tensor.fromStorage(meta.dtype, concrete(meta.shape), s as unknown as Storage);
}

/** a ** b for 32-bit integers, wrapping like repeated multiplication; a negative exponent gives
 *  the truncated 1 / a^|b| (1 and -1 stay ±1, everything else 0). */
export function powSmall(a: number, b: number): number {
  if (b < 0) return a === 1 ? 1 : a === -1 ? (b % 2 === 0 ? 1 : -1) : 0;
  let r = 1, base = a | 0;
  for (let e = b; e > 0; e = Math.floor(e / 2)) {
    if (e % 2 === 1) r = Math.imul(r, base);
    base = Math.imul(base, base);
  }
  return r;
}

/** a ** b for i64, wrapping mod 2^64; negative exponents as powSmall. */
export function powBig(a: bigint, b: bigint): bigint {
  if (b < 0n) return a === 1n ? 1n : a === -1n ? (b % 2n === 0n ? 1n : -1n) : 0n;
  let r = 1n, base = a;
  for (let e = b; e > 0n; e >>= 1n) {
    if (e & 1n) r = BigInt.asIntN(64, r * base);
    base = BigInt.asIntN(64, base * base);
  }
  return r;
}

const bigMax = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const bigMin = (a: bigint, b: bigint): bigint => (a < b ? a : b);

/** Per binary op: the 32-bit (number) and 64-bit (BigInt) exact forms; comparisons give 0/1. */
export const INTEGER_BINARY: Record<string, { small: (a: number, b: number) => number; big: (a: bigint, b: bigint) => bigint }> = {
  add: { small: (a, b) => a + b, big: (a, b) => a + b },
  sub: { small: (a, b) => a - b, big: (a, b) => a - b },
  mul: { small: Math.imul, big: (a, b) => a * b },
  pow: { small: powSmall, big: powBig },
  maximum: { small: Math.max, big: bigMax },
  minimum: { small: Math.min, big: bigMin },
  equal: { small: (a, b) => (a === b ? 1 : 0), big: (a, b) => (a === b ? 1n : 0n) },
  less: { small: (a, b) => (a < b ? 1 : 0), big: (a, b) => (a < b ? 1n : 0n) },
  greater: { small: (a, b) => (a > b ? 1 : 0), big: (a, b) => (a > b ? 1n : 0n) },
};

/** Unary ops that accept integers, in exact form (neg and abs wrap at the minimum, as in C). */
export const INTEGER_UNARY: Record<string, { small: (x: number) => number; big: (x: bigint) => bigint }> = {
  neg: { small: (x) => -x, big: (x) => -x },
  abs: { small: Math.abs, big: (x) => (x < 0n ? -x : x) },
  relu: { small: (x) => (x > 0 ? x : 0), big: (x) => (x > 0n ? x : 0n) },
};
