// Binds an optimized graph to live parameters for execution: the graph's constant prologue
// (derived constants such as a transposed or concatenated weight; see src/passes/derived.ts) is
// evaluated once by the reference interpreter and again only when a source parameter is replaced
// or its version counter moves (an in-place weight update), so executors get stable tensors they
// can pre-pack.
import type { Tensor } from '../../tensor/tensor.js';
import type { Graph } from '../../ir/graph.js';
import { splitConstants } from '../../passes/derived.js';
import { interpret } from './interpret.js';

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
