// Algebraic simplification: collapses reshape∘reshape and permute∘permute chains, and removes
// identity ops (reshape or expand to the same shape, the identity permutation, cast to the same
// dtype, x·1, x/1, x+0, x−0, −(−x), a one-piece concat or split). Each rule only fires when the
// result keeps the original value's dtype and shape, so users see the same tensor. Safe because
// these identities hold exactly in floating point (a reshape only relabels row-major elements), with
// one documented exception: x + 0 turns x = −0 into +0 while the folded graph keeps −0, which
// compares equal.
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Rule } from './pattern.js';

const sameType = (g: Graph, a: number, b: number): boolean => {
  const x = g.meta(a), y = g.meta(b);
  return x.dtype === y.dtype && shapesEqual(x.shape, y.shape);
};

/** `x` stands in for the matched value when it has the same dtype and shape. */
const identity = (name: string, pattern: Rule['pattern'], keep = 'x'): Rule => ({
  name,
  pattern,
  rewrite: (m, rw) => (sameType(rw.graph, m.v(keep), m.root.outputs[0]) ? m.v(keep) : null),
});

export const SIMPLIFY_RULES: Rule[] = [
  {
    name: 'reshape-of-reshape',
    pattern: P.op('reshape', [P.op('reshape', [P.any('x')])]),
    // the outer target shape already names every dim (or one -1 inferred from the same count)
    rewrite: (m, rw) => rw.emit1('reshape', [m.v('x')], { shape: [...rw.graph.meta(m.root.outputs[0]).shape] }),
  },
  {
    name: 'permute-of-permute',
    pattern: P.op('permute', [P.op('permute', [P.any('x')], { name: 'inner' })]),
    rewrite: (m, rw) => {
      const p1 = m.node('inner').attrs.perm as number[], p2 = m.root.attrs.perm as number[];
      const perm = p2.map((i) => p1[i]); // out[i] = mid[p2[i]] = x[p1[p2[i]]]
      return perm.every((p, i) => p === i) ? m.v('x') : rw.emit1('permute', [m.v('x')], { perm });
    },
  },
  identity('identity-reshape', P.op('reshape', [P.any('x')])),
  identity('identity-expand', P.op('expand', [P.any('x')])),
  identity('identity-permute', P.op('permute', [P.any('x')], { attrs: (a) => (a.perm as number[]).every((p, i) => p === i) })),
  identity('identity-cast', P.op('cast', [P.any('x')])),
  identity('mul-one', P.op('mul', [P.any('x'), P.value(1)], { commutative: true })),
  identity('div-one', P.op('div', [P.any('x'), P.value(1)])),
  identity('add-zero', P.op('add', [P.any('x'), P.scalar(undefined, (c) => c === 0)], { commutative: true })),
  identity('sub-zero', P.op('sub', [P.any('x'), P.scalar(undefined, (c) => c === 0)])),
  identity('neg-neg', P.op('neg', [P.op('neg', [P.any('x')])])),
  identity('one-piece-concat', P.op('concat', [P.any('x')])),
  identity('one-piece-split', P.op('split', [P.any('x')], { attrs: (a) => (a.sizes as number[]).length === 1 })),
];

export const simplifyPass: Pass = {
  name: 'simplify',
  description: 'collapse reshape/permute chains; drop identity reshapes, permutes, casts, x*1, x+0',
  run: (graph: Graph, context: PassContext) => applyRules(graph, SIMPLIFY_RULES, context),
};
