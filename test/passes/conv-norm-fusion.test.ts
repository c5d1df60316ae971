// conv-epilogue and group-norm-fusion: what follows a conv2d (a [N, O, 1, 1] channel-bias add, an
// activation, a residual add) folds into conv2d_fused; group_norm + activation becomes
// group_norm_act; a residual add feeding a group norm becomes add_group_norm (then
// add_group_norm_act with a following activation). Each rewrite is checked for numerical
// equivalence (the graphs run on the reference kernels before and after), and the cases that
// must not fuse are checked not to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as O } from '../../src/index.js';
import { convEpiloguePass } from '../../src/passes/conv-epilogue.js';
import { groupNormFusionPass } from '../../src/passes/group-norm-fusion.js';
import { traced, applyPass, ops, rnd, assertEquivalent } from './helpers.js';

// The fused ops' references are literally the unfused compositions: bit-identical
const EXACT = { atol: 0, rtol: 0 };

test('conv epilogue: SD ResNet block (conv + timestep channel bias, conv + shortcut residual)', () => {
  const p = { w1: rnd([6, 4, 3, 3], 1), b1: rnd([6], 2), w2: rnd([6, 6, 3, 3], 3), b2: rnd([6], 4), ws: rnd([6, 4, 1, 1], 5) };
  const t = traced((x, temb) => {
    const h = O.conv2d(x, p.w1, p.b1, { padding: 1 }).add(temb.reshape([2, 6, 1, 1]));
    const h2 = O.conv2d(h.silu(), p.w2, p.b2, { padding: 1 });
    return O.conv2d(x, p.ws).add(h2); // shortcut + h: the conv on either side of the add
  }, [rnd([2, 4, 5, 7], 6), rnd([2, 6], 7)], p);
  const { graph, rewrites } = applyPass(t.graph, convEpiloguePass);
  assert.ok(rewrites >= 2, `rewrites ${rewrites}`);
  const fused = graph.nodes.filter((n) => n.op === 'conv2d_fused');
  assert.ok(fused.some((n) => n.inputs[3] !== null && n.inputs[3] !== undefined), 'a conv took the channel bias');
  assert.ok(fused.some((n) => n.inputs[4] !== null && n.inputs[4] !== undefined), 'a conv took the residual');
  assert.ok(!ops(graph).includes('add'), ops(graph).join(', '));
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('conv epilogue: channel bias, then activation, then residual on one conv; [1, O, 1, 1] bias broadcast over images', () => {
  const w = rnd([5, 3, 3, 3], 8), b = rnd([5], 9);
  const t = traced((x, cb, r) => O.conv2d(x, w, b, { stride: 2, padding: 1 }).add(cb).silu().add(r), [rnd([3, 3, 9, 8], 10), rnd([1, 5, 1, 1], 11), rnd([3, 5, 5, 4], 12)], { w, b });
  const { graph } = applyPass(t.graph, convEpiloguePass);
  assert.deepEqual(ops(graph), ['conv2d_fused']);
  assert.equal(graph.nodes[0].attrs.activation, 'silu');
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('conv epilogue does not fuse: a conv read twice, a broadcasting residual, a bias after the activation, a per-pixel add', () => {
  const w = rnd([4, 2, 1, 1], 13);
  const t = traced((x, r, cb, px) => {
    const y = O.conv2d(x, w);
    const twice = y.add(r).mul(y); // y has two readers
    const bcast = O.conv2d(x, w).add(cb.reshape([1, 4, 1, 1])).relu().add(cb.reshape([1, 4, 1, 1])); // residual broadcasts: no residual fusion
    const perPixel = O.conv2d(x, w).add(px); // [1, 1, H, W] is not a channel bias
    return [twice, bcast, perPixel];
  }, [rnd([2, 2, 3, 3], 14), rnd([2, 4, 3, 3], 15), rnd([4], 16), rnd([1, 1, 3, 3], 17)], { w });
  const { graph } = applyPass(t.graph, convEpiloguePass);
  const fused = graph.nodes.filter((n) => n.op === 'conv2d_fused');
  assert.equal(fused.length, 1, ops(graph).join(', ')); // only bcast's conv (+ channel bias, relu)
  assert.equal(fused[0].attrs.activation, 'relu');
  assert.ok(fused[0].inputs[4] === null || fused[0].inputs[4] === undefined);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('group norm: + SiLU -> group_norm_act; residual add -> add_group_norm(_act) with the sum read elsewhere', () => {
  const g = { w: rnd([8], 18), b: rnd([8], 19) };
  const t = traced((x, r) => {
    const a = O.groupNorm(x, 4, g.w, g.b).silu();
    const s = x.add(r);
    const c = O.groupNorm(s, 2, g.w, g.b).silu();
    const plain = O.groupNorm(s.mul(2), 2); // no weight, no activation: stays
    return [a, c, s.mul(3), plain];
  }, [rnd([2, 8, 3, 5], 20), rnd([2, 8, 3, 5], 21)], g);
  const { graph } = applyPass(t.graph, groupNormFusionPass);
  const names = ops(graph);
  assert.ok(names.includes('group_norm_act') && names.includes('add_group_norm_act'), names.join(', '));
  assert.equal(names.filter((n) => n === 'silu').length, 0);
  assert.equal(names.filter((n) => n === 'add').length, 0);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('group norm fusion does not fire: the normalized value read twice, a broadcasting add, a weight computed from the sum', () => {
  const t = traced((x, r, cb) => {
    const n = O.groupNorm(x, 2);
    const twice = n.silu().add(n); // the norm output is read by silu and by add
    const bcast = O.groupNorm(x.add(cb), 2); // cb [1, 4, 1] broadcasts
    const s = x.add(r);
    const selfWeighted = O.groupNorm(s, 2, s.sum([0, 2]).div(100));
    return [twice, bcast, selfWeighted];
  }, [rnd([2, 4, 6], 22), rnd([2, 4, 6], 23), rnd([1, 4, 1], 24)]);
  const { graph, rewrites } = applyPass(t.graph, groupNormFusionPass);
  assert.equal(rewrites, 0, ops(graph).join(', '));
  assertEquivalent(t.graph, graph, t, EXACT);
});
