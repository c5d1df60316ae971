// What the DiT benchmarks share: their inputs and the ONNX Runtime contender.
import { fromArray, randn, type Tensor } from '../../src/index.js';
import { trace } from '../../src/trace/index.js';
import { exportGraphToBytes } from '../../src/onnx/export.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../src/backends/onnxruntime/index.js';
import { ditInputSpec, type DiT } from '../../examples/diffusion/dit.js';

/** Latents [n, 4, 32, 32] (256×256 images), timesteps and class labels for batch n. */
export const ditInputs = (n: number): [Tensor, Tensor, Tensor] => [
  randn([n, 4, 32, 32], { seed: 10 + n }),
  fromArray(Array.from({ length: n }, (_, i) => 999 - 37 * i), [n]),
  fromArray(Array.from({ length: n }, (_, i) => (207 + 153 * i) % 1000), [n], 'i64'),
];

/** ONNX Runtime on our export of the traced (unoptimized) graph; ORT applies its own fusions. */
export function ditOrtSession(model: DiT, threads: number): OrtSession {
  const traced = trace((x: Tensor, t: Tensor, y: Tensor) => model.eager(x, t, y), ditInputs(2), { inputSpec: ditInputSpec(model.config), module: model });
  const names = { inputNames: ['x', 't', 'y'], outputNames: ['out'] };
  const { inputs: ins, outputs: outs } = graphIO(traced.graph, names);
  const bytes = exportGraphToBytes(traced.graph, traced.constants, names).bytes;
  return new OrtSession(bytes, { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', logSeverityLevel: 3 }, ins, outs);
}
