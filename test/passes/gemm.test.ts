// GEMM passes: epilogue fusion (bias, activation, residual into linear_fused), transpose folding
// (matmul with a transposed or constant weight into linear) and horizontal fusion (linears sharing
// an input into one GEMM on concatenated weights + split).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as O } from '../../src/index.js';
import { dispatch1 } from '../../src/ops/dispatch.js';
import { gemmEpiloguePass } from '../../src/passes/gemm-epilogue.js';
import { transposeFoldPass } from '../../src/passes/transpose-fold.js';
import { horizontalGemmPass } from '../../src/passes/horizontal-gemm.js';
import { traced, applyPass, ops, rnd, assertEquivalent } from './helpers.js';

// The reference linear/linear_fused accumulate in float64 like matmul and add; fused epilogues
// skip one f32 rounding per folded op: differences are a few f32 ulps of O(1) values.
const TOL = { atol: 1e-5, rtol: 1e-5 };

test('linear + bias add + gelu + residual add becomes one linear_fused', () => {
  const w = rnd([6, 4], 1), b = rnd([6], 2);
  const t = traced((x, r) => O.linear(x, w).add(b).gelu().add(r), [rnd([2, 3, 4], 3), rnd([2, 3, 6], 4)], { w, b });
  const { graph, rewrites } = applyPass(t.graph, gemmEpiloguePass);
  assert.equal(rewrites, 3);
  assert.deepEqual(ops(graph), ['linear_fused']);
  const n = graph.nodes[0];
  assert.equal(n.attrs.activation, 'gelu');
  assert.deepEqual(n.inputs, [graph.inputs[0].value, ...['w', 'b'].map((name) => graph.constants.find((c) => c.name === name)!.value), graph.inputs[1].value]);
  assertEquivalent(t.graph, graph, t, TOL);
});

test('each activation, a residual on the left, and a [1, N] bias', () => {
  for (const act of ['relu', 'gelu_tanh', 'silu'] as const) {
    const w = rnd([5, 4], 5), b = rnd([1, 5], 6);
    const t = traced((x, r) => r.add(dispatch1(act, [O.linear(x, w).add(b)])), [rnd([3, 4], 7), rnd([3, 5], 8)], { w, b });
    const { graph } = applyPass(t.graph, gemmEpiloguePass);
    assert.deepEqual(ops(graph), ['reshape', 'linear_fused'], act);
    assert.equal(graph.nodes[1].attrs.activation, act);
    assertEquivalent(t.graph, graph, t, TOL);
  }
});

test('no fusion when the GEMM result has another reader, the add broadcasts it, or order is wrong', () => {
  const w = rnd([5, 4], 9), b = rnd([5], 10);
  const t = traced((x, big) => {
    const y = O.linear(x, w, b);
    const shared = y.relu().add(y); // y read twice
    const broadcast = O.linear(x, w).add(big); // [3, 5] + [2, 3, 5] grows the output
    const actThenBias = O.linear(x, w).relu().add(b); // bias after the activation is not a bias
    return [shared, broadcast, actThenBias];
  }, [rnd([3, 4], 11), rnd([2, 3, 5], 12)], { w, b });
  const { graph } = applyPass(t.graph, gemmEpiloguePass);
  // only actThenBias's relu fuses (relu(linear) -> linear_fused relu), and its bias add becomes
  // a residual add: linear_fused(x, w, none, b) with relu is act(xWᵀ) + b, which is exact
  assert.equal(ops(graph).filter((o) => o === 'linear').length, 2);
  assert.equal(ops(graph).filter((o) => o === 'linear_fused').length, 1);
  const lf = graph.nodes.find((n) => n.op === 'linear_fused')!;
  assert.equal(lf.attrs.activation, 'relu');
  assert.equal(lf.inputs[2], null);
  assertEquivalent(t.graph, graph, t, TOL);
});

test('transpose folding: x · yᵀ and x · W (constant) become linear; a runtime right operand stays matmul', () => {
  const w = rnd([4, 6], 13);
  const t = traced((x, y, z) => [O.matmul(x, y.transpose(0, 1)), O.matmul(x, w), O.matmul(x, z)], [rnd([2, 3, 4], 14), rnd([5, 4], 15), rnd([4, 2], 16)], { w });
  const { graph } = applyPass(t.graph, transposeFoldPass);
  assert.deepEqual(ops(graph).sort(), ['linear', 'linear', 'matmul', 'permute']);
  const lin = graph.nodes.filter((n) => n.op === 'linear');
  assert.equal(lin[0].inputs[1], graph.inputs[1].value); // y itself, the transpose absorbed
  const perm = graph.nodes.find((n) => n.op === 'permute')!;
  assert.equal(perm.inputs[0], graph.constants.find((c) => c.name === 'w')!.value); // a derived constant
  assertEquivalent(t.graph, graph, t, TOL);
});

test('horizontal fusion: Q/K/V linears on one input become one GEMM and a split', () => {
  const p = { wq: rnd([8, 8], 17), wk: rnd([4, 8], 18), wv: rnd([4, 8], 19), bq: rnd([8], 20), bk: rnd([4], 21), bv: rnd([4], 22), wo: rnd([3, 8], 23) };
  const t = traced((x) => {
    const q = O.linear(x, p.wq, p.bq), k = O.linear(x, p.wk, p.bk), v = O.linear(x, p.wv, p.bv);
    const other = O.linear(x, p.wo); // no bias: a different group, left alone (a group of one)
    return [q.add(k.sum([-1], true)), v, other];
  }, [rnd([2, 5, 8], 24)], p);
  const { graph, rewrites } = applyPass(t.graph, horizontalGemmPass);
  assert.equal(rewrites, 1);
  const lin = graph.nodes.filter((n) => n.op === 'linear');
  assert.equal(lin.length, 2);
  const split = graph.nodes.find((n) => n.op === 'split')!;
  assert.deepEqual(split.attrs, { axis: 2, sizes: [8, 4, 4] });
  assert.equal(graph.nodes.filter((n) => n.op === 'concat').length, 2); // weights and biases, parameter-derived
  assertEquivalent(t.graph, graph, t, TOL);
});

test('horizontal fusion groups linear_fused by activation (gate/up with different epilogues stay apart)', () => {
  const p = { a: rnd([6, 4], 25), b: rnd([6, 4], 26), c: rnd([6, 4], 27) };
  const t = traced((x) => [O.linear(x, p.a).silu().mul(O.linear(x, p.b)), O.linear(x, p.c).silu()], [rnd([3, 4], 28)], p);
  const epi = applyPass(t.graph, gemmEpiloguePass).graph;
  const { graph } = applyPass(epi, horizontalGemmPass);
  // the two silu GEMMs (a, c) merge; b (no activation) stays alone
  const fusedNodes = graph.nodes.filter((n) => n.op === 'linear_fused');
  assert.equal(fusedNodes.length, 1);
  assert.equal(fusedNodes[0].attrs.activation, 'silu');
  assert.equal(graph.nodes.filter((n) => n.op === 'linear').length, 1);
  assertEquivalent(t.graph, graph, t, TOL);
});
