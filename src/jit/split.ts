// Graph splitting: a signature whose forward reads a traced value into JavaScript (item(),
// toArray(), a comparison) runs as two compiled pieces around the read instead of fully eagerly
// (torch.compile's graph-break design, adapted to JavaScript).
//
// Why not "resume after the break": a JS function cannot be resumed in the middle, so every call
// runs forward from the start. What we skip is the COMPUTATION, not the JavaScript:
//   1. Probe (once): forward runs under a recording hook whose op results are symbolic; the first
//      data read of a recorded value stops it. The ops recorded so far are the prefix: piece 1.
//   2. Each call: piece 1 runs compiled on the inputs first, producing its "live" values (the value
//      read, and the ones the code after the break uses). Then forward runs under the replay hook:
//      - op i < prefix length: its key (op, attrs, where each input comes from, literal contents)
//        must equal the probe's op i, else the call runs eagerly (a guard: the prefix is only valid
//        for the same op sequence). It returns piece 1's concrete result for a live value, or a
//        placeholder for a dead one. The read at the break reads a concrete tensor, so the JS
//        decision (the branch taken, the number computed) is this call's own.
//      - later ops are recorded symbolically into the continuation graph, whose inputs are the
//        call's inputs and piece 1's live values. While recording, each event (an input with its
//        type, a constant with its name or literal contents, a node with its op, attrs and input
//        ids, the outputs) appends one line to a key that describes the graph exactly; the key
//        selects (or compiles) piece 2, so a different branch, or a read value folded into the
//        graph, gets its own piece. No graph is verified or hashed on a hit, and source lines
//        (a stack capture per op) are taken only for ops no known continuation shares: the ones
//        it does share take that continuation's recorded lines.
//      - forward's return value is rebuilt with piece 2's results; JS values in it are this call's.
//   The guards make this sound: piece 1 computes exactly the ops the JS issued before the break
//   (checked op by op), and piece 2 is exactly the graph this call traced after it.
//   A placeholder that turns out to be needed (read, used after the break, or returned; e.g. the
//   other branch uses another value) adds its value to the live set: piece 1 is recompiled and the
//   call replays (at most MAX_REPLAYS times, then eagerly). A second read of a traced value after
//   the break is not split further: the signature then runs eagerly (as without splitting).
import { Tensor, type SymbolicInfo } from '../tensor/tensor.js';
import { withTraceHook, withoutTraceHook, dispatch, type TraceHook } from '../ops/dispatch.js';
import type { OpDef, TensorMeta } from '../ops/registry.js';
import type { AttrValues } from '../ops/attrs.js';
import { Graph } from '../ir/graph.js';
import { userSourceLine } from '../trace/source.js';
import { flattenArgs, rebuildTree } from '../trace/tree.js';
import type { CompiledEntry, CaptureResult } from './compile.js';
import { LruCache } from '../cache/lru.js';

const MAX_REPLAYS = 4;
/** Literals in the prefix are compared by content; larger ones make a signature unsplittable. */
const MAX_GUARDED_LITERAL = 4096;
const MAX_CONTINUATIONS = 8;

/** Internal control flow of the replay (never escapes this file's callers). */
class SplitStop extends Error {
  constructor(readonly kind: 'read' | 'dead' | 'mismatch' | 'second-break' | 'unsplittable', readonly value: number, readonly detail: string) { super(detail); }
}

export interface PieceCompiler {
  /** Compiles a graph built here into an entry (runtime.ts: the usual pipeline, no tracing). */
  (capture: CaptureResult, label: string): CompiledEntry;
}

export type SplitOutcome = { ok: true; value: unknown } | { ok: false; permanent: boolean; reason: string };

/** Where an op input comes from, as the prefix guard sees it. */
function literalKey(t: Tensor): string {
  if (t.size > MAX_GUARDED_LITERAL) throw new SplitStop('unsplittable', -1, `a literal tensor of ${t.size} elements is used before the break (over ${MAX_GUARDED_LITERAL}, too large to guard)`);
  return `lit:${t.dtype}[${t.shape.join(',')}]${JSON.stringify(Array.from(t.toFlatArray()), exactNumber)}`;
}

/** JSON spells NaN, ±Infinity as null and -0 as 0; keys must tell them apart (x.mul(-0), clamp to Infinity). */
function exactNumber(_k: string, v: unknown): unknown {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0))) return `#${Object.is(v, -0) ? '-0' : v}`;
  return v;
}

function attrsKey(attrs: AttrValues): string {
  return JSON.stringify(attrs, exactNumber);
}

function placeholder(dtype: TensorMeta['dtype'], shape: readonly number[], onRead: (op: string) => never): Tensor {
  const info: SymbolicInfo = { symShape: shape, value: null, onDataRead: onRead };
  return Tensor.symbolicTensor(dtype, shape, info);
}

