// How precision 'bf16' plans compute (bf16ComputePlan): with bf16 products on a bf16 kernel, or,
// where that kernel is slower than fp32 (measured once per process), with the fp32 kernels on
// bf16-rounded weights. Both forced choices (INFERJIT_BF16_KERNEL) run on every CPU with AVX512_BF16
// and must agree with eager fp32 within bf16 tolerance, and the plan description must name which
// one ran; the 'auto' choice must follow the measurement, whichever way it goes on this CPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inferenceJit, randn, fromArray, nn, ops, type Tensor } from '../../../src/index.js';
import { jitRunner } from '../../../src/jit/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { TinyTransformer } from '../../../examples/models/transformer.js';
import type { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { bf16ComputePlan, measureBf16Speed, reducedPrecisionSupport, roundedToBf16 } from '../../../src/backends/cpu/bf16.js';
import { relError } from './helpers.js';

// These tests are about the bf16 attention kernel: every attention in a bf16 plan runs on it, whatever
// its head dim (by default, without AMX, head dims padded by more than a quarter to 32 stay fp32).
process.env.INFERJIT_BF16_ATTENTION = 'bf16';

const support = reducedPrecisionSupport();
const skip = !planAddon ? 'native plan executor not built' : !support.bf16 ? `no bf16 here: ${support.missing}` : false;
const bf16Kernel = support.amx ? 'amx' : 'avx512';

// Tolerances (as plan-bf16.test.ts): rounding weights (and, on the bf16 kernels, activations) to
// bf16 costs a relative 2^-9..2^-8 per product; a few chained GEMMs stay within 2e-2 of fp32, and
// a plan that rounded nothing would be within ~1e-6, so 1e-4 tells rounding happened. fp32 compute
// on bf16-rounded weights equals eager fp32 on the same rounded weights up to summation order
// (relative ~1e-6), bounded here by 1e-4.
const BF16_REL = 2e-2;
const BF16_FLOOR = 1e-4;
const FP32_REL = 1e-4;

/** Runs `fn` with INFERJIT_BF16_KERNEL set to `kernel` (restored afterwards). */
function withKernel<T>(kernel: string | undefined, fn: () => T): T {
  const prev = process.env.INFERJIT_BF16_KERNEL;
  if (kernel === undefined) delete process.env.INFERJIT_BF16_KERNEL;
  else process.env.INFERJIT_BF16_KERNEL = kernel;
  try {
    return fn();
  } finally {
    if (prev === undefined) delete process.env.INFERJIT_BF16_KERNEL;
    else process.env.INFERJIT_BF16_KERNEL = prev;
  }
}

/** Compiles `model` in bf16 under INFERJIT_BF16_KERNEL=kernel and runs it once. */
function runBf16(kernel: string | undefined, model: nn.Module, inputs: Tensor[]): { out: Tensor; exe: PlanExecutable } {
  return withKernel(kernel, () => {
    const fast = inferenceJit(model, { device: 'cpu', cache: 'memory', precision: 'bf16' });
    const out = (fast.forward as (...a: Tensor[]) => Tensor)(...inputs);
    const exe = jitRunner(fast)!.compiledEntries()[0].executable as unknown as PlanExecutable;
    return { out, exe };
  });
}

/** An eager copy of `model` whose linear and conv weights (rank ≥ 2; not biases or norm scales) are
 *  rounded to bf16: the oracle of fp32 compute. */
function roundedCopy<M extends nn.Module>(make: () => M, model: M): M {
  const copy = make();
  copy.loadStateDict(new Map([...model.stateDict()].map(([n, t]) => [n, t.rank >= 2 ? roundedToBf16(t) : t])));
  return copy;
}

class ConvNet extends nn.Module {
  // 3×3 stride 1: at 40 output columns and more than 128 pixels an fp32 plan takes the direct
  // convolution (its weight read in place); a 1×1 one at few pixels packs its weight
  a = new nn.Conv2d(8, 16, 3, { padding: 1, seed: 41 });
  b = new nn.Conv2d(16, 8, 1, { seed: 42 });
  forward(x: Tensor): Tensor { return this.b.forward(this.a.forward(x).silu()); }
}

test('bf16ComputePlan: INFERJIT_BF16_KERNEL forces a choice; auto follows AMX or the measured speed', { skip }, () => {
  assert.deepEqual(withKernel('fp32', bf16ComputePlan), { compute: 'fp32', kernel: null, speedRatio: null, reason: 'forced by INFERJIT_BF16_KERNEL=fp32' });
  assert.deepEqual(withKernel('avx512', bf16ComputePlan), { compute: 'bf16', kernel: 'avx512bf16', speedRatio: null, reason: 'forced by INFERJIT_BF16_KERNEL=avx512' });
  assert.throws(() => withKernel('fast', bf16ComputePlan), /INFERJIT_BF16_KERNEL must be auto, avx512, amx or fp32, got 'fast'/);
  if (!support.amx) assert.throws(() => withKernel('amx', bf16ComputePlan), /AMX-BF16/);
  const auto = withKernel(undefined, bf16ComputePlan);
  if (support.amx) {
    assert.deepEqual(auto, { compute: 'bf16', kernel: 'amx', speedRatio: null, reason: 'AMX-BF16' });
    return;
  }
  const m = measureBf16Speed();
  assert.ok(m.ratio > 0 && Number.isFinite(m.ratio) && m.bf16Ms > 0 && m.fp32Ms > 0, JSON.stringify(m));
  assert.equal(measureBf16Speed(), m, 'measured once per process');
  assert.equal(auto.speedRatio, m.ratio);
  assert.equal(auto.compute, m.ratio >= 1 ? 'bf16' : 'fp32', auto.reason);
  assert.match(auto.reason, /^the AVX512_BF16 GEMM measured \d+\.\d\d× the fp32 GEMM's speed on this CPU at \d+×512×512/);
  if (auto.compute === 'fp32') assert.match(auto.reason, /INFERJIT_BF16_KERNEL=avx512 forces it$/);
});

test('transformer in bf16: the forced bf16 kernel and fp32 compute both run, agree with fp32, and say which ran', { skip }, () => {
  const make = () => new TinyTransformer({ dim: 64, heads: 4, depth: 2 });
  const model = make();
  const x = randn([2, 19, 64], { seed: 7 });
  const ref = withEagerBackend('cpu', () => model.forward(x));

  const onKernel = runBf16(bf16Kernel, model, [x]);
  const k = onKernel.exe.planStats()!;
  assert.equal(k.bf16Compute, 'bf16');
  assert.ok(k.bf16Weights >= 8 && k.bf16Attention === 2 && k.bf16Rounded === 0, onKernel.exe.describe());
  assert.match(onKernel.exe.describe(), new RegExp(`^cpu plan bf16 \\(8 bf16 weights: .*; 2 bf16 attention\\) on ${support.amx ? 'amx' : 'avx512bf16'} \\(forced by INFERJIT_BF16_KERNEL=${bf16Kernel}\\): `));
  const errKernel = relError(onKernel.out, ref);
  assert.ok(errKernel < BF16_REL && errKernel > BF16_FLOOR, `bf16 kernel: relative error ${errKernel}`);

  const asFp32 = runBf16('fp32', model, [x]);
  const f = asFp32.exe.planStats()!;
  assert.equal(f.bf16Compute, 'fp32');
  assert.ok(f.bf16Weights === 0 && f.bf16Attention === 0 && f.bf16Rounded === f.packedWeights && f.packedWeights >= 8, asFp32.exe.describe());
  assert.match(asFp32.exe.describe(), /^cpu plan bf16 as fp32 compute \(\d+ weights rounded to bf16 for the fp32 kernels, fp32 attention; why: forced by INFERJIT_BF16_KERNEL=fp32\): /);
  assert.equal(asFp32.exe.weightStats().packed, 0, 'no bf16 panels');
  const errFp32 = relError(asFp32.out, ref);
  assert.ok(errFp32 < BF16_REL && errFp32 > BF16_FLOOR, `fp32 compute: relative error ${errFp32} (weights must be bf16-rounded)`);
  // bf16 weight semantics: exactly eager fp32 on the bf16-rounded weights, up to summation order
  const rounded = roundedCopy(make, model);
  const errRounded = relError(asFp32.out, withEagerBackend('cpu', () => rounded.forward(x)));
  assert.ok(errRounded < FP32_REL, `fp32 compute vs eager on bf16-rounded weights: relative error ${errRounded}`);
  assert.ok(relError(asFp32.out, onKernel.out) < BF16_REL, 'the two choices agree within bf16 tolerance');
});

test('conv2d in bf16 computed in fp32: packed and direct forms read bf16-rounded weights', { skip }, () => {
  const model = new ConvNet();
  const rounded = roundedCopy(() => new ConvNet(), model);
  for (const shape of [[1, 8, 6, 6], [1, 8, 12, 40]]) {
    const x = randn(shape, { seed: shape[3] });
    const ref = withEagerBackend('cpu', () => model.forward(x));
    const asFp32 = runBf16('fp32', model, [x]);
    const s = asFp32.exe.planStats()!;
    assert.equal(s.bf16Compute, 'fp32');
    assert.equal(s.bf16Rounded, 2, asFp32.exe.describe());
    if (shape[3] >= 32) assert.ok(s.kernelNames.some((n) => n.endsWith('_direct')), `wide 3×3: the direct form runs: ${s.kernelNames.join(', ')}`);
    const err = relError(asFp32.out, withEagerBackend('cpu', () => rounded.forward(x)));
    assert.ok(err < FP32_REL, `${shape}: fp32 compute vs eager on bf16-rounded weights: relative error ${err}`);
    assert.ok(relError(asFp32.out, ref) > BF16_FLOOR, `${shape}: weights were not rounded`);
    const onKernel = runBf16(bf16Kernel, model, [x]);
    assert.ok(onKernel.exe.describe().startsWith('cpu plan bf16 ('), onKernel.exe.describe());
    assert.ok(!onKernel.exe.planStats()!.kernelNames.some((n) => n.endsWith('_direct')), 'the bf16 kernels never take the fp32 direct form');
    const errKernel = relError(onKernel.out, ref);
    assert.ok(errKernel < BF16_REL && errKernel > BF16_FLOOR, `${shape}: bf16 kernel: relative error ${errKernel}`);
    assert.ok(relError(asFp32.out, onKernel.out) < BF16_REL, `${shape}: the two choices agree within bf16 tolerance`);
  }
});

class WinogradNet extends nn.Module {
  // 3×3 stride 1, 34 channels in and 36 out (counts no other test uses: the process-wide list of
  // transformed weights is read exactly), 20 output columns: eligible for Winograd F(4×4, 3×3) by the
  // default thresholds (min(C, O) ≥ 32, width ≥ 16)
  a = new nn.Conv2d(34, 36, 3, { padding: 1, seed: 43 });
  forward(x: Tensor): Tensor { return this.a.forward(x).silu(); }
}

test('conv2d in bf16: eligible 3×3 convs run Winograd in fp32 on the fp32 weight, sharing the fp32 plan\'s transform', { skip }, () => {
  const transforms = (): number => planAddon!.winogradWeights().filter((e) => e.C === 34 && e.O === 36).length;
  const model = new WinogradNet();
  const x = randn([1, 34, 16, 20], { seed: 44 });
  const ref = withEagerBackend('cpu', () => model.forward(x));
  const before = transforms();
  const fast = inferenceJit(model, { device: 'cpu', cache: 'memory' });
  const fp32Out = (fast.forward as (x: Tensor) => Tensor)(x);
  assert.equal(transforms(), before + 1, 'the fp32 plan transforms the weight');
  for (const kernel of [bf16Kernel, 'fp32']) {
    const run = runBf16(kernel, model, [x]);
    const s = run.exe.planStats()!;
    assert.deepEqual(s.kernelNames, ['conv2d_fused_winograd'], run.exe.describe());
    assert.equal(s.bf16Rounded, 0, `no bf16-rounded copy of the Winograd weight: ${run.exe.describe()}`);
    const err = relError(run.out, ref);
    assert.ok(err < FP32_REL, `${kernel}: Winograd in a bf16 plan vs eager fp32: relative error ${err}`);
    assert.equal(transforms(), before + 1, `${kernel}: the bf16 plan shares the fp32 plan's transformed weight`);
  }
  assert.ok(relError(fp32Out, ref) < FP32_REL);
  // with Winograd off the bf16 plan keeps its bf16 implicit GEMM
  const prev = process.env.INFERJIT_CONV_WINOGRAD;
  process.env.INFERJIT_CONV_WINOGRAD = '0';
  try {
    const off = runBf16(bf16Kernel, model, [x]);
    assert.deepEqual(off.exe.planStats()!.kernelNames, ['conv2d_fused'], off.exe.describe());
    const errOff = relError(off.out, ref);
    assert.ok(errOff < BF16_REL && errOff > BF16_FLOOR, `bf16 implicit GEMM: relative error ${errOff}`);
  } finally {
    if (prev === undefined) delete process.env.INFERJIT_CONV_WINOGRAD;
    else process.env.INFERJIT_CONV_WINOGRAD = prev;
  }
  assert.ok(fast); // keeps the fp32 plan alive to here
});

class Attend extends nn.Module {
  forward(q: Tensor, k: Tensor, v: Tensor): Tensor { return ops.scaledDotProductAttention(q, k, v); }
}

test('bf16 attention by default: head dims padded by more than a quarter to 32 stay fp32 without AMX', { skip }, () => {
  const prev = process.env.INFERJIT_BF16_ATTENTION;
  try {
    for (const [D, mode, wantBf16] of [
      [40, 'auto', support.amx], [17, 'auto', support.amx], [64, 'auto', true], [80, 'auto', true], [160, 'auto', true],
      [40, 'bf16', true], [64, 'fp32', false],
    ] as [number, string, boolean][]) {
      process.env.INFERJIT_BF16_ATTENTION = mode;
      const [q, k, v] = [1, 2, 3].map((s) => randn([1, 2, 19, D], { seed: s }));
      const ref = withEagerBackend('cpu', () => ops.scaledDotProductAttention(q, k, v));
      const run = runBf16(bf16Kernel, new Attend(), [q, k, v]);
      assert.equal(run.exe.planStats()!.bf16Attention, wantBf16 ? 1 : 0, `D ${D}, ${mode}: ${run.exe.describe()}`);
      const err = relError(run.out, ref);
      // no weights here: fp32 attention is fp32-exact, bf16 attention rounds q, k, v and the probabilities
      assert.ok(wantBf16 ? err < BF16_REL && err > BF16_FLOOR : err < FP32_REL, `D ${D}, ${mode}: relative error ${err}`);
    }
    process.env.INFERJIT_BF16_ATTENTION = 'fast';
    assert.throws(() => runBf16(bf16Kernel, new Attend(), [1, 2, 3].map((s) => randn([1, 1, 3, 8], { seed: s }))), /INFERJIT_BF16_ATTENTION must be auto, bf16 or fp32, got 'fast'/);
  } finally {
    process.env.INFERJIT_BF16_ATTENTION = prev;
  }
});

test('roundedToBf16: nearest-even rounding of f32, exact widening of bf16', () => {
  const f = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -9, -2.5, 0, NaN, Infinity, 3.4e38]);
  const src = fromArray([...f], [f.length], 'f32');
  const r = roundedToBf16(src).data as Float32Array;
  assert.deepEqual([...r.slice(0, 5)], [1, 1, 1 + 2 ** -7, -2.5, 0]);
  assert.ok(Number.isNaN(r[5]));
  assert.equal(r[6], Infinity);
  const viaCast = withEagerBackend('reference', () => src.cast('bf16').cast('f32')).data as Float32Array;
  assert.deepEqual([...r].map(String), [...viaCast].map(String), 'as the reference cast to bf16');
  assert.deepEqual([...(roundedToBf16(src.cast('bf16')).data as Float32Array)].map(String), [...viaCast].map(String));
});
