// add-norm-fusion: a residual add feeding layer_norm / rms_norm becomes add_layer_norm /
// add_rms_norm; the sum's other readers switch to the fused node's second output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as O } from '../../src/index.js';
import { addNormFusionPass } from '../../src/passes/add-norm-fusion.js';
import { traced, applyPass, ops, rnd, assertEquivalent } from './helpers.js';

// add_layer_norm's reference is literally add then layer_norm: bit-identical
const EXACT = { atol: 0, rtol: 0 };

test('residual add + layer_norm: both outputs used (pre-norm transformer residual stream)', () => {
  const w = rnd([8], 1), b = rnd([8], 2);
  const t = traced((x, r) => {
    const s = x.add(r);
    return O.layerNorm(s, 8, w, b).relu().add(s.mul(2)); // the sum is read again later
  }, [rnd([2, 3, 8], 3), rnd([2, 3, 8], 4)], { w, b });
  const { graph } = applyPass(t.graph, addNormFusionPass);
  assert.deepEqual(ops(graph), ['add_layer_norm', 'relu', 'mul', 'add']);
  const fused = graph.nodes[0];
  assert.equal(graph.nodes[1].inputs[0], fused.outputs[0]);
  assert.equal(graph.nodes[2].inputs[0], fused.outputs[1]);
  assertEquivalent(t.graph, graph, t, EXACT);
});

test('residual add + rms_norm, and no fusion for a broadcasting add or a weight computed from the sum', () => {
  const w = rnd([6], 5);
  const t = traced((x, r, bias) => {
    const fused = O.rmsNorm(x.add(r), w);
    const broadcast = O.rmsNorm(x.add(bias), w); // bias [6] broadcasts: add_rms_norm does not
    const s = x.sub(r).add(r);
    const selfWeighted = O.rmsNorm(s, s.sum([0]).div(100)); // weight depends on the sum
    return [fused, broadcast, selfWeighted];
  }, [rnd([4, 6], 6), rnd([4, 6], 7), rnd([6], 8)], { w });
  const { graph, rewrites } = applyPass(t.graph, addNormFusionPass);
  assert.equal(rewrites, 1);
  assert.equal(ops(graph).filter((o) => o === 'add_rms_norm').length, 1);
  assertEquivalent(t.graph, graph, t, EXACT);
});
