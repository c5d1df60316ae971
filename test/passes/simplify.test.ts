// simplify: reshape/permute chains collapse, identity ops disappear, and nothing changes a value's
// type. Reshapes, permutes and the identities used are exact, so before/after agree bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dispatch1 } from '../../src/ops/dispatch.js';
import { fromArray } from '../../src/tensor/creation.js';
import { simplifyPass } from '../../src/passes/simplify.js';
import { traced, applyPass, ops, rnd, assertEquivalent } from './helpers.js';

const EXACT = { atol: 0, rtol: 0 };

test('reshape of reshape and permute of permute collapse; inverse permutes vanish', () => {
  const t = traced((x) => x.reshape([6, 4]).reshape([2, 12]).permute(1, 0).permute(1, 0).permute(1, 0).exp(), [rnd([2, 3, 4], 1)]);
  const { graph, rewrites } = applyPass(t.graph, simplifyPass);
  assert.ok(rewrites >= 2);
  assert.deepEqual(ops(graph), ['reshape', 'permute', 'exp']);
  assert.deepEqual(graph.nodes[0].attrs.shape, [2, 12]);
  assert.deepEqual(graph.nodes[1].attrs.perm, [1, 0]);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('composed permutes keep the element order (3-D)', () => {
  const t = traced((x) => x.permute(2, 0, 1).permute(0, 2, 1), [rnd([2, 3, 4], 2)]);
  const { graph } = applyPass(t.graph, simplifyPass);
  assert.deepEqual(ops(graph), ['permute']);
  assert.deepEqual(graph.nodes[0].attrs.perm, [2, 1, 0]); // out[i] = x[p1[p2[i]]]
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('identities go: x*1, 1*x, x/1, x+0, x-0, -(-x), same-dtype cast, same-shape reshape, identity permute', () => {
  const t = traced((x) => {
    const y = x.mul(1).div(1).add(0).sub(0).neg().neg();
    const z = dispatch1('cast', [y], { dtype: 'f32' }).reshape([2, 3]).permute(0, 1);
    return fromArray([1]).mul(z).exp();
  }, [rnd([2, 3], 3)]);
  const { graph } = applyPass(t.graph, simplifyPass);
  assert.deepEqual(ops(graph), ['exp']);
  assert.equal(graph.nodes[0].inputs[0], graph.inputs[0].value);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('an identity that changes the type stays: x*1 broadcasting x up, i32 x*1 promoting to i64', () => {
  const t = traced((x, n) => [x.mul(fromArray([[1]])), n.mul(fromArray([1], [1], 'i64'))], [rnd([3], 4), fromArray([1, 2], [2], 'i32')]);
  const { graph, rewrites } = applyPass(t.graph, simplifyPass);
  assert.equal(rewrites, 0); // [3]·[1, 1] is [1, 3]; i32·i64 is i64
  assert.equal(ops(graph).filter((o) => o === 'mul').length, 2);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('symbolic shapes: a reshape to the same symbolic shape is an identity', () => {
  const t = traced((x) => x.reshape([x.metaShape[0], 4]).relu(), [rnd([3, 4], 5)], {}, [{ shape: ['n', 4] }]);
  const { graph } = applyPass(t.graph, simplifyPass);
  assert.deepEqual(ops(graph), ['relu']);
  assertEquivalent(t.graph, graph, t, EXACT, [rnd([7, 4], 6)]);
});
