// Constant folding. Nodes whose inputs are all constants are of two kinds:
//  - literal-only (e.g. an arange-derived table, or an identity a rewrite left on a scalar): run
//    now on the reference kernels and replaced by a literal, when the result is small enough to
//    store in the graph (literals already count by value in the graph hash);
//  - parameter-derived (a weight transposed for a GEMM, Q/K/V weights concatenated by horizontal
//    fusion, a reshaped bias): never evaluated here. Their values depend on the weights, which must
//    stay out of the graph (its hash is weight-independent and weights change in place). They stay
//    in the graph as ordinary nodes, the *recipe* of a derived constant, and this pass moves them to
//    the front as the graph's constant prologue. src/passes/derived.ts splits the prologue off at
//    bind time, computes each derived constant once, and recomputes it when a source parameter's
//    version changes.
// Safe: a literal-only node's value cannot depend on inputs or weights, and the reference kernel
// is the semantics of the op; parameter-derived nodes are only reordered (still topological).
import { Tensor } from '../tensor/tensor.js';
import { fromNumbers } from '../tensor/dtype.js';
import { dispatch, withEagerBackend } from '../ops/dispatch.js';
import type { Graph, Node } from '../ir/graph.js';
import type { Pass } from './manager.js';
import { addLiteral, constantValues, removeDeadNodes } from './rewrite.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Literal results up to this many elements are stored in the graph; larger stay as nodes. */
export const LITERAL_FOLD_MAX = 1 << 16;

export function foldConstants(graph: Graph): number {
  let folded = 0;
  const byValue = graph.constantByValue();
  const literalTensor = new Map<number, Tensor>();
  const tensorOf = (v: number): Tensor => {
    let t = literalTensor.get(v);
    if (!t) {
      const c = byValue.get(v)!;
      t = Tensor.fromStorage(c.dtype, c.shape as number[], fromNumbers(c.dtype, c.data ?? []));
      literalTensor.set(v, t);
    }
    return t;
  };
  const isLiteral = (v: number | null): boolean => v === null || byValue.get(v)?.kind === 'literal';
  for (const node of [...graph.nodes]) {
    if (node.inputs.length === 0 || !node.inputs.every(isLiteral)) continue;
    // control flow with literal operands is left to run (its sub-graphs are folded on their own)
    if (node.graphs) continue;
    const metas = node.outputs.map((v) => graph.meta(v));
    if (!metas.every((m) => m.shape.every((d) => typeof d === 'number'))) continue;
    const size = metas.reduce((s, m) => s + (m.shape as number[]).reduce((a, b) => a * b, 1), 0);
    if (size > LITERAL_FOLD_MAX) continue;
    const outs = withEagerBackend('reference', () => dispatch(node.op, node.inputs.map((v) => (v === null ? null : tensorOf(v))), node.attrs));
    // graph literals hold JS numbers: an i64 result beyond 2^53 would be rounded, so it stays a node
    if (outs.some((t) => t.dtype === 'i64' && (t.data as BigInt64Array).some((x) => x > MAX_SAFE || x < -MAX_SAFE))) continue;
    node.outputs.forEach((v, i) => {
      const t = outs[i];
      const lit = addLiteral(graph, t.dtype, t.shape, Array.from(t.toFlatArray()));
      graph.replaceAllUsesWith(v, lit);
      byValue.set(lit, graph.constants[graph.constants.length - 1]);
    });
    folded++;
  }
  if (folded > 0) removeDeadNodes(graph);
  return folded + hoistConstantPrologue(graph);
}

/** Moves parameter-derived nodes to the front (stable), so the constant prologue is one block in
 *  dumps and executors can split it off; returns 1 when the order changed. */
export function hoistConstantPrologue(graph: Graph): number {
  const consts = constantValues(graph);
  const isConst = (n: Node): boolean => n.outputs.every((v) => consts.has(v));
  const order = [...graph.nodes.filter(isConst), ...graph.nodes.filter((n) => !isConst(n))];
  const changed = order.some((n, i) => n !== graph.nodes[i]);
  graph.nodes = order;
  return changed ? 1 : 0;
}

export const constantFoldPass: Pass = {
  name: 'constant-fold',
  description: 'fold literal-only nodes into literals; gather parameter-derived nodes into the constant prologue',
  run: foldConstants,
};
