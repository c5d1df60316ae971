// The onnxruntime backend: compile = ONNX export + an onnxruntime-node session. The exported model
// is written into a cache folder under a key of (graph structure, weight contents, exporter
// version, export options), so a second process with the same model and weights loads the .onnx
// file instead of exporting again.
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Graph } from '../../ir/index.js';
import type { Tensor } from '../../tensor/tensor.js';
import { exportGraphToBytes, writeOnnxModel, ONNX_EXPORTER_VERSION, ONNX_OPSET, type OnnxExportOptions } from '../../onnx/export.js';
import { OrtSession, ortVersion, type OrtSessionOptions, type SessionIO } from './session.js';
import { tensorDigest } from '../../cache/fingerprint.js';
import { DiskCache } from '../../cache/disk-cache.js';

export { OrtSession, loadOrt, ortVersion, listOrtBackends, toOrtTensor, fromOrtTensor } from './session.js';

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

export interface OnnxRuntimeOptions {
  /** Folder for exported models (the JIT passes its disk-cache folder). Without it a temporary
   *  folder is used and removed by dispose(). */
  cacheDir?: string;
  /** Identifies the model and its weights; when the caller already has such a key (the JIT's
   *  cache key) this skips hashing the weights. Default: graph hash + sha256 of every parameter. */
  cacheKey?: string;
  /** ONNX Runtime graph optimizations (default 'all'). */
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Threads inside one op (default: ONNX Runtime's choice, one per physical core). */
  intraOpNumThreads?: number;
  /** Threads across independent ops (only with executionMode 'parallel'). */
  interOpNumThreads?: number;
  /** Execution providers in priority order (default ['cpu']). */
  executionProviders?: OrtSessionOptions['executionProviders'];
  /** 0 verbose .. 4 fatal (default 3: errors only). */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  exportOptions?: OnnxExportOptions;
  /** Extra session options passed to onnxruntime-node as they are. */
  sessionOptions?: OrtSessionOptions;
}

/** A compiled graph on ONNX Runtime. */
export interface OnnxRuntimeExecutable {
  readonly backend: string;
  /** The .onnx file the session loaded. */
  readonly modelPath: string;
  /** False when the model came from the cache folder (no export ran). */
  readonly exported: boolean;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Runs on the calling thread (what onnxruntime-node's own run does, one tick later). */
  runSync(inputs: Tensor[]): Tensor[];
  run(inputs: Tensor[]): Promise<Tensor[]>;
  dispose(): void;
}

/** The cache key of an export: what the .onnx file's bytes depend on. */
export function onnxCacheKey(graph: Graph, constants: ReadonlyMap<string, Tensor>, options: OnnxExportOptions = {}, callerKey?: string): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ exporter: ONNX_EXPORTER_VERSION, opset: ONNX_OPSET, options }));
  if (callerKey !== undefined) h.update(`caller:${callerKey}`);
  else {
    h.update(`graph:${graph.hash()}`);
    for (const c of graph.constants) {
      if (c.kind !== 'param') continue;
      const t = constants.get(c.name);
      h.update(`${c.name}:${t ? tensorDigest(t) : 'missing'}`);
    }
  }
  return h.digest('hex').slice(0, 32);
}

export function graphIO(graph: Graph, options: OnnxExportOptions = {}): { inputs: SessionIO[]; outputs: SessionIO[] } {
  return {
    inputs: graph.inputs.map((i, k) => ({ name: options.inputNames?.[k] ?? i.name, ...graph.meta(i.value) })),
    outputs: graph.outputs.map((o, k) => ({ name: options.outputNames?.[k] ?? o.name, ...graph.meta(o.value) })),
  };
}

/** Exports `graph` into `dir/model.onnx` unless a complete export is already there; returns the
 *  path and whether an export ran. */
