// The native CPU backend: loads the addon and, when it is there, registers its kernels for the
// 'cpu' backend and tells dispatch that eager ops may use them. Import for side effects.
import { markNativeAvailable } from '../../ops/dispatch.js';
import type { Tensor } from '../../tensor/tensor.js';
import { addon, backendInfo, type BackendInfo } from './addon.js';
import { prepackLinearWeight } from './packed.js';
import { registerLinalgKernels } from './kernels/linalg.js';
import { registerAttentionKernels } from './kernels/attention.js';
import { registerElementwiseKernels } from './kernels/elementwise.js';
import { registerNormKernels } from './kernels/norm.js';
import { registerMovementKernels } from './kernels/movement.js';
import { registerFusedKernels } from './kernels/fused.js';
import { registerQuantizedKernels } from './kernels/quantized.js';

if (addon) {
  registerLinalgKernels(addon);
  registerAttentionKernels(addon);
  registerElementwiseKernels(addon);
  registerNormKernels(addon);
  registerMovementKernels(addon);
  registerFusedKernels();
  registerQuantizedKernels(addon);
  markNativeAvailable(true);
}

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
