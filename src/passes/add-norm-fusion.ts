// Residual + norm fusion: s = a + b followed by layer_norm(s) or rms_norm(s)  ->  one add_layer_norm
// / add_rms_norm node producing both the normalized value and the sum, so the residual stream is
// read once and written once. The sum keeps all its other readers (it now comes from the fused
// node's second output).
// Safe: add_layer_norm(a, b, w, bias) is defined as [layer_norm(a + b, w, bias), a + b]; the rule
// requires a and b to have the sum's exact shape and dtype (no broadcasting, which the fused op
// does not do) and the norm's weight and bias to be constants, so they cannot depend on the sum
// (which would make the fused node its own input).
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Rewriter, type Rule } from './pattern.js';

const sum = P.op('add', [P.any('a'), P.any('b')], { name: 'sum' });
const constOrNone = (name: string) => P.alt(P.none(), P.const(name));

function operandsMatchSum(m: Match, rw: Rewriter): boolean {
  const s = rw.meta(m.v('sum'));
  return [m.v('a'), m.v('b')].every((v) => { const t = rw.meta(v); return t.dtype === s.dtype && shapesEqual(t.shape, s.shape); });
}

export const ADD_NORM_RULES: Rule[] = [
  {
    name: 'add-layer-norm',
    pattern: P.op('layer_norm', [sum, constOrNone('w'), constOrNone('bias')]),
    rewrite(m, rw) {
      if (!operandsMatchSum(m, rw) || !rw.canEmit('add_layer_norm')) return null;
      const [normed, s] = rw.emit('add_layer_norm', [m.v('a'), m.v('b'), m.opt('w'), m.opt('bias')], m.root.attrs);
      rw.replace(m.v('sum'), s);
      return normed;
    },
  },
  {
    name: 'add-rms-norm',
    pattern: P.op('rms_norm', [sum, constOrNone('w')]),
    rewrite(m, rw) {
      if (!operandsMatchSum(m, rw) || !rw.canEmit('add_rms_norm')) return null;
      const [normed, s] = rw.emit('add_rms_norm', [m.v('a'), m.v('b'), m.opt('w')], m.root.attrs);
      rw.replace(m.v('sum'), s);
      return normed;
    },
  },
];

export const addNormFusionPass: Pass = {
  name: 'add-norm-fusion',
  description: 'residual add followed by layer_norm/rms_norm into add_layer_norm/add_rms_norm (both outputs)',
  run: (graph: Graph, context: PassContext) => applyRules(graph, ADD_NORM_RULES, context),
};
