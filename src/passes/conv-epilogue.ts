// Convolution epilogue fusion: folds what follows a conv2d into the implicit-GEMM kernel's
// epilogue, where the output tile is still in registers: a per-image channel bias (a [N, O, 1, 1]
// add: the timestep embedding injected into SD's ResNet blocks), then one activation, then a
// residual add of the output's shape (a ResNet block's shortcut, a transformer's input around
// proj_out)  ->  one conv2d_fused node. Applied to a fixpoint.
// Safe: conv2d_fused is defined as exactly act(conv2d(x, w, bias) + chan_bias) + residual; each rule
// requires the conv result to have no other reader, the added tensor to keep the output's dtype
// (and, for the residual, its exact shape), and fires only in the order the definition applies
// them (channel bias before activation before residual).
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Rewriter, type Rule } from './pattern.js';
import { isChanBiasShape } from '../ops/fused-conv-norm.js';

const ACTIVATIONS = ['relu', 'gelu', 'gelu_tanh', 'silu'];

const plainConv = P.op('conv2d', [P.any('x'), P.any('w'), P.opt(P.any('bias'))], { name: 'conv', singleUse: true });
const fusedConv = P.op('conv2d_fused', [P.any('x'), P.any('w'), P.opt(P.any('bias')), P.opt(P.any('cb')), P.none()], { name: 'conv', singleUse: true });
const anyConv = P.alt(plainConv, fusedConv);

const convAttrs = (m: Match): Record<string, unknown> => {
  const a = m.node('conv').attrs;
  return { stride: a.stride, padding: a.padding, dilation: a.dilation, groups: a.groups };
};
const activationOf = (m: Match): string => (m.node('conv').op === 'conv2d_fused' ? (m.node('conv').attrs.activation as string) : 'none');

function sameType(rw: Rewriter, v: number, like: number, exactShape: boolean): boolean {
  const a = rw.meta(v), b = rw.meta(like);
  return a.dtype === b.dtype && (!exactShape || shapesEqual(a.shape, b.shape));
}

export const CONV_EPILOGUE_RULES: Rule[] = [
  {
    name: 'conv-channel-bias',
    pattern: P.op('add', [anyConv, P.any('t')], { commutative: true }),
    rewrite(m, rw) {
      if (m.opt('cb') !== null || activationOf(m) !== 'none' || !rw.canEmit('conv2d_fused')) return null;
      const t = m.v('t'), y = m.v('conv');
      if (!sameType(rw, t, y, false) || !isChanBiasShape(rw.meta(t).shape, rw.meta(y).shape)) return null;
      if (!shapesEqual(rw.meta(m.root.outputs[0]).shape, rw.meta(y).shape)) return null;
      return rw.emit1('conv2d_fused', [m.v('x'), m.v('w'), m.opt('bias'), t, null], { ...convAttrs(m), activation: 'none' });
    },
  },
  {
    name: 'conv-activation',
    pattern: P.op(ACTIVATIONS, [anyConv]),
    rewrite(m, rw) {
      if (activationOf(m) !== 'none' || !rw.canEmit('conv2d_fused')) return null;
      return rw.emit1('conv2d_fused', [m.v('x'), m.v('w'), m.opt('bias'), m.opt('cb'), null], { ...convAttrs(m), activation: m.root.op });
    },
  },
  {
    name: 'conv-residual',
    pattern: P.op('add', [anyConv, P.any('r')], { commutative: true }),
    rewrite(m, rw) {
      if (!rw.canEmit('conv2d_fused') || !sameType(rw, m.v('r'), m.v('conv'), true)) return null;
      return rw.emit1('conv2d_fused', [m.v('x'), m.v('w'), m.opt('bias'), m.opt('cb'), m.v('r')], { ...convAttrs(m), activation: activationOf(m) });
    },
  },
];

export const convEpiloguePass: Pass = {
  name: 'conv-epilogue',
  description: 'fold a per-image channel bias add, activation and residual add after conv2d into conv2d_fused',
  run: (graph: Graph, context: PassContext) => applyRules(graph, CONV_EPILOGUE_RULES, context),
};
