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
import { registerQuantizedKernels } from './kernels/quantized.js';
import { registerMoeKernels } from './kernels/moe.js';
import { registerW8a8Kernels } from './kernels/w8a8.js';
import { registerPagedKernels } from './kernels/llm.js';

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
    registerQuantizedKernels(addon);
    registerMoeKernels(addon);
    registerW8a8Kernels(addon);
    registerPagedKernels(addon);
    loaded = true;
  }
  return loaded;
}
setKernelLoader('cpu', loadNativeBackend);

export { backendInfo, type BackendInfo };

/** The most threads the native pool takes (native/threadpool.h kMaxThreads). More threads than
 *  cores only slow kernels down; the cap keeps a typo (1e6) from exhausting the OS's threads. */
export const MAX_THREADS = 1024;

/** Throws a RangeError naming `where` unless `n` is a whole number in 1..MAX_THREADS. */
export function checkThreadCount(n: unknown, where: string): asserts n is number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
    throw new RangeError(`${where} must be a whole number from 1 to ${MAX_THREADS} (threads of the native pool; default: physical cores), got ${typeof n === 'number' ? n : JSON.stringify(n)}`);
  }
}

/** INFERJIT_NUM_THREADS is read by the native pool when it starts; a value it ignores (not a whole
 *  number in 1..MAX_THREADS) is reported here once, so a typo does not go unnoticed. */
function warnAboutThreadEnv(env: NodeJS.ProcessEnv = process.env): void {
  const v = env.INFERJIT_NUM_THREADS;
  if (v === undefined || v.trim() === '') return;
  const n = /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (Number.isInteger(n) && n >= 1 && n <= MAX_THREADS) return;
  process.emitWarning(`INFERJIT_NUM_THREADS="${v}" is not a whole number from 1 to ${MAX_THREADS}; ignoring it (the native pool uses ${addon ? addon.info().physicalCores : 1} threads, one per physical core)`,
    { type: 'InferjitWarning', code: 'INFERJIT_NUM_THREADS' });
}
if (addon) warnAboutThreadEnv();

/** Threads of the native pool (INFERJIT_NUM_THREADS at start-up, default: physical cores). */
export function getNumThreads(): number {
  return addon ? addon.getNumThreads() : 1;
}
/** Resizes the native thread pool (no-op without the addon). `n` is a whole number from 1 to
 *  MAX_THREADS (RangeError otherwise); when the OS cannot create that many threads, an Error says
 *  so and the pool keeps its previous size. */
export function setNumThreads(n: number): void {
  checkThreadCount(n, 'setNumThreads: n');
  addon?.setNumThreads(n);
}
/** Packs a linear weight [out, in] for the native GEMM now rather than on its second use. */
export function prepackWeight(weight: Tensor): void {
  if (addon) prepackLinearWeight(addon, weight);
}