/** Adds a tensor that is not a recorded value to a graph: a parameter constant or a literal. */
function constantOf(graph: Graph, t: Tensor, params: ReadonlyMap<Tensor, string>, constants: Map<string, Tensor>, cache: Map<Tensor, number>): number {
  const known = cache.get(t);
  if (known !== undefined) return known;
  const name = params.get(t);
  let id: number;
  if (name !== undefined) {
    id = graph.addConstant({ name, kind: 'param', dtype: t.dtype, shape: t.shape });
    constants.set(name, t);
  } else {
    id = graph.addConstant({ name: `lit${cache.size}`, kind: 'literal', dtype: t.dtype, shape: t.shape, data: Array.from(t.toFlatArray()) });
  }
  cache.set(t, id);
  return id;
}

const fold = (def: OpDef<any>, inputs: (Tensor | null)[], attrs: AttrValues): Tensor[] => withoutTraceHook(() => dispatch(def.name, inputs, attrs));

/** A compiled piece 2, with the key lines and node source lines of the graph it was compiled from. */
interface Continuation { compiled: CompiledEntry; lines: string[]; sources: (string | undefined)[] }

export class SplitPlan {
  /** The prefix graph: every op before the break, all outputs recorded (live ones become outputs of piece 1). */
  private readonly prefix: Graph;
  private readonly keys: string[];
  private readonly outIds: number[][];
  private readonly live = new Set<number>();
  /** compiled is null when every live value is an input (the break reads an input). */
  private piece1: { compiled: CompiledEntry | null; order: number[] } | null = null;
  private readonly continuations = new LruCache<string, Continuation>(MAX_CONTINUATIONS);
  readonly breakAt: string;
  /** Counters for stats(). */
  piece1Compiles = 0;
  piece2Compiles = 0;
  replays = 0;

  private constructor(prefix: Graph, keys: string[], outIds: number[][], readValue: number, breakAt: string,
    private readonly params: ReadonlyMap<Tensor, string>, private readonly constants: Map<string, Tensor>, private readonly compilePiece: PieceCompiler, private readonly label: string) {
    this.prefix = prefix; this.keys = keys; this.outIds = outIds; this.breakAt = breakAt;
    this.live.add(readValue);
    // Values no prefix op consumes are likely used after the break (the latest activations): start with them live.
    const used = new Set<number>();
    for (const n of prefix.nodes) for (const i of n.inputs) if (i !== null) used.add(i);
    for (const outs of outIds) for (const o of outs) if (!used.has(o)) this.live.add(o);
  }

  /** Runs forward under the probe hook; returns a plan, or null with the reason it cannot split. */
  static probe(fn: (...a: unknown[]) => unknown, args: unknown[], params: ReadonlyMap<Tensor, string>, compilePiece: PieceCompiler, label: string): SplitPlan | string {
    const flat = flattenArgs(args);
    const graph = new Graph();
    const ids = new Map<Tensor, number>();
    let stop: SplitStop | null = null;
    const readStop = (id: number) => (op: string): never => {
      const s = userSourceLine();
      stop = new SplitStop('read', id, `${op}${s ? ` at ${s}` : ''}`);
      throw stop;
    };
    // The inputs are placeholders too, so that reading one is a break (as in the whole-graph trace).
    const stand = new Map<Tensor, Tensor>();
    const standIns = flat.tensors.map((t, i) => {
      const known = stand.get(t);
      if (known) return known;
      const id = graph.addInput(`in${i}`, t.dtype, t.shape);
      const p = placeholder(t.dtype, t.shape, readStop(id));
      ids.set(p, id);
      stand.set(t, p);
      return p;
    });
    const probeArgs = flat.trees.map((tree) => rebuildTree(tree, standIns));
    const constants = new Map<string, Tensor>();
    const constCache = new Map<Tensor, number>();
    const keys: string[] = [];
    const outIds: number[][] = [];
    const hook: TraceHook = (def, inputs, attrs, outs) => {
      if (!inputs.some((t) => t !== null && (ids.has(t) || params.has(t)))) return fold(def, inputs, attrs);
      const inIds = inputs.map((t) => (t === null ? null : ids.get(t) ?? constantOf(graph, t, params, constants, constCache)));
      keys.push(opKey(def, attrs, inputs, (t) => ids.get(t), params));
      const source = userSourceLine();
      const o = graph.addNode(def.name, inIds, attrs, outs, source);
      outIds.push(o);
      return o.map((id, j) => {
        const t = placeholder(outs[j].dtype, outs[j].shape as number[], readStop(id));
        ids.set(t, id);
        return t;
      });
    };
    try {
      withTraceHook(hook, () => fn(...probeArgs));
    } catch (e) {
      if (e instanceof SplitStop && e.kind === 'unsplittable') return e.detail;
      if (e !== stop || stop === null) {
        if (e instanceof SplitStop) return e.detail;
        return `forward failed while probing for the break (${(e as Error).message})`;
      }
      const s = stop as SplitStop;
      return new SplitPlan(graph, keys, outIds, s.value, s.detail, params, constants, compilePiece, label);
    }
    return 'forward read no traced value under the split probe (the break comes from elsewhere)';
  }

