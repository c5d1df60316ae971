// Reduced-precision GEMMs (src/backends/cpu/bf16.ts): bf16 products with fp32 accumulation on both
// kernels (AVX512_BF16 vdpbf16ps and AMX-BF16 where present), fp16 weight storage with fp32 compute,
// every epilogue, odd sizes (1, 3, 17, 127, 1000, non-multiples of 16/32), weight sources f32, bf16
// and f16, raw batched/transposed calls, the weight cache, and the error messages.
//
// Tolerances (u = 2^-24 is fp32's unit roundoff, U below; bf16 keeps 8 significant bits, so
// rounding to bf16 has unit roundoff u_b = 2^-8, and f16 (11 bits) u_h = 2^-11):
//  * Exactness against bf16-rounded inputs: the kernels compute Σ_k bf16(a_ik)·bf16(b_kj) where each
//    product is exact in fp32 (8 + 8 significant bits <= 24) and only the fp32 additions round, so
//    with â = bf16(a), b̂ = bf16(b) the float64 reference on â, b̂ differs by at most
//    γ_K·Σ|â||b̂| <= (K + 4)·u·Σ|â||b̂| (Higham §3.1; +4 for the epilogue adds and output rounding).
//    This also checks that the native fp32 -> bf16 conversion is round-to-nearest-even (as the
//    reference cast is) and that the pair-interleaved panel layout lines up.
//  * Against the fp32 reference on the original inputs: â·b̂ = a·b·(1 + δ_a)(1 + δ_b) with
//    |δ| <= u_b, so each term is off by at most (2u_b + u_b²)|a||b| and the sum by
//    (2·2^-8 + 2^-16)·Σ|a||b| on top of the fp32 accumulation: c_K = 2 (not K: the input rounding
//    error is relative per term and does not grow with the reduction length; only the fp32 part does).
//  * fp16 storage: only B is rounded, (u_h + (K + 4)·u)·Σ|a||b|.
//  * Activations: the bound is scaled by 1.13 (GELU/SiLU's largest slope), plus their own
//    approximation error (8u relative for exp-based ones, 1e-6·|pre-activation| for erf-GELU), as in
//    gemm.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randn, fromArray, ops, type Tensor } from '../../../src/index.js';
import { dispatch1 } from '../../../src/ops/dispatch.js';
import { addon } from '../../../src/backends/cpu/addon.js';
import {
  reducedPrecisionSupport, packBf16Weight, packF16Weight, gemmBf16, gemmF16, gemmPacked, linearReduced, exportPackedWeight,
  importPackedWeight, type Bf16KernelChoice,
} from '../../../src/backends/cpu/bf16.js';
import { nativeTest, onRef, assertClose, assertSame, U } from './helpers.js';

const UB = 2 ** -8, UH = 2 ** -11;
const ACTS = ['none', 'relu', 'gelu', 'gelu_tanh', 'silu'] as const;
let seed = 900;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);
const toBf16 = (t: Tensor): Tensor => onRef(() => ops.cast(ops.cast(t, 'bf16'), 'f32'));
const toF16 = (t: Tensor): Tensor => onRef(() => ops.cast(ops.cast(t, 'f16'), 'f32'));

const support = reducedPrecisionSupport();
const kernels: Bf16KernelChoice[] = support.bf16 ? (support.amx ? ['avx512', 'amx'] : ['avx512']) : [];
const bf16Skip: string | false = support.bf16 ? false : `bf16 unavailable: ${support.missing}`;
const f16Skip: string | false = support.f16Storage ? false : `fp16 weight storage unavailable: ${support.f16Missing}`;
const bf16Test = (name: string, fn: () => void): void => nativeTest(name, { skip: bf16Skip }, fn);

