// Native GEMM kernels (matmul, linear, linear_fused, conv2d, raw transposed/batched gemm) against
// the float64 reference kernels on seeded random inputs.
//
// Tolerance: blocked fp32 dot products with FMA satisfy |ĉ - c| <= γ_K · Σ_k |a_ik||b_kj| with
// γ_K ≈ K·u (Higham, Accuracy and Stability, §3.1), u = 2^-24. We allow (K + 4)·u·(|A||B| + |bias|)
// (the +4 covers the bias add, the output rounding and the residual add), scaled by 1.13 (the
// largest slope of GELU/SiLU, so the bound survives the activation), plus the activation's own
// approximation error: 8u relative (exp-based SiLU/GELU-tanh) and 1e-6·|pre-activation| absolute
// (the erf rational approximation behind GELU is accurate to ~1e-7 absolute).
import assert from 'node:assert/strict';
import { randn, fromArray, ops, prepackWeight, type Tensor } from '../../../src/index.js';
import { dispatch1 } from '../../../src/ops/dispatch.js';
import { addon } from '../../../src/backends/cpu/addon.js';
import { nativeTest, both, onRef, assertClose, assertSame, U } from './helpers.js';

const ACTS = ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'] as const;
let seed = 100;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

/** Per-element bound from |A|·|B| (+|bias|) computed by the reference. */
function gemmTol(absProd: Tensor, K: number, pre?: Tensor, act = 'none'): (i: number, e: number) => number {
  const p = absProd.toFlatArray(), z = pre?.toFlatArray();
  const actRel = act === 'none' || act === 'relu' ? 0 : 8 * U;
  const actAbs = act === 'gelu' ? 1e-6 : 0;
  return (i, e) => 1.13 * (K + 4) * U * p[i] + actRel * Math.abs(e) + actAbs * Math.abs(z ? z[i] : e) + 1e-30;
}

nativeTest('matmul matches the reference for odd sizes (1, 3, 17, 127, 1000) and K/M/N blocking', () => {
  const cases: [number, number, number][] = [
    [1, 1, 1], [1, 3, 17], [3, 17, 127], [17, 127, 3], [127, 17, 1000], [1000, 3, 17], [1, 1000, 127],
    [127, 1000, 17], [17, 1000, 127], [200, 333, 65], [15, 29, 33],
    // A packed once and shared by column-range tasks: several row blocks (uneven last tile),
    // several K blocks, K not a multiple of the 16-column pack transpose.
    [512, 1100, 96], [15, 16, 64], [16, 17, 65], [389, 37, 97],
  ];
  for (const [M, K, N] of cases) {
    const a = rnd([M, K]), b = rnd([K, N]);
    const { ref, cpu } = both(() => ops.matmul(a, b));
    const absProd = onRef(() => ops.matmul(ops.abs(a), ops.abs(b)));
    assertClose(cpu, ref, gemmTol(absProd, K), `matmul ${M}x${K}x${N}`);
  }
});

nativeTest('matmul broadcasts batch dims and handles 1-D operands', () => {
  const cases: [number[], number[]][] = [
    [[2, 3, 17, 33], [3, 33, 20]], [[17, 33], [4, 33, 5]], [[2, 1, 5, 7], [1, 3, 7, 9]], [[33], [33]],
    [[33], [2, 33, 7]], [[2, 5, 33], [33]], [[4, 1, 9], [4, 9, 40]], [[3, 127, 17], [17, 3]],
  ];
  for (const [as, bs] of cases) {
    const a = rnd(as), b = rnd(bs);
    const { ref, cpu } = both(() => ops.matmul(a, b));
    const absProd = onRef(() => ops.matmul(ops.abs(a), ops.abs(b)));
    assertClose(cpu, ref, gemmTol(absProd, as[as.length - 1]), `matmul [${as}] x [${bs}]`);
  }
});

