// The runtime of one compiled function (a module instance's forward, a decorated method, or a
// plain function): guards each call, serves it from the in-memory cache, or compiles a new entry
// (through the disk cache) and keeps counters for stats().
// Per-call cost matters for small models, so a call whose arguments are all tensors first tries
// the fast path: input dtypes/shapes -> the entry an earlier call resolved them to, then the
// parameters' version counters and an identity check of the module's fields (guards.ts). Only when
// that fails does it take the full path: flatten the arguments, compute the signature, fingerprint
// the configuration and compare parameters by name.
import { GraphBreakError, Tensor } from '../tensor/tensor.js';
import { rebuildOutput } from '../trace/index.js';
import { DiskCache, canonicalJson, sha256 } from '../cache/disk-cache.js';
import { compile, type CompileCounters, type CompiledEntry } from './compile.js';
import { LruCache } from '../cache/lru.js';
import { getConfigGeneration, resolveOptions, type JitOptions, type ResolvedOptions } from './options.js';
import {
  checkParams, computeSignature, diffSignatures, flattenArgs, normalizeInputSpec, snapshotParams,
  type ParamSnapshot, type Signature,
} from './signature.js';
import { codeFingerprint, configFingerprint, hashFiles, inferjitVersion, namedTensors, toolchainFingerprint, type ModuleLike } from '../cache/fingerprint.js';
import { StructureSnapshot } from './guards.js';
import { SplitPlan } from './split.js';
import { DynamicDimError } from '../trace/dynamic.js';
import type { InputSpec } from '../trace/index.js';

/** What stats() reports: the compile counters (compile.ts) and the cache's own. */
export interface JitStats extends CompileCounters {
  /** Calls served (compiled, eager fallback or passed through inside an outer trace). */
  calls: number;
  /** Calls served by an existing in-memory entry. */
  hits: number;
  /** Calls that found no usable entry and compiled one. */
  misses: number;
  /** Compiles after the first, each with the guard that failed (most recent last, last 32 kept). */
  recompiles: number;
  recompileReasons: { guard: string; detail: string }[];
  /** Reduced-precision (bf16/f16) weights of the entries in memory: converted and packed in this
   *  process, and loaded as panels from the disk cache instead. */
  weightsPacked: number;
  weightsLoaded: number;
  /** Graph breaks met while capturing; with fallback 'eager' those signatures run eagerly. */
  graphBreaks: number;
  eagerCalls: number;
  /** In-memory entries now, and entries dropped by the LRU bound. */
  entries: number;
  evictions: number;
  /** Graph splitting (split.ts): calls served as compiled pieces around a read into JavaScript,
   *  compiled pieces in memory (piece 1 and each continuation), and replays (a value computed
   *  before the break turned out to be needed after it). */
  splitCalls: number;
  pieces: number;
  splitReplays: number;
  /** Input dims marked dynamic automatically after taking two sizes (autoDynamic). */
  autoDynamicDims: number;
}

/** A signature that cannot be captured whole. `split` maps the concrete input shapes to the plan
 *  that runs them as compiled pieces, or to the reason they run eagerly. */
interface EagerEntry { eager: true; signature: Signature; error: GraphBreakError; split: Map<string, SplitState | string> }
/** A split plan with the module state its compiled pieces were built from: a weight updated in
 *  place or replaced invalidates the pieces (backends pack weights when lowering). */
interface SplitState { plan: SplitPlan; params: ParamSnapshot; structure: StructureSnapshot }
interface GraphEntry { eager: false; compiled: CompiledEntry; params: ParamSnapshot; config: string; structure: StructureSnapshot }
type Entry = EagerEntry | GraphEntry;

