// Incremental interpretation: run a graph again after some of its parameters changed, recomputing
// only what depends on them. PSS's model-level selection (src/quant/pss-select.ts) scores dozens
// of trial models that differ from the current best in one site's weights; the layers before that
// site compute exactly what they computed last time.
//
// Every value gets a content key: an input by its position (the caller keeps one cache per set of
// input tensors), a literal by its data, a parameter by its name and the identity of the tensor
// bound to it (a changed parameter must be a new Tensor object: tensors are never compared by
// content here), a node's output by its op, concrete attributes and its inputs' keys. Keys are
// interned to numbers, so two graphs traced separately from the same code share keys for the
// values they compute alike. A run evaluates on demand from the outputs: a value whose key the
// cache holds is taken from it and its producers do not run.
//
// What the cache keeps after a run: the values read by a node that also reads a parameter (a
// linear's or a norm's activation input, the residual stream entering a norm): those are where
// a later change enters, so they bound the recomputation, and there are a few per layer. Anything
// else a dirty node needs (rotary tables, masks) is recomputed from them or from the inputs.
// In-place ops (kv_write) stay correct: a clean write's output is the pool the earlier run wrote,
// and a recomputed write writes into this run's own input pool.
import type { Tensor } from '../../tensor/tensor.js';
import type { Graph } from '../../ir/graph.js';
import { bindInputs, constantTensors, concreteAttrs, runNode } from './interpret.js';

const tensorIds = new WeakMap<Tensor, number>();
let nextTensorId = 0;
/** Control-flow nodes get a key no other run shares. */
let nextUncacheable = 0;
const identity = (t: Tensor): number => {
  let id = tensorIds.get(t);
  if (id === undefined) { id = nextTensorId++; tensorIds.set(t, id); }
  return id;
};

/** Values kept between runs of graphs over the same inputs, by content key. */
export class IncrementalCache {
  #intern = new Map<string, number>();
  #values = new Map<number, Tensor>();
  /** Nodes run and values reused by the last run (what a caller can check the savings by). */
  lastRun = { executed: 0, reused: 0, nodes: 0 };

  key(text: string): number {
    let k = this.#intern.get(text);
    if (k === undefined) { k = this.#intern.size; this.#intern.set(text, k); }
    return k;
  }
  get(key: number): Tensor | undefined { return this.#values.get(key); }
  set(key: number, t: Tensor): void { this.#values.set(key, t); }
  /** Drops every kept value whose key is in none of `runs` (key sets returned by interpretIncremental). */
  retain(runs: readonly ReadonlySet<number>[]): void {
    for (const k of [...this.#values.keys()]) if (!runs.some((r) => r.has(k))) this.#values.delete(k);
  }
  get size(): number { return this.#values.size; }
}

export interface IncrementalRun {
  outputs: Tensor[];
  /** The keys this run's kept values are stored under (pass to IncrementalCache.retain). */
  keys: Set<number>;
}

/** interpret(graph, inputs, constants), reusing and refilling `cache`. Bit-identical to interpret:
 *  a reused value is the tensor an identical computation produced. Control-flow nodes are never
 *  reused (their sub-graphs are not keyed). */
export function interpretIncremental(graph: Graph, inputs: readonly Tensor[], constants: ReadonlyMap<string, Tensor>, cache: IncrementalCache): IncrementalRun {
  const bindings = bindInputs(graph, inputs);
  const env = new Map<number, Tensor>();
  const keyOf = new Map<number, number>();
  const paramValues = new Set<number>();
  graph.inputs.forEach((inp, i) => {
    env.set(inp.value, inputs[i]);
    keyOf.set(inp.value, cache.key(`in${i}:${inputs[i].dtype}[${inputs[i].shape.join(',')}]`));
  });
  const consts = constantTensors(graph, bindings, constants);
  for (const c of graph.constants) {
    const t = consts.get(c.value)!;
    env.set(c.value, t);
    if (c.kind === 'param') paramValues.add(c.value);
    keyOf.set(c.value, cache.key(c.kind === 'literal'
      ? `lit:${c.dtype}[${c.shape.join(',')}]:${(c.data ?? []).join(',')}`
      : `param:${c.name}#${identity(t)}`));
  }
  const producer = new Map<number, number>();
  graph.nodes.forEach((node, i) => {
    const attrs = JSON.stringify(concreteAttrs(node.op, node.attrs, bindings));
    const ins = node.inputs.map((v) => (v === null ? '-' : keyOf.get(v))).join(',');
    const nodeKey = node.graphs ? `control#${nextUncacheable++}` : `${node.op}|${attrs}|${ins}`;
    node.outputs.forEach((v, j) => { keyOf.set(v, cache.key(`${nodeKey}#${j}`)); producer.set(v, i); });
  });

  // on demand from the outputs: a value found in the cache stops the walk
  const needed = new Set<number>();
  let reused = 0;
  const stack = graph.outputs.map((o) => o.value);
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (env.has(v)) continue;
    const hit = cache.get(keyOf.get(v)!);
    if (hit) { env.set(v, hit); reused++; continue; }
    const n = producer.get(v);
    if (n === undefined) throw new Error(`interpretIncremental: %${v} has no producer (verify() the graph)`);
    if (needed.has(n)) continue;
    needed.add(n);
    for (const u of graph.nodes[n].inputs) if (u !== null) stack.push(u);
  }

  // the values worth keeping: inputs of nodes that read a parameter
  const keep = new Set<number>();
  for (const node of graph.nodes) {
    if (!node.inputs.some((v) => v !== null && paramValues.has(v))) continue;
    for (const v of node.inputs) if (v !== null && producer.has(v)) keep.add(v);
  }
  const keys = new Set<number>();
  for (const v of keep) {
    const k = keyOf.get(v)!;
    if (env.has(v) || cache.get(k)) keys.add(k);
  }
  // drop what no later needed node reads, so peak memory follows liveness (as interpret does)
  const lastUse = new Map<number, number>();
  for (const n of needed) for (const v of graph.nodes[n].inputs) if (v !== null) lastUse.set(v, Math.max(n, lastUse.get(v) ?? -1));
  const outputs = new Set(graph.outputs.map((o) => o.value));
  graph.nodes.forEach((node, i) => {
    if (!needed.has(i)) return;
    const ins = node.inputs.map((v) => (v === null ? null : env.get(v)!));
    runNode(graph, i, ins, bindings, constants).forEach((t, j) => {
      const v = node.outputs[j];
      env.set(v, t);
      if (keep.has(v)) { cache.set(keyOf.get(v)!, t); keys.add(keyOf.get(v)!); }
    });
    for (const v of node.inputs) if (v !== null && lastUse.get(v) === i && !outputs.has(v)) env.delete(v);
  });
  cache.lastRun = { executed: needed.size, reused, nodes: graph.nodes.length };
  return { outputs: graph.outputs.map((o) => env.get(o.value)!), keys };
}
