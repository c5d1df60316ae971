// Transpose folding into GEMM operands: matmul(x, W) with a 2-D right operand is linear(x, Wᵀ),
// and linear reads its weight as [N, K], so
//  - matmul(x, permute(y, [1, 0]))  ->  linear(x, y)   (the transpose disappears), and
//  - matmul(x, W) with W a compile-time constant [K, N]  ->  linear(x, permute(W, [1, 0])), whose
//    permute is parameter-derived: it lands in the constant prologue and is computed once per weight
//    version (src/passes/derived.ts), and the native linear kernel can pre-pack it.
// (Transposes feeding attention are absorbed by attention-fusion.) Safe: for a 2-D b,
// matmul(a, b) = a·b = a·(bᵀ)ᵀ = linear(a, bᵀ) with NumPy's broadcasting of a's leading dims, which
// linear shares; dtypes must already agree for either op.
import type { Graph } from '../ir/graph.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Rule } from './pattern.js';

const rank2 = (meta: { shape: readonly unknown[] }): boolean => meta.shape.length === 2;

export const TRANSPOSE_FOLD_RULES: Rule[] = [
  {
    name: 'matmul-transposed-weight',
    pattern: P.op('matmul', [P.any('x', (m) => m.shape.length >= 1), P.op('permute', [P.any('y', rank2)], { attrs: (a) => (a.perm as number[]).join() === '1,0' })]),
    rewrite: (m, rw) => rw.emit1('linear', [m.v('x'), m.v('y')]),
  },
  {
    name: 'matmul-constant-weight',
    pattern: P.op('matmul', [P.any('x', (m) => m.shape.length >= 1), P.const('w', rank2)]),
    rewrite: (m, rw) => rw.emit1('linear', [m.v('x'), rw.emit1('permute', [m.v('w')], { perm: [1, 0] })]),
  },
];

export const transposeFoldPass: Pass = {
  name: 'transpose-fold',
  description: 'matmul with a transposed or constant 2-D right operand into linear (weight transposes become derived constants)',
  run: (graph: Graph, context: PassContext) => applyRules(graph, TRANSPOSE_FOLD_RULES, context),
};