export interface RunnerTarget {
  /** Used in cache listings, debug folders and messages: 'Model.forward', 'gelu'. */
  label: string;
  /** The original (uncompiled) function; called with `thisArg`. */
  fn: (...args: any[]) => unknown;
  thisArg: unknown;
  /** The module whose parameters the function reads (null for plain functions). */
  module: ModuleLike | null;
  method: string;
  /** Options given at the call site, already merged over class metadata; read lazily so that
   *  configure() calls after decoration still apply. */
  options: () => JitOptions;
  /** The file that applied inferenceJit (its contents are part of the disk key). */
  callerFile: string | null;
}

const MAX_REASONS = 32;
const MAX_FAST_KEYS = 1024;

export class JitRunner {
  private readonly entries: LruCache<string, Entry>;
  /** Signature of the latest call; a miss names the guard that differs from it. */
  private lastSignature: Signature | null = null;
  private readonly compiledKeys = new Set<string>();
  private resolved: { generation: number; options: ResolvedOptions } | null = null;
  /** Fast path: the input types of an all-tensor call -> the signature key and entry it resolved
   *  to (valid for the current options; cleared when they change). */
  private fast = new Map<string, { key: string; entry: Entry }>();
  private warnedBreak = false;
  private codePrint: string | null = null;
  private readonly counters: CompileCounters = { captures: 0, diskHits: 0, diskMisses: 0, artifactHits: 0, diskWrites: 0, diskRejects: [], captureMs: 0, compileMs: 0 };
  private calls = 0;
  private hits = 0;
  private misses = 0;
  private recompiles = 0;
  private readonly reasons: { guard: string; detail: string }[] = [];
  private graphBreaks = 0;
  private eagerCalls = 0;
  private evictions = 0;
  private splitCalls = 0;
  /** Automatic dynamic shapes: sizes seen per undeclared input dim ("input:axis"), the dims marked
   *  dynamic per input, and inputs whose dims could not be made dynamic (the model needs fixed sizes). */
  private readonly sizesSeen = new Map<string, Set<number>>();
  private readonly autoDims = new Map<number, Set<number>>();
  private readonly autoBlocked = new Set<number>();
  private autoDynamicDims = 0;

  constructor(private readonly target: RunnerTarget) {
    this.entries = new LruCache<string, Entry>(8, () => { this.evictions++; });
  }

  /** Runs one call through the cache. */
  call(args: unknown[]): unknown {
    const t = this.target;
    this.calls++;
    const options = this.options();
    const fastKey = tensorArgsKey(args);
    if (fastKey === SYMBOLIC) return t.fn.apply(t.thisArg, args); // part of an outer trace
    if (fastKey !== null) {
      const memo = this.fast.get(fastKey);
      // entries.get also marks the entry recently used; a different result means it was evicted.
      if (memo && this.entries.get(memo.key) === memo.entry) {
        const e = memo.entry;
        if (e.eager) {
          this.hits++;
          this.lastSignature = e.signature;
          return this.runBroken(e, args, options);
        }
        if (versionsUnchanged(e.params) && e.structure.check()) {
          this.hits++;
          this.lastSignature = e.compiled.signature;
          return this.execute(e.compiled, args as Tensor[]);
        }
      }
    }
    return this.callFull(args, options, fastKey);
  }

