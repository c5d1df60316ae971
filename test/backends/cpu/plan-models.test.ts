// The two example models through inferenceJit on device 'cpu', which runs native plans: tiny
// configurations of the two-block transformer (dynamic sequence length) and of DiT (conv patch
// embedding, timestep sin/cos, label embedding, adaLN, unpatchify), compared with eager execution
// on the native kernels and on the reference kernels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inferenceJit, randn, fromArray, type Tensor } from '../../../src/index.js';
import { jitRunner } from '../../../src/jit/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { TinyTransformer } from '../../../examples/models/transformer.js';
import { createDiT } from '../../../examples/diffusion/dit.js';
import type { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { assertClose, U } from './helpers.js';

const skip = planAddon ? false : 'native plan executor not built';
// Same kernels as eager native execution, possibly fused differently (GEMM epilogues, residual
// adds inside norms): a few ulps per op, accumulated over ~20 ops on O(1) activations.
const nearEager = (_i: number, e: number): number => 64 * U * Math.max(1, Math.abs(e));
// fp32 vs the float64 reference over two blocks (K <= 256 dot products, softmax, norms).
const nearRef = (_i: number, e: number): number => 1e-4 * Math.max(1, Math.abs(e));

const executableOf = (compiled: object): PlanExecutable => jitRunner(compiled)!.compiledEntries()[0].executable as unknown as PlanExecutable;

test('two-block transformer: compiled plan == eager at several sequence lengths, one trace', { skip }, async () => {
  const model = new TinyTransformer({ dim: 48, heads: 4 });
  const fast = inferenceJit(model, { device: 'cpu', cache: 'memory', inputSpec: [{ shape: [1, 'seq', 48] }] });
  let seed = 41;
  for (const seq of [8, 13, 32, 13]) {
    const x = randn([1, seq, 48], { seed: seed++ });
    const got = fast.forward(x) as Tensor;
    assertClose(got, withEagerBackend('cpu', () => model.forward(x)), nearEager, `seq ${seq} vs eager native`);
    assertClose(got, withEagerBackend('reference', () => model.forward(x)), nearRef, `seq ${seq} vs reference`);
    assert.deepEqual((await executableOf(fast).runAsync([x]))[0].data, got.data, 'async == sync');
  }
  const exe = executableOf(fast);
  assert.equal(exe.path, 'plan', exe.describe());
  assert.equal(exe.plansBuilt, 3, 'one plan per distinct sequence length');
  const stats = jitRunner(fast)!.stats();
  assert.equal(stats.captures, 1);
  assert.equal(stats.misses, 1, 'passes ran once for the symbolic signature');
  const s = exe.planStats()!;
  assert.ok(s.arenaBytes < s.naiveBytes, `arena ${s.arenaBytes} < naive ${s.naiveBytes}`);
});

test('transformer: an in-place weight update after compiling is respected', { skip }, () => {
  const model = new TinyTransformer({ dim: 32, heads: 2, depth: 1 });
  const fast = inferenceJit(model, { device: 'cpu', cache: 'memory' });
  const x = randn([1, 6, 32], { seed: 5 });
  fast.forward(x);
  const w = model.blocks.at(0).mlp.fc1.weight;
  w.copyFrom(randn(w.shape, { seed: 6 }).mul(0.1));
  assertClose(fast.forward(x) as Tensor, withEagerBackend('cpu', () => model.forward(x)), nearEager, 'after the update');
});

test('DiT (tiny DiT-S/2 layout): compiled plan == eager, batch 1 and 2', { skip }, () => {
  const dit = createDiT('DiT-S/2', { depth: 2, hiddenSize: 64, numHeads: 4, inputSize: 8 }, { seed: 3 });
  const fast = inferenceJit(dit, { device: 'cpu', cache: 'memory' });
  for (const n of [1, 2]) {
    const x = randn([n, 4, 8, 8], { seed: 10 + n });
    const t = fromArray([3, 700].slice(0, n), [n], 'f32');
    const y = fromArray([1, 1000].slice(0, n), [n], 'i64');
    const got = fast.forward(x, t, y) as Tensor;
    assertClose(got, withEagerBackend('cpu', () => dit.forward(x, t, y)), nearEager, `batch ${n} vs eager native`);
    assertClose(got, withEagerBackend('reference', () => dit.forward(x, t, y)), nearRef, `batch ${n} vs reference`);
  }
  const exes = jitRunner(fast)!.compiledEntries().map((e) => e.executable as unknown as PlanExecutable);
  for (const e of exes) assert.equal(e.path, 'plan', e.describe());
});
