// Control flow on the native plan executor: cond and while_loop lowered into sub-plans
// (src/backends/cpu/plan/rules/control-flow.ts, native/plan/control_flow.cc). Each model describes
// as a cpu plan with sub-plans (no interpreter fallback) and its compiled results equal eager
// loops written here on inputs that take every path: nested control flow both ways, zero-iteration
// loops, control-flow operands that are also graph outputs, a branch returning its operand, and a
// runaway loop stopped by the iteration cap with an error. The plan is also checked against the
// reference interpreter on random inputs of a dynamic batch dim (sizes 1, 7, 33).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromArray, randn, ops, jitStats, type Tensor } from '../../src/index.js';
import { jitRunner } from '../../src/jit/decorator.js';
import { trace } from '../../src/trace/index.js';
import { interpret, literalTensor } from '../../src/backends/reference/interpret.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { PlanExecutable, planSupportReason } from '../../src/backends/cpu/plan/executable.js';
import { lowerPlan } from '../../src/backends/cpu/plan/lower.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';

const dir = mkdtempSync(join(tmpdir(), 'inferjit-d2s-native-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
register(new URL('../../src/trace/transform/loader-hooks.ts', import.meta.url), { data: { cacheDir: join(dir, 'cache') } });
const { BranchInLoop, LoopInBranch, SharedOutputs, Runaway } = await import('./fixtures/native-control-flow.js');

const skip = planSupportReason() ?? undefined;

function assertClose(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual([...a.shape], [...b.shape], what);
  const x = a.toFlatArray(), y = b.toFlatArray();
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= 1e-4 * Math.max(1, Math.abs(y[i])), `${what}: element ${i}: ${x[i]} vs ${y[i]}`);
}

function describeOf(model: object): string {
  return jitRunner(model)!.compiledEntries()[0].executable.describe?.() ?? '';
}

function assertNativePlan(model: object, subPlans: number): void {
  const d = describeOf(model);
  assert.match(d, /^cpu plan/, d);
  assert.doesNotMatch(d, /interpreter/, d);
  const m = /\+ (\d+) control-flow sub-plans/.exec(d);
  assert.ok(m, `the description names the sub-plans: ${d}`);
  assert.equal(Number(m[1]), subPlans, d);
  const s = jitStats(model)!;
  assert.equal(s.captures, 1);
  assert.equal(s.graphBreaks, 0);
  assert.equal(s.eagerCalls, 0);
}

test('a cond inside a while body runs natively: both branches, zero and many iterations', { skip }, () => {
  const model = new BranchInLoop();
  const eager = (x: Tensor): { y: Tensor; iters: number; doubled: number } => {
    let y = model.fc.forward(x).abs();
    let iters = 0, doubled = 0;
    while (ops.sum(y).item() < 100) {
      if (ops.max(y).item() > 5) { y = y.mul(2); doubled++; } else y = y.add(3);
      iters++;
    }
    return { y, iters, doubled };
  };
  const cases = [fromArray([[0.1, 0.2, 0.3]]), fromArray([[30, -40, 50]]), fromArray([[2, 1, 0.5]]), fromArray([[-1, 0, 1]]), fromArray([[400, 10, -300]])];
  let zero = false, bothBranches = false;
  for (const x of cases) {
    const want = eager(x);
    zero ||= want.iters === 0;
    bothBranches ||= want.doubled > 0 && want.doubled < want.iters;
    assertClose(model.forward(x), want.y, `x = [${x.toArray()}] (${want.iters} iterations, ${want.doubled} doubled)`);
  }
  assert.ok(zero, 'one input skips the loop');
  assert.ok(bothBranches, 'one input takes both branches inside the loop');
  // the while's cond and body, and the then / else of the cond inside the body
  assertNativePlan(model, 4);
});

test('a while inside a cond runs natively; the loop runs zero or more times', { skip }, () => {
  const model = new LoopInBranch();
  const eager = (x: Tensor): Tensor => {
    let y = x.mul(1);
    if (ops.sum(x).item() < 0) { while (ops.sum(y).item() < 0) y = y.add(1); } else y = y.neg();
    return y;
  };
  for (const x of [fromArray([1, 2]), fromArray([-3, -4.5]), fromArray([-0.5, 0.25]), fromArray([0, 0])]) assertClose(model.forward(x), eager(x), `x = [${x.toArray()}]`);
  assertNativePlan(model, 4);
});

test('control-flow operands that are also outputs, and a branch that returns its operand', { skip }, () => {
  const model = new SharedOutputs();
  const eager = (x: Tensor): Tensor[] => {
    const y = x.mul(2);
    let z = y;
    while (ops.sum(z).item() < 50) z = z.add(y.abs().add(1));
    const w = ops.sum(x).item() > 0 ? y.neg() : y;
    return [y, z, w];
  };
  for (const x of [fromArray([1, 2, 3]), fromArray([-1, -2, 0]), fromArray([30, 10, 5]), fromArray([0, 0, 0])]) {
    const got = model.forward(x) as Tensor[];
    const want = eager(x);
    assert.equal(got.length, 3);
    want.forEach((w, k) => assertClose(got[k], w, `x = [${x.toArray()}], output ${k}`));
  }
  assertNativePlan(model, 4);
});

test('a runaway loop stops at INFERJIT_MAX_LOOP_ITERATIONS with an error naming the cap', { skip }, () => {
  const before = process.env.INFERJIT_MAX_LOOP_ITERATIONS;
  process.env.INFERJIT_MAX_LOOP_ITERATIONS = '1000';
  try {
    const model = new Runaway();
    assertClose(model.forward(fromArray([-5, 2])), fromArray([-5, 2]), 'a loop that runs zero times');
    assert.throws(() => model.forward(fromArray([1, 2])), /while_loop.*still true after 1000 iterations.*INFERJIT_MAX_LOOP_ITERATIONS/s);
    assertNativePlan(model, 2);
  } finally {
    if (before === undefined) delete process.env.INFERJIT_MAX_LOOP_ITERATIONS;
    else process.env.INFERJIT_MAX_LOOP_ITERATIONS = before;
  }
});

test('sub-plans under a dynamic batch dim equal the reference interpreter on random inputs (batch 1, 7, 33)', { skip }, () => {
  for (const [name, model] of [['BranchInLoop', new BranchInLoop()], ['LoopInBranch', new LoopInBranch()]] as const) {
    const cols = name === 'BranchInLoop' ? 3 : 5;
    const fn = (x: Tensor): Tensor => (model as { forward(x: Tensor): Tensor }).forward(x);
    const traced = trace(fn, [randn([4, cols], { seed: 1 })], { inputSpec: [{ shape: ['batch', cols] }], module: model });
    const plan = new PlanExecutable(traced.graph, traced.constants);
    assert.equal(plan.path, 'plan', `${name}: ${plan.fallbackReason}`);
    for (const [k, batch] of [1, 7, 33].entries()) {
      for (const scale of [0.1, 3, -2]) {
        const x = randn([batch, cols], { seed: 100 + k }).mul(scale);
        const [got] = plan.run([x]);
        const [want] = withEagerBackend('reference', () => interpret(traced.graph, [x], traced.constants));
        assertClose(got, want, `${name}, batch ${batch}, scale ${scale}`);
      }
    }
    assert.match(plan.describe(), /control-flow sub-plans/);
  }
});

test('createPlan checks control-flow kernels against their sub-plans (missing plan, operand sizes)', { skip }, () => {
  const model = new LoopInBranch();
  const traced = trace((x: Tensor) => model.forward(x), [randn([3], { seed: 2 })], { module: model });
  const lowered = lowerPlan(traced.graph, new Map(), {
    constant: (name) => traced.constants.get(name) ?? literalTensor(traced.graph.constants.find((c) => c.name === name)!),
    pack: () => { throw new Error('this graph has no GEMM weights'); },
  });
  assert.ok(lowered.desc.subPlans && lowered.desc.subPlans.length === 2, 'then and else of the outer cond');
  assert.doesNotThrow(() => planAddon!.createPlan(lowered.desc));
  assert.throws(() => planAddon!.createPlan({ ...lowered.desc, subPlans: [] }), /createPlan: kernel \d+ \(cond[^)]*\): then-plan names a missing sub-plan/);
  const [then, other] = lowered.desc.subPlans!;
  const shrunk = { ...then, inputBytes: then.inputBytes.map((b) => b - 4) };
  assert.throws(() => planAddon!.createPlan({ ...lowered.desc, subPlans: [shrunk, other] }), /then-plan input's value 0 has \d+ bytes, the kernel's \d+/);
});
