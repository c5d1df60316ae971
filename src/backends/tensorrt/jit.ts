// The JIT's view of the tensorrt backend (device 'tensorrt'): lower() compiles through ONNX Runtime's
// TensorRT provider with engines under the JIT's cache folder; precision maps to TensorRT's flags.
import type { JitBackend, LowerContext } from '../backend.js';
import { ANY_TARGET } from '../../passes/manager.js';
import { onnxRuntimeBackendVersion } from '../onnxruntime/index.js';
import { compileTensorRt, tensorRtUnavailableReason, type TensorRtOptions, type TensorRtPrecision } from './index.js';

/** What lower() reads beyond LowerContext's precision, when the JIT provides it. */
export interface TensorRtLowerContext extends LowerContext {
  cacheDir?: string;
  tensorrt?: Omit<TensorRtOptions, 'cacheDir' | 'cacheKey' | 'precision'>;
}

export const tensorRtJitBackend: JitBackend = {
  id: 'tensorrt',
  version: () => `${onnxRuntimeBackendVersion()}+tensorrt`,
  // Availability is decided in lower(): with a fallback allowed, a machine without TensorRT still runs.
  // Exporters lower fused ops through their ONNX mappings, so every op may be emitted.
  target: () => ({ ...ANY_TARGET, name: 'tensorrt' }),
  unavailableReason: () => null,
  lower(graph, constants, context) {
    const ctx = context as TensorRtLowerContext;
    if (!['fp32', 'fp16', 'int8'].includes(ctx.precision)) {
      throw new Error(`inferenceJit: precision '${ctx.precision}' is not available on device 'tensorrt' (use 'fp32', 'fp16' or 'int8')`);
    }
    const exe = compileTensorRt(graph, constants, { ...ctx.tensorrt, precision: ctx.precision as TensorRtPrecision, cacheDir: ctx.cacheDir });
    return { backend: 'tensorrt', run: (inputs) => exe.runSync(inputs) };
  },
};

export { tensorRtUnavailableReason };
