// The SD kernels (issue 20): conv2d / conv2d_fused as an implicit GEMM (fp32 and bf16 panels) or a
// direct convolution (fp32 3×3 stride 1), and
// group_norm_act / add_group_norm_act, each against the reference (pure TS) kernels on random
// inputs: 1 channel, odd H/W, 1×1 spatial, channels that are not multiples of 16 or of the 32-wide
// panels, stride 2, padding 0/1, dilation, groups, batches that take the several-images-per-GEMM
// path and ones that do not; and the clear errors for channels that do not divide into groups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, ops, inferenceJit, nn, type Tensor } from '../../../src/index.js';
import { trace } from '../../../src/trace/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { optimize } from '../../../src/passes/index.js';
import { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { reducedPrecisionSupport } from '../../../src/backends/cpu/bf16.js';
import { assertClose } from './helpers.js';

const skip = planAddon ? false : 'native plan executor not built';
let seed = 20200;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

type Fn = (...a: Tensor[]) => Tensor | Tensor[];
function compile(fn: Fn, args: Tensor[], params: Record<string, Tensor>): PlanExecutable {
  const t = trace(fn, args, { module: { namedParameters: () => Object.entries(params) } });
  return new PlanExecutable(optimize(t.graph), t.constants);
}
const asList = (r: Tensor | Tensor[]): Tensor[] => (Array.isArray(r) ? r : [r]);
const reference = (fn: Fn, inputs: Tensor[]): Tensor[] => withEagerBackend('reference', () => asList(fn(...inputs)));
// fp32 sums of up to a few hundred products in a different order
const near = (_i: number, e: number): number => 3e-5 * Math.max(1, Math.abs(e));
// sums of k products: the rounding error's spread grows like sqrt(k)
const nearK = (k: number) => (_i: number, e: number): number => 3e-5 * Math.max(1, Math.sqrt(k / 300)) * Math.max(1, Math.abs(e));
const nearNorm = (_i: number, e: number): number => 2e-5 * Math.max(1, Math.abs(e)) + 5e-4;

interface ConvCase { x: number[]; o: number; k: number; stride?: number; padding?: number; dilation?: number; groups?: number }
const CASES: ConvCase[] = [
  { x: [1, 1, 1, 1], o: 1, k: 1 }, // 1 channel, 1×1 spatial
  { x: [1, 1, 5, 7], o: 3, k: 3, padding: 1 }, // 1 input channel, odd H/W
  { x: [2, 17, 1, 1], o: 19, k: 1 }, // 1×1 spatial, channels not multiples of 16
  { x: [2, 3, 1, 1], o: 4, k: 3, padding: 1 }, // 3×3 on 1×1 spatial: only the centre tap is inside
  { x: [2, 3, 7, 9], o: 5, k: 3, stride: 2, padding: 1 }, // stride 2, odd sizes
  { x: [1, 6, 8, 10], o: 6, k: 3, padding: 0, groups: 2 }, // padding 0, groups
  { x: [1, 3, 9, 11], o: 4, k: 3, padding: 2, dilation: 2 },
  { x: [3, 8, 4, 4], o: 33, k: 3, padding: 1 }, // several images per GEMM (few pixels each), O not a multiple of 32
  { x: [2, 20, 33, 35], o: 24, k: 3, padding: 1 }, // one image per GEMM, many panels and a partial last one
  { x: [1, 16, 20, 20], o: 8, k: 3, stride: 2, padding: 1 }, // stride 2 on an even image
  { x: [2, 12, 23, 29], o: 7, k: 1 }, // 1×1 conv: a plain GEMM on the pixels
];

function convFn(c: ConvCase, w: Tensor, b: Tensor): (x: Tensor) => Tensor {
  return (x) => ops.conv2d(x, w, b, { stride: c.stride ?? 1, padding: c.padding ?? 0, dilation: c.dilation ?? 1, groups: c.groups ?? 1 });
}

// Both forms of the kernel (rules/conv.ts): INFERJIT_CONV_ROWS (read at lowering) 0 keeps every
// conv in the pixels-as-B-panels form, a huge value puts every groups == 1 conv in the
// pixels-as-rows form against the pre-packed weight.
function withRowsMax<T>(v: number, fn: () => T): T {
  return withEnv('INFERJIT_CONV_ROWS', String(v), fn);
}
function withEnv<T>(name: string, v: string, fn: () => T): T {
  const old = process.env[name];
  process.env[name] = v;
  try { return fn(); } finally { if (old === undefined) delete process.env[name]; else process.env[name] = old; }
}
// The implicit-GEMM tests keep every conv off the direct form (3×3 stride-1 images ≥ 32 wide
// would take it by default).
const withImplicit = <T>(fn: () => T): T => withEnv('INFERJIT_CONV_DIRECT_WIDTH', 'Infinity', fn);

test('conv2d (implicit GEMM, both forms) matches the reference on edge shapes', { skip }, () => {
  for (const c of CASES) for (const rowsMax of [0, 1 << 30]) {
    const w = rnd([c.o, c.x[1] / (c.groups ?? 1), c.k, c.k], 0.3), b = rnd([c.o], 0.1);
    const fn = convFn(c, w, b);
    const exe = withRowsMax(rowsMax, () => compile(fn, [rnd(c.x)], { w, b }));
    const x = rnd(c.x);
    const got = withImplicit(() => withRowsMax(rowsMax, () => exe.run([x])[0]));
    assert.ok(exe.planStats()!.kernelNames.includes('conv2d'), exe.describe());
    assertClose(got, reference(fn, [x])[0], near, `conv2d ${JSON.stringify(c)} rowsMax ${rowsMax}`);
    // the eager native conv2d runs the same kernel
    assertClose(withEagerBackend('auto', () => fn(x)), reference(fn, [x])[0], near, `eager conv2d ${JSON.stringify(c)}`);
  }
});

test('conv2d_fused: a channel bias that is a row slice of a wider tensor is read in place', { skip }, () => {
  // SD's timestep projections: horizontal fusion merges them into one GEMM whose rows they slice
  const w = rnd([6, 4, 3, 3], 0.3), b = rnd([6], 0.1);
  const fn = (x: Tensor, t: Tensor) => ops.conv2d(x, w, b, { padding: 1 }).add(t.chunk(2, -1)[1].reshape([3, 6, 1, 1]));
  const exe = compile(fn, [rnd([3, 4, 5, 6]), rnd([3, 12])], { w, b });
  const ins = [rnd([3, 4, 5, 6]), rnd([3, 12])];
  assertClose(exe.run(ins)[0], reference(fn, ins)[0], near, 'conv2d_fused with a strided channel bias');
  assert.deepEqual(exe.planStats()!.kernelNames, ['conv2d_fused'], exe.describe());
});

test('conv2d_fused: channel bias (per image and shared), activation and residual in the epilogue', { skip }, () => {
  for (const c of CASES) {
    const [N] = c.x;
    const w = rnd([c.o, c.x[1] / (c.groups ?? 1), c.k, c.k], 0.3), b = rnd([c.o], 0.1);
    const conv = convFn(c, w, b);
    const y0 = reference(conv, [rnd(c.x)])[0];
    for (const shared of [false, true]) {
      const fn = (x: Tensor, t: Tensor, r: Tensor) => conv(x).add(t).silu().add(r);
      const args = [rnd(c.x), rnd([shared ? 1 : N, c.o, 1, 1]), rnd([...y0.shape] as number[])];
      const exe = compile(fn, args, { w, b });
      const inputs = [rnd(c.x), rnd([shared ? 1 : N, c.o, 1, 1]), rnd([...y0.shape] as number[])];
      assertClose(withImplicit(() => exe.run(inputs)[0]), reference(fn, inputs)[0], near, `conv2d_fused ${JSON.stringify(c)} shared=${shared}`);
      const names = exe.planStats()!.kernelNames;
      assert.deepEqual(names.filter((n) => n !== 'conv2d_fused'), [], `${JSON.stringify(c)}: ${names.join(', ')}`);
    }
  }
});

// The direct form (native/ops/conv_direct.cc), forced on every eligible conv by
// INFERJIT_CONV_DIRECT_WIDTH=1 (and INFERJIT_CONV_ROWS=0, which keeps the weight unpacked; both are
// read when the plan is lowered, at its first run): widths around its 16-pixel vectors and
// 64-pixel tiles, input channels around its 128-channel blocks, output channels around its
// 384-channel groups and 6- and 12-channel register tiles, row counts around its 4-row work items,
// 1 and 3 channels, padding 0/1/2, 1×1 and 1-row images; stride 2, dilation and groups keep the
// implicit GEMM.
const DIRECT_CASES: ConvCase[] = [
  { x: [1, 1, 1, 1], o: 1, k: 3, padding: 1 },
  { x: [1, 3, 5, 7], o: 3, k: 3, padding: 1 },
  { x: [2, 1, 1, 17], o: 5, k: 3, padding: 1 }, // one row, one full vector and one pixel
  { x: [1, 33, 9, 16], o: 7, k: 3, padding: 1 }, // a second channel block of 1, O = 6 + 1
  { x: [2, 65, 6, 65], o: 13, k: 3, padding: 1 }, // three channel blocks, a 64-wide tile and one pixel
  { x: [1, 5, 4, 130], o: 12, k: 3, padding: 0 }, // no padding: 128 wide output
  { x: [1, 4, 7, 63], o: 6, k: 3, padding: 2 }, // padding 2: output wider than the input
  { x: [2, 20, 17, 31], o: 9, k: 3, padding: 1 },
  { x: [1, 7, 3, 32], o: 25, k: 3, padding: 1 }, // 32 wide: 12-channel register tiles, two full and one of 1
  { x: [1, 129, 5, 18], o: 7, k: 3, padding: 1 }, // a second input-channel block of 1
  { x: [1, 3, 6, 33], o: 385, k: 3, padding: 1 }, // a second output-channel group of 1
  { x: [1, 257, 3, 16], o: 390, k: 3, padding: 0 }, // three channel blocks, two output groups, one-row output
  { x: [1, 16, 20, 20], o: 8, k: 3, stride: 2, padding: 1 }, // not eligible: implicit GEMM
  { x: [1, 3, 9, 11], o: 4, k: 3, padding: 2, dilation: 2 }, // not eligible
  { x: [1, 6, 8, 10], o: 6, k: 3, padding: 1, groups: 2 }, // not eligible
];
const eligible = (c: ConvCase): boolean => (c.stride ?? 1) === 1 && (c.dilation ?? 1) === 1 && (c.groups ?? 1) === 1;
function withDirect<T>(fn: () => T): T {
  return withEnv('INFERJIT_CONV_WINOGRAD', '0', () => withEnv('INFERJIT_CONV_DIRECT_WIDTH', '1', () => withRowsMax(0, fn)));
}

test('conv2d / conv2d_fused, direct form: matches the reference on edge shapes, with every epilogue', { skip }, () => {
  for (const c of DIRECT_CASES) {
    const [N] = c.x;
    const w = rnd([c.o, c.x[1] / (c.groups ?? 1), c.k, c.k], 0.3), b = rnd([c.o], 0.1);
    const conv = convFn(c, w, b);
    const exe = withDirect(() => compile(conv, [rnd(c.x)], { w, b }));
    const x = rnd(c.x);
    const tol = nearK(c.x[1] * c.k * c.k);
    assertClose(withDirect(() => exe.run([x])[0]), reference(conv, [x])[0], tol, `direct conv2d ${JSON.stringify(c)}`);
    assert.deepEqual(exe.planStats()!.kernelNames, [eligible(c) ? 'conv2d_direct' : 'conv2d'], `${JSON.stringify(c)}: ${exe.describe()}`);
    const y0 = reference(conv, [x])[0];
    for (const shared of [false, true]) {
      const fn = (x: Tensor, t: Tensor, r: Tensor) => conv(x).add(t).silu().add(r);
      const args = [rnd(c.x), rnd([shared ? 1 : N, c.o, 1, 1]), rnd([...y0.shape] as number[])];
      const fused = withDirect(() => compile(fn, args, { w, b }));
      const inputs = [rnd(c.x), rnd([shared ? 1 : N, c.o, 1, 1]), rnd([...y0.shape] as number[])];
      assertClose(withDirect(() => fused.run(inputs)[0]), reference(fn, inputs)[0], tol, `direct conv2d_fused ${JSON.stringify(c)} shared=${shared}`);
      assert.deepEqual(fused.planStats()!.kernelNames, [eligible(c) ? 'conv2d_fused_direct' : 'conv2d_fused'], `${JSON.stringify(c)}: ${fused.describe()}`);
    }
  }
});

// Winograd F(4×4, 3×3) and F(2×2, 3×3) (native/ops/conv_winograd.cc), forced on every eligible conv by
// INFERJIT_CONV_WINOGRAD_MIN=1 and INFERJIT_CONV_WINOGRAD_WIDTH=1 (with INFERJIT_CONV_ROWS=0): H and W
// of 1, 2 and sizes that are not multiples of the 4×4 output tile, channels that are not multiples
// of the 16-lane transforms or the GEMM's 32-wide panels, padding 0/1/2, batch 2 (tile blocks that
// span two images), enough tiles for several tile blocks and few enough that output channels split.
const WINOGRAD_CASES: ConvCase[] = [
  { x: [1, 1, 1, 1], o: 1, k: 3, padding: 1 },
  { x: [1, 3, 2, 2], o: 2, k: 3, padding: 1 },
  { x: [2, 17, 5, 7], o: 33, k: 3, padding: 1 },
  { x: [1, 33, 13, 13], o: 17, k: 3, padding: 1 },
  { x: [2, 16, 1, 9], o: 32, k: 3, padding: 1 }, // one row
  { x: [1, 8, 7, 5], o: 40, k: 3, padding: 0 }, // no padding: 5×3 output
  { x: [1, 5, 6, 7], o: 9, k: 3, padding: 2 }, // output larger than the input
  { x: [2, 40, 30, 26], o: 70, k: 3, padding: 1 }, // several tile blocks, a partial last one
  { x: [1, 64, 8, 8], o: 300, k: 3, padding: 1 }, // one tile block: output channels split
  { x: [1, 16, 20, 20], o: 8, k: 3, stride: 2, padding: 1 }, // not eligible: implicit GEMM
];
// m: the output tile, F(4×4, 3×3) (the default) or F(2×2, 3×3) (INFERJIT_CONV_WINOGRAD=2)
function withWinograd<T>(fn: () => T, m = 4): T {
  return withEnv('INFERJIT_CONV_WINOGRAD', String(m), () =>
    withEnv('INFERJIT_CONV_WINOGRAD_MIN', '1', () => withEnv('INFERJIT_CONV_WINOGRAD_WIDTH', '1', () => withRowsMax(0, fn))));
}
// F(4, 3)'s transforms amplify fp32 rounding (constants up to 8 and 5 in the data transforms, sums
// of 36 products per position): error relative to the output's scale, not per element.
function relErr(got: Tensor, want: Tensor): number {
  const a = got.toFlatArray(), e = want.toFlatArray();
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num = Math.max(num, Math.abs(a[i] - e[i])); den = Math.max(den, Math.abs(e[i])); }
  return num / Math.max(den, 1e-30);
}
const WINOGRAD_TOL = 1e-4;

