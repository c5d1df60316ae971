// The IR side of post-training quantization, over the traced step graph of a decoder:
//  - findQuantSites: which `linear` nodes read a parameter weight (grouped by the activation they
//    share: q/k/v read one norm output, gate/up another), what produced that activation (an
//    rms_norm with its own weight, or a mul with a linear's output, the SwiGLU "up" branch), so a
//    per-channel factor can be folded there exactly; and the kv_write nodes (the KV cache rows).
//    The LM head (a linear whose result is a graph output) stays in f32, as is usual in PTQ,
//    unless asked for (quantize's option lmHead); an LM head tied to the embedding is never a site.
//  - exposeObservedValues: the observer pass. It adds every site's activation as an extra graph
//    output, so one interpretation of the graph on calibration tokens returns what the statistics
//    (abs max, min/max, X^T X) are computed from. Observers live in TS over those outputs rather
//    than as ops, because a Hessian [K, K] per site is an accumulation across calls, not a value.
//  - applyQuantPlan: rewrites the graph as the quantized model runs it: smoothing factors folded
//    into the producer's weights (through the parameter overrides) or, with no foldable producer,
//    a mul by 1/s (what a W8A8 kernel fuses into its activation quantizer), the shift as a sub and
//    the shifted bias on the linear, a matmul by the site's Hadamard rotation (option rotate),
//    fake_quant before each quantized linear and before kv_write.
import { type Graph, type Node } from '../ir/graph.js';
import type { DType } from '../tensor/dtype.js';
import './fake-quant-op.js';
import { W8_LINEAR } from './w8-linear-op.js';
import { FAKE_QUANT } from './fake-quant-op.js';

export interface LinearConsumer { node: Node; weight: string; bias: string | null }
export type Fold =
  | { kind: 'norm'; param: string }
  | { kind: 'linear'; weight: string; bias: string | null }
  | { kind: 'none' };
/** `gated`: the activation is an elementwise product (the SwiGLU silu(gate)·up that the down
 *  projection reads): the sites option rotate 'down' rotates. */
export interface LinearSite { input: number; consumers: LinearConsumer[]; fold: Fold; gated: boolean }
export interface KvSite { node: Node; rows: number }
/** `tiedHead`: the weight of an LM head that shares it with another node (tied embeddings), when
 *  the head was asked for: it is not a site, and the caller says why. */
export interface QuantSites { linears: LinearSite[]; kv: KvSite[]; tiedHead: string | null }
/** `head`: the LM head (a linear whose result is a graph output) is a site too. */
export interface SiteOptions { head?: boolean }

/** Parameter name of a value that is a parameter constant, else null. */
function paramName(g: Graph, v: number | null): string | null {
  if (v === null) return null;
  const c = g.constants.find((k) => k.value === v);
  return c && c.kind === 'param' ? c.name : null;
}

/** Group key of a site: its consumers' weight names (stable across traces of different shapes). */
export const siteKey = (s: LinearSite): string => s.consumers.map((c) => c.weight).join('|');