/** Per-element bound c·Σ|a||b| (+|bias|) from a reference product of absolute values. */
function prodTol(absProd: Tensor, rel: number, pre?: Tensor, act = 'none'): (i: number, e: number) => number {
  const p = absProd.toFlatArray(), z = pre?.toFlatArray();
  const actRel = act === 'none' || act === 'relu' ? 0 : 8 * U;
  const actAbs = act === 'gelu' ? 1e-6 : 0;
  return (i, e) => 1.13 * rel * p[i] + actRel * Math.abs(e) + actAbs * Math.abs(z ? z[i] : e) + U * Math.abs(e) + 1e-30;
}

const SIZES: [number, number, number][] = [
  [1, 1, 1], [1, 3, 17], [3, 17, 127], [17, 127, 3], [127, 17, 1000], [1000, 3, 17], [1, 1000, 127], [127, 1000, 17],
  [17, 1000, 127], [200, 333, 65], [15, 29, 33], [33, 64, 32], [48, 96, 48],
];

bf16Test('bf16 GEMM equals the fp32 sum of bf16-rounded products, both kernels, both weight layouts', () => {
  for (const [M, K, N] of SIZES) {
    const x = rnd([M, K]), wT = rnd([N, K], 1 / Math.sqrt(K));
    const w = onRef(() => ops.transpose(wT, 0, 1));
    const xb = toBf16(x), wb = toBf16(wT);
    const ref = onRef(() => ops.linear(xb, wb));
    const absProd = onRef(() => ops.linear(ops.abs(xb), ops.abs(wb)));
    const packedT = packBf16Weight(wT), packedN = packBf16Weight(w, { transposed: false });
    for (const kernel of kernels) {
      assertClose(gemmBf16(x, packedT, { kernel }), ref, prodTol(absProd, (K + 4) * U), `${kernel} [${M}, ${K}] x [${K}, ${N}]ᵀ`);
      assertClose(gemmBf16(x, packedN, { kernel }), ref, prodTol(absProd, (K + 4) * U), `${kernel} [${M}, ${K}] x [${K}, ${N}]`);
    }
  }
});

bf16Test('bf16 GEMM stays within the bf16 bound of the fp32 reference on unrounded inputs', () => {
  for (const [M, K, N] of SIZES) {
    const x = rnd([M, K]), wT = rnd([N, K], 1 / Math.sqrt(K));
    const ref = onRef(() => ops.linear(x, wT));
    const absProd = onRef(() => ops.linear(ops.abs(x), ops.abs(wT)));
    const packed = packBf16Weight(wT);
    for (const kernel of kernels) {
      assertClose(gemmBf16(x, packed, { kernel }), ref, prodTol(absProd, 2 * UB + UB * UB + (K + 4) * U), `${kernel} ${M}x${K}x${N} vs fp32`);
    }
  }
});

bf16Test('bf16 GEMM epilogues: every activation × bias × residual, batched leading dims', () => {
  const shapes: [number[], number][] = [[[5, 33, 70], 40], [[1, 17], 127], [[3, 1000], 3], [[127, 3], 17], [[2, 40, 64], 96]];
  for (const [xs, N] of shapes) {
    const K = xs[xs.length - 1];
    const x = rnd(xs), w = rnd([N, K], 1 / Math.sqrt(K)), bias = rnd([N]);
    const xb = toBf16(x), wb = toBf16(w);
    const outShape = [...xs.slice(0, -1), N];
    const packed = packBf16Weight(w);
    for (const kernel of kernels) {
      for (const activation of ACTS) {
        for (const withBias of [false, true]) {
          for (const residual of [null, rnd(outShape)]) {
            const b = withBias ? bias : null;
            const got = gemmBf16(x, packed, { bias: b, activation, residual, kernel });
            const ref = onRef(() => dispatch1('linear_fused', [xb, wb, b, residual], { activation }));
            const pre = onRef(() => ops.linear(xb, wb, b));
            const absLin = onRef(() => ops.linear(ops.abs(xb), ops.abs(wb), withBias ? ops.abs(bias) : null));
            const tol = prodTol(absLin, (K + 4) * U, pre, activation);
            const res = residual?.toFlatArray();
            assertClose(got, ref, (i, e) => tol(i, e) + (res ? 2 * U * (Math.abs(e) + Math.abs(res[i])) : 0),
              `${kernel} [${xs}] -> ${N} act=${activation} bias=${withBias} residual=${residual !== null}`);
          }
        }
      }
    }
  }
});