test('conv2d / conv2d_fused, Winograd form: matches the reference on edge shapes, with every epilogue', { skip }, () => {
  for (const m of [4, 2]) for (const c of WINOGRAD_CASES) {
    const [N] = c.x;
    const w = rnd([c.o, c.x[1] / (c.groups ?? 1), c.k, c.k], 0.3), b = rnd([c.o], 0.1);
    const conv = convFn(c, w, b);
    const exe = withWinograd(() => compile(conv, [rnd(c.x)], { w, b }), m);
    const x = rnd(c.x);
    const want = reference(conv, [x])[0];
    const got = withWinograd(() => exe.run([x])[0], m);
    assert.deepEqual(got.shape, want.shape);
    const e = relErr(got, want);
    if (process.env.WINO_DEBUG) console.log(`F(${m}, 3)`, JSON.stringify(c), e.toExponential(2));
    assert.ok(e < WINOGRAD_TOL, `winograd F(${m}, 3) conv2d ${JSON.stringify(c)}: relative error ${e.toExponential(2)}`);
    assert.deepEqual(exe.planStats()!.kernelNames, [eligible(c) ? 'conv2d_winograd' : 'conv2d'], `${JSON.stringify(c)}: ${exe.describe()}`);
    for (const shared of [false, true]) {
      for (const act of ['silu', 'relu'] as const) {
        const fn = (x: Tensor, t: Tensor, r: Tensor) => conv(x).add(t)[act]().add(r);
        const args = [rnd(c.x), rnd([shared ? 1 : N, c.o, 1, 1]), rnd([...want.shape] as number[])];
        const fused = withWinograd(() => compile(fn, args, { w, b }), m);
        const inputs = [rnd(c.x), rnd([shared ? 1 : N, c.o, 1, 1]), rnd([...want.shape] as number[])];
        const ef = relErr(withWinograd(() => fused.run(inputs)[0], m), reference(fn, inputs)[0]);
        assert.ok(ef < WINOGRAD_TOL, `winograd F(${m}, 3) conv2d_fused ${JSON.stringify(c)} shared=${shared} ${act}: relative error ${ef.toExponential(2)}`);
        assert.deepEqual(fused.planStats()!.kernelNames, [eligible(c) ? 'conv2d_fused_winograd' : 'conv2d_fused'], `${JSON.stringify(c)}: ${fused.describe()}`);
      }
    }
  }
});

