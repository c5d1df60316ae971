// Derived constants: values computed from parameters alone (a transposed weight, concatenated
// Q/K/V weights). The optimized graph keeps their recipe as ordinary nodes (the constant prologue,
// see constant-fold.ts), so it stays self-contained, serializable and weight-independent. At bind
// time, splitConstants() cuts the graph in two: a prologue graph computing every derived constant
// from the parameters, and a body graph in which each derived constant is a parameter constant
// named `$derived.<i>`. Evaluating the prologue is execution, so it lives with the backends
// (src/backends/reference/bound-constants.ts), not here.
import type { Graph } from '../ir/graph.js';
import { constantValues, removeDeadNodes } from './rewrite.js';

export const DERIVED_PREFIX = '$derived.';

export interface ConstantSplit {
  /** Computes the derived constants: no inputs, outputs named like the body's derived constants.
   *  Null when the graph has none. */
  prologue: Graph | null;
  /** The per-call graph; derived constants are parameter constants named `$derived.<i>`. */
  body: Graph;
  /** Derived constant names in prologue output order. */
  derived: string[];
}

/** Splits `graph` into its constant prologue and per-call body (neither aliases `graph`). */
export function splitConstants(graph: Graph): ConstantSplit {
  const consts = constantValues(graph);
  const constantIds = new Set(graph.constants.map((c) => c.value));
  // the frontier: node-computed constants read by per-call nodes or returned
  const frontier: number[] = [];
  const seen = new Set<number>();
  const addFrontier = (v: number): void => {
    if (consts.has(v) && !constantIds.has(v) && !seen.has(v)) { seen.add(v); frontier.push(v); }
  };
  for (const n of graph.nodes) {
    if (n.outputs.every((v) => consts.has(v))) continue;
    for (const v of n.inputs) if (v !== null) addFrontier(v);
  }
  for (const o of graph.outputs) addFrontier(o.value);
  if (frontier.length === 0) {
    const body = graph.clone();
    removeDeadNodes(body);
    return { prologue: null, body, derived: [] };
  }
  const derived = frontier.map((_, i) => `${DERIVED_PREFIX}${i}`);

  const prologue = graph.clone();
  prologue.inputs = [];
  prologue.outputs = frontier.map((v, i) => ({ name: derived[i], value: v }));
  removeDeadNodes(prologue);

  const body = graph.clone();
  frontier.forEach((v, i) => {
    const meta = body.meta(v);
    const c = body.addConstant({ name: derived[i], kind: 'param', dtype: meta.dtype, shape: meta.shape });
    body.replaceAllUsesWith(v, c);
  });
  removeDeadNodes(body);
  // constants first, as traced graphs have them
  return { prologue, body, derived };
}
