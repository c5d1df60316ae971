// constant-fold and derived constants: literal-only nodes become literals; parameter-derived
// nodes stay as the recipe (the constant prologue), are computed once at bind time, recomputed
// when a source parameter's version changes, and never make the graph hash weight-dependent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/ir/graph.js';
import { ops as O, nn, Tensor, inferenceJit } from '../../src/index.js';
import { randn } from '../../src/tensor/creation.js';
import { constantFoldPass, LITERAL_FOLD_MAX } from '../../src/passes/constant-fold.js';
import { transposeFoldPass } from '../../src/passes/transpose-fold.js';
import { splitConstants, DERIVED_PREFIX } from '../../src/passes/derived.js';
import { bindConstants } from '../../src/backends/reference/index.js';
import { optimize } from '../../src/passes/index.js';
import { traced, applyPass, ops, rnd, run, assertClose, assertEquivalent } from './helpers.js';

test('literal-only nodes fold into literals (small results only)', () => {
  const g = new Graph();
  const x = g.addInput('x', 'f32', [3]);
  const lit = g.addConstant({ name: 'lit0', kind: 'literal', dtype: 'f32', shape: [3], data: [0, 1, 2] });
  const [e] = g.addNode('exp', [lit], {}, [{ dtype: 'f32', shape: [3] }]);
  const [big] = g.addNode('expand', [lit], { shape: [LITERAL_FOLD_MAX, 3] }, [{ dtype: 'f32', shape: [LITERAL_FOLD_MAX, 3] }]);
  const [s] = g.addNode('add', [x, e], {}, [{ dtype: 'f32', shape: [3] }]);
  g.addOutput('s', s);
  g.addOutput('big', big);
  const { graph } = applyPass(g, constantFoldPass);
  assert.deepEqual(ops(graph), ['expand', 'add']); // exp folded; the expand result is too big to store
  const folded = graph.constants.find((c) => c.value === graph.nodes[1].inputs[1])!;
  assert.equal(folded.kind, 'literal');
  // stored as f32, exactly what the exp kernel rounds to
  assert.deepEqual(folded.data, [1, Math.fround(Math.E), Math.fround(Math.exp(2))]);
});

function transposedWeightModel() {
  const w = randn([4, 5], { seed: 1 }); // used as x · w, so the linear weight is wᵀ (derived)
  const t = traced((x) => O.matmul(x, w).relu(), [rnd([2, 3, 4], 2)], { w });
  return { w, t };
}

test('parameter-derived nodes stay as the recipe, gathered at the front', () => {
  const { t } = transposedWeightModel();
  const folded = applyPass(t.graph, transposeFoldPass).graph;
  const { graph } = applyPass(folded, constantFoldPass);
  assert.deepEqual(ops(graph), ['permute', 'linear', 'relu']);
  assert.equal(graph.constants.filter((c) => c.kind === 'literal').length, 0); // no weight values in the graph
  assertEquivalent(t.graph, graph, t);
});

test('splitConstants: the prologue computes derived constants; the body reads them as parameters', () => {
  const { t } = transposedWeightModel();
  const g = optimize(t.graph);
  const { prologue, body, derived } = splitConstants(g);
  assert.deepEqual(derived, [`${DERIVED_PREFIX}0`]);
  assert.deepEqual(ops(prologue!), ['permute']);
  assert.deepEqual(prologue!.inputs, []);
  assert.deepEqual(ops(body), ['linear_fused']);
  assert.equal(body.constants.find((c) => c.name === derived[0])?.kind, 'param');
  body.verify();
  prologue!.verify();
  const noConstants = splitConstants(traced((x) => x.exp(), [rnd([2], 3)]).graph);
  assert.equal(noConstants.prologue, null);
});

test('bound constants are computed once and recomputed when a source parameter changes in place', () => {
  const { w, t } = transposedWeightModel();
  const g = optimize(t.graph);
  const bound = bindConstants(g, t.constants);
  const x = t.inputs[0];
  // tolerance: linear_fused on the reference kernels accumulates in float64 like matmul; the same
  // f32 rounding, so 1e-6 on O(1) values
  const tol = { atol: 1e-6, rtol: 1e-6 };
  const eager = () => O.matmul(x, w).relu();
  assertClose(run(bound.graph, [x], bound.constants())[0], eager(), tol, 'first run');
  run(bound.graph, [x], bound.constants());
  assert.equal(bound.evaluations, 1);
  w.copyFrom(randn([4, 5], { seed: 9 })); // bumps w.version
  assertClose(run(bound.graph, [x], bound.constants())[0], eager(), tol, 'after the weight update');
  assert.equal(bound.evaluations, 2);
  assert.equal(bound.constants().get(`${DERIVED_PREFIX}0`), bound.constants().get(`${DERIVED_PREFIX}0`)); // stable tensors
});

