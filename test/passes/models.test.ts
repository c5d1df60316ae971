// Whole models through every pass: the two-block transformer and a tiny DiT, optimized graphs
// checked for the fusions that should happen and compared with eager execution; and the same
// models through inferenceJit on the cpu device (native kernels when built).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inferenceJit, fromArray } from '../../src/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { optimize } from '../../src/passes/index.js';
import { TinyTransformer } from '../../examples/models/transformer.js';
import { DiT } from '../../examples/diffusion/dit.js';
import { traced, rnd, run, count, assertClose } from './helpers.js';

for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];

// Reference kernels throughout: fused ops are compositions of the same reference kernels or skip
// f32 roundings of intermediates, so differences are a few ulps of O(1) values.
const TOL = { atol: 1e-5, rtol: 1e-5 };
// Native f32 kernels (blocked GEMM sums, vectorized exp/tanh) against the float64 reference.
const NATIVE_TOL = { atol: 2e-4, rtol: 2e-4 };

const tinyDiT = () => new DiT({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 4, mlpRatio: 2, numClasses: 10 }, { seed: 3 });
const ditInputs = () => [rnd([2, 4, 8, 8], 4), fromArray([10, 500]), fromArray([1, 3], [2], 'i64')];

test('two-block transformer: fused GEMM epilogues and attention, equal to eager (dynamic batch and seq)', () => {
  const m = new TinyTransformer({ dim: 32, heads: 4 });
  const t = traced((x) => m.forward(x), [rnd([2, 6, 32], 1)], Object.fromEntries(m.namedParameters()), [{ shape: ['b', 's', 32] }]);
  const g = optimize(t.graph);
  assert.equal(count(g, 'linear_fused'), 6); // proj + residual, fc1 + gelu, fc2 + residual, per block
  assert.equal(count(g, 'attention_fused'), 2);
  assert.equal(count(g, 'gelu') + count(g, 'add') + count(g, 'permute'), 0);
  assert.ok(g.nodes.length < t.graph.nodes.length * 0.75, `${t.graph.nodes.length} -> ${g.nodes.length} nodes`);
  for (const x of [rnd([2, 6, 32], 2), rnd([1, 9, 32], 3)]) {
    const want = withEagerBackend('reference', () => m.forward(x));
    assertClose(run(g, [x], t.constants)[0], want, TOL, `x [${x.shape}]`);
  }
});

test('tiny DiT: adaLN modulation, gated residuals and the adaLN GEMMs fused, equal to eager', () => {
  const dit = tinyDiT();
  const inputs = ditInputs();
  const t = traced((x, tt, y) => dit.forward(x, tt, y), inputs, Object.fromEntries([...dit.namedParameters(), ...dit.namedBuffers()]));
  const g = optimize(t.graph);
  assert.equal(count(g, 'layer_norm_modulate'), 5); // two per block and the final layer
  assert.equal(count(g, 'layer_norm'), 0);
  assert.equal(count(g, 'fused_elementwise'), 4); // x + gate · branch, twice per block
  assert.equal(count(g, 'attention_fused'), 2);
  // the three adaLN projections read the same silu(c): one GEMM on concatenated weights
  const producers = g.producers();
  const wide = g.nodes.filter((n) => n.op === 'linear' && producers.get(n.inputs[1]!)?.op === 'concat');
  assert.equal(wide.length, 1);
  assert.deepEqual(g.meta(wide[0].outputs[0]).shape, [2, 2 * 6 * 32 + 2 * 32]);
  const want = withEagerBackend('reference', () => dit.forward(inputs[0], inputs[1], inputs[2]));
  assertClose(run(g, inputs, t.constants)[0], want, TOL, 'dit');
});

test('both models through inferenceJit on the cpu device match eager', () => {
  const m = new TinyTransformer({ dim: 32, heads: 4 });
  const x = rnd([2, 6, 32], 5);
  const fast = inferenceJit(m, { device: 'cpu', cache: 'memory' });
  assertClose(fast(x), withEagerBackend('reference', () => m.forward(x)), NATIVE_TOL, 'transformer');
  const dit = tinyDiT();
  const fastDit = inferenceJit(dit, { device: 'cpu', cache: 'memory' });
  const [xi, ti, yi] = ditInputs();
  assertClose(fastDit(xi, ti, yi), withEagerBackend('reference', () => dit.forward(xi, ti, yi)), NATIVE_TOL, 'dit');
});
