// A small declarative pattern matcher, so fusion passes read as rule tables rather than graph
// surgery (after tinygrad's PatternMatcher and FX's subgraph rewriter). A pattern describes the
// subgraph that computes a value: op names, attribute predicates, single-use conditions,
// commutative inputs, named captures (a name used twice must bind the same value). A rule pairs a
// pattern with a rewrite that emits replacement nodes; applyRules() runs a rule table to a fixpoint.
import type { Graph, Node, Constant } from '../ir/graph.js';
import type { AttrValues } from '../ops/attrs.js';
import type { TensorMeta } from '../ops/registry.js';
import { emit, removeDeadNodes, sortTopologically, useCounts, constantValues } from './rewrite.js';
import { shapesEqual } from '../ir/dims.js';
import type { PassContext } from './manager.js';

// ---- patterns ----

export interface OpPattern {
  kind: 'op';
  /** Accepted op names. */
  ops: readonly string[];
  /** One pattern per node input (absent optional inputs match P.none() or P.opt()); undefined
   *  accepts any inputs. */
  inputs?: readonly Pattern[];
  /** Binds the matched node under this name (m.node(name)). */
  name?: string;
  attrs?: (attrs: AttrValues) => boolean;
  /** The value matched must have exactly one reader and not be a graph output, so rewriting it
   *  away cannot duplicate work or change what other users see. */
  singleUse?: boolean;
  /** Inputs 0 and 1 may match in either order. */
  commutative?: boolean;
  /** Which output of the node the matched value must be (default 0). */
  output?: number;
}
export interface VarPattern { kind: 'var'; name?: string; where?: (meta: TensorMeta, v: number, g: Graph) => boolean }
export interface ScalarPattern { kind: 'scalar'; name?: string; where?: (x: number) => boolean }
export interface ConstPattern { kind: 'const'; name?: string; where?: (meta: TensorMeta, c: Constant | undefined) => boolean }
export interface NonePattern { kind: 'none' }
/** Matches an absent optional input, or any value (bound under name when present). */
export interface OptPattern { kind: 'opt'; inner: Pattern }
export interface AltPattern { kind: 'alt'; options: readonly Pattern[] }
export type Pattern = OpPattern | VarPattern | ScalarPattern | ConstPattern | NonePattern | OptPattern | AltPattern;

type OpOptions = Omit<OpPattern, 'kind' | 'ops' | 'inputs'>;

/** Pattern constructors: P.op('add', [P.any('x'), P.scalar('c')], { commutative: true }). */
export const P = {
  op: (ops: string | readonly string[], inputs?: readonly Pattern[], options: OpOptions = {}): OpPattern =>
    ({ kind: 'op', ops: typeof ops === 'string' ? [ops] : ops, ...(inputs ? { inputs } : {}), ...options }),
  /** Any value, captured under `name`. */
  any: (name?: string, where?: VarPattern['where']): VarPattern => ({ kind: 'var', ...(name ? { name } : {}), ...(where ? { where } : {}) }),
  /** A literal with exactly one element (any rank), captured as a number under `name`. */
  scalar: (name?: string, where?: (x: number) => boolean): ScalarPattern => ({ kind: 'scalar', ...(name ? { name } : {}), ...(where ? { where } : {}) }),
  /** A literal with exactly one element equal to `value`. */
  value: (value: number): ScalarPattern => ({ kind: 'scalar', where: (x) => x === value }),
  /** A compile-time constant: a parameter, a literal, or a value computed only from those. */
  const: (name?: string, where?: ConstPattern['where']): ConstPattern => ({ kind: 'const', ...(name ? { name } : {}), ...(where ? { where } : {}) }),
  none: (): NonePattern => ({ kind: 'none' }),
  opt: (inner: Pattern): OptPattern => ({ kind: 'opt', inner }),
  alt: (...options: Pattern[]): AltPattern => ({ kind: 'alt', options }),
};

// ---- matching ----

