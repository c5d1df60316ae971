// attention-fusion: the written-out attention in its common spellings becomes
// scaled_dot_product_attention (kᵀ absorbed), and the head-split transposes around attention
// become attention_fused in the [B, L, H, D] layout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as O, fromArray } from '../../src/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { attentionFusionPass } from '../../src/passes/attention-fusion.js';
import { traced, applyPass, ops, rnd, assertEquivalent } from './helpers.js';

// The fused reference computes scores, softmax and the weighted sum in float64 with one rounding;
// the unfused chain rounds scores, probabilities and products to f32 (~5 roundings of O(1) values).
const TOL = { atol: 1e-5, rtol: 1e-5 };

test('matmul · scale + mask -> softmax -> matmul becomes scaled_dot_product_attention', () => {
  const t = traced((q, k, v, mask) => O.matmul(q, k.transpose(-2, -1)).mul(0.5).add(mask).softmax(-1).matmul(v),
    [rnd([2, 3, 4, 8], 1), rnd([2, 3, 5, 8], 2), rnd([2, 3, 5, 6], 3), rnd([1, 1, 4, 5], 4)]);
  const { graph } = applyPass(t.graph, attentionFusionPass);
  assert.deepEqual(ops(graph), ['scaled_dot_product_attention']);
  const n = graph.nodes[0];
  assert.deepEqual(n.inputs, graph.inputs.map((i) => i.value)); // k read untransposed, mask passed on
  assert.deepEqual(n.attrs, { causal: false, scale: 0.5 });
  assertEquivalent(t.graph, graph, t, TOL);
});

test('other spellings: ÷ sqrt(d), q pre-scaled, no scale, a bool mask via where, rank-3 operands', () => {
  const cases: [string, (q: Tensor, k: Tensor, v: Tensor) => Tensor, number][] = [
    ['div', (q, k, v) => O.matmul(q, k.transpose(2, 3)).div(Math.sqrt(8)).softmax(3).matmul(v), Math.fround(1 / Math.fround(Math.sqrt(8)))],
    ['q scaled', (q, k, v) => O.matmul(q.mul(0.25), k.transpose(2, 3)).softmax(-1).matmul(v), 0.25],
    ['no scale', (q, k, v) => O.matmul(q, k.transpose(2, 3)).softmax(-1).matmul(v), 1],
  ];
  for (const [label, fn, scale] of cases) {
    const t = traced(fn, [rnd([1, 2, 3, 8], 5), rnd([1, 2, 4, 8], 6), rnd([1, 2, 4, 8], 7)]);
    const { graph } = applyPass(t.graph, attentionFusionPass);
    assert.deepEqual(ops(graph), ['scaled_dot_product_attention'], label);
    assert.ok(Math.abs((graph.nodes[0].attrs.scale as number) - scale) < 1e-7, `${label}: scale ${graph.nodes[0].attrs.scale}`);
    assertEquivalent(t.graph, graph, t, TOL);
  }
  const keep = fromArray([[1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 0]], 'bool');
  const t = traced((q, k, v) => O.where(keep, O.matmul(q, k.transpose(1, 2)).mul(0.3), -Infinity).softmax(-1).matmul(v),
    [rnd([2, 3, 8], 8), rnd([2, 4, 8], 9), rnd([2, 4, 5], 10)]);
  const { graph } = applyPass(t.graph, attentionFusionPass);
  assert.deepEqual(ops(graph), ['reshape', 'reshape', 'reshape', 'scaled_dot_product_attention', 'reshape']);
  assertEquivalent(t.graph, graph, t, TOL);
});

test('near misses stay: softmax over another axis, probabilities read twice, batch broadcast', () => {
  const t = traced((q, k, v, k1) => {
    const wrongAxis = O.matmul(q, k.transpose(2, 3)).softmax(2).matmul(v);
    const p = O.matmul(q, k.transpose(2, 3)).mul(0.5).softmax(-1);
    const shared = p.matmul(v).add(p.sum([-1], true));
    const broadcastBatch = O.matmul(q, k1.transpose(2, 3)).softmax(-1).matmul(v);
    return [wrongAxis, shared, broadcastBatch];
  }, [rnd([2, 2, 4, 8], 11), rnd([2, 2, 4, 8], 12), rnd([2, 2, 4, 8], 13), rnd([1, 2, 4, 8], 14)]);
  const { graph, rewrites } = applyPass(t.graph, attentionFusionPass);
  assert.equal(rewrites, 0);
  assert.ok(!ops(graph).includes('scaled_dot_product_attention'));
});

test('head-split transposes around attention become attention_fused in [B, L, H, D]', () => {
  const t2 = traced((x) => {
    const [q, k, v] = O.split(x, 6, -1).map((p) => p.reshape([2, 5, 2, 3]).transpose(1, 2));
    return O.scaledDotProductAttention(q, k, v, { causal: true }).transpose(1, 2).reshape([2, 5, 6]);
  }, [rnd([2, 5, 18], 16)]);
  const { graph } = applyPass(t2.graph, attentionFusionPass);
  assert.deepEqual(ops(graph), ['split', 'reshape', 'reshape', 'reshape', 'attention_fused', 'reshape']);
  assert.deepEqual(graph.nodes[4].attrs, { causal: true, scale: 0, layout: 'bshd' });
  assertEquivalent(t2.graph, graph, t2, { atol: 0, rtol: 0 }); // same kernels, transposes are exact
  const noKernel = applyPass(t2.graph, attentionFusionPass, { name: 'test', canEmit: (op) => op !== 'attention_fused' }).graph;
  assert.ok(ops(noKernel).includes('scaled_dot_product_attention'));
});