export function findQuantSites(g: Graph, options: SiteOptions = {}): QuantSites {
  const producer = new Map<number, Node>();
  const uses = new Map<number, Node[]>();
  for (const n of g.nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) if (i !== null) uses.set(i, [...(uses.get(i) ?? []), n]);
  }
  const outputs = new Set(g.outputs.map((o) => o.value));
  const byInput = new Map<number, LinearConsumer[]>();
  let tiedHead: string | null = null;
  for (const n of g.nodes) {
    if (n.op !== 'linear') continue;
    const weight = paramName(g, n.inputs[1]);
    if (!weight) continue;
    if (outputs.has(n.outputs[0])) {
      if (!options.head) continue;
      // a weight another node reads too (the embedding's gather) cannot be smoothed or replaced
      if ((uses.get(n.inputs[1]!) ?? []).length > 1) { tiedHead = weight; continue; }
    }
    const bias = n.inputs[2] ?? null;
    const biasName = paramName(g, bias);
    if (bias !== null && !biasName) continue; // a computed bias cannot take the shift's correction
    const x = n.inputs[0]!;
    byInput.set(x, [...(byInput.get(x) ?? []), { node: n, weight, bias: biasName }]);
  }
  const usedOnce = (v: number): boolean => (uses.get(v) ?? []).length === 1;
  const linears: LinearSite[] = [];
  for (const [input, consumers] of byInput) {
    let fold: Fold = { kind: 'none' };
    // folding rescales the producer's output, so every reader of it must be one of the consumers
    const onlyConsumers = (uses.get(input) ?? []).every((u) => consumers.some((c) => c.node === u));
    const p = producer.get(input);
    if (p && onlyConsumers && p.op === 'rms_norm') {
      const w = paramName(g, p.inputs[1]);
      if (w && usedOnce(p.inputs[1]!)) fold = { kind: 'norm', param: w };
    } else if (p && onlyConsumers && p.op === 'mul') {
      for (const side of p.inputs) {
        const q = side === null ? undefined : producer.get(side);
        if (!q || q.op !== 'linear' || !usedOnce(side!)) continue;
        const w = paramName(g, q.inputs[1]);
        const b = q.inputs[2] ?? null;
        if (w && usedOnce(q.inputs[1]!) && (b === null || paramName(g, b))) { fold = { kind: 'linear', weight: w, bias: paramName(g, b) }; break; }
      }
    }
    linears.push({ input, consumers, fold, gated: p?.op === 'mul' });
  }
  const kv = g.nodes.filter((n) => n.op === 'kv_write').map((node) => ({ node, rows: node.inputs[1]! }));
  return { linears, kv, tiedHead };
}

export const observedLinearName = (i: number): string => `observe.linear.${i}`;
export const observedKvName = (i: number): string => `observe.kv.${i}`;

/** A copy of the graph that also outputs every site's activation (the observer pass). */
export function exposeObservedValues(g: Graph, options: SiteOptions = {}): { graph: Graph; sites: QuantSites } {
  const graph = g.clone();
  const sites = findQuantSites(graph, options);
  sites.linears.forEach((s, i) => graph.addOutput(observedLinearName(i), s.input));
  sites.kv.forEach((s, i) => graph.addOutput(observedKvName(i), s.rows));
  graph.verify();
  return { graph, sites };
}

/** What the rewrite does at one linear site (keyed by its consumers' weight names). */
export interface SitePlan {
  key: string;
  /** Parameter [K, K] the (smoothed, shifted) activation is multiplied by before it is quantized
   *  (matmul; option rotate): an orthonormal Hadamard H (src/quant/rotation.ts). */
  rotation?: string;
  /** Parameter [K] holding 1/s, multiplied in when the factor has no producer to fold into. */
  inverseScale?: string;
  /** Parameter [K] holding z/s, subtracted from the (smoothed) activation (the shift). */
  shift?: string;
  /** New bias parameter per consumer weight (b + W z after the shift). */
  biases?: Record<string, string>;
  /** Activation fake quantization before the consumers; `scale` names a static scale parameter [1]. */
  act?: { format: 'int8' | 'fp8'; granularity: 'token' | 'tensor' | 'static'; scale?: string };
}
export interface KvPlan { format: 'int8' | 'fp8'; scales: string[] }
/** A linear swapped for quant_linear on the packed weight parameter `param` (kernel 'qgemm'). */
export interface QuantLinearPlan { param: string; format: 'int8' | 'int4'; N: number; K: number; group: number }
/** A linear swapped for w8_linear on 8-bit codes `codes` [N, K] and per-channel `scales` [N] (kernel 'w8a8'). */
/** A linear swapped for w8_linear (kernel 'w8a8'); actGroup 32: activation scales per 32 values of a row (absent: per token). */
export interface W8LinearPlan { codes: string; scales: string; weights: 'int8' | 'fp8'; activations: 'int8' | 'fp8' | 'none'; actGroup?: 32 }
export interface QuantPlan { sites: SitePlan[]; kv: KvPlan | null; quantLinear?: Record<string, QuantLinearPlan>; w8Linear?: Record<string, W8LinearPlan> }

