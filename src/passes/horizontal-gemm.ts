// Horizontal GEMM fusion: several linear / linear_fused nodes that read the same input with
// constant weights (separate Q/K/V projections, gate/up projections, per-chunk adaLN projections)
// become one GEMM over the weights concatenated along the output features, followed by a split of
// its last dim. One wide GEMM reads the input once and keeps the cores busier than several narrow
// ones. The concatenated weight (and bias) is parameter-derived: it lives in the constant prologue
// and is concatenated once per weight version, not per call (src/passes/derived.ts). The plan
// executor turns the split into views.
// Quantized weights (quant_linear, src/ops/quantized.ts) group the same way when their format,
// K and int4 group agree: every format stores its rows independently, so quant_concat joins the
// blocks (and int8/int4 scales) row-wise, the concatenation is exact, and each output column is the
// same block dot products as before (QKV and gate/up of a quantized decoder become one qgemm each).
// Safe: row j of concat(W1, W2) is row j of W1 or W2, so column block i of x·concat(W)ᵀ is x·Wiᵀ
// (the same dot products; a blocked kernel may sum them in another order, a few ulps), and a
// per-column epilogue (bias, activation) commutes with the split. Only nodes with the same activation, all with or all without bias, no residual, one
// dtype and static output widths are grouped.
import type { Graph, Node } from '../ir/graph.js';
import type { Pass, PassContext } from './manager.js';
import { constantValues, emit1, emit, sortTopologically, removeDeadNodes } from './rewrite.js';

export function fuseHorizontalGemms(graph: Graph, context: PassContext): number {
  const consts = constantValues(graph);
  const groups = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    if (n.op !== 'linear' && n.op !== 'linear_fused') continue;
    const [x, w, bias, residual] = n.inputs;
    if (x === null || w === null || consts.has(x) || !consts.has(w) || (residual ?? null) !== null) continue;
    if (bias !== null && bias !== undefined && !consts.has(bias)) continue;
    const wm = graph.meta(w);
    if (typeof wm.shape[0] !== 'number') continue;
    const act = n.op === 'linear_fused' ? (n.attrs.activation as string) : 'none';
    const key = `${x}|${act}|${bias !== null && bias !== undefined}|${wm.dtype}|${String(wm.shape[1])}`;
    let list = groups.get(key);
    if (!list) groups.set(key, (list = []));
    list.push(n);
  }
  let fused = fuseQuantized(graph, consts);
  for (const members of groups.values()) {
    if (members.length < 2) continue;
    const act = members[0].op === 'linear_fused' ? (members[0].attrs.activation as string) : 'none';
    if (act !== 'none' && !context.target.canEmit('linear_fused')) continue;
    const x = members[0].inputs[0]!;
    const source = members[0].source;
    const weights = members.map((n) => n.inputs[1]!);
    const sizes = weights.map((w) => graph.meta(w).shape[0] as number);
    const wcat = emit1(graph, 'concat', weights, { axis: 0 }, source);
    const hasBias = members[0].inputs[2] !== null && members[0].inputs[2] !== undefined;
    const bcat = hasBias ? emit1(graph, 'concat', members.map((n) => n.inputs[2]!), { axis: 0 }, source) : null;
    const y = act === 'none'
      ? emit1(graph, 'linear', [x, wcat, bcat], {}, source)
      : emit1(graph, 'linear_fused', [x, wcat, bcat, null], { activation: act }, source);
    const rank = graph.meta(y).shape.length;
    const pieces = emit(graph, 'split', [y], { axis: rank - 1, sizes }, source);
    members.forEach((n, i) => graph.replaceAllUsesWith(n.outputs[0], pieces[i]));
    fused++;
  }
  if (fused > 0) {
    sortTopologically(graph);
    removeDeadNodes(graph);
  }
  return fused;
}

function fuseQuantized(graph: Graph, consts: ReadonlySet<number>): number {
  const groups = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    if (n.op !== 'quant_linear') continue;
    const [x, w, bias, residual] = n.inputs;
    if (x === null || w === null || consts.has(x) || !consts.has(w) || (residual ?? null) !== null) continue;
    if (bias !== null && bias !== undefined && !consts.has(bias)) continue;
    const a = n.attrs;
    const key = `${x}|${String(a.activation)}|${bias !== null && bias !== undefined}|${String(a.format)}|${String(a.K)}|${String(a.group)}`;
    let list = groups.get(key);
    if (!list) groups.set(key, (list = []));
    list.push(n);
  }
  let fused = 0;
  for (const members of groups.values()) {
    if (members.length < 2) continue;
    const first = members[0], a = first.attrs, source = first.source;
    const Ns = members.map((n) => n.attrs.N as number);
    const N = Ns.reduce((s, v) => s + v, 0);
    const wcat = emit1(graph, 'quant_concat', members.map((n) => n.inputs[1]!), { format: a.format, Ns, K: a.K, group: a.group }, source);
    const hasBias = first.inputs[2] !== null && first.inputs[2] !== undefined;
    const bcat = hasBias ? emit1(graph, 'concat', members.map((n) => n.inputs[2]!), { axis: 0 }, source) : null;
    const y = emit1(graph, 'quant_linear', [first.inputs[0]!, wcat, bcat, null], { ...a, N }, source);
    const rank = graph.meta(y).shape.length;
    const pieces = emit(graph, 'split', [y], { axis: rank - 1, sizes: Ns }, source);
    members.forEach((n, i) => graph.replaceAllUsesWith(n.outputs[0], pieces[i]));
    fused++;
  }
  return fused;
}

export const horizontalGemmPass: Pass = {
  name: 'horizontal-gemm',
  description: 'linear layers reading one input with constant weights into one GEMM on concatenated weights + split',
  run: fuseHorizontalGemms,
};
