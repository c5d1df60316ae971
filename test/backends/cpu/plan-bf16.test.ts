// precision 'bf16' on device 'cpu': the native plans run weight GEMMs on bf16 panels and attention
// with bf16 products (fp32 accumulation, fp32 norms/softmax/elementwise). Checked end to end on the
// tiny transformer and a tiny DiT against eager fp32 by relative error, plus the plan path, weight
// repacking after an in-place update, and the precision errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inferenceJit, randn, fromArray, type Tensor } from '../../../src/index.js';
import { jitRunner } from '../../../src/jit/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { TinyTransformer } from '../../../examples/models/transformer.js';
import { createDiT } from '../../../examples/diffusion/dit.js';
import type { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { reducedPrecisionSupport } from '../../../src/backends/cpu/bf16.js';
import { relError } from './helpers.js';

// These tests are about the bf16 attention kernel: every attention in a bf16 plan runs on it, whatever
// its head dim (by default, without AMX, head dims padded by more than a quarter to 32 stay fp32).
process.env.INFERJIT_BF16_ATTENTION = 'bf16';

const support = reducedPrecisionSupport();
// These tests check the bf16 kernels themselves, so they pin one (unless the environment names
// one); whether 'auto' computes bf16 plans in fp32 on this CPU is plan-bf16-compute.test.ts's subject.
if (support.bf16) process.env.INFERJIT_BF16_KERNEL ??= support.amx ? 'amx' : 'avx512';
const skip = !planAddon ? 'native plan executor not built' : !support.bf16 ? `no bf16 here: ${support.missing}` : false;

// Tolerance: bf16 keeps 8 significant bits, so rounding an operand costs a relative 2^-9 and a
// product of two rounded operands about 2^-8 ≈ 3.9e-3. A dot product of such terms (fp32
// accumulation) has a relative error of that order; the models chain ~6-10 GEMMs/attentions
// whose errors add (residual streams and LayerNorm keep activations O(1), so they do not grow
// multiplicatively). A few times 2^-8 gives the 2e-2 bound on ||y - y_ref|| / ||y_ref||.
const BF16_REL = 2e-2;
// Lower bound: fp32 plans differ from eager fp32 by ulps (~1e-6 relative); a bf16 plan must show
// bf16-sized differences, or it did not actually compute in bf16.
const BF16_FLOOR = 1e-4;

const executables = (compiled: object): PlanExecutable[] =>
  jitRunner(compiled)!.compiledEntries().map((e) => e.executable as unknown as PlanExecutable);

test('transformer compiled in bf16: plan path, bf16 weights and attention, relative error vs eager fp32', { skip }, async () => {
  const model = new TinyTransformer({ dim: 64, heads: 4, depth: 2 });
  const fast = inferenceJit(model, { device: 'cpu', cache: 'memory', precision: 'bf16', inputSpec: [{ shape: [2, 'seq', 64] }] });
  for (const [seq, seed] of [[16, 1], [37, 2]]) {
    const x = randn([2, seq, 64], { seed });
    const got = fast.forward(x) as Tensor;
    const err = relError(got, withEagerBackend('cpu', () => model.forward(x)));
    assert.ok(err < BF16_REL, `seq ${seq}: relative error ${err}`);
    assert.ok(err > BF16_FLOOR, `seq ${seq}: relative error ${err} is fp32-sized: bf16 was not used`);
    const again = (await executables(fast)[0].runAsync([x]))[0];
    assert.deepEqual(again.data, got.data, 'async == sync');
  }
  const [exe] = executables(fast);
  assert.equal(exe.path, 'plan', exe.describe());
  assert.match(exe.describe(), /^cpu plan bf16 /);
  const s = exe.planStats()!;
  assert.equal(s.precision, 'bf16');
  // per block: fused qkv (or q/k/v), out projection, fc1, fc2 are constant-weight GEMMs
  assert.ok(s.bf16Weights >= 2 * 4, `bf16 weights: ${s.bf16Weights}`);
  assert.equal(s.bf16Weights, s.packedWeights, 'every packed weight is bf16');
  assert.equal(s.bf16Attention, 2, 'one bf16 attention per block');
});

test('bf16 plan: an in-place weight update repacks the bf16 panels', { skip }, () => {
  const model = new TinyTransformer({ dim: 32, heads: 2, depth: 1 });
  const fast = inferenceJit(model, { device: 'cpu', cache: 'memory', precision: 'bf16' });
  const x = randn([1, 6, 32], { seed: 5 });
  fast.forward(x);
  const w = model.blocks.at(0).mlp.fc1.weight;
  w.copyFrom(randn(w.shape, { seed: 6 }).mul(0.5));
  const err = relError(fast.forward(x) as Tensor, withEagerBackend('cpu', () => model.forward(x)));
  assert.ok(err < BF16_REL, `after the update: relative error ${err}`);
});

test('tiny DiT compiled in bf16: relative error vs eager fp32 at batch 1 and 2', { skip }, () => {
  const dit = createDiT('DiT-S/2', { depth: 2, hiddenSize: 64, numHeads: 4, inputSize: 8 }, { seed: 3 });
  const fast = inferenceJit(dit, { device: 'cpu', cache: 'memory', precision: 'bf16' });
  for (const n of [1, 2]) {
    const x = randn([n, 4, 8, 8], { seed: 10 + n });
    const t = fromArray([3, 700].slice(0, n), [n], 'f32');
    const y = fromArray([1, 1000].slice(0, n), [n], 'i64');
    const err = relError(fast.forward(x, t, y) as Tensor, withEagerBackend('cpu', () => dit.forward(x, t, y)));
    assert.ok(err < BF16_REL, `batch ${n}: relative error ${err}`);
    assert.ok(err > BF16_FLOOR, `batch ${n}: relative error ${err} is fp32-sized: bf16 was not used`);
  }
  for (const e of executables(fast)) {
    assert.equal(e.path, 'plan', e.describe());
    const s = e.planStats()!;
    assert.ok(s.bf16Weights > 0 && s.bf16Attention === 2, e.describe());
  }
});

test('cpu precision errors: unsupported precisions are rejected by name', () => {
  const model = new TinyTransformer({ dim: 16, heads: 2, depth: 1 });
  const x = randn([1, 4, 16], { seed: 1 });
  const int8 = inferenceJit(model, { device: 'cpu', cache: 'memory', precision: 'int8' });
  assert.throws(() => int8.forward(x), /precision 'int8' is not available yet on device 'cpu' \(only 'fp32', 'bf16' and 'fp16' are implemented\)/);
  if (!support.bf16) {
    const bf16 = inferenceJit(model, { device: 'cpu', cache: 'memory', precision: 'bf16' });
    assert.throws(() => bf16.forward(x), /precision 'bf16' on device 'cpu' needs AVX512_BF16/);
  }
});

test('a model with bf16 parameters compiles in bf16: weights packed from bf16 storage, bf16 in and out', { skip }, () => {
  const m16 = new TinyTransformer({ dim: 64, heads: 4, depth: 2 }).to('bf16');
  // the oracle: the same (bf16-valued) weights in f32, run eagerly in fp32
  const m32 = new TinyTransformer({ dim: 64, heads: 4, depth: 2 });
  m32.loadStateDict(new Map([...m16.stateDict()].map(([n, t]) => [n, t.cast('f32')])));
  const fast = inferenceJit(m16, { cache: 'memory', precision: 'bf16' });
  const x = randn([2, 9, 64], { seed: 5 }).cast('bf16');
  const got = fast.forward(x) as Tensor;
  assert.equal(got.dtype, 'bf16');
  // the bf16 products of the plan (bound above) plus the output's own rounding to bf16 (2^-9)
  const err = relError(got.cast('f32'), withEagerBackend('cpu', () => m32.forward(x.cast('f32'))));
  assert.ok(err < BF16_REL + 2 ** -9, `relative error ${err}`);
  assert.ok(err > BF16_FLOOR, `relative error ${err}`);
  const [exe] = executables(fast);
  assert.equal(exe.weightStats().from16Bit, 8, 'every GEMM weight was packed from its bf16 storage');
  const s = exe.planStats()!;
  assert.equal(s.bf16Weights, 8);
  assert.ok(s.widened.length > 0 && s.widened.every((n) => !/\.(qkv|proj|fc1|fc2)\.weight$/.test(n)), `widened: ${s.widened.join(', ')}`);
  assert.match(exe.describe(), /^cpu plan bf16 \(8 bf16 weights: 8 packed here, 0 loaded from the disk cache; 2 bf16 attention; 8 weights read from bf16 storage, \d+ bf16 constants widened to f32\)/);
});
