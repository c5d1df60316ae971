// Derived constants: values computed from parameters alone (a transposed weight, concatenated
// Q/K/V weights). The optimized graph keeps their recipe as ordinary nodes (the constant prologue,
// see constant-fold.ts), so it stays self-contained, serializable and weight-independent. At bind
// time, splitConstants() cuts the graph in two: a prologue graph computing every derived constant
// from the parameters, and a body graph in which each derived constant is a parameter constant
// named `$derived.<i>`. BoundConstants evaluates the prologue once and again only when a source
// parameter is replaced or its version counter moves (an in-place weight update), so executors
// get stable tensors they can pre-pack.
import type { Tensor } from '../tensor/tensor.js';
import { Graph } from '../ir/graph.js';
import { interpret } from '../trace/interpret.js';
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

/** A graph bound to live parameters, with derived constants computed once and kept up to date. */
export class BoundConstants {
  readonly graph: Graph;
  private readonly prologue: Graph | null;
  private readonly derivedNames: string[];
  private readonly sources: string[];
  private snapshot: { tensor: Tensor; version: number }[] = [];
  private cache: Map<string, Tensor> | null = null;
  /** How many times the prologue has run (for tests and stats). */
  evaluations = 0;

  constructor(graph: Graph, private readonly params: ReadonlyMap<string, Tensor>) {
    const split = splitConstants(graph);
    this.graph = split.body;
    this.prologue = split.prologue;
    this.derivedNames = split.derived;
    this.sources = split.prologue ? split.prologue.constants.filter((c) => c.kind === 'param').map((c) => c.name) : [];
  }

  /** Parameters plus derived constants, recomputing derived ones whose sources changed. */
  constants(): Map<string, Tensor> {
    if (this.cache && this.fresh()) return this.cache;
    const out = new Map(this.params);
    if (this.prologue) {
      const values = interpret(this.prologue, [], this.params);
      this.derivedNames.forEach((name, i) => out.set(name, values[i]));
      this.evaluations++;
    }
    this.snapshot = this.sources.map((name) => { const t = this.params.get(name)!; return { tensor: t, version: t.version }; });
    this.cache = out;
    return out;
  }

  private fresh(): boolean {
    return this.sources.every((name, i) => {
      const t = this.params.get(name);
      const s = this.snapshot[i];
      return t === s.tensor && t.version === s.version;
    });
  }
}

/** Binds a graph to its parameters for execution: run `bound.graph` with `bound.constants()`. */
export const bindConstants = (graph: Graph, params: ReadonlyMap<string, Tensor>): BoundConstants => new BoundConstants(graph, params);
