// Lowering: turns an (optimized) graph plus its live constants into an Executable for a device.
// For now the executable devices interpret the graph node by node through dispatch: 'cpu' uses
// native kernels where the addon provides them (reference kernels otherwise), 'reference' only
// the pure-TS kernels. 'onnxruntime' and 'tensorrt' are known names whose backends are not built
// yet; asking for them fails with a clear message instead of silently running something else.
import type { Tensor } from '../tensor/tensor.js';
import type { Graph } from '../ir/index.js';
import { interpret } from '../trace/index.js';
import { withEagerBackend, isNativeAvailable } from '../ops/dispatch.js';
import type { JitDevice, Precision } from './options.js';

/** A compiled graph ready to run: flat tensor inputs in graph-input order -> graph outputs. */
export interface Executable {
  readonly backend: string;
  run(inputs: Tensor[]): Tensor[];
}

export interface LowerContext {
  precision: Precision;
  /** The disk cache folder when the disk cache is on: backends keep their artifacts (ONNX files,
   *  engines) below it. No cache key is passed: the JIT's keys cover the graph, not weight values,
   *  so a backend that bakes weights into an artifact must key it by the weights itself. */
  cacheDir?: string;
}

export interface JitBackend {
  readonly id: JitDevice;
  /** Changes when the backend's code or its native library changes (part of the disk key). */
  version(): string;
  /** Null when usable here, else why not. */
  unavailableReason(): string | null;
  lower(graph: Graph, constants: Map<string, Tensor>, context: LowerContext): Executable;
}

const interpreterBackend = (id: 'cpu' | 'reference'): JitBackend => ({
  id,
  version: () => (id === 'cpu' ? `interpret-1+native:${isNativeAvailable() ? 'yes' : 'no'}` : 'interpret-1'),
  unavailableReason: () => null,
  lower(graph, constants, context) {
    if (context.precision !== 'fp32') {
      throw new Error(`inferenceJit: precision '${context.precision}' is not available yet on device '${id}' (only 'fp32' is implemented)`);
    }
    const eager = id === 'cpu' ? 'auto' : 'reference';
    return { backend: id, run: (inputs) => withEagerBackend(eager, () => interpret(graph, inputs, constants)) };
  },
});

const notYet = (id: JitDevice): JitBackend => ({
  id,
  version: () => 'none',
  unavailableReason: () => `backend ${id} is not available yet in this version of inferjit; use device 'cpu' or 'reference'`,
  lower() { throw new Error(`inferenceJit: backend ${id} is not available yet in this version of inferjit; use device 'cpu' or 'reference'`); },
});

const backends = new Map<JitDevice, JitBackend>([
  ['cpu', interpreterBackend('cpu')],
  ['reference', interpreterBackend('reference')],
  ['onnxruntime', notYet('onnxruntime')],
  ['tensorrt', notYet('tensorrt')],
]);

/** Installs (or replaces) the backend for a device; later backends plug in here. */
export function registerJitBackend(backend: JitBackend): void { backends.set(backend.id, backend); }

/** The backend for a device, or a clear error when it cannot run here. */
export function getJitBackend(device: JitDevice): JitBackend {
  const b = backends.get(device);
  if (!b) throw new Error(`inferenceJit: unknown device '${device}'; known devices: ${[...backends.keys()].join(', ')}`);
  const why = b.unavailableReason();
  if (why) throw new Error(`inferenceJit: ${why}`);
  return b;
}
