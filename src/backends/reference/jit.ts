// The JIT's view of the reference backend (device 'reference'): the optimized graph interpreted
// node by node on the pure-TypeScript reference kernels. Always available; the oracle the other
// backends are tested against. Every op may be emitted for it (each has a reference kernel).
import type { JitBackend } from '../backend.js';
import { ANY_TARGET } from '../../passes/manager.js';
import { interpreterExecutable } from './executable.js';

export const referenceJitBackend: JitBackend = {
  id: 'reference',
  version: () => 'interpret-1',
  unavailableReason: () => null,
  target: () => ({ ...ANY_TARGET, name: 'reference' }),
  lower(graph, constants, context) {
    if (context.precision !== 'fp32') {
      throw new Error(`inferenceJit: precision '${context.precision}' is not available yet on device 'reference' (only 'fp32' is implemented)`);
    }
    return interpreterExecutable(graph, constants, { backend: 'reference', eager: 'reference', describe: 'reference interpreter' });
  },
};