  /** The number of compiled pieces in memory (piece 1 and each continuation). */
  get pieces(): number { return (this.piece1?.compiled ? 1 : 0) + this.continuations.size; }

  describe(): string {
    const p1 = this.piece1?.compiled ? `${this.piece1.compiled.optimized.nodes.length} nodes, ${this.piece1.compiled.executable.describe?.() ?? this.piece1.compiled.executable.backend}` : 'not compiled';
    const conts = [...this.continuations.values()].map((c) => `${c.compiled.optimized.nodes.length} nodes, ${c.compiled.executable.describe?.() ?? c.compiled.executable.backend}`);
    return `split at ${this.breakAt}: piece 1 (${this.keys.length} ops before the break; ${p1}) -> eager read -> piece 2 (${conts.length} continuation${conts.length === 1 ? '' : 's'}${conts.length ? `: ${conts.join('; ')}` : ''})`;
  }

  compiledEntries(): CompiledEntry[] {
    return [...(this.piece1?.compiled ? [this.piece1.compiled] : []), ...[...this.continuations.values()].map((c) => c.compiled)];
  }

  private ensurePiece1(): { compiled: CompiledEntry | null; order: number[] } {
    if (this.piece1) return this.piece1;
    const inputIds = new Set(this.prefix.inputs.map((i) => i.value));
    const order = [...this.live].filter((v) => !inputIds.has(v)).sort((a, b) => a - b);
    if (order.length === 0) return (this.piece1 = { compiled: null, order });
    const g = Graph.fromJSON(this.prefix.toJSON());
    order.forEach((v, k) => g.addOutput(`live${k}`, v));
    g.verify();
    const constants = new Map<string, Tensor>();
    for (const c of g.constants) if (c.kind === 'param') constants.set(c.name, this.constants.get(c.name)!);
    this.piece1 = { compiled: this.compilePiece({ graph: g, outputTree: null, constants }, `${this.label}#piece1`), order };
    this.piece1Compiles++;
    return this.piece1;
  }

  /** Serves one call; ok: false means run it eagerly (permanent: for every later call too). */
  run(fn: (...a: unknown[]) => unknown, args: unknown[]): SplitOutcome {
    for (let attempt = 0; attempt < MAX_REPLAYS; attempt++) {
      try {
        return { ok: true, value: this.replay(fn, args) };
      } catch (e) {
        if (!(e instanceof SplitStop)) throw e;
        if (e.kind === 'dead') { this.live.add(e.value); this.piece1 = null; this.replays++; continue; }
        return { ok: false, permanent: e.kind === 'second-break' || e.kind === 'unsplittable', reason: e.detail };
      }
    }
    return { ok: false, permanent: false, reason: `the live values after the break kept changing (${MAX_REPLAYS} replays)` };
  }