bf16Test('alpha scales the product before the bias; K = 0 gives the epilogue of zeros', () => {
  const x = rnd([9, 37]), w = rnd([21, 37]), bias = rnd([21]);
  const xb = toBf16(x), wb = toBf16(w);
  const packed = packBf16Weight(w);
  for (const kernel of kernels) {
    const got = gemmBf16(x, packed, { alpha: 0.25, bias, kernel });
    const ref = onRef(() => ops.add(ops.mul(ops.linear(xb, wb), 0.25), bias));
    const absP = onRef(() => ops.add(ops.mul(ops.linear(ops.abs(xb), ops.abs(wb)), 0.25), ops.abs(bias)));
    assertClose(got, ref, prodTol(absP, 41 * U), `${kernel} alpha`);
    const empty = packBf16Weight(fromArray(new Float32Array(0), [3, 0]));
    const y = gemmBf16(fromArray(new Float32Array(0), [2, 0]), empty, { bias: fromArray([1, -2, 3]), activation: 'relu', kernel });
    assert.deepEqual([...(y.data as Float32Array)], [1, 0, 3, 1, 0, 3]);
  }
});

bf16Test('raw gemmBf16: transposed A and batches with offsets share one packed B', () => {
  const M = 37, K = 45, N = 70, batch = 3;
  const native = addon as unknown as { gemmBf16: (...args: unknown[]) => void; packBf16: (...args: unknown[]) => unknown };
  const bStored = rnd([K, N]);
  const handle = native.packBf16(bStored.data, 0, K, N, false);
  const bb = toBf16(bStored);
  for (const kernel of kernels) {
    for (const transA of [false, true]) {
      const aStored = rnd([batch, transA ? K : M, transA ? M : K]);
      const a = transA ? onRef(() => ops.transpose(aStored, 1, 2)) : aStored;
      const ab = toBf16(a);
      const bias = rnd([M]);
      const c = new Float32Array(batch * M * N);
      const off = (n: number) => Float64Array.from({ length: batch }, (_, i) => i * n);
      native.gemmBf16(M, N, K, aStored.data, off(M * K), transA, handle, c, off(M * N), bias.data, true, 0, null, null, 1, batch, kernel === 'amx' ? 2 : 1);
      const ref = onRef(() => ops.add(ops.matmul(ab, bb), ops.reshape(bias, [M, 1])));
      const absP = onRef(() => ops.add(ops.matmul(ops.abs(ab), ops.abs(bb)), ops.reshape(ops.abs(bias), [M, 1])));
      assertClose(fromArray(c, [batch, M, N]), ref, prodTol(absP, (K + 4) * U), `${kernel} transA=${transA}`);
    }
  }
});

bf16Test('bf16 and f16 weight sources pack to the same panels as their f32 values', () => {
  const x = rnd([13, 70]), w = rnd([45, 70]);
  const wBf = onRef(() => ops.cast(w, 'bf16')), wH = onRef(() => ops.cast(w, 'f16'));
  for (const kernel of kernels) {
    // bf16(f32 value) and the bf16 tensor hold the same bits, so the products are bit-identical
    assertSame(gemmBf16(x, packBf16Weight(wBf), { kernel }), gemmBf16(x, packBf16Weight(w), { kernel }), `${kernel} bf16 source`);
    // f16 values are exact in f32, so packing the f16 tensor equals packing its f32 widening
    assertSame(gemmBf16(x, packBf16Weight(wH), { kernel }), gemmBf16(x, packBf16Weight(toF16(w)), { kernel }), `${kernel} f16 source`);
  }
});

