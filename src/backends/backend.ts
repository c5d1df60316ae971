// The contract between the JIT and a backend: lower(graph, constants) -> Executable, plus what
// the graph passes may emit for it (its Target). Backends implement this interface; the JIT keeps
// the device registry (src/jit/backend.ts) and never needs to know a backend's internals, and the
// passes (src/passes/) only ever see a Target, so they never import a backend.
import type { Tensor } from '../tensor/tensor.js';
import type { Graph } from '../ir/graph.js';
import type { DiskCache } from '../cache/disk-cache.js';
import type { Target } from '../passes/manager.js';

/** The numeric precision a compiled graph runs in (the JIT's `precision` option). */
export type Precision = 'fp32' | 'fp16' | 'bf16' | 'int8' | 'int4' | 'fp8';
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'bf16', 'int8', 'int4', 'fp8'];
/** What a reduced precision does where the CPU lacks its instructions: fail (default) or run fp32. */
export type PrecisionFallback = 'error' | 'fp32';
export const PRECISION_FALLBACKS: readonly PrecisionFallback[] = ['error', 'fp32'];

/** How one call of an Executable may treat its outputs. */
export interface RunOptions {
  /**
   * The caller is done with the outputs of its previous call that passed this flag: the backend
   * may write this call's outputs into the same buffers instead of allocating (a decode loop then
   * allocates nothing per step, and the GC has no logits to collect). A backend may ignore it.
   */
  reuseOutputs?: boolean;
}

/** A compiled graph ready to run: flat tensor inputs in graph-input order -> graph outputs. */
export interface Executable {
  readonly backend: string;
  run(inputs: Tensor[], options?: RunOptions): Tensor[];
  /** The same computation off the JS thread where the backend can (native plans); otherwise it
   *  runs synchronously and resolves. */
  runAsync?(inputs: Tensor[], options?: RunOptions): Promise<Tensor[]>;
  /** One line saying how the graph runs (e.g. native plan vs interpreter, and why). */
  describe?(): string;
  /** Reduced-precision weights packed in this process and loaded from the disk cache (cpu plans). */
  weightStats?(): { packed: number; loaded: number };
}

export interface LowerContext {
  precision: Precision;
  /** 'fp32': where this machine cannot run `precision`, warn once and compile fp32 (default 'error'). */
  precisionFallback?: PrecisionFallback;
  /** The disk cache folder when the disk cache is on: backends keep their artifacts (ONNX files,
   *  engines) below it. No cache key is passed: the JIT's keys cover the graph, not weight values,
   *  so a backend that bakes weights into an artifact must key it by the weights itself. */
  cacheDir?: string;
  /** The disk cache itself when it is on: backends may keep entries of their own in it, keyed by
   *  what their contents depend on (packed weights: by the weights' bytes). */
  disk?: DiskCache;
  /** Backend-specific options from inferenceJit's `onnxruntime` / `tensorrt` options. */
  onnxruntime?: Record<string, unknown>;
  tensorrt?: Record<string, unknown>;
}

export interface JitBackend {
  /** The device name the JIT selects it by ('cpu', 'reference', 'onnxruntime', ...). */
  readonly id: string;
  /** Changes when the backend's code or its native library changes (part of the disk key). */
  version(): string;
  /** Null when usable here, else why not. */
  unavailableReason(): string | null;
  /** What the graph passes may emit for this backend (which fused ops have fast kernels here). */
  target(): Target;
  lower(graph: Graph, constants: Map<string, Tensor>, context: LowerContext): Executable;
}
