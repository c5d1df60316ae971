// Graph-surgery helpers every pass shares: emitting a node with inferred output types, keeping node
// order topological after rewrites, use counts, adding literals, and deciding which values are
// compile-time constants. Passes call these instead of editing Graph internals by hand.
import { Graph, type Node } from '../ir/graph.js';
import { getOp } from '../ops/registry.js';
import { normalizeAttrs } from '../ops/attrs.js';
import type { DType } from '../tensor/dtype.js';

/** Appends a node for `op` whose output metadata comes from the op's own shape inference (so a
 *  rewrite cannot record a wrong type); returns its output value ids. Call sortTopologically()
 *  (or let the rule driver do it) before reading node order again. */
export function emit(graph: Graph, op: string, inputs: readonly (number | null)[], attrs: Record<string, unknown> = {}, source?: string): number[] {
  const def = getOp(op);
  const a = normalizeAttrs(def.name, def.attrs, attrs);
  const metas = def.infer(inputs.map((v) => (v === null ? null : graph.meta(v))), a);
  return graph.addNode(op, inputs, a, metas, source);
}

export const emit1 = (graph: Graph, op: string, inputs: readonly (number | null)[], attrs: Record<string, unknown> = {}, source?: string): number =>
  emit(graph, op, inputs, attrs, source)[0];

/** Reorders nodes so every value is defined before use, keeping the existing order wherever it is
 *  already valid (a node moves only as far up as one of its users needs). Stable, so printing and
 *  hashing stay deterministic. Throws on a cycle, which no rewrite may create. */
export function sortTopologically(graph: Graph): void {
  const producer = graph.producers();
  const state = new Map<Node, 1 | 2>(); // 1 = on the stack, 2 = placed
  const order: Node[] = [];
  const visit = (node: Node): void => {
    const s = state.get(node);
    if (s === 2) return;
    if (s === 1) throw new Error(`sortTopologically: the graph has a cycle through ${node.op}`);
    state.set(node, 1);
    for (const v of node.inputs) {
      const p = v === null ? undefined : producer.get(v);
      if (p) visit(p);
    }
    state.set(node, 2);
    order.push(node);
  };
  for (const n of graph.nodes) visit(n);
  graph.nodes = order;
}

/** Removes nodes none of whose outputs are used (transitively), and unused constants and values.
 *  Every op is pure, so a node without observers can always go. Returns the number removed. */
export function removeDeadNodes(graph: Graph): number {
  const live = new Set<number>(graph.outputs.map((o) => o.value));
  const keep: Node[] = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i];
    if (n.outputs.some((v) => live.has(v))) {
      keep.push(n);
      for (const v of n.inputs) if (v !== null) live.add(v);
    }
  }
  const removed = graph.nodes.length - keep.length;
  graph.nodes = keep.reverse();
  graph.constants = graph.constants.filter((c) => live.has(c.value));
  const defined = new Set<number>(graph.inputs.map((i) => i.value));
  for (const c of graph.constants) defined.add(c.value);
  for (const n of graph.nodes) for (const v of n.outputs) defined.add(v);
  for (const id of [...graph.values.keys()]) if (!defined.has(id)) graph.values.delete(id);
  return removed;
}

/** How many times each value is read (node inputs, counting repeats, plus graph outputs). */
export function useCounts(graph: Graph): Map<number, number> {
  const m = new Map<number, number>();
  for (const n of graph.nodes) for (const v of n.inputs) if (v !== null) m.set(v, (m.get(v) ?? 0) + 1);
  for (const o of graph.outputs) m.set(o.value, (m.get(o.value) ?? 0) + 1);
  return m;
}

/** Adds a literal constant with a fresh name; returns its value id. */
export function addLiteral(graph: Graph, dtype: DType, shape: readonly number[], data: readonly number[]): number {
  const taken = new Set(graph.constants.map((c) => c.name));
  let i = graph.constants.length;
  let name: string;
  do name = `lit${i++}`; while (taken.has(name));
  return graph.addConstant({ name, kind: 'literal', dtype, shape, data });
}

/** Values that are compile-time constants: constants themselves and the outputs of nodes whose
 *  inputs are all constant (transitively). These can be computed once, before any input arrives. */
export function constantValues(graph: Graph): Set<number> {
  const out = new Set<number>(graph.constants.map((c) => c.value));
  // A node of constants whose output has a symbolic dim (a parameter expanded to [batch, ...])
  // depends on the inputs' shapes, so it is per-call work, not a constant.
  const concreteOutputs = (n: Graph['nodes'][number]): boolean => n.outputs.every((v) => graph.meta(v).shape.every((d) => typeof d === 'number'));
  for (const n of graph.nodes) {
    if (n.inputs.every((v) => v === null || out.has(v)) && concreteOutputs(n)) for (const v of n.outputs) out.add(v);
  }
  return out;
}