  /** The full path: signature, configuration fingerprint and parameter checks, compiling on a miss. */
  private callFull(args: unknown[], options: ResolvedOptions, fastKey: string | null): unknown {
    const t = this.target;
    const flat = flattenArgs(args);
    // Inside an outer trace (a compiled submodule called from a compiled model) the call is
    // simply part of the outer graph.
    if (flat.tensors.some((x) => x.isSymbolic)) return t.fn.apply(t.thisArg, args);

    this.entries.capacity = options.maxEntries;
    const where = `inferenceJit(${t.label})`;
    const spec = normalizeInputSpec(this.effectiveInputSpec(options, flat.tensors), flat.tensors, where);
    const training = typeof t.module?.training === 'boolean' ? t.module.training : null;
    const signature = computeSignature(flat, spec, { training, device: options.device, precision: options.precision }, where);

    let reason: { guard: string; detail: string } | null = null;
    let reuse: { graph: CompiledEntry['capture']['graph']; outputTree: unknown } | undefined;
    const entry = this.entries.get(signature.key);
    if (entry) this.lastSignature = signature;
    if (entry?.eager) {
      this.hits++;
      if (fastKey !== null) this.remember(fastKey, { key: signature.key, entry });
      return this.runBroken(entry, args, options);
    }
    const config = configFingerprint(t.module);
    if (entry) {
      const changed = checkParams(entry.params, namedTensors(t.module));
      if (!changed && entry.config === config) {
        this.hits++;
        // Nothing the guards read changed in value (e.g. a field set to an equal value): take the
        // identity snapshot again so the next call is fast.
        if (!entry.structure.check()) entry.structure = this.structure();
        if (fastKey !== null) this.remember(fastKey, { key: signature.key, entry });
        return this.execute(entry.compiled, flat.tensors);
      }
      if (changed) {
        reason = { guard: changed.guard, detail: changed.detail };
        // Same code and signature, new weights: reuse the captured graph unless shapes changed.
        if (!changed.structural && entry.config === config) reuse = { graph: entry.compiled.capture.graph, outputTree: entry.compiled.capture.outputTree };
      } else {
        reason = { guard: 'module config', detail: `a module field changed since compiling (${firstDifference(entry.config, config)})` };
      }
      this.entries.delete(signature.key);
    } else if (this.compiledKeys.has(signature.key)) {
      reason = { guard: 'evicted', detail: `this signature was compiled before and evicted from the in-memory cache (maxEntries ${options.maxEntries})` };
    } else if (this.lastSignature) {
      reason = diffSignatures(this.lastSignature, signature);
    }
    this.misses++;
    if (reason) {
      this.recompiles++;
      this.reasons.push(reason);
      if (this.reasons.length > MAX_REASONS) this.reasons.shift();
    }
    const previous = this.lastSignature;
    this.lastSignature = signature;
    if (this.compiledKeys.size >= 4096) this.compiledKeys.clear();
    this.compiledKeys.add(signature.key);

    let compiled: CompiledEntry;
    try {
      compiled = compile({
        label: t.label,
        fn: (...a: unknown[]) => t.fn.apply(t.thisArg, a),
        args,
        module: t.module,
        options,
        spec,
        signature,
        captureKey: options.cache === 'disk' && flat.portable ? this.captureKey(signature, options, config) : null,
        disk: options.cache === 'disk' ? new DiskCache(options.cacheDir, { maxBytes: options.cacheMaxBytes }) : null,
        counters: this.counters,
        reuse,
      });
    } catch (e) {
      if (e instanceof DynamicDimError && this.autoDims.size > 0 && !options.inputSpec) {
        // A dim marked dynamic automatically cannot be (e.g. a fixed-length position table): keep
        // those inputs static from now on and compile this call as before.
        for (const i of this.autoDims.keys()) this.autoBlocked.add(i);
        this.autoDims.clear();
        this.entries.delete(signature.key);
        // The retry is the same call's miss: undo this attempt's counting.
        this.misses--;
        if (reason) { this.recompiles--; this.reasons.pop(); }
        this.lastSignature = previous;
        return this.callFull(args, options, fastKey);
      }
      if (!(e instanceof GraphBreakError)) throw e;
      this.graphBreaks++;
      if (options.fallback === 'error') throw e;
      if (!this.warnedBreak) {
        this.warnedBreak = true;
        process.emitWarning(`${where}: ${e.message} ${options.splitGraphs ? 'Running this signature as compiled pieces around the read (splitGraphs), eagerly where it cannot be split' : 'Running this signature eagerly'} (fallback: 'eager'); set fallback: 'error' to make this an error.`, { type: 'InferjitWarning', code: 'INFERJIT_GRAPH_BREAK' });
      }
      const eager: EagerEntry = { eager: true, signature, error: e, split: new Map() };
      this.entries.set(signature.key, eager);
      if (fastKey !== null) this.remember(fastKey, { key: signature.key, entry: eager });
      return this.runBroken(eager, args, options);
    }
    const params = snapshotParams(namedTensors(t.module) ?? compiled.capture.constants);
    const created: GraphEntry = { eager: false, compiled, params, config, structure: this.structure() };
    this.entries.set(signature.key, created);
    if (fastKey !== null) this.remember(fastKey, { key: signature.key, entry: created });
    return this.execute(compiled, flat.tensors);
  }

