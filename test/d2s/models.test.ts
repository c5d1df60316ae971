// Models that branch and loop on tensor values (test/d2s/fixtures/models.ts), loaded through the
// dynamic-to-static loader hook in this process: each compiles with one capture and no graph
// break, runs as a native cpu plan (control flow as sub-plans, no interpreter fallback), the
// compiled results equal eager execution (hand-written loops on concrete tensors) on
// inputs that take every path, and the exported ONNX model (If / Loop) run by ONNX Runtime agrees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { mkdtempSync, rmSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randn, fromArray, full, ops, jitStats, inferenceJit, type Tensor } from '../../src/index.js';
import { jitRunner } from '../../src/jit/decorator.js';
import { trace } from '../../src/trace/index.js';
import { exportOnnx } from '../../src/onnx/index.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../src/backends/onnxruntime/index.js';
import { subgraphsOf } from '../../src/ir/index.js';
import { planSupportReason } from '../../src/backends/cpu/plan/executable.js';

const dir = mkdtempSync(join(tmpdir(), 'inferjit-d2s-test-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
register(new URL('../../src/trace/transform/loader-hooks.ts', import.meta.url), { data: { cacheDir: join(dir, 'cache') } });
const { EarlyExit, Shrink, SignBranch, DoubleUntil } = await import('./fixtures/models.js');

const TOL = 1e-5;
function assertClose(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual([...a.shape], [...b.shape], what);
  const x = a.toFlatArray(), y = b.toFlatArray();
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= TOL, `${what}: element ${i}: ${x[i]} vs ${y[i]}`);
}

/** Runs the traced graph of `fn` as an ONNX model in ONNX Runtime. */
function onnxRunner(name: string, fn: (...xs: Tensor[]) => Tensor, example: Tensor[], module: object): (xs: Tensor[]) => Tensor {
  const traced = trace(fn, example, { module: module as never });
  const path = join(dir, `${name}.onnx`);
  exportOnnx(traced, path);
  const io = graphIO(traced.graph);
  const session = new OrtSession(path, {}, io.inputs, io.outputs);
  return (xs) => session.runSync(xs)[0];
}

function describeOf(model: object): string {
  return jitRunner(model)!.compiledEntries()[0].executable.describe?.() ?? '';
}

/** The model runs as a native cpu plan whose control flow lowered into sub-plans. */
function assertNativePlan(model: object): void {
  const d = describeOf(model);
  if (planSupportReason()) return; // no native addon here: the interpreter is the only path
  assert.match(d, /^cpu plan: \d+ kernels \(\+ \d+ control-flow sub-plans/, d);
  assert.doesNotMatch(d, /interpreter/, d);
}

// ---- early exit ----

type EarlyExitModel = InstanceType<typeof EarlyExit>;
/** Eager oracle: the same blocks, the loop written out on concrete tensors; also which block exits. */
function earlyExitEager(m: EarlyExitModel, x: Tensor): { y: Tensor; ran: number } {
  let ran = 0;
  for (const block of m.blocks) {
    x = block.forward(x).tanh();
    ran++;
    if (ops.max(m.head.forward(x).sigmoid()).item() > m.threshold) break;
  }
  return { y: x, ran };
}

test('early-exit stack: one capture, no graph break, compiled == eager for exits after 1, 2 and 3 blocks; ONNX agrees', () => {
  const model = new EarlyExit(0.6);
  const inputs = Array.from({ length: 12 }, (_, s) => randn([2, 8], { seed: s }).mul((s % 4) + 0.5));
  const onnx = onnxRunner('early-exit', (x) => model.forward(x), [inputs[0]], model);
  const paths = new Set<number>();
  for (const [i, x] of inputs.entries()) {
    const { y, ran } = earlyExitEager(model, x);
    paths.add(ran);
    assertClose(model.forward(x), y, `input ${i} (exits after ${ran} blocks)`);
    assertClose(onnx([x]), y, `onnx, input ${i}`);
  }
  assert.deepEqual([...paths].sort(), [1, 2, 3], 'the inputs take every exit');
  const s = jitStats(model)!;
  assert.equal(s.captures, 1);
  assert.equal(s.graphBreaks, 0);
  assert.equal(s.eagerCalls, 0);
  assertNativePlan(model);
});

test('the converted graph keeps the user\'s source lines (the transform moves no line)', () => {
  const model = new EarlyExit(0.6);
  const { graph } = trace((x: Tensor) => model.forward(x), [randn([2, 8], { seed: 1 })], { module: model });
  const all = [graph, ...subgraphsOf(graph).map((s) => s.graph)];
  const sources = all.flatMap((g) => g.nodes.filter((n) => n.op === 'tanh').map((n) => n.source));
  assert.equal(sources.length, 3, 'one tanh per block (the first inline, the others inside conds)');
  for (const s of sources) assert.match(s!, /fixtures\/models\.ts:14:\d+$/);
  const conds = all.flatMap((g) => g.nodes.filter((n) => n.op === 'cond').map((n) => n.source));
  assert.ok(conds.some((s) => /models\.ts:16:\d+$/.test(s!)), `a cond at the if on line 16: ${conds.join(', ')}`);
});

// ---- loop until the residual is small ----

function shrinkEager(x: Tensor, tol: Tensor): Tensor {
  let steps = 0;
  while (ops.sum(x.mul(x)).item() > tol.item()) { x = x.mul(0.5); steps++; }
  return x.add(steps);
}

test('loop until a residual is small: while_loop, one capture, compiled == eager for 0, 1 and many iterations; ONNX agrees', () => {
  const model = new Shrink();
  const tol = full([], 0.5);
  const cases = [fromArray([3, 4]), fromArray([0.1, 0.1]), fromArray([0.6, 0.3]), fromArray([100, -250])];
  const onnx = onnxRunner('shrink', (x, t) => model.forward(x, t), [cases[0], tol], model);
  const iterations = new Set<number>();
  for (const x of cases) {
    const want = shrinkEager(x, tol);
    iterations.add(Math.round(want.toFlatArray()[0] - x.toFlatArray()[0] / 2 ** Math.round(Math.log2(Math.abs(x.toFlatArray()[0] / (want.toFlatArray()[0] || 1))))));
    assertClose(model.forward(x, tol), want, `x = [${x.toArray()}]`);
    assertClose(onnx([x, tol]), want, `onnx, x = [${x.toArray()}]`);
  }
  const s = jitStats(model)!;
  assert.equal(s.captures, 1);
  assert.equal(s.graphBreaks, 0);
  assertNativePlan(model);
});

// ---- branch on the sign of a reduction (with an early return and a ternary on && ) ----

function signEager(m: InstanceType<typeof SignBranch>, x: Tensor): Tensor {
  const s = ops.sum(x).item();
  if (s > 0) return m.fc.forward(x).relu();
  return s < -1 && s > -100 ? x.neg() : x.mul(2);
}

test('branch on the sign of a reduction: every path compiled == eager, one capture; ONNX agrees', () => {
  const model = new SignBranch();
  const cases = [fromArray([1, 2, 3, 4]), fromArray([-1, -2, -3, -4]), fromArray([-0.1, 0, 0, 0]), fromArray([-100, -50, 0, 0])];
  const onnx = onnxRunner('sign', (x) => model.forward(x), [cases[0]], model);
  for (const x of cases) {
    const want = signEager(model, x);
    assertClose(model.forward(x), want, `x = [${x.toArray()}]`);
    assertClose(onnx([x]), want, `onnx, x = [${x.toArray()}]`);
  }
  const s = jitStats(model)!;
  assert.equal(s.captures, 1);
  assert.equal(s.graphBreaks, 0);
  assertNativePlan(model);
});

// ---- a tensor-dependent loop with a tensor-dependent break ----

function doubleUntilEager(x: Tensor): Tensor {
  while (ops.sum(x).item() < 100) {
    x = x.mul(2);
    if (ops.max(x).item() > 20) break;
    x = x.add(1);
  }
  return x;
}

test('while with a break on a tensor: the flag is carried as a bool tensor; compiled == eager; ONNX agrees', () => {
  const model = new DoubleUntil();
  const cases = [fromArray([1, 1]), fromArray([15, 0.5]), fromArray([200, 1]), fromArray([-3, 2])];
  const onnx = onnxRunner('double-until', (x) => model.forward(x), [cases[0]], model);
  for (const x of cases) {
    const want = doubleUntilEager(x);
    assertClose(model.forward(x), want, `x = [${x.toArray()}]`);
    assertClose(onnx([x]), want, `onnx, x = [${x.toArray()}]`);
  }
  const s = jitStats(model)!;
  assert.equal(s.captures, 1);
  assert.equal(s.graphBreaks, 0);
  assertNativePlan(model);
});

test('device onnxruntime: the JIT runs the control flow as If / Loop in ONNX Runtime', () => {
  const sign = inferenceJit(new SignBranch(), { device: 'onnxruntime', cache: 'memory' });
  for (const x of [fromArray([1, 2, 3, 4]), fromArray([-1, -2, -3, -4]), fromArray([-0.1, 0, 0, 0])]) {
    assertClose(sign(x), signEager(sign.module, x), `sign, x = [${x.toArray()}]`);
  }
  const loop = inferenceJit(new DoubleUntil(), { device: 'onnxruntime', cache: 'memory' });
  for (const x of [fromArray([1, 1]), fromArray([15, 0.5])]) assertClose(loop(x), doubleUntilEager(x), `double-until, x = [${x.toArray()}]`);
  assert.equal(sign.stats().captures, 1);
  assert.equal(sign.stats().graphBreaks, 0);
  assert.equal(loop.stats().graphBreaks, 0);
});

test('the loader hook cached the transformed file by content hash', () => {
  const files = readdirSync(join(dir, 'cache')).filter((f) => f.endsWith('.js') && statSync(join(dir, 'cache', f)).size > 0);
  assert.equal(files.length, 1, `one transformed file (models.ts): ${files.join(', ')}`);
});
