// bf16 flash attention (attentionBf16 in src/backends/cpu/bf16.ts) against the float64 reference
// scaled_dot_product_attention, on both bf16 kernels: GQA, causal with Lq < Lk and Lq > Lk, bool and
// additive masks with broadcasting, fully masked rows, custom scale, head dims that are not
// multiples of 16/32, and sequences that cross several 64-query and 256-key blocks.
//
// Tolerance. The kernel rounds q, k and v to bf16 (round-to-nearest-even, as the reference cast
// does), so the reference runs on q̂ = bf16(q), k̂, v̂; what remains is
//  * the probabilities P rounded to bf16 before the P·V product: each weight p_j gets a relative
//    error <= u_b = 2^-8 (and 2^-16 from the product with the rounded v̂), while the normalizer is
//    the fp32 sum of the unrounded p. The output is Σ_j p_j(1 + δ_j)v̂_j / Σ_j p_j, so it moves by at
//    most (u_b + u_b²)·max_j|v̂_j| (the weights sum to 1);
//  * the fp32 parts, as in attention.test.ts: scores off by (D + 2)·u·scale·S (S = max_i Σ_t|q_it| ·
//    max|k|) plus 2u·scale·S for s - max, moved into the weights by the softmax at most twice over,
//    and (Lk + 8)·u relative from exp, the rescales and the sums.
// So |Δo| <= max|v̂|·((2(D + 2) + 2)·u·scale·S + (Lk + 8)·u + 2^-8 + 2^-16), per output element
// plus u·|o| for the reference's own rounding to f32.
import assert from 'node:assert/strict';
import { randn, rand, fromArray, ops, inferenceJit, type Tensor } from '../../../src/index.js';
import { reducedPrecisionSupport, attentionBf16, type Bf16KernelChoice } from '../../../src/backends/cpu/bf16.js';
import { nativeTest, onRef, assertClose, U } from './helpers.js';
import { jitRunner } from '../../../src/jit/index.js';
import type { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import type { PlanStats } from '../../../src/backends/cpu/plan/lower.js';

// These tests are about the bf16 attention kernel: every attention in a bf16 plan runs on it, whatever
// its head dim (by default, without AMX, head dims padded by more than a quarter to 32 stay fp32).
process.env.INFERJIT_BF16_ATTENTION = 'bf16';

let seed = 1500;
const rnd = (shape: number[]): Tensor => randn(shape, { seed: seed++ });
const toBf16 = (t: Tensor): Tensor => onRef(() => ops.cast(ops.cast(t, 'bf16'), 'f32'));
const support = reducedPrecisionSupport();
// These tests check the bf16 kernels themselves, so they pin one (unless the environment names
// one); whether 'auto' computes bf16 plans in fp32 on this CPU is plan-bf16-compute.test.ts's subject.
if (support.bf16) process.env.INFERJIT_BF16_KERNEL ??= support.amx ? 'amx' : 'avx512';
const bf16Skip: string | false = support.bf16 ? false : `bf16 unavailable: ${support.missing}`;
const kernels: Bf16KernelChoice[] = support.bf16 ? (support.amx ? ['avx512', 'amx'] : ['avx512']) : [];

function maxAbs(t: Tensor): number { return t.toFlatArray().reduce((m, v) => Math.max(m, Math.abs(v)), 0); }
function maxRowL1(t: Tensor): number {
  const d = t.shape[t.rank - 1], v = t.toFlatArray();
  let m = 0;
  for (let r = 0; r < v.length / d; r++) { let s = 0; for (let j = 0; j < d; j++) s += Math.abs(v[r * d + j]); m = Math.max(m, s); }
  return m;
}

/** The float64 reference on bf16-rounded q, k, v, and the per-element bound derived above. */
function reference(q: Tensor, k: Tensor, v: Tensor, o: ops.AttentionOptions): { ref: Tensor; tol: (i: number, e: number) => number } {
  const qb = toBf16(q), kb = toBf16(k), vb = toBf16(v);
  const ref = onRef(() => ops.scaledDotProductAttention(qb, kb, vb, o));
  const D = q.shape[3], Lk = k.shape[2];
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const S = maxRowL1(qb) * maxAbs(kb);
  const tol = maxAbs(vb) * ((2 * (D + 2) + 2) * U * Math.abs(scale) * S + (Lk + 8) * U + 2 ** -8 + 2 ** -16);
  return { ref, tol: (_, e) => tol + U * Math.abs(e) };
}

function check(q: Tensor, k: Tensor, v: Tensor, o: ops.AttentionOptions, what: string): Tensor[] {
  const { ref, tol } = reference(q, k, v, o);
  return kernels.map((kernel) => {
    const got = attentionBf16(q, k, v, { ...o, kernel });
    assertClose(got, ref, tol, `${kernel} ${what}`);
    return got;
  });
}

nativeTest('bf16 attention without masks: sizes 1, 3, 17, 127, 300, GQA, D not a multiple of 16', { skip: bf16Skip }, () => {
  const cases: [number, number, number, number, number, number, number][] = [
    // B, Hq, Hkv, Lq, Lk, D, Dv
    [1, 1, 1, 1, 1, 1, 1], [1, 2, 2, 3, 17, 8, 8], [2, 4, 2, 17, 127, 64, 32], [1, 6, 2, 127, 3, 17, 33], [1, 2, 1, 65, 300, 64, 64],
    [1, 2, 2, 70, 257, 80, 48],
  ];
  for (const [B, Hq, Hkv, Lq, Lk, D, Dv] of cases) {
    check(rnd([B, Hq, Lq, D]), rnd([B, Hkv, Lk, D]), rnd([B, Hkv, Lk, Dv]), {}, `B=${B} Hq=${Hq} Hkv=${Hkv} Lq=${Lq} Lk=${Lk} D=${D} Dv=${Dv}`);
  }
});

nativeTest('bf16 causal attention aligns the last query with the last key', { skip: bf16Skip }, () => {
  for (const [Lq, Lk] of [[5, 9], [130, 130], [9, 5], [1, 1000], [300, 600]]) {
    const outs = check(rnd([1, 2, Lq, 16]), rnd([1, 2, Lk, 16]), rnd([1, 2, Lk, 16]), { causal: true }, `causal Lq=${Lq} Lk=${Lk}`);
    if (Lq > Lk) for (const out of outs) assert.ok(out.toFlatArray().slice(0, 16).every((x) => x === 0), 'fully masked causal rows are zero');
  }
});

nativeTest('bf16 attention with bool and float masks (broadcast), fully masked rows, -inf, custom scale', { skip: bf16Skip }, () => {
  const B = 2, Hq = 4, Hkv = 2, Lq = 17, Lk = 300, D = 32;
  const q = rnd([B, Hq, Lq, D]), k = rnd([B, Hkv, Lk, D]), v = rnd([B, Hkv, Lk, D]);
  check(q, k, v, { mask: ops.greater(rand([B, 1, Lq, Lk], { seed: 7 }), 0.3) }, 'bool mask [B, 1, Lq, Lk]');
  check(q, k, v, { mask: ops.greater(rand([Lk], { seed: 8 }), 0.5) }, 'bool mask [Lk]');
  check(q, k, v, { mask: rnd([Lq, Lk]) }, 'float mask [Lq, Lk]');
  check(q, k, v, { mask: rnd([1, Hq, 1, Lk]), causal: true }, 'float mask [1, Hq, 1, Lk] + causal');
  const m = new Uint8Array(Lq * Lk).fill(1);
  m.fill(0, 3 * Lk, 4 * Lk);
  const mask = ops.cast(fromArray(Array.from(m), [Lq, Lk], 'u8'), 'bool');
  for (const out of check(q, k, v, { mask }, 'rows with every key masked')) {
    assert.ok(out.toFlatArray().slice(3 * D, 4 * D).every((x) => x === 0), 'a fully masked row is zero');
  }
  const q2 = rnd([1, 3, 20, 24]), k2 = rnd([1, 3, 40, 24]), v2 = rnd([1, 3, 40, 24]);
  check(q2, k2, v2, { scale: 0.37 }, 'scale 0.37');
  const mv = rnd([20, 40]).toFlatArray().map((x) => (x > 0.8 ? -Infinity : x));
  check(q2, k2, v2, { mask: fromArray(mv, [20, 40]) }, 'float mask with -inf entries');
});

nativeTest('bf16 attention: both kernels agree, and bad shapes are reported', () => {
  if (!support.bf16) {
    assert.throws(() => attentionBf16(rnd([1, 1, 2, 4]), rnd([1, 1, 2, 4]), rnd([1, 1, 2, 4])), /AVX512_BF16|AVX-512|native addon/);
    return;
  }
  assert.throws(() => attentionBf16(rnd([1, 4, 2, 8]), rnd([1, 3, 2, 8]), rnd([1, 3, 2, 8])), /attentionBf16: q \[1, 4, 2, 8\], k \[1, 3, 2, 8\] and v \[1, 3, 2, 8\] do not fit together/);
  assert.throws(() => attentionBf16(rnd([1, 1, 2, 8]), rnd([1, 1, 3, 8]), rnd([1, 1, 3, 8]), { mask: rnd([2, 2]) }), /mask \[2, 2\] does not broadcast to \[1, 1, 2, 3\]/);
  if (kernels.length === 2) {
    // different accumulation orders, same bf16 inputs: within twice the fp32 part of the bound
    const q = rnd([1, 2, 100, 64]), k = rnd([1, 2, 200, 64]), v = rnd([1, 2, 200, 64]);
    const a = attentionBf16(q, k, v, { kernel: 'avx512' }).toFlatArray(), b = attentionBf16(q, k, v, { kernel: 'amx' }).toFlatArray();
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst <= 2 * maxAbs(v) * 2 ** -8, `kernels differ by ${worst}`);
  }
});