export function exportToCache(graph: Graph, constants: ReadonlyMap<string, Tensor>, dir: string, exportOptions: OnnxExportOptions): { path: string; exported: boolean } {
  const path = join(dir, 'model.onnx');
  // the data file is renamed into place before the model file, so the model's presence means both are complete
  if (isRegularFile(path) && isRegularFileOrAbsent(`${path}.data`)) {
    // the folder's mtime is the export's "last used" for the cache's size cap (DiskCache.list)
    try { const now = new Date(); utimesSync(dir, now, now); } catch { /* removed meanwhile: the session open re-exports */ }
    return { path, exported: false };
  }
  // Anything else under these names (a FIFO or a symlink would block or mislead onnxruntime's own
  // reader) is replaced by a fresh export; rm removes links, never their targets.
  rmSync(path, { force: true, recursive: true });
  rmSync(`${path}.data`, { force: true, recursive: true });
  writeOnnxModel(exportGraphToBytes(graph, constants, exportOptions, 'model.onnx'), path);
  return { path, exported: true };
}

function isRegularFile(p: string): boolean {
  try { return lstatSync(p).isFile(); } catch { return false; }
}
function isRegularFileOrAbsent(p: string): boolean {
  try { return lstatSync(p).isFile(); } catch (e) { return (e as NodeJS.ErrnoException).code === 'ENOENT'; }
}

/** Builds onnxruntime-node session options from our options. */
export function sessionOptionsFor(options: OnnxRuntimeOptions): OrtSessionOptions {
  const s: Record<string, unknown> = {
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
    executionProviders: options.executionProviders ?? ['cpu'],
    logSeverityLevel: options.logSeverityLevel ?? 3,
    ...options.sessionOptions,
  };
  if (options.intraOpNumThreads !== undefined) s.intraOpNumThreads = options.intraOpNumThreads;
  if (options.interOpNumThreads !== undefined) s.interOpNumThreads = options.interOpNumThreads;
  return s as OrtSessionOptions;
}

/** Opens a session on a cached model; a model file that fails to load (truncated, from an older
 *  exporter) is exported again once. */
export function openCachedSession(
  graph: Graph, constants: ReadonlyMap<string, Tensor>, dir: string, exportOptions: OnnxExportOptions, sessionOptions: OrtSessionOptions,
): { session: OrtSession; path: string; exported: boolean } {
  const { inputs, outputs } = graphIO(graph, exportOptions);
  let { path, exported } = exportToCache(graph, constants, dir, exportOptions);
  const open = () => new OrtSession(path, sessionOptions, inputs, outputs, exportOptions.bf16AsFloat32 ?? false);
  try {
    return { session: open(), path, exported };
  } catch (e) {
    if (exported) throw e;
    rmSync(path, { force: true });
    rmSync(`${path}.data`, { force: true });
    ({ path, exported } = exportToCache(graph, constants, dir, exportOptions));
    return { session: open(), path, exported };
  }
}

/** Compiles a graph for ONNX Runtime: export (or reuse the cached export) and create a session.
 *  Synchronous, like the JIT's lowering; the executable offers runSync and run. */
export function compileOnnxRuntime(graph: Graph, constants: ReadonlyMap<string, Tensor>, options: OnnxRuntimeOptions = {}): OnnxRuntimeExecutable {
  const exportOptions: OnnxExportOptions = { bf16AsFloat32: true, ...options.exportOptions };
  const tempDir = options.cacheDir === undefined ? mkdtempSync(join(tmpdir(), 'inferjit-ort-')) : null;
  // The exports live in the cache's onnx/ folder, so the folder must be the cache's own: a
  // non-empty folder of something else is refused (NotACacheFolderError) rather than written into.
  if (options.cacheDir !== undefined) new DiskCache(options.cacheDir).claim();
  const dir = tempDir ?? join(options.cacheDir!, 'onnx', onnxCacheKey(graph, constants, exportOptions, options.cacheKey));
  let opened;
  try {
    opened = openCachedSession(graph, constants, dir, exportOptions, sessionOptionsFor(options));
  } catch (e) {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    throw e;
  }
  const { session, path, exported } = opened;
  return {
    backend: 'onnxruntime',
    modelPath: path,
    exported,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    runSync: (inputs) => session.runSync(inputs),
    run: (inputs) => session.run(inputs),
    dispose() {
      session.dispose();
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    },
  };
}

/** Part of the JIT's disk key for this backend: changes when the exporter or runtime changes. */
export function onnxRuntimeBackendVersion(): string {
  return `onnx-exporter-${ONNX_EXPORTER_VERSION}+opset-${ONNX_OPSET}+onnxruntime-node-${ortVersion()}`;
}
