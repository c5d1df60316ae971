// Native fused attention (flash-style, online softmax) against the reference
// scaled_dot_product_attention: GQA, causal with Lq < Lk and Lq > Lk, bool and float masks with
// broadcasting, custom scale, fully masked rows, and sequences long enough to cross several key
// and query blocks (the native kernel tiles 32 queries × 256 keys).
//
// Tolerance: a score's error is at most (D+2)·u·scale·Σ_t|q_t||k_t| (fp32 dot product); the
// softmax turns an absolute score error δ into a relative weight error of at most 2δ, and exp,
// the running rescales and the sum add ~(Lk+8)·u relative. The output is a convex combination of
// v rows, so |Δo| <= max|v| · ((2·(D+2) + 2)·u·scale·S + (Lk+8)·u) with S = max_i Σ_t|q_it| · max|k|
// (the +2 is the fp32 rounding of s - max, at most 2u·scale·S).
import assert from 'node:assert/strict';
import { randn, rand, fromArray, ops, type Tensor } from '../../../src/index.js';
import { nativeTest, both, assertClose, U } from './helpers.js';

let seed = 500;
const rnd = (shape: number[]): Tensor => randn(shape, { seed: seed++ });

function maxAbs(t: Tensor): number { return t.toFlatArray().reduce((m, v) => Math.max(m, Math.abs(v)), 0); }
function maxRowL1(t: Tensor): number {
  const d = t.shape[t.rank - 1], v = t.toFlatArray();
  let m = 0;
  for (let r = 0; r < v.length / d; r++) { let s = 0; for (let j = 0; j < d; j++) s += Math.abs(v[r * d + j]); m = Math.max(m, s); }
  return m;
}

function check(q: Tensor, k: Tensor, v: Tensor, o: ops.AttentionOptions, what: string): Tensor {
  const { ref, cpu } = both(() => ops.scaledDotProductAttention(q, k, v, o));
  const D = q.shape[3], Lk = k.shape[2];
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const S = maxRowL1(q) * maxAbs(k);
  // the fp32 subtraction s - max adds u·|s - max| <= 2u·scale·S to each weight's relative error
  const tol = maxAbs(v) * ((2 * (D + 2) + 2) * U * Math.abs(scale) * S + (Lk + 8) * U);
  assertClose(cpu, ref, (_, e) => tol + U * Math.abs(e), what);
  return cpu;
}

nativeTest('attention without masks: sizes 1, 3, 17, 127 and GQA', () => {
  const cases: [number, number, number, number, number, number, number][] = [
    // B, Hq, Hkv, Lq, Lk, D, Dv
    [1, 1, 1, 1, 1, 1, 1], [1, 2, 2, 3, 17, 8, 8], [2, 4, 2, 17, 127, 64, 32], [1, 6, 2, 127, 3, 17, 33], [1, 2, 1, 65, 300, 64, 64],
  ];
  for (const [B, Hq, Hkv, Lq, Lk, D, Dv] of cases) {
    check(rnd([B, Hq, Lq, D]), rnd([B, Hkv, Lk, D]), rnd([B, Hkv, Lk, Dv]), {}, `B=${B} Hq=${Hq} Hkv=${Hkv} Lq=${Lq} Lk=${Lk} D=${D} Dv=${Dv}`);
  }
});

nativeTest('causal attention aligns the last query with the last key (Lq < Lk, Lq = Lk, Lq > Lk)', () => {
  for (const [Lq, Lk] of [[5, 9], [130, 130], [9, 5], [1, 1000], [300, 600]]) {
    const out = check(rnd([1, 2, Lq, 16]), rnd([1, 2, Lk, 16]), rnd([1, 2, Lk, 16]), { causal: true }, `causal Lq=${Lq} Lk=${Lk}`);
    if (Lq > Lk) {
      // queries i < Lq - Lk see no key at all: zeros, not NaN
      const first = out.toFlatArray().slice(0, 16);
      assert.ok(first.every((x) => x === 0), 'fully masked causal rows are zero');
    }
  }
});

nativeTest('bool and float masks broadcast to [B, Hq, Lq, Lk]; fully masked rows give zeros', () => {
  const B = 2, Hq = 4, Hkv = 2, Lq = 17, Lk = 300, D = 32;
  const q = rnd([B, Hq, Lq, D]), k = rnd([B, Hkv, Lk, D]), v = rnd([B, Hkv, Lk, D]);
  const boolMask = ops.greater(rand([B, 1, Lq, Lk], { seed: 7 }), 0.3);
  check(q, k, v, { mask: boolMask }, 'bool mask [B, 1, Lq, Lk]');
  check(q, k, v, { mask: ops.greater(rand([Lk], { seed: 8 }), 0.5) }, 'bool mask [Lk]');
  check(q, k, v, { mask: rnd([Lq, Lk]) }, 'float mask [Lq, Lk]');
  check(q, k, v, { mask: rnd([1, Hq, 1, Lk]), causal: true }, 'float mask [1, Hq, 1, Lk] + causal');
  // a mask that hides every key of some rows
  const m = new Uint8Array(Lq * Lk).fill(1);
  m.fill(0, 3 * Lk, 4 * Lk);
  const mask = ops.cast(fromArray(Array.from(m), [Lq, Lk], 'u8'), 'bool');
  const out = check(q, k, v, { mask }, 'rows with every key masked');
  const row3 = out.toFlatArray().slice(3 * D, 4 * D);
  assert.ok(row3.every((x) => x === 0), 'a fully masked row is zero');
});

nativeTest('custom scale and -inf float masks', () => {
  const q = rnd([1, 3, 20, 24]), k = rnd([1, 3, 40, 24]), v = rnd([1, 3, 40, 24]);
  check(q, k, v, { scale: 0.37 }, 'scale 0.37');
  check(q, k, v, { scale: -0.5 }, 'negative scale (the max is taken after scaling)');
  check(q, k, v, { scale: 1 }, 'unit scale');
  const mv = rnd([20, 40]).toFlatArray().map((x) => (x > 0.8 ? -Infinity : x));
  check(q, k, v, { mask: fromArray(mv, [20, 40]) }, 'float mask with -inf entries');
});
