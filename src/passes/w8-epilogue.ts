// Epilogue fusion for the 8-bit GEMMs: quant-epilogue.ts's rules for w8_linear (W8A8 / FP8 weights
// with per-channel scales and per-token activation quantization, src/quant/w8-linear-op.ts). A bias
// add, then one activation, then a same-shape residual add fold into the node's bias input,
// activation attribute and residual input, which the plan's w8a8_gemm / fp8_gemm kernels apply in
// their epilogue (the o and down projections' residual adds of a decoder layer).
// Safe: w8_linear is defined as exactly act(x·(scales ⊙ W)ᵀ + bias) + residual, the activation
// quantization reads only x; each rule requires the GEMM result to have no other reader, fires only
// in the definition's order (bias before activation before residual), and the residual must have
// the output's shape and dtype (the kernel reads it row by row; it does not broadcast).
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Rewriter, type Rule } from './pattern.js';

const ACTIVATIONS = ['relu', 'gelu', 'gelu_tanh', 'silu'];
const OP = 'w8_linear';

const gemm = P.op(OP, [P.any('x'), P.any('w'), P.any('scales'), P.opt(P.any('bias')), P.none()], { name: 'gemm', singleUse: true });

const sameTypeAsGemm = (m: Match, rw: Rewriter, v: number): boolean => {
  const a = rw.meta(v), y = rw.meta(m.v('gemm'));
  return a.dtype === y.dtype && shapesEqual(a.shape, y.shape);
};
const attrsOf = (m: Match): Record<string, unknown> => ({ ...m.node('gemm').attrs });

export const W8_EPILOGUE_RULES: Rule[] = [
  {
    name: 'w8-bias-add',
    pattern: P.op('add', [gemm, P.any('b')], { commutative: true }),
    rewrite(m, rw) {
      const a = attrsOf(m);
      if (m.opt('bias') !== null || a.activation !== 'none') return null;
      const b = rw.meta(m.v('b')), N = rw.meta(m.v('w')).shape[0];
      if (b.dtype !== 'f32' || b.shape.length !== 1 || !shapesEqual(b.shape, [N])) return null;
      return rw.emit1(OP, [m.v('x'), m.v('w'), m.v('scales'), m.v('b'), null], a);
    },
  },
  {
    name: 'w8-activation',
    pattern: P.op(ACTIVATIONS, [gemm]),
    rewrite(m, rw) {
      const a = attrsOf(m);
      if (a.activation !== 'none') return null;
      return rw.emit1(OP, [m.v('x'), m.v('w'), m.v('scales'), m.opt('bias'), null], { ...a, activation: m.root.op });
    },
  },
  {
    name: 'w8-residual-add',
    pattern: P.op('add', [gemm, P.any('r')], { commutative: true }),
    rewrite(m, rw) {
      if (!sameTypeAsGemm(m, rw, m.root.outputs[0]) || !sameTypeAsGemm(m, rw, m.v('r'))) return null;
      return rw.emit1(OP, [m.v('x'), m.v('w'), m.v('scales'), m.opt('bias'), m.v('r')], attrsOf(m));
    },
  },
];

export const w8EpiloguePass: Pass = {
  name: 'w8-epilogue',
  description: 'fold bias add, activation and residual add after w8_linear (W8A8 / FP8) into its epilogue',
  run: (graph: Graph, context: PassContext) => applyRules(graph, W8_EPILOGUE_RULES, context),
};
