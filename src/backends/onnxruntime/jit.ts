// The JIT's view of the onnxruntime backend (device 'onnxruntime'): a JitBackend whose lower()
// exports the optimized graph into the JIT's cache folder and opens an ONNX Runtime session.
import type { JitBackend, LowerContext } from '../backend.js';
import { ANY_TARGET } from '../../passes/manager.js';
import { compileOnnxRuntime, onnxRuntimeBackendVersion, type OnnxRuntimeOptions } from './index.js';
import { loadOrt } from './session.js';

/** What lower() reads beyond LowerContext's precision, when the JIT provides it. */
export interface OnnxLowerContext extends LowerContext {
  /** The JIT's cache folder; exported models go under <cacheDir>/onnx/<key>/. */
  cacheDir?: string;
  onnxruntime?: Omit<OnnxRuntimeOptions, 'cacheDir' | 'cacheKey'>;
}

export const onnxRuntimeJitBackend: JitBackend = {
  id: 'onnxruntime',
  version: onnxRuntimeBackendVersion,
  // Exporters lower fused ops through their ONNX mappings, so every op may be emitted.
  target: () => ({ ...ANY_TARGET, name: 'onnxruntime' }),
  unavailableReason() {
    try { loadOrt(); return null; } catch (e) { return (e as Error).message; }
  },
  lower(graph, constants, context) {
    const ctx = context as OnnxLowerContext;
    if (ctx.precision !== 'fp32') {
      throw new Error(`inferenceJit: precision '${ctx.precision}' is not available on device 'onnxruntime' (only 'fp32'; use device 'tensorrt' for reduced precision on NVIDIA GPUs)`);
    }
    const exe = compileOnnxRuntime(graph, constants, { ...ctx.onnxruntime, cacheDir: ctx.cacheDir });
    return { backend: 'onnxruntime', run: (inputs) => exe.runSync(inputs) };
  },
};