nativeTest('fp16 weight storage: fp32 products of the f16-rounded weight, every epilogue', { skip: f16Skip }, () => {
  for (const [M, K, N] of SIZES) {
    const x = rnd([M, K]), w = rnd([N, K], 1 / Math.sqrt(K));
    const wh = toF16(w);
    const got = gemmF16(x, packF16Weight(w));
    const absProd = onRef(() => ops.linear(ops.abs(x), ops.abs(wh)));
    assertClose(got, onRef(() => ops.linear(x, wh)), prodTol(absProd, (K + 4) * U), `f16 ${M}x${K}x${N} exact`);
    const absOrig = onRef(() => ops.linear(ops.abs(x), ops.abs(w)));
    assertClose(got, onRef(() => ops.linear(x, w)), prodTol(absOrig, UH + (K + 4) * U), `f16 ${M}x${K}x${N} vs fp32`);
    // an f16 tensor (as loaded from an f16 model file) packs without an fp32 copy, to the same bits
    assertSame(gemmF16(x, packF16Weight(onRef(() => ops.cast(w, 'f16')))), got, `f16 ${M}x${K}x${N} from an f16 tensor`);
    const wn = onRef(() => ops.transpose(w, 0, 1));
    assertSame(gemmF16(x, packF16Weight(wn, { transposed: false })), got, `f16 ${M}x${K}x${N} [K, N] layout`);
  }
  const x = rnd([4, 19, 50]), w = rnd([33, 50]), bias = rnd([33]);
  const wh = toF16(w), packed = packF16Weight(w);
  for (const activation of ACTS) {
    const residual = rnd([4, 19, 33]);
    const got = gemmF16(x, packed, { bias, activation, residual });
    const ref = onRef(() => dispatch1('linear_fused', [x, wh, bias, residual], { activation }));
    const pre = onRef(() => ops.linear(x, wh, bias));
    const tol = prodTol(onRef(() => ops.linear(ops.abs(x), ops.abs(wh), ops.abs(bias))), 54 * U, pre, activation);
    const res = residual.toFlatArray();
    assertClose(got, ref, (i, e) => tol(i, e) + 2 * U * (Math.abs(e) + Math.abs(res[i])), `f16 epilogue ${activation}`);
  }
});

bf16Test('linearReduced caches the packed weight and repacks after an in-place update', () => {
  const x = rnd([7, 40]), w = rnd([24, 40]);
  const first = linearReduced(x, w, 'bf16');
  assertSame(linearReduced(x, w, 'bf16'), first, 'cached packed weight');
  (w.data as Float32Array)[3] += 1;
  w.markModified();
  const after = linearReduced(x, w, 'bf16');
  const xb = toBf16(x), wb = toBf16(w);
  assertClose(after, onRef(() => ops.linear(xb, wb)), prodTol(onRef(() => ops.linear(ops.abs(xb), ops.abs(wb))), 44 * U), 'after markModified');
});

bf16Test('packed panels export and load back bit-exactly (the disk-cache path), with the documented layout', () => {
  const K = 37, N = 45;
  const x = rnd([6, K]), w = rnd([N, K]);
  for (const pack of [packBf16Weight, ...(support.f16Storage ? [packF16Weight] : [])]) {
    const packed = pack(w);
    const data = exportPackedWeight(packed);
    const back = importPackedWeight({ ...data, panels: data.panels.slice() });
    assertSame(gemmPacked(x, back), gemmPacked(x, packed), `${data.precision} round trip`);
    assert.throws(() => importPackedWeight({ ...data, panels: data.panels.subarray(1) }), /expected \d+ elements for K=37, N=45/);
  }
  // bf16 layout: element (k, n) at p·Kp·32 + (k >> 1)·64 + 2·(n % 32) + (k & 1), p = n / 32, Kp = roundUp(K, 32)
  const { panels } = exportPackedWeight(packBf16Weight(w));
  const wb = onRef(() => ops.cast(w, 'bf16')).data as Uint16Array;
  const Kp = 64;
  for (const [k, n] of [[0, 0], [1, 0], [36, 44], [17, 33], [2, 31]]) {
    assert.equal(panels[Math.floor(n / 32) * Kp * 32 + (k >> 1) * 64 + 2 * (n % 32) + (k & 1)], wb[n * K + k], `element (${k}, ${n})`);
  }
  assert.equal(panels[18 * 64 + 1], 0, 'K is zero-padded: (k = 37, n = 0) holds 0');
});

