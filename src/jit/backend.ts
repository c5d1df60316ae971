// The device registry: which backend lowers a graph for each JIT device. The backends themselves
// (and the Executable / JitBackend interfaces they implement) live in src/backends/: cpu (native
// plans, interpreter fallback), reference (pure-TS interpreter), onnxruntime and tensorrt (through
// ONNX). Each supplies its own pass target, so the passes never import a backend.
import type { JitDevice } from './options.js';
import type { JitBackend } from '../backends/backend.js';
import { cpuJitBackend } from '../backends/cpu/jit.js';
import { referenceJitBackend } from '../backends/reference/jit.js';
import { onnxRuntimeJitBackend } from '../backends/onnxruntime/jit.js';
import { tensorRtJitBackend } from '../backends/tensorrt/jit.js';

export type { Executable, JitBackend, LowerContext } from '../backends/backend.js';

const backends = new Map<string, JitBackend>([
  ['cpu', cpuJitBackend],
  ['reference', referenceJitBackend],
  ['onnxruntime', onnxRuntimeJitBackend],
  ['tensorrt', tensorRtJitBackend],
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