test('the optimized graph hash does not depend on weight values', () => {
  const a = transposedWeightModel(), b = transposedWeightModel();
  b.w.copyFrom(randn([4, 5], { seed: 77 }));
  const tb = traced((x) => O.matmul(x, b.w).relu(), [rnd([2, 3, 4], 2)], { w: b.w });
  assert.equal(optimize(a.t.graph).hash(), optimize(tb.graph).hash());
});

// A parameter broadcast along a dynamic dim (a ViT class token: `cls.expand([B, 1, dim])`) depends on
// the input's shape, so it is not a constant: it must not be folded or moved into the constant
// prologue, which runs without inputs and so has no value for the symbolic dim.
test('a parameter expanded along a symbolic dim stays in the per-call body', () => {
  const g = new Graph();
  const x = g.addInput('x', 'f32', ['batch', 4]);
  const w = g.addConstant({ name: 'w', kind: 'param', dtype: 'f32', shape: [1, 4] });
  const [e] = g.addNode('expand', [w], { shape: ['batch', 4] }, [{ dtype: 'f32', shape: ['batch', 4] }]);
  const [s] = g.addNode('add', [x, e], {}, [{ dtype: 'f32', shape: ['batch', 4] }]);
  g.addOutput('s', s);
  const { graph } = applyPass(g, constantFoldPass);
  const { prologue, body } = splitConstants(graph);
  assert.equal(prologue, null);
  assert.deepEqual(ops(body), ['expand', 'add']);
});

class TinyViT extends nn.Module {
  patch = new nn.Conv2d(3, 32, 8, { stride: 8, seed: 1 });
  cls = randn([1, 1, 32], { seed: 2 });
  pos = randn([1, 17, 32], { seed: 3 });
  norm = new nn.LayerNorm(32);
  attn = new nn.SelfAttention(32, 4, { seed: 4 });
  head = new nn.Linear(32, 10, { seed: 5 });
  forward(x: Tensor): Tensor {
    const B = x.metaShape[0];
    const tokens = this.patch.forward(x).flatten(2).transpose(1, 2); // [B, 16, 32]
    const cls = this.cls.expand([B, 1, 32]);
    let h = O.concat([cls, tokens], 1).add(this.pos);
    h = h.add(this.attn.forward(this.norm.forward(h)));
    return this.head.forward(O.sliceAxis(h, 1, 0, 1).squeeze(1));
  }
}

for (const device of ['reference', 'cpu'] as const) {
  test(`ViT class token expanded along a dynamic batch compiles on ${device} and matches eager at two batch sizes`, () => {
    const model = new TinyViT();
    const fast = inferenceJit(model, { device, cache: 'memory', fallback: 'error', inputSpec: [{ shape: ['batch', 3, 32, 32] }] });
    for (const [batch, seed] of [[2, 10], [3, 11]] as const) {
      const x = randn([batch, 3, 32, 32], { seed });
      const want = model.forward(x);
      const got = fast.forward(x);
      assert.deepEqual(got.shape, [batch, 10]);
      const a = want.toFlatArray(), b = got.toFlatArray();
      // f32 kernels with different summation orders: 1e-4 absolute on O(1) logits
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-4, `${device} batch ${batch} [${i}]: ${b[i]} vs eager ${a[i]}`);
    }
    assert.equal(fast.stats().misses, 1, 'one compile serves both batch sizes');
  });
}

test('an i64 literal result beyond 2^53 is not folded into a (float) literal: it stays an exact node', () => {
  const g = new Graph();
  const x = g.addInput('x', 'i64', [1]);
  const a = g.addConstant({ name: 'a', kind: 'literal', dtype: 'i64', shape: [1], data: [2 ** 52 + 1] });
  const b = g.addConstant({ name: 'b', kind: 'literal', dtype: 'i64', shape: [1], data: [3] });
  const [m] = g.addNode('mul', [a, b], {}, [{ dtype: 'i64', shape: [1] }]);
  const [s] = g.addNode('add', [x, m], {}, [{ dtype: 'i64', shape: [1] }]);
  g.addOutput('s', s);
  const { graph } = applyPass(g, constantFoldPass);
  assert.deepEqual(ops(graph), ['mul', 'add']);
  const [out] = run(graph, [Tensor.fromStorage('i64', [1], new BigInt64Array([0n]))], new Map());
  assert.deepEqual(Array.from(out.data as BigInt64Array), [3n * (2n ** 52n + 1n)]); // 13510798882111491, odd: no float64 holds it
});
