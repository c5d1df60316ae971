// constant-fold and derived constants: literal-only nodes become literals; parameter-derived
// nodes stay as the recipe (the constant prologue), are computed once at bind time, recomputed
// when a source parameter's version changes, and never make the graph hash weight-dependent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/ir/graph.js';
import { ops as O } from '../../src/index.js';
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
