// norm-fusion: decomposed LayerNorm and RMSNorm in their usual spellings become the fused ops
// (affine absorbed), DiT's modulate becomes layer_norm_modulate, and near-misses are left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Tensor } from '../../src/tensor/tensor.js';
import { normFusionPass } from '../../src/passes/norm-fusion.js';
import { traced, applyPass, ops, rnd, assertEquivalent } from './helpers.js';

// decomposed norms round to f32 after each of ~8 ops; the fused kernels compute the statistics
// in float64 and round once: differences of a few f32 ulps of values of order 1-3
const TOL = { atol: 2e-6, rtol: 2e-6 };

const lnRsqrt = (x: Tensor, eps = 1e-5): Tensor => {
  const d = x.sub(x.mean(-1, true));
  return d.mul(d.pow(2).mean(-1, true).add(eps).rsqrt());
};
const lnSqrt = (x: Tensor, eps = 1e-5): Tensor => {
  const d = x.sub(x.mean(-1, true));
  return d.div(d.mul(d).mean(-1, true).add(eps).sqrt());
};

test('decomposed LayerNorm (rsqrt, pow) with weight and bias becomes one layer_norm', () => {
  const w = rnd([8], 1), b = rnd([8], 2);
  const t = traced((x) => lnRsqrt(x).mul(w).add(b), [rnd([2, 3, 8], 3)], { w, b });
  const { graph } = applyPass(t.graph, normFusionPass);
  assert.deepEqual(ops(graph), ['layer_norm']);
  const n = graph.nodes[0];
  // eps is the f32 literal the decomposed graph adds, so the fused op uses exactly that value
  assert.deepEqual(n.attrs, { normalized_ndim: 1, eps: Math.fround(1e-5) });
  assert.deepEqual(n.inputs.slice(1).map((v) => graph.constants.find((c) => c.value === v)?.name), ['w', 'b']);
  assertEquivalent(t.graph, graph, t, TOL);
});

test('the sqrt/div and d·d spelling, eps first in the add, weight on the left, and two trailing dims', () => {
  const w = rnd([1, 8], 4);
  const t = traced((x) => {
    const d = x.sub(x.mean([-2, -1], true));
    const y = d.div(d.mul(d).mean([1, 2], true).add(1e-3).sqrt());
    return w.mul(lnSqrt(x, 1e-6)).add(y.exp());
  }, [rnd([2, 4, 8], 5)], { w });
  const { graph } = applyPass(t.graph, normFusionPass);
  const lns = graph.nodes.filter((n) => n.op === 'layer_norm');
  assert.deepEqual(lns.map((n) => [n.attrs.normalized_ndim, n.attrs.eps]).sort(), [[1, Math.fround(1e-6)], [2, Math.fround(1e-3)]]);
  // the [1, 8] weight is reshaped to [8] to become the norm's weight
  assert.ok(graph.nodes.some((n) => n.op === 'reshape'));
  assert.ok(!graph.nodes.some((n) => n.op === 'mean' || n.op === 'rsqrt' || n.op === 'sqrt'));
  assertEquivalent(t.graph, graph, t, TOL);
});

test('decomposed RMSNorm (both spellings) with weight becomes rms_norm', () => {
  const w = rnd([6], 6);
  const t = traced((x) => [
    x.mul(x.pow(2).mean(-1, true).add(1e-6).rsqrt()).mul(w),
    x.div(x.mul(x).mean(-1, true).add(1e-5).sqrt()),
  ], [rnd([3, 6], 7)], { w });
  const { graph } = applyPass(t.graph, normFusionPass);
  assert.deepEqual(ops(graph), ['rms_norm', 'rms_norm']);
  assert.deepEqual(graph.nodes.map((n) => n.attrs.eps), [Math.fround(1e-6), Math.fround(1e-5)]);
  assert.notEqual(graph.nodes[0].inputs[1], null);
  assertEquivalent(t.graph, graph, t, TOL);
});

test('near misses stay: statistics over a leading axis, an intermediate read elsewhere, a non-scalar eps', () => {
  const t = traced((x) => {
    const a = x.sub(x.mean(0, true));
    const leading = a.mul(a.pow(2).mean(0, true).add(1e-5).rsqrt());
    const d = x.sub(x.mean(-1, true));
    const v = d.pow(2).mean(-1, true);
    const shared = d.mul(v.add(1e-5).rsqrt()).add(v); // the variance is also used
    return [leading, shared];
  }, [rnd([4, 5], 8)]);
  const { graph, rewrites } = applyPass(t.graph, normFusionPass);
  assert.equal(rewrites, 0);
  assert.deepEqual(ops(graph), ops(t.graph));
});

test("DiT's modulate on a LayerNorm becomes layer_norm_modulate, only where the target can run it", () => {
  const t = traced((x, c) => {
    const [shift, scale] = c.chunk(2, 1);
    const ln = lnRsqrt(x, 1e-6);
    return ln.mul(scale.unsqueeze(1).add(1)).add(shift.unsqueeze(1));
  }, [rnd([2, 5, 8], 9), rnd([2, 16], 10)]);
  const fused = applyPass(t.graph, normFusionPass).graph;
  assert.deepEqual(ops(fused), ['split', 'layer_norm_modulate']);
  assert.equal(fused.nodes[1].attrs.eps, Math.fround(1e-6));
  assertEquivalent(t.graph, fused, t, TOL);
  const noKernel = applyPass(t.graph, normFusionPass, { name: 'test', canEmit: (op) => op !== 'layer_norm_modulate' }).graph;
  assert.ok(ops(noKernel).includes('layer_norm'));
  assert.ok(!ops(noKernel).includes('layer_norm_modulate'));
});