/** What a successful match captured. */
export class Match {
  constructor(
    readonly root: Node,
    readonly values: ReadonlyMap<string, number>,
    readonly nodes: ReadonlyMap<string, Node>,
    readonly scalars: ReadonlyMap<string, number>,
  ) {}
  /** The value captured under name; throws when the pattern did not capture it. */
  v(name: string): number {
    const v = this.values.get(name);
    if (v === undefined) throw new Error(`pattern match has no value named "${name}"`);
    return v;
  }
  /** A value captured by an optional pattern: null when the input was absent. */
  opt(name: string): number | null { return this.values.get(name) ?? null; }
  has(name: string): boolean { return this.values.has(name) || this.scalars.has(name); }
  node(name: string): Node {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`pattern match has no node named "${name}"`);
    return n;
  }
  scalar(name: string): number {
    const s = this.scalars.get(name);
    if (s === undefined) throw new Error(`pattern match has no scalar named "${name}"`);
    return s;
  }
}

interface Binding { values: Map<string, number>; nodes: Map<string, Node>; scalars: Map<string, number> }
const copy = (b: Binding): Binding => ({ values: new Map(b.values), nodes: new Map(b.nodes), scalars: new Map(b.scalars) });

/** Read-only facts about a graph that matching consults; rebuilt after each rewrite. */
export class GraphView {
  readonly producers: Map<number, Node>;
  readonly uses: Map<number, number>;
  readonly constantsByValue: Map<number, Constant>;
  private constSet: Set<number> | null = null;
  constructor(readonly graph: Graph) {
    this.producers = graph.producers();
    this.uses = useCounts(graph);
    this.constantsByValue = graph.constantByValue();
  }
  isConstant(v: number): boolean {
    this.constSet ??= constantValues(this.graph);
    return this.constSet.has(v);
  }
  singleUse(v: number): boolean { return (this.uses.get(v) ?? 0) === 1 && !this.graph.outputs.some((o) => o.value === v); }
  scalarOf(v: number): number | undefined {
    const c = this.constantsByValue.get(v);
    return c && c.kind === 'literal' && c.data && c.data.length === 1 ? c.data[0] : undefined;
  }
}

function bindName<K>(map: Map<string, K>, name: string | undefined, x: K): boolean {
  if (name === undefined) return true;
  const prev = map.get(name);
  if (prev !== undefined) return prev === x;
  map.set(name, x);
  return true;
}

/** All ways `pat` matches value `v` (null: an absent optional input), extending binding `b`. */
function* matchValue(view: GraphView, pat: Pattern, v: number | null, b: Binding): Generator<Binding> {
  switch (pat.kind) {
    case 'none': if (v === null) yield b; return;
    case 'opt':
      if (v === null) yield b;
      else yield* matchValue(view, pat.inner, v, b);
      return;
    case 'alt':
      for (const o of pat.options) yield* matchValue(view, o, v, copy(b));
      return;
  }
  if (v === null) return;
  switch (pat.kind) {
    case 'var': {
      if (pat.where && !pat.where(view.graph.meta(v), v, view.graph)) return;
      const nb = copy(b);
      if (bindName(nb.values, pat.name, v)) yield nb;
      return;
    }
    case 'scalar': {
      const x = view.scalarOf(v);
      if (x === undefined || (pat.where && !pat.where(x))) return;
      const nb = copy(b);
      if (bindName(nb.scalars, pat.name, x) && bindName(nb.values, pat.name, v)) yield nb;
      return;
    }
    case 'const': {
      if (!view.isConstant(v)) return;
      if (pat.where && !pat.where(view.graph.meta(v), view.constantsByValue.get(v))) return;
      const nb = copy(b);
      if (bindName(nb.values, pat.name, v)) yield nb;
      return;
    }
    case 'op': {
      const node = view.producers.get(v);
      if (!node || !pat.ops.includes(node.op)) return;
      if (node.outputs.indexOf(v) !== (pat.output ?? 0)) return;
      if (pat.singleUse && !view.singleUse(v)) return;
      if (pat.attrs && !pat.attrs(node.attrs)) return;
      const nb = copy(b);
      if (!bindName(nb.nodes, pat.name, node) || !bindName(nb.values, pat.name, v)) return;
      if (!pat.inputs) { yield nb; return; }
      const orders: (number | null)[][] = [node.inputs];
      if (pat.commutative && node.inputs.length >= 2) orders.push([node.inputs[1], node.inputs[0], ...node.inputs.slice(2)]);
      for (const ins of orders) {
        // absent trailing optional inputs are recorded either as null or not at all
        const padded = [...ins];
        while (padded.length < pat.inputs.length) padded.push(null);
        if (padded.length !== pat.inputs.length) continue;
        yield* matchInputs(view, pat.inputs, padded, 0, nb);
      }
      return;
    }
  }
}

