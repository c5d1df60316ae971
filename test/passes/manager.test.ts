// The pass manager and its place in the JIT: ordered passes, disabling by name, verification
// that names the pass that broke the graph, the dump hook, fixpoint passes, and inferenceJit
// running the pipeline (with `passes.disable` and the device's kernel set respected).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, inferenceJit, type Tensor } from '../../src/index.js';
import type { Graph } from '../../src/ir/graph.js';
import { runPasses, verifyFromEnv, type Pass } from '../../src/passes/manager.js';
import { getJitBackend } from '../../src/jit/backend.js';
import { DEFAULT_PASSES } from '../../src/passes/index.js';
import { listPassNames, registerPass, unregisterPass } from '../../src/passes/index.js';
import { isNativeAvailable } from '../../src/ops/dispatch.js';
import { traced, rnd, ops, assertClose } from './helpers.js';

for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];

const sample = () => traced((x) => x.neg().neg().exp().add(1).relu(), [rnd([4], 1)]);

test('runPasses runs in order on a copy, disables by name, reports stats and dumps after each pass', () => {
  const t = sample();
  const before = t.graph.print();
  const dumped: string[] = [];
  const { graph, stats } = runPasses(t.graph, DEFAULT_PASSES, { disable: ['elementwise-fusion'], dump: (name, _g, i) => dumped.push(`${i}:${name}`) });
  assert.equal(t.graph.print(), before); // the input graph is untouched
  assert.deepEqual(ops(graph), ['exp', 'add', 'relu']);
  assert.deepEqual(stats.map((s) => s.name), DEFAULT_PASSES.map((p) => p.name).filter((n) => n !== 'elementwise-fusion'));
  assert.equal(stats.find((s) => s.name === 'simplify')!.rewrites, 1);
  assert.equal(dumped[0], '1:simplify');
  assert.equal(dumped.length, DEFAULT_PASSES.length - 1);
  assert.throws(() => runPasses(t.graph, DEFAULT_PASSES, { disable: ['no-such-pass'] }), /cannot disable unknown pass "no-such-pass"/);
});

test('verification after each pass names the pass that broke the graph', () => {
  const breaker: Pass = { name: 'breaker', description: 'corrupts', run: (g: Graph) => { g.nodes[0].inputs[0] = 999; return 1; } };
  assert.throws(() => runPasses(sample().graph, [breaker], { verify: true }), /after pass breaker: Graph\.verify: node 0 \(neg.*\): input 0 refers to %999/);
});

test('a fixpoint pass is re-run until it makes no change', () => {
  let runs = 0;
  const peel: Pass = {
    name: 'peel', description: 'drops one leading neg per run', fixpoint: true,
    run(g: Graph) {
      runs++;
      const n = g.nodes.find((x) => x.op === 'neg');
      if (!n) return 0;
      g.replaceAllUsesWith(n.outputs[0], n.inputs[0]!);
      g.nodes.splice(g.nodes.indexOf(n), 1);
      g.values.delete(n.outputs[0]);
      return 1;
    },
  };
  const { graph, stats } = runPasses(sample().graph, [peel]);
  assert.equal(runs, 3);
  assert.equal(stats[0].rewrites, 2);
  assert.deepEqual(ops(graph), ['exp', 'add', 'relu']);
});

test('the JIT registers the default pipeline by name', () => {
  assert.deepEqual(listPassNames(), DEFAULT_PASSES.map((p) => p.name));
});

class Block extends nn.Module {
  fc1 = new nn.Linear(8, 16, { seed: 1 });
  fc2 = new nn.Linear(16, 8, { seed: 2 });
  norm = new nn.LayerNorm(8);
  forward(x: Tensor): Tensor {
    const h = x.add(this.fc2.forward(this.fc1.forward(x).gelu()));
    return this.norm.forward(h).mul(2).add(1).tanh();
  }
}

test('inferenceJit runs the passes; passes.disable switches one off; results match eager', () => {
  const m = new Block();
  const x = rnd([3, 8], 5);
  const all = inferenceJit(m, { device: 'reference', cache: 'memory' });
  const without = inferenceJit(m, { device: 'reference', cache: 'memory', passes: { disable: ['gemm-epilogue'] } });
  // fused epilogues skip f32 roundings: a few ulps on O(1) values
  const tol = { atol: 1e-5, rtol: 1e-5 };
  assertClose(all(x), m.forward(x), tol, 'all passes');
  assertClose(without(x), m.forward(x), tol, 'gemm-epilogue disabled');
  const opsAll = ops(all.compiledEntries()[0].optimized), opsWithout = ops(without.compiledEntries()[0].optimized);
  assert.deepEqual(opsAll, ['linear_fused', 'linear_fused', 'layer_norm', 'fused_elementwise']);
  assert.deepEqual(opsWithout, ['linear', 'gelu', 'linear', 'add_layer_norm', 'fused_elementwise']); // add-norm-fusion takes the residual add
});

test('on the native cpu device only ops with native kernels are emitted', { skip: !isNativeAvailable() && 'native addon not built' }, () => {
  const target = getJitBackend('cpu').target();
  assert.equal(target.name, 'cpu-native');
  assert.ok(target.canEmit('linear_fused'));
  const m = new Block();
  const fast = inferenceJit(m, { device: 'cpu', cache: 'memory' });
  const x = rnd([3, 8], 6);
  assertClose(fast(x), m.forward(x), { atol: 1e-4, rtol: 1e-4 }, 'cpu'); // native f32 kernels vs reference-ish eager
  const entry = fast.compiledEntries()[0];
  const captured = new Set(ops(entry.capture.graph));
  const introduced = ops(entry.optimized).filter((op) => !captured.has(op));
  assert.ok(introduced.includes('linear_fused'));
  for (const op of introduced) assert.ok(target.canEmit(op), `${op} was emitted without a native kernel`);
});

test('IR verification is switched on by INFERJIT_VERIFY_IR=1 or verify: true, never by detecting the test runner', () => {
  assert.equal(verifyFromEnv({}), false); // even though this runs under node --test
  assert.equal(verifyFromEnv({ NODE_TEST_CONTEXT: 'child' }), false);
  assert.equal(verifyFromEnv({ INFERJIT_VERIFY_IR: '1' }), true);
  const breaker: Pass = { name: 'breaker', description: 'corrupts', run: (g: Graph) => { g.nodes[0].inputs[0] = 999; return 1; } };
  assert.doesNotThrow(() => runPasses(sample().graph, [breaker], { verify: false }));
  process.env.INFERJIT_VERIFY_IR = '1';
  try {
    assert.throws(() => runPasses(sample().graph, [breaker]), /after pass breaker/);
  } finally {
    delete process.env.INFERJIT_VERIFY_IR;
  }
  assert.doesNotThrow(() => runPasses(sample().graph, [breaker]));
});

test('a registered pass runs inside the JIT with the one Pass interface and its backend\'s target', () => {
  const seen: string[] = [];
  const probe: Pass = { name: 'target-probe', description: 'records the target', run: (_g: Graph, ctx) => { seen.push(ctx.target.name); return 0; } };
  registerPass(probe, { before: 'dce' });
  try {
    assert.equal(listPassNames().at(-2), 'target-probe');
    const f = inferenceJit((x: Tensor) => x.exp(), { device: 'reference', cache: 'memory' });
    f(rnd([3], 1));
    assert.deepEqual(seen, ['reference']);
  } finally {
    unregisterPass('target-probe');
  }
  assert.throws(() => registerPass({ name: 'bad', run: 'no' } as never), /registerPass: expected \{ name, description, run\(graph, context\): number \}/);
});
