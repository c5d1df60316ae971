// inferenceJit and its supporting API: options and configure(), stats, the disk cache, and the
// extension points (graph passes, backends) the compile pipeline runs.
export { inferenceJit, jitOptions, getJitOptions, jitHandle, jitStats, jitDescribe, jitRunner, JIT_OPTIONS_KEY, type JitHandle, type CompiledModule, type CompiledFunction } from './decorator.js';
export {
  configure, resetConfig, getConfig, resolveOptions, envOptions, defaultCacheDir,
  type JitOptions, type ResolvedOptions, type InputSpec, type JitDevice, type Precision, type PrecisionFallback, type CacheMode, type FallbackMode,
} from './options.js';
export { JitRunner, type JitStats } from './runtime.js';
export { DiskCache, CACHE_FORMAT, type EntryInfo, type EntryManifest } from '../cache/disk-cache.js';
export { registerPass, unregisterPass, listPasses, listPassNames } from '../passes/pipeline.js';
export type { Pass, PassContext, Target } from '../passes/manager.js';
export { registerJitBackend, getJitBackend, type JitBackend, type Executable, type LowerContext } from './backend.js';
export type { CompiledEntry } from './compile.js';