function* matchInputs(view: GraphView, pats: readonly Pattern[], ins: (number | null)[], i: number, b: Binding): Generator<Binding> {
  if (i === pats.length) { yield b; return; }
  for (const nb of matchValue(view, pats[i], ins[i], b)) yield* matchInputs(view, pats, ins, i + 1, nb);
}

/** The first match of `pat` rooted at value `v` for which `accept` holds, or null. */
export function matchAt(view: GraphView, pat: OpPattern, v: number, accept: (m: Match) => boolean = () => true): Match | null {
  const root = view.producers.get(v);
  if (!root) return null;
  for (const b of matchValue(view, pat, v, { values: new Map(), nodes: new Map(), scalars: new Map() })) {
    const m = new Match(root, b.values, b.nodes, b.scalars);
    if (accept(m)) return m;
  }
  return null;
}

// ---- rewriting ----

/** What a rule's rewrite function may do: emit nodes and redirect extra values. */
export class Rewriter {
  /** Extra replacements besides the root's outputs (e.g. add_layer_norm's sum output). */
  readonly extra: [number, number][] = [];
  constructor(readonly graph: Graph, readonly view: GraphView, readonly context: PassContext, private readonly source?: string) {}
  emit(op: string, inputs: readonly (number | null)[], attrs: Record<string, unknown> = {}): number[] {
    return emit(this.graph, op, inputs, attrs, this.source);
  }
  emit1(op: string, inputs: readonly (number | null)[], attrs: Record<string, unknown> = {}): number {
    return this.emit(op, inputs, attrs)[0];
  }
  /** Also replace every use of `from` with `to` when the rule commits. */
  replace(from: number, to: number): void { this.extra.push([from, to]); }
  meta(v: number): TensorMeta { return this.graph.meta(v); }
  canEmit(op: string): boolean { return this.context.target.canEmit(op); }
}

export interface Rule {
  name: string;
  pattern: OpPattern;
  /** Returns the replacement for the matched root value (or one per root output), or null to
   *  decline (the rule then tries the next match). Nodes emitted by a declined rewrite are removed. */
  rewrite(m: Match, rw: Rewriter): number | number[] | null;
}

/** Runs a rule table over the graph until no rule fires (a fixpoint). Each firing replaces the
 *  matched root's outputs, drops what became dead and restores topological order. Returns the
 *  number of rewrites. `maxRewrites` guards against a rule set that never settles. */
export function applyRules(graph: Graph, rules: readonly Rule[], context: PassContext, maxRewrites = 10_000): number {
  let count = 0;
  let changed = true;
  while (changed) {
    changed = false;
    const view = new GraphView(graph);
    scan: for (const node of [...graph.nodes]) {
      for (const rule of rules) {
        const v = node.outputs[rule.pattern.output ?? 0];
        if (v === undefined || !rule.pattern.ops.includes(node.op)) continue;
        let result: { repl: number[]; rw: Rewriter } | null = null;
        matchAt(view, rule.pattern, v, (m) => {
          const before = graph.nodes.length;
          const rw = new Rewriter(graph, view, context, node.source);
          const r = rule.rewrite(m, rw);
          if (r === null) {
            // drop anything the declined rewrite emitted
            for (const n of graph.nodes.splice(before)) for (const o of n.outputs) graph.values.delete(o);
            return false;
          }
          result = { repl: typeof r === 'number' ? [r] : r, rw };
          return true;
        });
        if (!result) continue;
        const { repl, rw } = result as { repl: number[]; rw: Rewriter };
        const pairs: [number, number][] = repl.map((to, i) => [node.outputs[i], to]);
        for (const [from, to] of [...pairs, ...rw.extra]) {
          const a = graph.meta(from), b = graph.meta(to);
          if (a.dtype !== b.dtype || !shapesEqual(a.shape, b.shape)) {
            throw new Error(`rule ${rule.name}: replacement %${to} is ${b.dtype}[${b.shape.join(', ')}] but %${from} is ${a.dtype}[${a.shape.join(', ')}]`);
          }
          if (from !== to) graph.replaceAllUsesWith(from, to);
        }
        sortTopologically(graph);
        removeDeadNodes(graph);
        count++;
        if (count > maxRewrites) throw new Error(`applyRules: more than ${maxRewrites} rewrites; rule ${rule.name} keeps firing (a rule set that never settles)`);
        changed = true;
        break scan;
      }
    }
  }
  return count;
}
