// GEMM epilogue fusion: folds what follows a linear layer into the GEMM's epilogue, where the
// output tile is still in registers: a bias add (a vector over the output features), then one
// activation (relu, gelu, gelu_tanh, silu), then a residual add  ->  linear_fused. Applied to a
// fixpoint, linear -> +bias -> gelu -> +x becomes one node.
// Safe: linear_fused is defined as exactly act(x·Wᵀ + bias) + residual; each rule requires the
// GEMM result to have no other reader (so nobody observes the unfused value), the added tensor to
// keep the output's shape and dtype, and fires only in the order the definition applies them
// (bias before activation before residual).
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Rewriter, type Rule } from './pattern.js';

const ACTIVATIONS = ['relu', 'gelu', 'gelu_tanh', 'silu'];

const plainLinear = P.op('linear', [P.any('x'), P.any('w'), P.opt(P.any('bias'))], { name: 'gemm', singleUse: true });
const fusedNoResidual = P.op('linear_fused', [P.any('x'), P.any('w'), P.opt(P.any('bias')), P.none()], { name: 'gemm', singleUse: true });

/** The add keeps the GEMM output's dtype and shape (the other operand only broadcasts). */
function addKeepsType(m: Match, rw: Rewriter): boolean {
  const out = rw.meta(m.root.outputs[0]), y = rw.meta(m.v('gemm'));
  return out.dtype === y.dtype && shapesEqual(out.shape, y.shape);
}

/** `b` as a bias vector [N] for a GEMM output [..., N]: itself, or a reshape of [1, ..., 1, N]. */
function asBias(rw: Rewriter, b: number, gemmOut: number): number | null {
  const bm = rw.meta(b), ym = rw.meta(gemmOut);
  if (bm.dtype !== ym.dtype || bm.shape.length === 0) return null;
  const n = ym.shape[ym.shape.length - 1];
  const lead = bm.shape.slice(0, -1);
  if (!shapesEqual([bm.shape[bm.shape.length - 1]], [n]) || !lead.every((d) => d === 1)) return null;
  return lead.length === 0 ? b : rw.emit1('reshape', [b], { shape: [n] });
}

const activationOf = (m: Match): string => (m.node('gemm').op === 'linear_fused' ? (m.node('gemm').attrs.activation as string) : 'none');

export const GEMM_EPILOGUE_RULES: Rule[] = [
  {
    name: 'bias-add',
    pattern: P.op('add', [P.alt(plainLinear, fusedNoResidual), P.any('b')], { commutative: true }),
    rewrite(m, rw) {
      if (m.opt('bias') !== null || activationOf(m) !== 'none' || !addKeepsType(m, rw)) return null;
      const bias = asBias(rw, m.v('b'), m.v('gemm'));
      return bias === null ? null : rw.emit1('linear', [m.v('x'), m.v('w'), bias]);
    },
  },
  {
    name: 'activation',
    pattern: P.op(ACTIVATIONS, [P.alt(plainLinear, fusedNoResidual)]),
    rewrite(m, rw) {
      if (activationOf(m) !== 'none' || !rw.canEmit('linear_fused')) return null;
      return rw.emit1('linear_fused', [m.v('x'), m.v('w'), m.opt('bias'), null], { activation: m.root.op });
    },
  },
  {
    name: 'residual-add',
    pattern: P.op('add', [P.alt(plainLinear, fusedNoResidual), P.any('r')], { commutative: true }),
    rewrite(m, rw) {
      if (!addKeepsType(m, rw) || !rw.canEmit('linear_fused')) return null;
      if (rw.meta(m.v('r')).dtype !== rw.meta(m.v('gemm')).dtype) return null;
      return rw.emit1('linear_fused', [m.v('x'), m.v('w'), m.opt('bias'), m.v('r')], { activation: activationOf(m) });
    },
  },
];

export const gemmEpiloguePass: Pass = {
  name: 'gemm-epilogue',
  description: 'fold bias add, activation and residual add after linear into linear_fused',
  run: (graph: Graph, context: PassContext) => applyRules(graph, GEMM_EPILOGUE_RULES, context),
};