// ---- strided operands: the bf16 kernel reads q, k, v and writes out through their strides ----

// eager permute materializes: a dense [B, L, H, D] tensor, which the kernel reads with head stride D
const bshd = (t: Tensor): Tensor => onRef(() => ops.permute(t, [0, 2, 1, 3]));

nativeTest('bf16 attention reads [B, L, H, D] operands in place: the same bits as the dense layout (L = 1, 17; D = 24, 17)', { skip: bf16Skip }, () => {
  const cases: [number, number, number, number, number, number, number][] = [
    // B, Hq, Hkv, Lq, Lk, D, Dv
    [1, 1, 1, 1, 1, 24, 24], [2, 3, 3, 17, 17, 24, 24], [2, 4, 2, 1, 17, 17, 33], [1, 6, 2, 17, 300, 64, 48], [1, 2, 1, 70, 5, 80, 80],
  ];
  for (const [B, Hq, Hkv, Lq, Lk, D, Dv] of cases) {
    const q = rnd([B, Hq, Lq, D]), k = rnd([B, Hkv, Lk, D]), v = rnd([B, Hkv, Lk, Dv]);
    const what = `B=${B} Hq=${Hq} Hkv=${Hkv} Lq=${Lq} Lk=${Lk} D=${D} Dv=${Dv}`;
    for (const o of [{}, { causal: true }, { mask: rnd([Lq, Lk]) }] as ops.AttentionOptions[]) {
      const dense = check(q, k, v, o, `${what} ${Object.keys(o).join()}`);
      kernels.forEach((kernel, i) => {
        const strided = attentionBf16(bshd(q), bshd(k), bshd(v), { ...o, kernel, layout: 'bshd' });
        assert.deepEqual(strided.shape, [B, Lq, Hq, Dv]);
        // the same values meet the same products in the same order: bit-identical
        assert.deepEqual(strided.data, bshd(dense[i]).data, `${kernel} ${what}: bshd != permuted bhsd`);
      });
    }
  }
  assert.throws(() => attentionBf16(rnd([1, 2, 3, 8]), rnd([1, 2, 3, 8]), rnd([1, 2, 3, 8]), { layout: 'bhds' as never }), /layout must be 'bhsd' or 'bshd'/);
});