  /** Serves a call of a signature with a graph break: as compiled pieces around the read when it
   *  can be split (split.ts), else eagerly. */
  private runBroken(entry: EagerEntry, args: unknown[], options: ResolvedOptions): unknown {
    const t = this.target;
    if (options.splitGraphs) {
      const shapes = flattenArgs(args).tensors.map((x) => `${x.dtype}[${x.shape.join(',')}]`).join(';');
      let state = entry.split.get(shapes);
      if (state !== undefined && typeof state !== 'string' && !(versionsUnchanged(state.params) && state.structure.check())) {
        if (checkParams(state.params, namedTensors(t.module))) state = undefined; // weights changed: probe and compile again
        else state.structure = this.structure();
      }
      if (state === undefined) {
        const plan = SplitPlan.probe((...a) => t.fn.apply(t.thisArg, a), args, this.paramNames(), (capture, label) => this.compilePiece(capture, label, options), t.label);
        state = typeof plan === 'string' ? plan : { plan, params: snapshotParams(namedTensors(t.module) ?? []), structure: this.structure() };
        if (entry.split.size >= 64) entry.split.clear();
        entry.split.set(shapes, state);
      }
      if (typeof state !== 'string') {
        const out = state.plan.run((...a) => t.fn.apply(t.thisArg, a), args);
        if (out.ok) { this.splitCalls++; return out.value; }
        if (out.permanent) entry.split.set(shapes, out.reason);
      }
    }
    this.eagerCalls++;
    return t.fn.apply(t.thisArg, args);
  }

  /** Module tensors (parameters, then buffers) by identity, named as the tracer names them. */
  private paramNames(): Map<Tensor, string> {
    const out = new Map<Tensor, string>();
    const m = this.target.module as { namedParameters?(): Iterable<[string, Tensor]>; namedBuffers?(): Iterable<[string, Tensor]> } | null;
    for (const src of [m?.namedParameters?.(), m?.namedBuffers?.()]) {
      if (src) for (const [name, x] of src) if (!out.has(x)) out.set(x, name);
    }
    return out;
  }

  /** Compiles one piece of a split call: the usual pipeline on a graph built by split.ts. */
  private compilePiece(capture: CompiledEntry['capture'], label: string, options: ResolvedOptions): CompiledEntry {
    const g = capture.graph;
    const inputs = g.inputs.map((i) => { const v = g.value(i.value); return { dtype: v.dtype, shape: [...v.shape] as (number | string)[], device: 'cpu' }; });
    const training = typeof this.target.module?.training === 'boolean' ? this.target.module.training : null;
    const signature: Signature = { key: `piece:${g.hash()}`, inputs, skeleton: '[]', training, device: options.device, precision: options.precision };
    return compile({
      label, fn: () => { throw new Error('split pieces are not traced'); }, args: [], module: this.target.module, options, spec: inputs.map(() => null), signature,
      captureKey: null, disk: options.cache === 'disk' ? new DiskCache(options.cacheDir, { maxBytes: options.cacheMaxBytes }) : null,
      counters: this.counters, capture,
    });
  }

