// One tracing run: calls the user's function with symbolic tensors and records every op that
// touches them (through dispatch's trace hook) as a graph node. All shapes in one run are the
// concrete example shapes; src/trace/dynamic.ts turns two runs into one graph with symbolic dims.
import { Tensor, GraphBreakError, type SymbolicInfo } from '../tensor/tensor.js';
import { formatShape } from '../tensor/shape.js';
import { dispatch, withTraceHook, withoutTraceHook, type TraceHook } from '../ops/dispatch.js';
import type { OpDef, TensorMeta } from '../ops/registry.js';
import type { AttrValues } from '../ops/attrs.js';
import { Graph, encodeNumber } from '../ir/graph.js';
import { userSourceLine } from './source.js';
import { type TreeNode, type FlatArgs, rebuildTree } from './tree.js';

/** Literals up to this many elements are deduplicated by content (scalars from `x.add(1)`). */
const DEDUP_LITERAL_MAX = 4096;

/** What a symbolic tensor's SymbolicInfo.value holds: the run and the graph value it stands for. */
class ValueHandle {
  constructor(readonly run: TraceRun, readonly id: number) {}
}

export interface TraceRunResult {
  graph: Graph;
  outputTree: TreeNode;
  /** Parameter (and buffer) name -> the module's live tensor, for the constants the graph uses. */
  constants: Map<string, Tensor>;
  /** Constant value id -> where it was first used ("softmax at model.ts:12:3"), for error messages. */
  constantUses: Map<number, string>;
}

/** The innermost run whose hook is installed (sub-graph runs nest inside their parent's). */
let activeRun: TraceRun | null = null;

/** The tracing run ops are being recorded into now, or null outside tracing. */
export function activeTraceRun(): TraceRun | null { return activeRun; }

/** The run a symbolic tensor belongs to (null for concrete tensors or foreign symbolic ones). */
export function traceRunOf(t: Tensor): TraceRun | null {
  const h = t.symbolic?.value;
  return h instanceof ValueHandle ? h.run : null;
}

/** A sub-graph traced inside a run (a cond branch, a loop condition or body); see TraceRun.traceSubgraph. */
export interface SubgraphTrace<R> {
  run: TraceRun;
  /** The symbolic stand-ins for the sub-graph's explicit inputs. */
  inputs: Tensor[];
  result: R;
}

export class TraceRun {
  readonly graph = new Graph();
  /** Shared with the parent run: sub-graphs name the same module tensors. */
  readonly constants: Map<string, Tensor>;
  readonly constantUses = new Map<number, string>();
  /** Sub-graph runs only: the outer tensors this sub-graph reads (closure captures), in the order
   *  of the graph inputs added for them after the explicit inputs. */
  readonly captures: Tensor[] = [];
  private readonly captureIds = new Map<TraceRun, Map<number, number>>();
  /** Value id -> a description of where it came from, for graph-break messages. */
  private readonly origins = new Map<number, string>();
  private readonly constantOf = new Map<Tensor, number>();
  private readonly literalByContent = new Map<string, number>();
  private literalCount = 0;

  constructor(private readonly params: ReadonlyMap<Tensor, string>, readonly parent: TraceRun | null = null) {
    this.constants = parent ? parent.constants : new Map<string, Tensor>();
  }

  /** Installs this run's hook for fn (and marks it the active run). */
  private recording<T>(fn: () => T): T {
    const prev = activeRun;
    activeRun = this;
    try { return withTraceHook(this.hook, fn); } finally { activeRun = prev; }
  }

  /** Traces `fn` into a new closed sub-graph of this run, with explicit inputs of types `inputs`
   *  (named arg0, arg1, ...). Tensors of this run (or of runs around it) that `fn` reads by closure
   *  become extra inputs of the sub-graph (see `captures`); module parameters become its own
   *  parameter constants. Outputs are added with `output()`. */
  traceSubgraph<R>(inputs: readonly TensorMeta[], fn: (args: Tensor[]) => R): SubgraphTrace<R> {
    const child = new TraceRun(this.params, this);
    const args = inputs.map((m, i) => {
      const id = child.graph.addInput(`arg${i}`, m.dtype, m.shape);
      child.origins.set(id, `argument ${i} of a traced branch or loop`);
      return child.symbolic(id, m);
    });
    const result = child.recording(() => fn(args));
    if (result instanceof Promise) throw new TypeError('trace: a branch or loop body returned a Promise; traced code must be synchronous');
    return { run: child, inputs: args, result };
  }

  /** Adds `t` as an output of this (sub-)graph; returns its value id. */
  output(t: Tensor, name: string): number {
    const id = this.valueOf(t, `the result ${name}`);
    this.graph.addOutput(name, id);
    return id;
  }