  private replay(fn: (...a: unknown[]) => unknown, args: unknown[]): unknown {
    const flat = flattenArgs(args);
    const p1 = this.ensurePiece1();
    const results = p1.compiled ? p1.compiled.executable.run(flat.tensors) : [];
    const liveTensor = new Map<number, Tensor>();
    p1.order.forEach((v, k) => liveTensor.set(v, results[k]));
    const preIds = new Map<Tensor, number>(); // tensors with a prefix value id: inputs, live results, placeholders
    const placeholders = new Set<Tensor>();
    flat.tensors.forEach((t, i) => { if (!preIds.has(t)) preIds.set(t, this.prefix.inputs[i].value); });
    // The continuation graph.
    const g = new Graph();
    const postIds = new Map<Tensor, number>();
    const postInputs: Tensor[] = [];
    const constants = new Map<string, Tensor>();
    const constCache = new Map<Tensor, number>();
    const params = this.params;
    // The continuation's key, one line per recording event, and the known continuations that share
    // every line so far (their source lines stand in for a stack capture).
    const lines: string[] = [];
    let keyable = true;
    let candidates = this.continuations.values();
    const line = (l: string): void => {
      const j = lines.length;
      lines.push(l);
      if (candidates.length) candidates = candidates.filter((c) => c.lines[j] === l);
    };
    let index = 0;
    const n = this.keys.length;
    const dead = (t: Tensor, what: string): never => { throw new SplitStop('dead', preIds.get(t)!, `a value computed before the break is ${what}`); };
    const postValueOf = (t: Tensor): number => {
      const known = postIds.get(t);
      if (known !== undefined) return known;
      if (placeholders.has(t)) dead(t, 'used after it');
      if (preIds.has(t)) {
        const id = g.addInput(`in${postInputs.length}`, t.dtype, t.shape);
        postInputs.push(t);
        postIds.set(t, id);
        line(`in %${id} ${t.dtype}[${t.shape.join(',')}]`);
        return id;
      }
      const seen = constCache.get(t);
      if (seen !== undefined) return seen;
      const id = constantOf(g, t, params, constants, constCache);
      const name = params.get(t);
      if (name !== undefined) line(`param %${id} ${name} ${t.dtype}[${t.shape.join(',')}]`);
      else if (t.size <= MAX_GUARDED_LITERAL) line(`lit %${id} ${literalKey(t)}`);
      else { keyable = false; line(`lit %${id} (large)`); }
      return id;
    };
    const hook: TraceHook = (def, inputs, attrs, outs) => {
      if (index < n) {
        if (!inputs.some((t) => t !== null && (preIds.has(t) || params.has(t)))) return fold(def, inputs, attrs);
        const key = opKey(def, attrs, inputs, (t) => preIds.get(t), params);
        if (key !== this.keys[index]) throw new SplitStop('mismatch', -1, `op ${index} before the break differs from the recorded one (${def.name}); the code before the break took another path`);
        const ids = this.outIds[index++];
        return ids.map((id, j) => {
          const live = liveTensor.get(id);
          const t: Tensor = live ?? placeholder(outs[j].dtype, outs[j].shape as number[], (): never => dead(t, 'read'));
          if (!live) placeholders.add(t);
          preIds.set(t, id);
          return t;
        });
      }
      if (!inputs.some((t) => t !== null && (preIds.has(t) || postIds.has(t) || params.has(t)))) return fold(def, inputs, attrs);
      const inIds = inputs.map((t) => (t === null ? null : postValueOf(t)));
      const nodeIndex = g.nodes.length;
      const first = g.values.size;
      line(`${def.name} ${attrsKey(attrs)} ${inIds.map((v) => (v === null ? '_' : `%${v}`)).join(',')} -> %${first}`);
      const o = g.addNode(def.name, inIds, attrs, outs, candidates.length ? candidates[0].sources[nodeIndex] : userSourceLine());
      return o.map((id, j) => {
        const t = placeholder(outs[j].dtype, outs[j].shape as number[], (op) => {
          throw new SplitStop('second-break', id, `${op}${(() => { const s = userSourceLine(); return s ? ` at ${s}` : ''; })()} reads a value computed after the first break (only one break per call is split)`);
        });
        postIds.set(t, id);
        return t;
      });
    };
    const result = withTraceHook(hook, () => fn(...args));
    const out = flattenArgs([result]);
    const finals = out.tensors.map((t) => (placeholders.has(t) ? dead(t, 'returned') : t));
    const symbolic = finals.filter((t) => postIds.has(t));
    if (symbolic.length === 0) return rebuildTree(out.trees[0], finals);
    const outIndex = new Map<Tensor, number>();
    for (const t of symbolic) if (!outIndex.has(t)) { outIndex.set(t, outIndex.size); g.addOutput(`out${outIndex.size - 1}`, postIds.get(t)!); }
    line(`out ${g.outputs.map((o) => `%${o.value}`).join(',')}`);
    // A large literal is not spelled out in the key: such a call keys its graph by hash instead.
    const key = keyable ? lines.join('\n') : `hash ${(g.verify(), g.hash())}`;
    let cont = this.continuations.get(key);
    if (!cont) {
      g.verify();
      cont = { compiled: this.compilePiece({ graph: g, outputTree: null, constants }, `${this.label}#piece2`), lines, sources: g.nodes.map((n) => n.source) };
      this.continuations.set(key, cont);
      this.piece2Compiles++;
    }
    const values = cont.compiled.executable.run(postInputs);
    return rebuildTree(out.trees[0], finals.map((t) => { const k = outIndex.get(t); return k === undefined ? t : values[k]; }));
  }
}

function opKey(def: OpDef<any>, attrs: AttrValues, inputs: (Tensor | null)[], idOf: (t: Tensor) => number | undefined, params: ReadonlyMap<Tensor, string>): string {
  const parts = inputs.map((t) => {
    if (t === null) return '_';
    const id = idOf(t);
    if (id !== undefined) return `v${id}`;
    const p = params.get(t);
    return p !== undefined ? `p:${p}` : literalKey(t);
  });
  return `${def.name}|${attrsKey(attrs)}|${parts.join(',')}`;
}