nativeTest('bf16 plans read attention operands as views of the QKV projection output: no layout copies (L = 1, 17; D = 24, 17; GQA; causal)', { skip: bf16Skip }, () => {
  const cases: [number, number, number, number, number, boolean][] = [
    // B, L, Hq, Hkv, D, causal
    [2, 17, 3, 3, 24, false], [1, 1, 4, 2, 24, true], [2, 17, 4, 1, 40, true], [1, 33, 2, 2, 17, false], [2, 300, 2, 2, 64, false],
  ];
  for (const [B, L, Hq, Hkv, D, causal] of cases) {
    const what = `B=${B} L=${L} Hq=${Hq} Hkv=${Hkv} D=${D}${causal ? ' causal' : ''}`;
    // what nn.SelfAttention does after its fused qkv projection
    const attend = (qkv: Tensor): Tensor => {
      const [q, k, v] = ops.split(qkv, [Hq * D, Hkv * D, Hkv * D], -1);
      const heads = (t: Tensor, n: number): Tensor => t.reshape([B, L, n, D]).transpose(1, 2);
      return ops.scaledDotProductAttention(heads(q, Hq), heads(k, Hkv), heads(v, Hkv), { causal }).transpose(1, 2).reshape([B, L, Hq * D]);
    };
    const qkv = rnd([B, L, (Hq + 2 * Hkv) * D]);
    const stats = (precision: 'fp32' | 'bf16'): { out: Tensor; s: PlanStats } => {
      const fast = inferenceJit(attend, { cache: 'memory', precision });
      const out = fast(qkv) as Tensor;
      const exe = jitRunner(fast)!.compiledEntries()[0].executable as unknown as PlanExecutable;
      assert.equal(exe.path, 'plan', exe.describe());
      return { out, s: exe.planStats()! };
    };
    const fp32 = stats('fp32'), bf16 = stats('bf16');
    assert.equal(bf16.s.bf16Attention, 1, what);
    assert.equal(bf16.s.copies, fp32.s.copies, `${what}: bf16 copies ${bf16.s.kernelNames.join(', ')}`);
    assert.ok(!bf16.s.kernelNames.some((n) => n === 'materialize' || n === 'attention-layout'), `${what}: ${bf16.s.kernelNames.join(', ')}`);
    // the same heads, extracted eagerly, through the bound of the dense kernel
    const [q, k, v] = onRef(() => ops.split(qkv, [Hq * D, Hkv * D, Hkv * D], -1)).map((t, j) => onRef(() => t.reshape([B, L, j === 0 ? Hq : Hkv, D]).transpose(1, 2)));
    const { ref, tol } = reference(q, k, v, { causal });
    assertClose(bf16.out, onRef(() => bshd(ref).reshape([B, L, Hq * D])), tol, `plan ${what}`);
  }
});