  /** options.inputSpec, or (autoDynamic, no inputSpec given) a spec marking the dims that took
   *  two sizes dynamic. Sizes are recorded here for every call that takes the full path. */
  private effectiveInputSpec(options: ResolvedOptions, tensors: readonly Tensor[]): (InputSpec | null)[] | null {
    if (options.inputSpec || !options.autoDynamic) return options.inputSpec;
    tensors.forEach((x, i) => {
      if (this.autoBlocked.has(i)) return;
      x.shape.forEach((d, k) => {
        const key = `${i}:${k}:${x.rank}`;
        let seen = this.sizesSeen.get(key);
        if (!seen) this.sizesSeen.set(key, (seen = new Set()));
        if (seen.has(d) || seen.size >= 2) return;
        seen.add(d);
        if (seen.size < 2 || d < 1 || [...seen].some((v) => v < 1)) return;
        let dims = this.autoDims.get(i);
        if (!dims) this.autoDims.set(i, (dims = new Set()));
        dims.add(k);
        this.autoDynamicDims++;
        process.emitWarning(`inferenceJit(${this.target.label}): input ${i} dim ${k} took sizes ${[...seen].join(' and ')}; marking it dynamic (automatic dynamic shapes) so that new sizes reuse one compiled graph instead of recompiling. Declare it in inputSpec to choose yourself, or set autoDynamic: false.`, { type: 'InferjitWarning', code: 'INFERJIT_AUTO_DYNAMIC' });
      });
    });
    if (this.autoDims.size === 0) return null;
    return tensors.map((x, i) => {
      const dims = this.autoDims.get(i);
      return dims ? { shape: x.shape.map((d, k) => (dims.has(k) ? -1 : d)) } : null;
    });
  }

  /** Records which entry an all-tensor call's input types resolve to. Dynamic dims make one entry
   *  serve many concrete shapes, so the map is bounded (cleared when full; it refills on use). */
  private remember(fastKey: string, value: { key: string; entry: Entry }): void {
    if (this.fast.size >= MAX_FAST_KEYS) this.fast.clear();
    this.fast.set(fastKey, value);
  }

  /** The identity snapshot of the module tree's fields (see guards.ts). */
  private structure(): StructureSnapshot {
    const m = this.target.module;
    if (!m) return new StructureSnapshot([]);
    return new StructureSnapshot(typeof m.namedModules === 'function' ? [...m.namedModules()].map(([, x]) => x) : [m]);
  }

  stats(): JitStats {
    const c = this.counters;
    let weightsPacked = 0, weightsLoaded = 0;
    for (const e of this.compiledEntries()) {
      const w = e.executable.weightStats?.();
      if (w) { weightsPacked += w.packed; weightsLoaded += w.loaded; }
    }
    return {
      calls: this.calls, hits: this.hits, misses: this.misses, recompiles: this.recompiles, recompileReasons: [...this.reasons],
      captures: c.captures, diskHits: c.diskHits, diskMisses: c.diskMisses, artifactHits: c.artifactHits, diskWrites: c.diskWrites,
      diskRejects: [...c.diskRejects], weightsPacked, weightsLoaded, graphBreaks: this.graphBreaks, eagerCalls: this.eagerCalls,
      entries: this.entries.size, evictions: this.evictions,
      splitCalls: this.splitCalls, pieces: this.splitPlans().reduce((n, p) => n + p.pieces, 0),
      splitReplays: this.splitPlans().reduce((n, p) => n + p.replays, 0), autoDynamicDims: this.autoDynamicDims,
      captureMs: round(c.captureMs), compileMs: round(c.compileMs),
    };
  }

