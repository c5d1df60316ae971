// Elementwise unary ops: one table of (name, function, accepts-integers) rows. Output has the
// input's shape and dtype; float math is done in float64 and rounded once to the output dtype,
// integer math exactly (src/ops/integer.ts).
import { defineOp, type TensorMeta } from './registry.js';
import { isFloatDType } from '../tensor/dtype.js';
import { values, tensorFrom } from './kernel-utils.js';
import { isIntegerDType, INTEGER_UNARY, wrappedTensor } from './integer.js';

/** erf to ~1e-15 in float64 (Abramowitz–Stegun 7.1.26 is only 1e-7 accurate): the Maclaurin
 *  series below 2, erfc's continued fraction (Lentz) above 2, where it converges quickly. */
export function erfScalar(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2) {
    // Maclaurin series: converges in < 40 terms for |x| < 2
    let term = x, sum = x;
    const x2 = x * x;
    for (let n = 1; n < 40; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (ax > 6) return Math.sign(x);
  // erfc via Lentz continued fraction: erfc(x) = exp(-x²)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
  let f = ax, c = ax, d = 0;
  const tiny = 1e-300;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    d = ax + an * d; d = Math.abs(d) < tiny ? tiny : d; d = 1 / d;
    c = ax + an / c; c = Math.abs(c) < tiny ? tiny : c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export const UNARY_FUNCTIONS: Record<string, { fn: (x: number) => number; ints: boolean }> = {
  neg: { fn: (x) => -x, ints: true },
  abs: { fn: Math.abs, ints: true },
  relu: { fn: (x) => (x > 0 ? x : 0), ints: true },
  exp: { fn: Math.exp, ints: false },
  log: { fn: Math.log, ints: false },
  sqrt: { fn: Math.sqrt, ints: false },
  rsqrt: { fn: (x) => 1 / Math.sqrt(x), ints: false },
  tanh: { fn: Math.tanh, ints: false },
  sigmoid: { fn: (x) => 1 / (1 + Math.exp(-x)), ints: false },
  silu: { fn: (x) => x / (1 + Math.exp(-x)), ints: false },
  gelu: { fn: (x) => 0.5 * x * (1 + erfScalar(x / Math.SQRT2)), ints: false },
  gelu_tanh: { fn: (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))), ints: false },
  erf: { fn: erfScalar, ints: false },
  sin: { fn: Math.sin, ints: false },
  cos: { fn: Math.cos, ints: false },
};

for (const [name, { fn, ints }] of Object.entries(UNARY_FUNCTIONS)) {
  defineOp({
    name,
    kind: 'elementwise',
    inputs: ['x'],
    attrs: {},
    infer([x]): TensorMeta[] {
      const ok = isFloatDType(x!.dtype) || (ints && x!.dtype !== 'bool');
      if (!ok) throw new TypeError(`${name}: x has dtype ${x!.dtype}; ${name} needs a ${ints ? 'numeric' : 'floating-point'} tensor (cast it first)`);
      return [{ dtype: x!.dtype, shape: x!.shape }];
    },
    reference([x], _attrs, [out]) {
      if (isIntegerDType(x!.dtype)) {
        // exact, wrapping at the minimum like C (-(-128) is -128 in i8)
        const op = INTEGER_UNARY[name];
        if (x!.dtype === 'i64') return [wrappedTensor(out, (x!.data as BigInt64Array).map(op.big))];
        return [wrappedTensor(out, values(x!).map(op.small))];
      }
      const v = values(x!);
      for (let i = 0; i < v.length; i++) v[i] = fn(v[i]);
      return [tensorFrom(out, v)];
    },
  });
}