test('conv2d, Winograd form: INFERJIT_CONV_WINOGRAD=0 keeps the direct form', { skip }, () => {
  const c = WINOGRAD_CASES[7], w = rnd([c.o, c.x[1], 3, 3], 0.3), b = rnd([c.o], 0.1);
  const conv = convFn(c, w, b);
  const exe = withWinograd(() => withDirect(() => compile(conv, [rnd(c.x)], { w, b })));
  const x = rnd(c.x);
  assertClose(withWinograd(() => withDirect(() => exe.run([x])[0])), reference(conv, [x])[0], nearK(c.x[1] * 9), 'direct');
  assert.deepEqual(exe.planStats()!.kernelNames, ['conv2d_direct'], exe.describe());
});

test('conv2d, Winograd form: plans of one weight at several shapes share one transformed weight', { skip }, () => {
  // C 37, O 41: channel counts no other test here uses, so the process-wide list is read exactly
  const mine = (): number => planAddon!.winogradWeights().filter((e) => e.C === 37 && e.O === 41 && e.m === 4).length;
  const c: ConvCase = { x: [1, 37, 9, 11], o: 41, k: 3, padding: 1 };
  const w = rnd([41, 37, 3, 3], 0.3), b = rnd([41], 0.1);
  const conv = convFn(c, w, b);
  const before = mine();
  const plans = [[1, 37, 9, 11], [2, 37, 14, 6]].map((shape) => {
    const exe = withWinograd(() => compile(conv, [rnd(shape)], { w, b }));
    const x = rnd(shape);
    const e = relErr(withWinograd(() => exe.run([x])[0]), reference(conv, [x])[0]);
    assert.ok(e < WINOGRAD_TOL, `[${shape}]: relative error ${e.toExponential(2)}`);
    assert.deepEqual(exe.planStats()!.kernelNames, ['conv2d_winograd'], exe.describe());
    return exe;
  });
  assert.equal(mine(), before + 1, 'two plans of one weight: one transform');
  // another weight of the same shape gets its own
  const w2 = rnd([41, 37, 3, 3], 0.3);
  const other = withWinograd(() => compile(convFn(c, w2, b), [rnd(c.x)], { w: w2, b }));
  withWinograd(() => other.run([rnd(c.x)])); // plans are created at the first call
  assert.equal(mine(), before + 2, 'a different weight: a second transform');
  assert.equal(plans.length, 2); // keeps the plans alive to here
});

