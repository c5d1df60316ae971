// The DiT (examples/diffusion/dit.ts, a diffusion transformer written as plain user code) exported
// to ONNX with a dynamic batch matches eager execution at two batch sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, fromArray } from '../../src/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { trace } from '../../src/trace/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { exportGraphToBytes } from '../../src/onnx/export.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../src/backends/onnxruntime/index.js';
import { DiT } from '../../examples/diffusion/dit.js';

// f32 through patch embedding, timestep/label embeddings, two adaLN blocks and unpatchify vs the
// f64 reference (rounded to f32 per op); outputs are of order 1 and differ by ~6e-7 in practice, so
// 1e-5 absolute leaves room for other CPUs' summation orders.
const TOL = 1e-5;

test('DiT exported to ONNX matches eager at batch 2 and 3', () => {
  const model = new DiT({ inputSize: 8, patchSize: 2, hiddenSize: 64, depth: 2, numHeads: 4, numClasses: 10 }, { seed: 3 });
  const inputs = (n: number): Tensor[] => [
    randn([n, 4, 8, 8], { seed: n }),
    fromArray(Array.from({ length: n }, (_, i) => 17 + 301 * i), [n]),
    fromArray(Array.from({ length: n }, (_, i) => (3 * i) % 10), [n], 'i64'),
  ];
  const traced = trace((x: Tensor, t: Tensor, y: Tensor) => model.forward(x, t, y), inputs(2), {
    inputSpec: [{ shape: ['batch', 4, 8, 8] }, { shape: ['batch'] }, { shape: ['batch'] }],
    module: model,
  });
  const names = { inputNames: ['x', 't', 'y'], outputNames: ['eps'] };
  const { inputs: ins, outputs: outs } = graphIO(traced.graph, names);
  const session = new OrtSession(exportGraphToBytes(traced.graph, traced.constants, names).bytes, {}, ins, outs);
  try {
    for (const n of [2, 3]) {
      const args = inputs(n);
      const want = withEagerBackend('reference', () => model.forward(args[0], args[1], args[2])).toFlatArray();
      const [got] = session.runSync(args);
      assert.deepEqual([...got.shape], [n, model.config.learnSigma ? 8 : 4, 8, 8]);
      const g = got.toFlatArray();
      const d = g.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
      assert.ok(d < TOL, `batch ${n}: max |onnx - eager| = ${d}`);
    }
  } finally { session.dispose(); }
});
