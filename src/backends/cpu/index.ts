// The native CPU backend: registers its eager kernels for the 'cpu' backend when the addon is there.
// Importing this module only installs the loader (setKernelLoader); the kernels are registered on
// first use (the first lookup of a cpu kernel: an eager op, isNativeAvailable(), kernelBackends(), or
// the JIT's cpu backend calling loadNativeBackend()), so no import order decides whether they run.
import { setKernelLoader } from '../../ops/registry.js';
import type { Tensor } from '../../tensor/tensor.js';
import { addon, backendInfo, type BackendInfo } from './addon.js';
import { prepackLinearWeight } from './packed.js';
import { registerLinalgKernels } from './kernels/linalg.js';
import { registerAttentionKernels } from './kernels/attention.js';
import { registerElementwiseKernels } from './kernels/elementwise.js';
import { registerNormKernels } from './kernels/norm.js';
import { registerMovementKernels } from './kernels/movement.js';
import { registerFusedKernels } from './kernels/fused.js';

let loaded: boolean | null = null;

/** Registers the native eager kernels (once); true when the addon is there. */
export function loadNativeBackend(): boolean {
  if (loaded !== null) return loaded;
  loaded = false;
  if (addon) {
    registerLinalgKernels(addon);
    registerAttentionKernels(addon);
    registerElementwiseKernels(addon);
    registerNormKernels(addon);
    registerMovementKernels(addon);
    registerFusedKernels();
    loaded = true;
  }
  return loaded;
}
setKernelLoader('cpu', loadNativeBackend);

export { backendInfo, type BackendInfo };

/** Threads of the native pool (INFERJIT_NUM_THREADS at start-up, default: physical cores). */
export function getNumThreads(): number {
  return addon ? addon.getNumThreads() : 1;
}
/** Resizes the native thread pool (no-op without the addon). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: n must be a positive integer, got ${n}`);
  addon?.setNumThreads(n);
}
/** Packs a linear weight [out, in] for the native GEMM now rather than on its second use. */
export function prepackWeight(weight: Tensor): void {
  if (addon) prepackLinearWeight(addon, weight);
}