nativeTest('clear errors: shapes, dtypes, wrong handle kinds, kernel names, missing instruction sets', () => {
  if (!support.bf16) {
    // this CPU lacks the instruction set: the message names it
    assert.throws(() => packBf16Weight(rnd([3, 4])), /AVX512_BF16|AVX-512|native addon/);
    return;
  }
  const w = packBf16Weight(rnd([8, 16]));
  assert.throws(() => gemmBf16(rnd([2, 15]), w), /gemmBf16: inner dims differ: x is \[2, 15\], packed weight is \[K=16, N=8\]/);
  assert.throws(() => gemmBf16(rnd([2, 16]), w, { bias: rnd([7]) }), /gemmBf16: bias must be f32 with 8 elements/);
  assert.throws(() => gemmBf16(rnd([2, 16]), w, { residual: rnd([8]) }), /gemmBf16: residual must be f32 \[2, 8\]/);
  assert.throws(() => gemmBf16(rnd([2, 16]), w, { kernel: 'fast' as Bf16KernelChoice }), /kernel must be 'auto', 'avx512' or 'amx'/);
  assert.throws(() => packBf16Weight(rnd([2, 3, 4])), /packBf16Weight: weight must be 2-D, got \[2, 3, 4\]/);
  assert.throws(() => packF16Weight(onRef(() => ops.cast(rnd([2, 3]), 'bf16'))), /packF16Weight: weight must be f32 or f16, got bf16/);
  assert.throws(() => gemmF16(rnd([2, 16]), w), /gemmF16: weight was packed as bf16/);
  const native = addon as unknown as { gemmF16: (...args: unknown[]) => void };
  assert.throws(() => native.gemmF16(1, 8, 16, new Float32Array(16), null, false, w.handle, new Float32Array(8), null, null, false, 0, null, null, 1, 1),
    /gemmF16: b: expected a handle from the matching pack function/);
  if (!support.amx) assert.throws(() => gemmBf16(rnd([2, 16]), w, { kernel: 'amx' }), /AMX/);
  assert.equal(gemmPacked(rnd([2, 16]), w).shape.join(','), '2,8');
});

nativeTest('a CPU without AVX512_BF16 (or AMX) gets an error naming the missing instruction set', () => {
  // INFERJIT_DISABLE_ISA hides features from the native probe, in a child process
  const script = `import { packBf16Weight, gemmBf16, reducedPrecisionSupport } from './src/backends/cpu/bf16.js';
    import { randn } from './src/index.js';
    const s = reducedPrecisionSupport();
    let pack = 'ok', amx = 'ok';
    try { packBf16Weight(randn([4, 4])); } catch (e) { pack = e.message; }
    if (s.bf16) try { gemmBf16(randn([1, 4]), packBf16Weight(randn([4, 4])), { kernel: 'amx' }); } catch (e) { amx = e.message; }
    console.log(JSON.stringify({ s, pack, amx }));`;
  const run = (disable: string) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script],
      { env: { ...process.env, INFERJIT_DISABLE_ISA: disable }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { s: { bf16: boolean; bf16Kernel: string | null; missing?: string }; pack: string; amx: string };
  };
  const noBf16 = run('avx512bf16');
  assert.equal(noBf16.s.bf16, false);
  assert.match(noBf16.pack, /packBf16Weight: precision 'bf16' is not available on this machine: .*lacks AVX512_BF16/);
  const noAmx = run('amx');
  assert.equal(noAmx.s.bf16Kernel, 'avx512bf16', 'auto falls back to AVX512_BF16');
  assert.equal(noAmx.pack, 'ok');
  assert.match(noAmx.amx, /gemmBf16: the AMX-BF16 kernel was requested but this CPU lacks AMX-TILE\/AMX-BF16/);
});