nativeTest('linear and linear_fused match the reference for every epilogue combination', () => {
  const shapes: [number[], number][] = [[[5, 33, 70], 40], [[1, 17], 127], [[3, 1000], 3], [[127, 3], 17]];
  for (const [xs, N] of shapes) {
    const K = xs[xs.length - 1];
    const x = rnd(xs), w = rnd([N, K], 1 / Math.sqrt(K)), bias = rnd([N]);
    const outShape = [...xs.slice(0, -1), N];
    const residuals: (Tensor | null)[] = [null, rnd(outShape), rnd([N])];
    const absLin = (withBias: boolean) => onRef(() => ops.linear(ops.abs(x), ops.abs(w), withBias ? ops.abs(bias) : null));
    {
      const { ref, cpu } = both(() => ops.linear(x, w, bias));
      assertClose(cpu, ref, gemmTol(absLin(true), K), `linear [${xs}] -> ${N}`);
    }
    for (const activation of ACTS) {
      for (const withBias of [false, true]) {
        for (const residual of residuals) {
          const b = withBias ? bias : null;
          const { ref, cpu } = both(() => dispatch1('linear_fused', [x, w, b, residual], { activation }));
          const pre = onRef(() => ops.linear(x, w, b));
          const tol = gemmTol(absLin(withBias), K, pre, activation);
          const res = residual?.toFlatArray();
          const what = `linear_fused [${xs}] -> ${N} act=${activation} bias=${withBias} residual=${residual ? `[${residual.shape}]` : 'none'}`;
          assertClose(cpu, ref, (i, e) => tol(i, e) + (res ? 2 * U * (Math.abs(e) + Math.abs(res[i % res.length])) : 0), what);
        }
      }
    }
  }
});

nativeTest('raw gemm: transposed operands, batches with offsets, per-row bias and alpha', () => {
  for (const [M, K, N, batch] of [[37, 45, 70, 3], [181, 45, 200, 1]] as const) for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const aStored = rnd([batch, transA ? K : M, transA ? M : K]);
      const bStored = rnd([batch, transB ? N : K, transB ? K : N]);
      const bias = rnd([M]);
      const a = transA ? onRef(() => ops.transpose(aStored, 1, 2)) : aStored;
      const b = transB ? onRef(() => ops.transpose(bStored, 1, 2)) : bStored;
      const c = new Float32Array(batch * M * N);
      const off = (n: number) => Float64Array.from({ length: batch }, (_, i) => i * n);
      addon!.gemm(M, N, K, aStored.data as Float32Array, off(M * K), transA, bStored.data as Float32Array, off(K * N), transB, c, off(M * N),
        bias.data as Float32Array, true, 0, null, null, 0.5, batch);
      const ref = onRef(() => ops.add(ops.mul(ops.matmul(a, b), 0.5), ops.reshape(bias, [M, 1])));
      const absProd = onRef(() => ops.add(ops.mul(ops.matmul(ops.abs(a), ops.abs(b)), 0.5), ops.reshape(ops.abs(bias), [M, 1])));
      assertClose(fromArray(c, [batch, M, N]), ref, gemmTol(absProd, K), `gemm transA=${transA} transB=${transB}`);
    }
  }
});

nativeTest('raw gemm with K = 0 writes the epilogue of zeros', () => {
  const c = new Float32Array(6).fill(NaN);
  const bias = new Float32Array([1, -2, 3]);
  addon!.gemm(2, 3, 0, new Float32Array(0), null, false, new Float32Array(0), null, false, c, null, bias, false, 1, null, null, 1, 1);
  assert.deepEqual([...c], [1, 0, 3, 1, 0, 3]);
});