  /** Makes every sub-graph take the same capture inputs, in the order of `union` (after the explicit
   *  inputs): a control node passes one operand list to all its sub-graphs. Returns the union. */
  static unifyCaptures(runs: readonly TraceRun[]): Tensor[] {
    const union: Tensor[] = [];
    const key = (t: Tensor): string => { const h = t.symbolic!.value as ValueHandle; return `${runIndex(h.run)}:${h.id}`; };
    const seen = new Map<string, number>();
    for (const r of runs) for (const t of r.captures) if (!seen.has(key(t))) { seen.set(key(t), union.length); union.push(t); }
    for (const r of runs) {
      const explicit = r.graph.inputs.slice(0, r.graph.inputs.length - r.captures.length);
      const mine = new Map(r.captures.map((t, i) => [key(t), r.graph.inputs[explicit.length + i].value]));
      r.graph.inputs = [...explicit, ...union.map((t, k) => {
        const v = mine.get(key(t)) ?? r.graph.addValue(t.dtype, t.shape);
        return { name: `cap${k}`, value: v };
      })];
      r.captures.splice(0, r.captures.length, ...union);
    }
    return union;
  }

  /** Records a control-flow node (cond, while_loop) in this run: operands are tensors of this run,
   *  of an outer run (captured) or concrete (literals); returns its symbolic outputs. */
  emitControl(op: string, operands: readonly Tensor[], attrs: AttrValues, graphs: Record<string, Graph>, outs: readonly TensorMeta[]): Tensor[] {
    const source = userSourceLine();
    const where = `${op}${source ? ` at ${source}` : ''}`;
    const ids = operands.map((t) => this.valueOf(t, where));
    const outIds = this.graph.addNode(op, ids, attrs, outs, source);
    this.graph.nodes[this.graph.nodes.length - 1].graphs = graphs;
    return outIds.map((id, j) => {
      this.origins.set(id, `the output of ${where}`);
      return this.symbolic(id, outs[j]);
    });
  }

  /** The graph input standing for `t`, a tensor of an enclosing run, adding one on first use. */
  private capture(t: Tensor, h: ValueHandle): number {
    let m = this.captureIds.get(h.run);
    if (!m) this.captureIds.set(h.run, (m = new Map()));
    const known = m.get(h.id);
    if (known !== undefined) return known;
    const id = this.graph.addInput(`cap${this.captures.length}`, t.dtype, t.shape);
    this.origins.set(id, `a value captured from the enclosing code`);
    this.captures.push(t);
    m.set(h.id, id);
    return id;
  }

  private encloses(run: TraceRun): boolean {
    for (let r = this.parent; r; r = r.parent) if (r === run) return true;
    return false;
  }

  /** Runs `fn` on symbolic stand-ins for `args.tensors` shaped `shapes` and records its graph. */
  run(fn: (...args: any[]) => unknown, args: FlatArgs, shapes: readonly (readonly number[])[]): TraceRunResult {
    const symbolicInputs = args.tensors.map((t, i) => {
      const id = this.graph.addInput(args.names[i], t.dtype, shapes[i]);
      this.origins.set(id, `input "${args.names[i]}"`);
      return this.symbolic(id, { dtype: t.dtype, shape: shapes[i] });
    });
    const callArgs = args.trees.map((tree) => rebuildTree(tree, symbolicInputs));
    const result = this.recording(() => fn(...callArgs));
    if (result instanceof Promise) {
      throw new TypeError('trace: the traced function returned a Promise; forward must be synchronous (tensor ops never need await)');
    }
    const outputTree = this.collectOutputs(result, 'out', new Set());
    return { graph: this.graph, outputTree, constants: this.constants, constantUses: this.constantUses };
  }

  private readonly hook: TraceHook = (def: OpDef<any>, inputs: (Tensor | null)[], attrs: AttrValues, outs: TensorMeta[]): Tensor[] => {
    const involved = inputs.some((t) => t !== null && (t.isSymbolic || this.params.has(t)));
    if (!involved) return foldEagerly(def, inputs, attrs);
    const source = userSourceLine();
    const where = `${def.name}${source ? ` at ${source}` : ''}`;
    const ids = inputs.map((t) => (t === null ? null : this.valueOf(t, where)));
    for (const m of outs) {
      if (!m.shape.every((d) => typeof d === 'number')) {
        throw new Error(`trace: ${where}: shape inference gave a symbolic shape ${formatShape(m.shape)} during a concrete tracing run (internal error)`);
      }
    }
    const outIds = this.graph.addNode(def.name, ids, attrs, outs, source);
    return outIds.map((id, j) => {
      this.origins.set(id, `the output of ${where}`);
      return this.symbolic(id, outs[j]);
    });
  };

