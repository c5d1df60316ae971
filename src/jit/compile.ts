// The compile pipeline for one call signature:
//   capture (trace forward, or load the captured graph from disk) -> passes -> lower(backend)
//   -> Executable.
// Two disk entries serve a compile. The capture entry, keyed without tracing (code, configuration,
// signature, options: see fingerprint.ts), holds the captured graph so another process skips the
// trace. The artifact entry, keyed by the graph's structural hash with the signature, device,
// precision, passes, backend and inferjit version, holds the optimized graph (and, as backends
// grow, their packed weights, ONNX files and engines).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Tensor } from '../tensor/tensor.js';
import { Graph } from '../ir/index.js';
import { trace } from '../trace/index.js';
import { DiskCache, canonicalJson, sha256, tolerantDiskIo } from '../cache/disk-cache.js';
import { getJitBackend, type Executable, type JitBackend } from './backend.js';
import { listPasses } from '../passes/pipeline.js';
import { runPasses as runPipeline, verifyFromEnv } from '../passes/manager.js';
import type { ResolvedOptions } from './options.js';
import type { NormalizedSpec, Signature } from './signature.js';
import { fileOfFrame, hashFiles, inferjitVersion, isInferjitSource, namedTensors, type ModuleLike } from '../cache/fingerprint.js';

/** Counters the compiles of one compiled function keep (part of JitStats). Times are milliseconds
 *  summed over all compiles. */
export interface CompileCounters {
  /** Times forward was traced (0 when every graph came from the disk cache). */
  captures: number;
  /** Compiles whose captured graph came from the disk cache. */
  diskHits: number;
  /** Disk lookups for a captured graph that found nothing usable. */
  diskMisses: number;
  /** Compiles whose optimized graph came from the disk cache. */
  artifactHits: number;
  diskWrites: number;
  /** Disk entries found but not used, and why (a source file changed, ...). */
  diskRejects: { key: string; reason: string }[];
  /** Time spent tracing. */
  captureMs: number;
  /** Everything else compiling took: disk lookups, passes, lowering. */
  compileMs: number;
}

export interface CaptureResult {
  graph: Graph;
  outputTree: unknown;
  /** Live tensors for the graph's parameter constants. */
  constants: Map<string, Tensor>;
}

export interface CompiledEntry {
  signature: Signature;
  capture: CaptureResult;
  optimized: Graph;
  graphHash: string;
  executable: Executable;
  /** Disk key of the capture entry (null when the call cannot be cached on disk). */
  captureKey: string | null;
}

export interface CompileRequest {
  label: string;
  fn: (...args: any[]) => unknown;
  args: unknown[];
  module: ModuleLike | null;
  options: ResolvedOptions;
  spec: NormalizedSpec;
  signature: Signature;
  captureKey: string | null;
  disk: DiskCache | null;
  counters: CompileCounters;
  /** A graph captured earlier for this signature (a parameter changed in place, not the code). */
  reuse?: { graph: Graph; outputTree: unknown };
  /** A graph built by the caller (a piece of a split call, see split.ts): compiled as is, no tracing. */
  capture?: CaptureResult;
}

const CAPTURE_FILE = 'graph.json';
const ARTIFACT_FILE = 'optimized.json';