/** Rewrites a traced step graph with the plan; parameters it names are new constants [K] or [1]
 *  that the caller supplies (with the folded weights) in the constants map. */
export function applyQuantPlan(g: Graph, plan: QuantPlan, paramMeta: (name: string) => { dtype: DType; shape: number[] }): Graph {
  const graph = g.clone();
  // the LM head is a candidate too: the plan's keys say which sites were quantized
  const sites = findQuantSites(graph, { head: true });
  const byKey = new Map(sites.linears.map((s) => [siteKey(s), s]));
  const insertBefore = (target: Node, op: string, inputs: (number | null)[], attrs: Record<string, string>): number => {
    const meta = graph.value(inputs[0]!);
    const [out] = graph.addNode(op, inputs, attrs as never, [{ dtype: meta.dtype, shape: meta.shape }]);
    const created = graph.nodes.pop()!;
    graph.nodes.splice(graph.nodes.indexOf(target), 0, created);
    return out;
  };
  const constant = (name: string): number => {
    const existing = graph.constants.find((c) => c.name === name);
    return existing ? existing.value : graph.addConstant({ name, kind: 'param', ...paramMeta(name) });
  };
  for (const p of plan.sites) {
    const site = byKey.get(p.key);
    if (!site) throw new Error(`quantize: the traced graph has no linears reading one activation with weights ${p.key.split('|').join(', ')}; the plan was made for another model`);
    const first = site.consumers.map((c) => c.node).sort((a, b) => graph.nodes.indexOf(a) - graph.nodes.indexOf(b))[0];
    let x = site.input;
    if (p.inverseScale) x = insertBefore(first, 'mul', [x, constant(p.inverseScale)], {});
    if (p.shift) x = insertBefore(first, 'sub', [x, constant(p.shift)], {});
    if (p.rotation) x = insertBefore(first, 'matmul', [x, constant(p.rotation)], {});
    if (p.act) {
      const scale = p.act.scale ? constant(p.act.scale) : null;
      x = insertBefore(first, FAKE_QUANT, [x, scale], { format: p.act.format, granularity: p.act.granularity });
    }
    for (const c of site.consumers) {
      c.node.inputs[0] = x;
      const b = p.biases?.[c.weight];
      if (b) c.node.inputs[2] = constant(b);
      const q = plan.quantLinear?.[c.weight];
      if (q) {
        c.node.op = 'quant_linear';
        c.node.inputs = [x, constant(q.param), c.node.inputs[2] ?? null, null];
        c.node.attrs = { format: q.format, N: q.N, K: q.K, group: q.group, activation: 'none' };
      }
      const w8 = plan.w8Linear?.[c.weight];
      if (w8) {
        c.node.op = W8_LINEAR;
        c.node.inputs = [x, constant(w8.codes), constant(w8.scales), c.node.inputs[2] ?? null, null];
        c.node.attrs = { weights: w8.weights, activations: w8.activations, activation: 'none', ...(w8.actGroup ? { actGroup: w8.actGroup } : {}) };
      }
    }
  }
  if (plan.kv) {
    if (plan.kv.scales.length !== sites.kv.length) throw new Error(`quantize: the plan has KV scales for ${plan.kv.scales.length} cache writes, the graph has ${sites.kv.length}`);
    sites.kv.forEach((s, i) => {
      const x = insertBefore(s.node, FAKE_QUANT, [s.rows, constant(plan.kv!.scales[i])], { format: plan.kv!.format, granularity: 'static' });
      s.node.inputs[1] = x;
    });
  }
  graph.verify();
  return graph;
}
