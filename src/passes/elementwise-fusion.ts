// Elementwise fusion: chains and trees of elementwise ops (unary math, add/sub/mul/div/pow/max/min,
// where; operands may broadcast) become one fused_elementwise node carrying a small program, which
// a kernel evaluates in one pass over memory instead of writing and re-reading every intermediate.
// The rule merges a producer into its consumer, and runs to a fixpoint, so regions grow one node at
// a time and fused nodes merge with each other.
// Safe: fused_elementwise's definition evaluates each instruction exactly like the op it came from
// and rounds every intermediate to that op's dtype, so the reference result is bit-identical. A
// producer is merged only when it has no other reader (nobody needs its value materialized) and
// has the consumer's full shape (merging a smaller, broadcast producer would recompute it for every
// output element). Regions stay within one floating dtype (plus where's bool condition).
import type { Graph, Node } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import { isFloatDType } from '../tensor/dtype.js';
import { FUSED_ELEMENTWISE_OPS, parseElementwiseProgram } from '../ops/fused.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Rewriter, type Rule } from './pattern.js';

/** Bounds on one fused node, so programs stay small enough for a register-only kernel. */
export const MAX_FUSED_INPUTS = 16;
export const MAX_FUSED_INSTRUCTIONS = 64;

type Ref = { t: 'in'; k: number } | { t: 'ins'; j: number };
interface Instr { op: string; args: Ref[] }

/** A node as a program over its own inputs (a plain op is a one-instruction program). */
function programOf(node: Node): { inputs: number[]; instrs: { op: string; args: number[] }[] } {
  const inputs = node.inputs as number[];
  if (node.op === 'fused_elementwise') return { inputs, instrs: parseElementwiseProgram(node.attrs.program as string, inputs.length) };
  return { inputs, instrs: [{ op: node.op, args: inputs.map((_, i) => i) }] };
}

/** Whether a node can take part in a fused region. */
function fusible(g: Graph, node: Node): boolean {
  if (node.op === 'fused_elementwise') return true;
  if (!(node.op in FUSED_ELEMENTWISE_OPS) || node.outputs.length !== 1 || node.inputs.some((v) => v === null)) return false;
  const dt = g.meta(node.outputs[0]).dtype;
  if (!isFloatDType(dt)) return false;
  const operands = node.op === 'where' ? node.inputs.slice(1) : node.inputs;
  if (node.op === 'where' && g.meta(node.inputs[0]!).dtype !== 'bool') return false;
  return operands.every((v) => g.meta(v!).dtype === dt);
}

/** Merges producer `p` (feeding input slot `slot` of `r`) into one program. */
function merge(p: Node, r: Node, slot: number): { inputs: number[]; program: string } {
  const inputs: number[] = [];
  const instrs: Instr[] = [];
  const input = (v: number): Ref => {
    let k = inputs.indexOf(v);
    if (k < 0) { inputs.push(v); k = inputs.length - 1; }
    return { t: 'in', k };
  };
  const append = (prog: ReturnType<typeof programOf>, bind: (reg: number) => Ref): Ref => {
    const base = instrs.length;
    const regRef = (reg: number): Ref => (reg < prog.inputs.length ? bind(reg) : { t: 'ins', j: base + reg - prog.inputs.length });
    for (const ins of prog.instrs) instrs.push({ op: ins.op, args: ins.args.map(regRef) });
    return { t: 'ins', j: instrs.length - 1 };
  };
  const pp = programOf(p), rp = programOf(r);
  const pResult = append(pp, (reg) => input(pp.inputs[reg]));
  append(rp, (reg) => (reg === slot ? pResult : input(rp.inputs[reg])));
  const reg = (ref: Ref): number => (ref.t === 'in' ? ref.k : inputs.length + ref.j);
  return { inputs, program: instrs.map((ins) => `${ins.op}(${ins.args.map(reg).join(',')})`).join(' ') };
}

function fuseProducer(rw: Rewriter, root: Node): number | null {
  const g = rw.graph;
  if (!fusible(g, root)) return null;
  const outShape = g.meta(root.outputs[0]).shape;
  for (let slot = 0; slot < root.inputs.length; slot++) {
    const v = root.inputs[slot]!;
    const p = rw.view.producers.get(v);
    if (!p || !fusible(g, p) || !rw.view.singleUse(v) || !shapesEqual(g.meta(v).shape, outShape)) continue;
    const { inputs, program } = merge(p, root, slot);
    if (inputs.length > MAX_FUSED_INPUTS || program.split(' ').length > MAX_FUSED_INSTRUCTIONS) continue;
    try {
      return rw.emit1('fused_elementwise', inputs, { program });
    } catch {
      continue; // the merged program does not type-check (e.g. mixed dtypes): leave the pair alone
    }
  }
  return null;
}

export const ELEMENTWISE_RULES: Rule[] = [
  {
    name: 'merge-elementwise-producer',
    pattern: P.op([...Object.keys(FUSED_ELEMENTWISE_OPS), 'fused_elementwise']),
    rewrite: (m, rw) => (rw.canEmit('fused_elementwise') ? fuseProducer(rw, m.root) : null),
  },
];

export const elementwiseFusionPass: Pass = {
  name: 'elementwise-fusion',
  description: 'chains and trees of elementwise ops into one fused_elementwise node (one pass over memory)',
  run: (graph: Graph, context: PassContext) => applyRules(graph, ELEMENTWISE_RULES, context),
};