export function compile(req: CompileRequest): CompiledEntry {
  const t0 = performance.now();
  const backend = getJitBackend(req.options.device); // fail before tracing when the device cannot run
  const traceMsBefore = req.counters.captureMs;
  const capture = obtainCapture(req);
  const dump = debugDumper(req);
  dump?.('00-capture', capture.graph);

  const graphHash = capture.graph.hash();
  const backendVersion = backend.version();
  const artifactKey = sha256(canonicalJson({
    entry: 'artifact', graphHash, inputs: req.signature.inputs, device: req.options.device, precision: req.options.precision,
    passesDisabled: req.options.passesDisabled, passes: listPasses().map((p) => p.name), inferjit: inferjitVersion(),
    backend: { id: backend.id, version: backendVersion }, backendOptions: req.options.backendOptions,
  }));
  let optimized: Graph | null = null;
  if (req.disk) {
    const hit = diskIo(req, (d) => d.get(artifactKey), null);
    if (hit) {
      try {
        optimized = Graph.fromJSON(JSON.parse(hit.file(ARTIFACT_FILE).toString('utf8')));
        optimized.verify();
        req.counters.artifactHits++;
      } catch (e) {
        // Checksums passed, so this is a format drift rather than damage: rebuild it.
        req.counters.diskRejects.push({ key: artifactKey, reason: `artifact unreadable: ${(e as Error).message}` });
        diskIo(req, (d) => d.remove(artifactKey), false);
        optimized = null;
      }
    }
  }
  if (!optimized) {
    optimized = runPasses(capture.graph, req, backend, dump);
    const graphJson = JSON.stringify(optimized.toJSON());
    if (diskIo(req, (d) => d.put(artifactKey, {
      kind: 'artifact', label: `${req.label} ${req.options.device}/${req.options.precision}`,
      meta: { graphHash, device: req.options.device, precision: req.options.precision, backend: backend.id, backendVersion },
      files: { [ARTIFACT_FILE]: graphJson },
    }), null)) req.counters.diskWrites++;
  }
  const executable = backend.lower(optimized, capture.constants, {
    precision: req.options.precision, precisionFallback: req.options.precisionFallback, ...req.options.backendOptions, ...(req.disk ? { cacheDir: req.disk.root, disk: req.disk } : {}),
  });
  // compileMs is everything but tracing: disk lookups, passes, lowering.
  req.counters.compileMs += performance.now() - t0 - (req.counters.captureMs - traceMsBefore);
  return { signature: req.signature, capture, optimized, graphHash, executable, captureKey: req.captureKey };
}

function obtainCapture(req: CompileRequest): CaptureResult {
  if (req.capture) return req.capture;
  if (req.reuse) {
    const constants = constantsFromModule(req.reuse.graph, req.module);
    if (constants) return { graph: req.reuse.graph, outputTree: req.reuse.outputTree, constants };
  }
  if (req.disk && req.captureKey) {
    const loaded = loadCapture(req, req.captureKey);
    if (loaded) { req.counters.diskHits++; return loaded; }
    req.counters.diskMisses++;
  }
  const traceStart = performance.now();
  const traced = trace(req.fn, req.args, { inputSpec: req.spec, ...(req.module?.namedParameters ? { module: req.module as { namedParameters(): Iterable<[string, Tensor]> } } : {}) });
  req.counters.captures++;
  req.counters.captureMs += performance.now() - traceStart;
  traced.graph.verify();
  const result: CaptureResult = { graph: traced.graph, outputTree: traced.outputTree, constants: traced.constants };
  if (req.disk && req.captureKey && isPortable(result)) {
    const sourceFiles = hashFiles(userSourceFiles(traced.graph));
    const key = req.captureKey;
    diskIo(req, (d) => d.remove(key), false); // a stale entry with this key (a helper file changed) must not be kept
    if (diskIo(req, (d) => d.put(key, {
      kind: 'capture', label: req.label,
      meta: { graphHash: traced.graph.hash(), outputTree: result.outputTree, sourceFiles },
      files: { [CAPTURE_FILE]: JSON.stringify(traced.graph.toJSON()) },
    }), null)) req.counters.diskWrites++;
  }
  return result;
}

/** A capture entry is used only if the user files its nodes came from are unchanged and the
 *  module still has every parameter the graph names. */