nativeTest('a reused weight is packed once and repacked after an in-place update', () => {
  const x = rnd([9, 50]), w = rnd([30, 50]);
  const first = both(() => ops.linear(x, w));
  // the third call runs on the cached packed panels
  ops.linear(x, w);
  const cached = ops.linear(x, w);
  assertSame(cached, first.cpu, 'cached packed weight gives the same bits');
  (w.data as Float32Array)[7] += 1;
  w.markModified();
  const { ref, cpu } = both(() => ops.linear(x, w));
  const absProd = onRef(() => ops.linear(ops.abs(x), ops.abs(w)));
  assertClose(cpu, ref, gemmTol(absProd, 50), 'after markModified');
  const w2 = rnd([30, 50]);
  prepackWeight(w2);
  const r2 = both(() => ops.linear(x, w2));
  assertClose(r2.cpu, r2.ref, gemmTol(onRef(() => ops.linear(ops.abs(x), ops.abs(w2))), 50), 'prepacked weight');
});

nativeTest('conv2d matches the reference: patch embedding, padding, stride, dilation, groups, 1x1', () => {
  interface Case { x: number[]; w: number[]; bias: boolean; stride?: [number, number]; padding?: [number, number]; dilation?: [number, number]; groups?: number }
  const cases: Case[] = [
    { x: [2, 4, 16, 16], w: [8, 4, 2, 2], bias: true, stride: [2, 2] }, // DiT patch embedding
    { x: [1, 3, 17, 17], w: [5, 3, 3, 3], bias: true, padding: [1, 1] },
    { x: [1, 3, 17, 13], w: [7, 3, 3, 2], bias: false, stride: [2, 3], padding: [1, 2], dilation: [2, 1] },
    { x: [2, 6, 9, 9], w: [4, 3, 3, 3], bias: true, groups: 2, padding: [1, 1] },
    { x: [1, 8, 7, 7], w: [8, 1, 3, 3], bias: true, groups: 8, padding: [1, 1] }, // depthwise
    { x: [2, 17, 5, 5], w: [33, 17, 1, 1], bias: true }, // pointwise
    { x: [1, 3, 32, 32], w: [16, 3, 4, 4], bias: true, stride: [4, 4] },
  ];
  for (const c of cases) {
    const x = rnd(c.x), w = rnd(c.w), b = c.bias ? rnd([c.w[0]]) : null;
    const o = { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups };
    const { ref, cpu } = both(() => ops.conv2d(x, w, b, o));
    const absProd = onRef(() => ops.conv2d(ops.abs(x), ops.abs(w), b ? ops.abs(b) : null, o));
    assertClose(cpu, ref, gemmTol(absProd, c.w[1] * c.w[2] * c.w[3]), `conv2d x [${c.x}] w [${c.w}] ${JSON.stringify(o)}`);
  }
});

nativeTest('non-f32 inputs fall back to the reference kernel', () => {
  const a = rnd([3, 4]).cast('f16'), b = rnd([4, 5]).cast('f16');
  const { ref, cpu } = both(() => ops.matmul(a, b));
  assertSame(cpu, ref, 'f16 matmul');
});

nativeTest('withoutWeightPacking: a weight seen twice inside is not cached (the same results); outside, the second sighting caches it', async () => {
  const { packedWeight, withoutWeightPacking } = await import('../../../src/backends/cpu/packed.js');
  const w = rnd([19, 33]), x = rnd([5, 33]);
  // the reference kernel's answer (the native addon never sees w here)
  const expect = onRef(() => ops.linear(x, w));
  const absProd = onRef(() => ops.linear(ops.abs(x), ops.abs(w)));
  const check = (what: string): void => assertClose(ops.linear(x, w), expect, gemmTol(absProd, 33), what);
  withoutWeightPacking(() => {
    for (let i = 0; i < 3; i++) check(`inside, call ${i}`);
    assert.equal(packedWeight(addon!, w, 33, 19, true), null, 'nothing was cached for w inside');
  });
  assert.equal(packedWeight(addon!, w, 33, 19, true), null, 'first sighting outside: not cached yet');
  assert.notEqual(packedWeight(addon!, w, 33, 19, true), null, 'second sighting: cached');
  // a pack cached before stays in use inside (no new memory either way)
  withoutWeightPacking(() => assert.notEqual(packedWeight(addon!, w, 33, 19, true), null));
  check('outside, cached');
});