const support = reducedPrecisionSupport();
test('conv2d in a bf16 plan: bf16 panels, error of bf16 size vs fp32', { skip: skip || (!support.bf16 ? `no bf16 here: ${support.missing}` : false) }, async () => {
  for (const c of [CASES[1], CASES[4], CASES[7], CASES[8], CASES[10]]) {
    const conv = new nn.Conv2d(c.x[1], c.o, c.k, { stride: c.stride ?? 1, padding: c.padding ?? 0, seed: seed++ });
    class M extends nn.Module { c = conv; forward(x: Tensor, r: Tensor): Tensor { return this.c.forward(x).add(r); } }
    const m = new M();
    const x = rnd(c.x);
    const want = m.forward(x, rnd([1]).mul(0)); // shape probe
    const r = rnd([...want.shape] as number[]);
    const ref = m.forward(x, r);
    const fast = inferenceJit(m, { device: 'cpu', cache: 'memory', precision: 'bf16' }) as unknown as (x: Tensor, r: Tensor) => Tensor;
    const got = fast(x, r);
    const g = got.data as Float32Array, e = ref.data as Float32Array;
    let num = 0, den = 0;
    for (let i = 0; i < e.length; i++) { num += (g[i] - e[i]) ** 2; den += e[i] ** 2; }
    const rel = Math.sqrt(num / den);
    // bf16 operands (8 significant bits), fp32 accumulation; a 1×1 spatial conv can round to zero error only by luck
    assert.ok(rel < 2e-2, `${JSON.stringify(c)}: relative error ${rel}`);
    assert.ok(rel > 1e-5, `${JSON.stringify(c)}: relative error ${rel} is fp32-sized: bf16 was not used`);
  }
});