function loadCapture(req: CompileRequest, key: string): CaptureResult | null {
  const hit = diskIo(req, (d) => d.get(key), null);
  if (!hit) return null;
  const meta = hit.manifest.meta as { graphHash: string; outputTree: unknown; sourceFiles: Record<string, string> } | null;
  const reject = (reason: string): null => { req.counters.diskRejects.push({ key, reason }); return null; };
  if (!meta || typeof meta.sourceFiles !== 'object') return reject('capture entry has no source file list');
  const now = hashFiles(Object.keys(meta.sourceFiles));
  for (const [file, hash] of Object.entries(meta.sourceFiles)) {
    if (now[file] !== hash) return reject(`source file ${file} changed since the graph was captured`);
  }
  let graph: Graph;
  try {
    graph = Graph.fromJSON(JSON.parse(hit.file(CAPTURE_FILE).toString('utf8')));
    graph.verify();
  } catch (e) {
    return reject(`captured graph unreadable: ${(e as Error).message}`);
  }
  if (graph.hash() !== meta.graphHash) return reject('captured graph does not hash to the recorded value');
  const constants = constantsFromModule(graph, req.module);
  if (!constants) return reject('the graph names parameters the module does not have');
  return { graph, outputTree: meta.outputTree, constants };
}

const diskFailures = new Set<string>();

/** Runs a disk cache operation for this compile (see tolerantDiskIo: a filesystem error turns the
 *  disk cache off for the compile with one warning per folder). */
function diskIo<T>(req: CompileRequest, op: (disk: DiskCache) => T, fallback: T): T {
  return tolerantDiskIo({
    get disk() { return req.disk; },
    set disk(d) { req.disk = d; },
    warned: diskFailures,
    warning: (root, message) => `inferjit cache: cannot use ${root} (${message}); continuing without the disk cache`,
  }, op, fallback);
}

/** Binds the graph's parameter constants to the module's live tensors by name. */
function constantsFromModule(graph: Graph, module: ModuleLike | null): Map<string, Tensor> | null {
  const named = new Map(namedTensors(module) ?? []);
  const out = new Map<string, Tensor>();
  for (const c of graph.constants) {
    if (c.kind !== 'param') continue;
    const t = named.get(c.name);
    if (!t || t.dtype !== c.dtype || t.rank !== c.shape.length || t.shape.some((d, i) => d !== c.shape[i])) return null;
    out.set(c.name, t);
  }
  return out;
}

/** Only graphs whose output structure survives JSON can be loaded by another process. */
function isPortable(r: CaptureResult): boolean {
  try { return canonicalJson(JSON.parse(JSON.stringify(r.outputTree ?? null))) === canonicalJson(r.outputTree ?? null); } catch { return false; }
}

/** User files that created graph nodes (from each node's recorded source location). */
function userSourceFiles(graph: Graph): string[] {
  const files = new Set<string>();
  for (const n of graph.nodes) {
    if (!n.source) continue;
    const f = fileOfFrame(n.source);
    if (f && !isInferjitSource(f)) files.add(f);
  }
  return [...files];
}

/** The pipeline on a copy of the graph, for the backend's target; verified after each pass when
 *  debugging or when INFERJIT_VERIFY_IR=1. */
function runPasses(graph: Graph, req: CompileRequest, backend: JitBackend, dump: ((name: string, g: Graph) => void) | null): Graph {
  return runPipeline(graph, listPasses(), {
    disable: req.options.passesDisabled,
    target: backend.target(),
    verify: verifyFromEnv() || req.options.debug !== null,
    ...(dump ? { dump: (name: string, g: Graph, i: number) => dump(`${String(i).padStart(2, '0')}-${name}`, g) } : {}),
  }).graph;
}

/** Writes `<debug>/<label>-<signature hash>/<step>.txt|.json` when the debug option is set. */
function debugDumper(req: CompileRequest): ((name: string, g: Graph) => void) | null {
  if (!req.options.debug) return null;
  const dir = join(req.options.debug, `${req.label.replace(/[^A-Za-z0-9_.-]+/g, '_')}-${sha256(req.signature.key).slice(0, 10)}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'signature.json'), JSON.stringify({ inputs: req.signature.inputs, args: JSON.parse(req.signature.skeleton), training: req.signature.training, device: req.signature.device, precision: req.signature.precision }, null, 2));
  return (name, g) => {
    writeFileSync(join(dir, `${name}.txt`), g.print());
    writeFileSync(join(dir, `${name}.json`), JSON.stringify(g.toJSON(), null, 1));
  };
}
