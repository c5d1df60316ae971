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

export class TraceRun {
  readonly graph = new Graph();
  readonly constants = new Map<string, Tensor>();
  readonly constantUses = new Map<number, string>();
  /** Value id -> a description of where it came from, for graph-break messages. */
  private readonly origins = new Map<number, string>();
  private readonly constantOf = new Map<Tensor, number>();
  private readonly literalByContent = new Map<string, number>();
  private literalCount = 0;

  constructor(private readonly params: ReadonlyMap<Tensor, string>) {}

  /** Runs `fn` on symbolic stand-ins for `args.tensors` shaped `shapes` and records its graph. */
  run(fn: (...args: any[]) => unknown, args: FlatArgs, shapes: readonly (readonly number[])[]): TraceRunResult {
    const symbolicInputs = args.tensors.map((t, i) => {
      const id = this.graph.addInput(args.names[i], t.dtype, shapes[i]);
      this.origins.set(id, `input "${args.names[i]}"`);
      return this.symbolic(id, { dtype: t.dtype, shape: shapes[i] });
    });
    const callArgs = args.trees.map((tree) => rebuildTree(tree, symbolicInputs));
    const result = withTraceHook(this.hook, () => fn(...callArgs));
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

/** An op on plain concrete tensors (created inside the traced function, not parameters) does not
 *  depend on the inputs: compute it now, so its result becomes a literal where the graph uses it. */
function foldEagerly(def: OpDef<any>, inputs: (Tensor | null)[], attrs: AttrValues): Tensor[] {
  // Without a hook, dispatch runs the kernel (none of these inputs is symbolic).
  return withoutTraceHook(() => dispatch(def.name, inputs, attrs));
}
