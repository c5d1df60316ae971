// elementwise-fusion: chains and trees of elementwise ops become one fused_elementwise node whose
// program evaluates like the original ops (bit-identical on the reference kernels), broadcasts
// included; producers with other readers or of smaller (broadcast) shape stay outside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as O, fromArray } from '../../src/index.js';
import { elementwiseFusionPass } from '../../src/passes/elementwise-fusion.js';
import { traced, applyPass, ops, rnd, assertEquivalent } from './helpers.js';

const EXACT = { atol: 0, rtol: 0 };

test('a tree of elementwise ops with broadcast operands becomes one node', () => {
  const t = traced((x, y, s) => x.mul(s).add(y).gelu().sub(x.exp()).maximum(y.tanh()), [rnd([2, 3, 4], 1), rnd([2, 3, 4], 2), rnd([4], 3)]);
  const { graph } = applyPass(t.graph, elementwiseFusionPass);
  assert.deepEqual(ops(graph), ['fused_elementwise']);
  const n = graph.nodes[0];
  assert.equal(n.inputs.length, 3);
  assert.equal((n.attrs.program as string).split(' ').length, 7);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('where with a bool condition fuses; a comparison (bool result) and a cast stay outside', () => {
  const t = traced((x, y) => O.where(x.greater(0), x.mul(2), y.neg()).silu(), [rnd([3, 5], 4), rnd([3, 5], 5)]);
  const { graph } = applyPass(t.graph, elementwiseFusionPass);
  assert.deepEqual(ops(graph), ['greater', 'fused_elementwise']);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('a producer read outside the region, or smaller than the consumer (broadcast), is not merged', () => {
  const t = traced((x, c) => {
    const e = x.exp();
    const shared = e.add(1).mul(2); // e is also returned: it must be materialized, so it stays
    const sn = x.sin();
    const twice = sn.add(1).mul(sn); // read twice, but both reads end up in one node
    const small = c.sigmoid().mul(x); // sigmoid on [4] feeding [3, 4]: would be recomputed 3 times
    return [shared, e, twice, small];
  }, [rnd([3, 4], 6), rnd([4], 7)]);
  const { graph } = applyPass(t.graph, elementwiseFusionPass);
  assert.deepEqual(ops(graph).sort(), ['exp', 'fused_elementwise', 'fused_elementwise', 'mul', 'sigmoid']);
  const twice = graph.nodes.find((n) => n.op === 'fused_elementwise' && (n.attrs.program as string).includes('sin'))!;
  assert.equal(twice.attrs.program, 'sin(0) add(2,1) mul(3,2)'); // inputs x and the literal 1; sin computed once
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('mixed dtypes stay unfused; f16 regions round every step like the unfused ops', () => {
  const t = traced((h, i) => [h.mul(h).add(1).sqrt(), i.add(i).mul(3)], [rnd([5], 8).cast('f16'), fromArray([1, 2, 3], [3], 'i32')]);
  const { graph } = applyPass(t.graph, elementwiseFusionPass);
  assert.deepEqual(ops(graph).sort(), ['add', 'fused_elementwise', 'mul']);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('not emitted for a target without a fused_elementwise kernel', () => {
  const t = traced((x) => x.exp().add(1), [rnd([4], 9)]);
  const { rewrites } = applyPass(t.graph, elementwiseFusionPass, { name: 'test', canEmit: (op) => op !== 'fused_elementwise' });
  assert.equal(rewrites, 0);
});
