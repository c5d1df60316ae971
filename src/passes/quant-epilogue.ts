// Epilogue fusion for quantized GEMMs: what gemm-epilogue.ts does for linear, for quant_linear
// (src/ops/quantized.ts): a bias add, then one activation, then a same-shape residual add fold
// into the node's bias input, activation attribute and residual input, which the plan's qgemm
// kernel applies to the output rows right after the weight-only matmul.
// Safe: quant_linear is defined as exactly act(x·Wᵀ + bias) + residual; each rule requires the
// GEMM result to have no other reader, fires only in the definition's order (bias before
// activation before residual), and the residual must have the output's shape and dtype (the
// kernel reads it row by row; it does not broadcast).
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Rewriter, type Rule } from './pattern.js';

const ACTIVATIONS = ['relu', 'gelu', 'gelu_tanh', 'silu'];

const gemm = P.op('quant_linear', [P.any('x'), P.any('w'), P.opt(P.any('bias')), P.none()], { name: 'gemm', singleUse: true });

const sameTypeAsGemm = (m: Match, rw: Rewriter, v: number): boolean => {
  const a = rw.meta(v), y = rw.meta(m.v('gemm'));
  return a.dtype === y.dtype && shapesEqual(a.shape, y.shape);
};
const attrsOf = (m: Match): Record<string, unknown> => ({ ...m.node('gemm').attrs });

export const QUANT_EPILOGUE_RULES: Rule[] = [
  {
    name: 'quant-bias-add',
    pattern: P.op('add', [gemm, P.any('b')], { commutative: true }),
    rewrite(m, rw) {
      const a = attrsOf(m);
      if (m.opt('bias') !== null || a.activation !== 'none') return null;
      const b = rw.meta(m.v('b'));
      if (b.dtype !== 'f32' || b.shape.length !== 1 || !shapesEqual(b.shape, [a.N as number])) return null;
      return rw.emit1('quant_linear', [m.v('x'), m.v('w'), m.v('b'), null], a);
    },
  },
  {
    name: 'quant-activation',
    pattern: P.op(ACTIVATIONS, [gemm]),
    rewrite(m, rw) {
      const a = attrsOf(m);
      if (a.activation !== 'none') return null;
      return rw.emit1('quant_linear', [m.v('x'), m.v('w'), m.opt('bias'), null], { ...a, activation: m.root.op });
    },
  },
  {
    name: 'quant-residual-add',
    pattern: P.op('add', [gemm, P.any('r')], { commutative: true }),
    rewrite(m, rw) {
      if (!sameTypeAsGemm(m, rw, m.root.outputs[0]) || !sameTypeAsGemm(m, rw, m.v('r'))) return null;
      return rw.emit1('quant_linear', [m.v('x'), m.v('w'), m.opt('bias'), m.v('r')], attrsOf(m));
    },
  },
];

export const quantEpiloguePass: Pass = {
  name: 'quant-epilogue',
  description: 'fold bias add, activation and residual add after quant_linear into its epilogue',
  run: (graph: Graph, context: PassContext) => applyRules(graph, QUANT_EPILOGUE_RULES, context),
};