  /** One header line, then one line per signature in memory (most recently used first): its
   *  inputs and how it runs (the backend's own description: native plan or interpreter, and why). */
  describe(): string {
    const t = this.target;
    const o = this.resolved?.options ?? this.options();
    const list = [...this.entries.values()];
    const head = `${t.label}: ${list.length === 0 ? 'nothing compiled yet (compiles on the first call)' : `${list.length} signature${list.length === 1 ? '' : 's'} in memory`} (device ${o.device}, precision ${o.precision}, cache ${o.cache})`;
    const lines = list.map((e) => {
      const sig = e.eager ? e.signature : e.compiled.signature;
      const inputs = sig.inputs.map((i) => `${i.dtype}[${i.shape.join(',')}]`).join(', ') || '(no tensor inputs)';
      if (e.eager) {
        const plans = [...e.split.values()];
        const split = plans.map((p) => `\n    ${typeof p === 'string' ? `eager: ${p}` : p.plan.describe()}`).join('');
        return `  ${inputs} -> ${plans.some((p) => typeof p !== 'string') ? 'split' : 'eager'} (graph break: ${e.error.message.split('\n')[0]})${split}`;
      }
      const exe = e.compiled.executable;
      return `  ${inputs} -> ${exe.describe?.() ?? `${exe.backend} backend`} (${e.compiled.optimized.nodes.length} nodes after passes)`;
    });
    return [head, ...lines].join('\n');
  }

  /** Drops every in-memory entry (the disk cache is untouched). */
  clear(): void {
    this.entries.clear();
    this.fast.clear();
    this.lastSignature = null;
    this.compiledKeys.clear();
  }

  /** The graphs compiled so far, most recently used first (for inspection and tests); the pieces
   *  of split calls are not among them (see splitPlans). */
  compiledEntries(): CompiledEntry[] {
    return [...this.entries.values()].filter((e): e is GraphEntry => !e.eager).map((e) => e.compiled);
  }

  /** The split plans of the signatures with a graph break (split.ts). */
  splitPlans(): SplitPlan[] {
    const out: SplitPlan[] = [];
    for (const e of this.entries.values()) if (e.eager) for (const p of e.split.values()) if (typeof p !== 'string') out.push(p.plan);
    return out;
  }

  private execute(entry: CompiledEntry, inputs: Tensor[]): unknown {
    return rebuildOutput(entry.capture.outputTree, entry.executable.run(inputs));
  }

  private options(): ResolvedOptions {
    const gen = getConfigGeneration();
    if (!this.resolved || this.resolved.generation !== gen) {
      this.resolved = { generation: gen, options: resolveOptions(this.target.options()) };
      this.fast.clear(); // device, precision or input spec may differ now
    }
    return this.resolved.options;
  }

  /** The disk key of the captured graph, computable before tracing (see fingerprint.ts). */
  private captureKey(signature: Signature, options: ResolvedOptions, config: string): string {
    const t = this.target;
    this.codePrint ??= codeFingerprint({ module: t.module, fn: t.fn, method: t.method });
    return sha256(canonicalJson({
      entry: 'capture',
      inferjit: inferjitVersion(),
      toolchain: toolchainFingerprint(),
      code: this.codePrint,
      config,
      caller: t.callerFile ? hashFiles([t.callerFile]) : null,
      signature: signature.key,
      inputSpec: options.inputSpec,
      passesDisabled: options.passesDisabled,
    }));
  }
}

const SYMBOLIC = '\u0000symbolic';

/** The fast-path key of a call whose arguments are all tensors: their dtypes, devices and shapes
 *  (what the signature reads from them); SYMBOLIC inside an outer trace; null for any other
 *  argument structure (those take the full path). */
function tensorArgsKey(args: readonly unknown[]): string | null {
  let key = '';
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!(a instanceof Tensor)) return null;
    if (a.isSymbolic) return SYMBOLIC;
    key += `${a.dtype}@${a.device}[${a.shape.join(',')}]`;
  }
  return key;
}

/** Whether every parameter the entry saw is still at the version it saw (in-place updates). */
function versionsUnchanged(params: ParamSnapshot): boolean {
  for (let i = 0; i < params.length; i++) if (params[i].tensor.version !== params[i].version) return false;
  return true;
}

/** A short excerpt around the first differing character of two fingerprints. */
function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `at …${b.slice(Math.max(0, i - 40), i + 40)}…`;
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
