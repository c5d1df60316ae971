// Group-norm fusions for convolutional models: group_norm followed by an activation (SD's
// GroupNorm -> SiLU before every ResNet conv) -> group_norm_act, and a residual add feeding a
// group norm -> add_group_norm (both outputs), whose following activation is folded the same way
// -> add_group_norm_act. One pass over memory instead of two or three.
// Safe: the fused ops are defined as exactly the composition they replace; the activation rules
// require the norm's output to have no other reader (only the activated value is produced), the
// add rule requires both operands to have the sum's exact shape and dtype (the fused op does not
// broadcast) and the norm's weight and bias to be constants, so they cannot depend on the sum.
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Rewriter, type Rule } from './pattern.js';

const ACTIVATIONS = ['relu', 'gelu', 'gelu_tanh', 'silu'];
const constOrNone = (name: string) => P.alt(P.none(), P.const(name));
const gnAttrs = (m: Match, node: string): Record<string, unknown> => ({ num_groups: m.node(node).attrs.num_groups, eps: m.node(node).attrs.eps });

const sum = P.op('add', [P.any('a'), P.any('b')], { name: 'sum' });
function operandsMatchSum(m: Match, rw: Rewriter): boolean {
  const s = rw.meta(m.v('sum'));
  return [m.v('a'), m.v('b')].every((v) => { const t = rw.meta(v); return t.dtype === s.dtype && shapesEqual(t.shape, s.shape); });
}

export const GROUP_NORM_RULES: Rule[] = [
  {
    name: 'group-norm-act',
    pattern: P.op(ACTIVATIONS, [P.op('group_norm', [P.any('x'), P.opt(P.any('w')), P.opt(P.any('bias'))], { name: 'gn', singleUse: true })]),
    rewrite(m, rw) {
      if (!rw.canEmit('group_norm_act')) return null;
      return rw.emit1('group_norm_act', [m.v('x'), m.opt('w'), m.opt('bias')], { ...gnAttrs(m, 'gn'), activation: m.root.op });
    },
  },
  {
    name: 'add-group-norm',
    pattern: P.op('group_norm', [sum, constOrNone('w'), constOrNone('bias')], { name: 'gn' }),
    rewrite(m, rw) {
      if (!operandsMatchSum(m, rw) || !rw.canEmit('add_group_norm')) return null;
      const [normed, s] = rw.emit('add_group_norm', [m.v('a'), m.v('b'), m.opt('w'), m.opt('bias')], gnAttrs(m, 'gn'));
      rw.replace(m.v('sum'), s);
      return normed;
    },
  },
  {
    name: 'add-group-norm-act',
    pattern: P.op(ACTIVATIONS, [P.op('add_group_norm', [P.any('a'), P.any('b'), P.opt(P.any('w')), P.opt(P.any('bias'))], { name: 'gn', singleUse: true })]),
    rewrite(m, rw) {
      if (!rw.canEmit('add_group_norm_act')) return null;
      const gn = m.node('gn');
      const [normed, s] = rw.emit('add_group_norm_act', [m.v('a'), m.v('b'), m.opt('w'), m.opt('bias')], { ...gnAttrs(m, 'gn'), activation: m.root.op });
      rw.replace(gn.outputs[1], s);
      return normed;
    },
  },
];

export const groupNormFusionPass: Pass = {
  name: 'group-norm-fusion',
  description: 'group_norm + activation into group_norm_act; residual add + group_norm (+ activation) into add_group_norm(_act)',
  run: (graph: Graph, context: PassContext) => applyRules(graph, GROUP_NORM_RULES, context),
};