test('group_norm_act and add_group_norm_act (GroupNorm + SiLU, with and without the residual add) match the reference', { skip }, () => {
  const cases: { shape: number[]; groups: number }[] = [
    { shape: [1, 1, 1], groups: 1 },
    { shape: [2, 6, 5, 3], groups: 3 },
    { shape: [1, 12, 1, 1], groups: 4 },
    { shape: [2, 32, 17, 9], groups: 8 },
    { shape: [1, 40, 7], groups: 20 },
  ];
  for (const { shape, groups } of cases) {
    const C = shape[1];
    const p = { w: rnd([C], 0.5).add(1), b: rnd([C], 0.1) };
    const plain = (x: Tensor) => ops.groupNorm(x, groups, p.w, p.b).silu();
    let exe = compile(plain, [rnd(shape)], p);
    const x = rnd(shape, 3).add(1);
    assertClose(exe.run([x])[0], reference(plain, [x])[0], nearNorm, `group_norm + silu [${shape}] / ${groups}`);
    assert.deepEqual(exe.planStats()!.kernelNames, ['group_norm_act'], exe.describe());
    const withRes = (a: Tensor, r: Tensor) => { const s = a.add(r); return [ops.groupNorm(s, groups, p.w, p.b).silu(), s.mul(2)]; };
    exe = compile(withRes, [rnd(shape), rnd(shape)], p);
    const ins = [rnd(shape, 2), rnd(shape)];
    const got = exe.run(ins), want = reference(withRes, ins);
    assert.ok(exe.planStats()!.kernelNames.includes('add_group_norm_act'), exe.describe());
    got.forEach((g, i) => assertClose(g, want[i], nearNorm, `add + group_norm + silu [${shape}] output ${i}`));
  }
});

test('channels that do not divide into groups: a clear error', () => {
  assert.throws(() => ops.groupNorm(rnd([1, 6, 4]), 4), /6.*4|4.*6/);
  assert.throws(() => ops.conv2d(rnd([1, 6, 4, 4]), rnd([8, 1, 3, 3]), null, { groups: 4 }), /not divisible by groups 4/);
});