  private symbolic(id: number, meta: TensorMeta): Tensor {
    const shape = meta.shape as readonly number[];
    const info: SymbolicInfo = {
      symShape: shape,
      value: new ValueHandle(this, id),
      onDataRead: (op: string): never => {
        throw new GraphBreakError(op, userSourceLine(),
          `The tensor (${this.origins.get(id) ?? `%${id}`}) has no values while tracing; they exist only when the compiled graph runs. ` +
          `Keep the computation in tensor ops (e.g. where() instead of if/else on values), pass the value as a non-tensor argument, or use fallback: 'eager'.`);
      },
    };
    return Tensor.symbolicTensor(meta.dtype, shape, info);
  }

  /** The graph value for a tensor seen as an op input or output: its own value when symbolic, else a
   *  parameter constant (module tensors, by name) or a literal constant (anything else). */
  private valueOf(t: Tensor, usedBy: string): number {
    if (t.symbolic) {
      const h = t.symbolic.value;
      if (h instanceof ValueHandle && h.run !== this && this.encloses(h.run)) return this.capture(t, h);
      if (!(h instanceof ValueHandle) || h.run !== this) {
        throw new Error(`trace: ${usedBy}: a symbolic tensor from another tracing run was used; a traced tensor escaped (e.g. it was stored on the module or in a closure during an earlier trace)`);
      }
      return h.id;
    }
    const known = this.constantOf.get(t);
    if (known !== undefined) return known;
    let id: number;
    const name = this.params.get(t);
    if (name !== undefined) {
      id = this.graph.addConstant({ name, kind: 'param', dtype: t.dtype, shape: t.shape });
      this.constants.set(name, t);
    } else {
      const data = Array.from(t.toFlatArray());
      const key = t.size <= DEDUP_LITERAL_MAX ? `${t.dtype}${formatShape(t.shape)}${JSON.stringify(data.map(encodeNumber))}` : undefined;
      const same = key === undefined ? undefined : this.literalByContent.get(key);
      if (same !== undefined) id = same;
      else {
        id = this.graph.addConstant({ name: this.literalName(), kind: 'literal', dtype: t.dtype, shape: t.shape, data });
        if (key !== undefined) this.literalByContent.set(key, id);
      }
    }
    this.constantOf.set(t, id);
    if (!this.constantUses.has(id)) this.constantUses.set(id, usedBy);
    return id;
  }

  private literalName(): string {
    const taken = new Set(this.graph.constants.map((c) => c.name));
    let name: string;
    do name = `lit${this.literalCount++}`; while (taken.has(name));
    return name;
  }

  private collectOutputs(x: unknown, path: string, seen: Set<object>): TreeNode {
    if (x instanceof Tensor) {
      this.graph.addOutput(path, this.valueOf(x, `the result ${path}`));
      return { t: 'tensor', i: this.graph.outputs.length - 1 };
    }
    const plain = typeof x === 'object' && x !== null && (Array.isArray(x) || [Object.prototype, null].includes(Object.getPrototypeOf(x)));
    if (plain) {
      if (seen.has(x)) throw new TypeError(`trace: the result ${path} contains a reference cycle`);
      seen.add(x);
      const node: TreeNode = Array.isArray(x)
        ? { t: 'array', items: x.map((v, i) => this.collectOutputs(v, `${path}[${i}]`, seen)) }
        : { t: 'object', entries: Object.keys(x).map((k) => [k, this.collectOutputs((x as Record<string, unknown>)[k], `${path}.${k}`, seen)] as [string, TreeNode]) };
      seen.delete(x);
      return node;
    }
    if (typeof x === 'object' && x !== null && Object.values(x).some((v) => v instanceof Tensor)) {
      throw new TypeError(`trace: the result ${path} is a ${x.constructor?.name ?? 'object'} holding tensors; return tensors, arrays or plain objects`);
    }
    return { t: 'value', v: x };
  }
}

const runIds = new WeakMap<TraceRun, number>();
let nextRunId = 0;
function runIndex(r: TraceRun): number {
  let i = runIds.get(r);
  if (i === undefined) runIds.set(r, (i = nextRunId++));
  return i;
}

/** An op on plain concrete tensors (created inside the traced function, not parameters) does not
 *  depend on the inputs: compute it now, so its result becomes a literal where the graph uses it. */
function foldEagerly(def: OpDef<any>, inputs: (Tensor | null)[], attrs: AttrValues): Tensor[] {
  // Without a hook, dispatch runs the kernel (none of these inputs is symbolic).
  return withoutTraceHook(() => dispatch(def.name, inputs, attrs));
}
