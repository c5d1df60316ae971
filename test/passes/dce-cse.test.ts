// dce removes what no output needs; cse merges duplicate computations (commutative inputs in
// either order, identical literals) without merging different ones. Both are exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/ir/graph.js';
import { dcePass } from '../../src/passes/dce.js';
import { csePass } from '../../src/passes/cse.js';
import { fromArray } from '../../src/tensor/creation.js';
import { traced, applyPass, ops, rnd, assertEquivalent, count } from './helpers.js';

const EXACT = { atol: 0, rtol: 0 };

test('dce removes dead nodes, dead constants and their values', () => {
  const g = new Graph();
  const x = g.addInput('x', 'f32', [3]);
  const w = g.addConstant({ name: 'w', kind: 'param', dtype: 'f32', shape: [3] });
  const [dead] = g.addNode('mul', [x, w], {}, [{ dtype: 'f32', shape: [3] }]);
  g.addNode('exp', [dead], {}, [{ dtype: 'f32', shape: [3] }]);
  const [live] = g.addNode('relu', [x], {}, [{ dtype: 'f32', shape: [3] }]);
  g.addOutput('y', live);
  const { graph, rewrites } = applyPass(g, dcePass);
  assert.equal(rewrites, 3); // two nodes, one constant
  assert.deepEqual(ops(graph), ['relu']);
  assert.equal(graph.constants.length, 0);
  assert.equal(graph.values.size, 2);
});

test('cse merges duplicates, commutative operands in either order, and chains of duplicates', () => {
  const t = traced((x, y) => {
    const a = x.mul(y).exp(), b = y.mul(x).exp(); // same after commuting
    const c = x.sub(y), d = y.sub(x); // different: sub is not commutative
    return a.add(b).add(c).add(d);
  }, [rnd([4], 1), rnd([4], 2)]);
  const { graph, rewrites } = applyPass(t.graph, csePass);
  assert.equal(rewrites, 2); // mul, then exp (its input became the same)
  assert.equal(count(graph, 'mul'), 1);
  assert.equal(count(graph, 'exp'), 1);
  assert.equal(count(graph, 'sub'), 2);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('cse keeps ops with different attributes apart and merges identical large literals', () => {
  const big = Array.from({ length: 5000 }, (_, i) => i % 7);
  const t = traced((x) => {
    const s1 = x.sum([0]), s2 = x.sum([1]);
    return [s1, s2, x.reshape([5000]).add(fromArray(big)).add(fromArray(big))];
  }, [rnd([50, 100], 3)]);
  assert.equal(t.graph.constants.length, 2); // the tracer only deduplicates small literals
  const { graph } = applyPass(t.graph, csePass);
  assert.equal(count(graph, 'sum'), 2);
  assert.equal(graph.constants.length, 1);
  assertEquivalent(t.graph, graph, t, EXACT);
});
