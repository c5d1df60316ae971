// Norm fusion: rewrites normalizations written out of elementary ops into the fused norm ops.
//  - LayerNorm: (x − mean(x)) · rsqrt(mean((x − mean(x))²) + eps)   (or ÷ sqrt(...)), over the
//    trailing dims, the square written as pow(d, 2) or d·d  ->  layer_norm(x);
//  - RMSNorm: x · rsqrt(mean(x²) + eps) over the last dim (or ÷ sqrt(...))  ->  rms_norm(x);
//  - affine absorption: layer_norm(x)·w + b and rms_norm(x)·w  ->  the norm with weight and bias;
//  - adaLN modulation (DiT): layer_norm(x)·(1 + scale) + shift with per-sample scale and shift
//    [N, D] unsqueezed over the tokens  ->  layer_norm_modulate(x, shift, scale).
// Safe: each pattern is the definition of the fused op (biased variance, eps inside the root,
// statistics over the same axes); rules fire only when dtypes agree and the matched value keeps its
// shape, and intermediates must have no other readers. The fused kernels compute in higher
// precision than the f32 chain they replace, so results move by a few ulps, not more.
import type { Graph } from '../ir/graph.js';
import { shapesEqual } from '../ir/dims.js';
import type { Dim } from '../tensor/shape.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Pattern, type Rewriter, type Rule } from './pattern.js';

const keepdim = (a: Record<string, unknown>): boolean => a.keepdim === true;

/** The trailing-dims count a keepdim mean reduces, or 0 when its axes are not the trailing dims. */
function trailingAxes(axes: readonly number[], rank: number): number {
  const norm = (axes.length === 0 ? [...Array(rank).keys()] : axes.map((a) => (a < 0 ? a + rank : a))).sort((a, b) => a - b);
  return norm.every((a, i) => a === rank - norm.length + i) ? norm.length : 0;
}

/** rsqrt(v + eps) · d, or d ÷ sqrt(v + eps), with v matched by `variance` and d by `dev`. */
function normalized(dev: Pattern, variance: Pattern): Pattern[] {
  const plusEps = P.op('add', [variance, P.scalar('eps', (e) => e >= 0)], { commutative: true, singleUse: true });
  return [
    P.op('mul', [dev, P.op('rsqrt', [plusEps], { singleUse: true })], { commutative: true }),
    P.op('div', [dev, P.op('sqrt', [plusEps], { singleUse: true })]),
  ];
}

function square(of: Pattern): Pattern {
  return P.alt(P.op('pow', [of, P.value(2)], { singleUse: true }), P.op('mul', [of, of], { singleUse: true }));
}

// LayerNorm: the deviation d = x − mean(x) appears twice (numerator and variance): one capture.
const mean1 = P.op('mean', [P.any('x')], { name: 'mean1', attrs: keepdim });
const dev = P.op('sub', [P.any('x'), mean1], { name: 'd' });
const variance = P.op('mean', [square(dev)], { name: 'mean2', attrs: keepdim, singleUse: true });

function layerNormRewrite(m: Match, rw: Rewriter): number | null {
  const x = m.v('x');
  const xm = rw.meta(x);
  const rank = xm.shape.length;
  const a1 = m.node('mean1').attrs.axes as number[], a2 = m.node('mean2').attrs.axes as number[];
  const nd = trailingAxes(a1, rank);
  if (nd === 0 || trailingAxes(a2, rank) !== nd) return null;
  const a1n = a1.map((a) => (a < 0 ? a + rank : a)).sort(), a2n = a2.map((a) => (a < 0 ? a + rank : a)).sort();
  if (a1n.join() !== a2n.join()) return null;
  if (rw.meta(m.root.outputs[0]).dtype !== xm.dtype) return null;
  return rw.emit1('layer_norm', [x, null, null], { normalized_ndim: nd, eps: m.scalar('eps') });
}

const msq = P.op('mean', [square(P.any('x'))], { name: 'ms', attrs: keepdim, singleUse: true });

function rmsNormRewrite(m: Match, rw: Rewriter): number | null {
  const x = m.v('x');
  const xm = rw.meta(x);
  if (trailingAxes(m.node('ms').attrs.axes as number[], xm.shape.length) !== 1) return null;
  if (rw.meta(m.root.outputs[0]).dtype !== xm.dtype) return null;
  return rw.emit1('rms_norm', [x, null], { eps: m.scalar('eps') });
}

/** `p` as a vector of exactly the normalized shape: itself, or a reshape when it only has extra
 *  leading 1s ([1, 1, D] for D); null when it does not fit. */
function asTailParam(rw: Rewriter, p: number, x: number, nd: number): number | null {
  const pm = rw.meta(p), xm = rw.meta(x);
  if (pm.dtype !== xm.dtype) return null;
  const tail = xm.shape.slice(xm.shape.length - nd);
  if (shapesEqual(pm.shape, tail)) return p;
  const lead = pm.shape.length - nd;
  if (lead > 0 && pm.shape.slice(0, lead).every((d) => d === 1) && shapesEqual(pm.shape.slice(lead), tail)) {
    return rw.emit1('reshape', [p], { shape: tail as Dim[] });
  }
  return null;
}

/** Output shape unchanged by the affine op (the parameter only broadcasts over x). */
const keepsShape = (m: Match, rw: Rewriter, normValue: number): boolean =>
  shapesEqual(rw.meta(m.root.outputs[0]).shape, rw.meta(normValue).shape) && rw.meta(m.root.outputs[0]).dtype === rw.meta(normValue).dtype;

const lnNoAffine = P.op('layer_norm', [P.any('x'), P.none(), P.none()], { name: 'ln', singleUse: true });
const lnWeightOnly = P.op('layer_norm', [P.any('x'), P.any('w'), P.none()], { name: 'ln', singleUse: true });
const rmsNoWeight = P.op('rms_norm', [P.any('x'), P.none()], { name: 'rms', singleUse: true });

/** [N, D] source of a per-sample vector used as [N, 1, ..., 1, D] against x [N, ..., D]. */
function perSample(rw: Rewriter, v: number, x: number): number | null {
  const xm = rw.meta(x), vm = rw.meta(v);
  const r = xm.shape.length;
  if (r < 2 || vm.dtype !== xm.dtype || vm.shape.length !== r) return null;
  const n = xm.shape[0], d = xm.shape[r - 1];
  if (!shapesEqual([vm.shape[0], vm.shape[r - 1]], [n, d]) || !vm.shape.slice(1, r - 1).every((e) => e === 1)) return null;
  const producer = rw.view.producers.get(v);
  if (producer?.op === 'reshape' && producer.inputs[0] !== null) {
    const src = rw.meta(producer.inputs[0]);
    if (src.shape.length === 2 && shapesEqual(src.shape, [n, d])) return producer.inputs[0];
  }
  return rw.emit1('reshape', [v], { shape: [n, d] });
}

export const NORM_RULES: Rule[] = [
  ...normalized(dev, variance).map((pattern, i): Rule => ({ name: `layer-norm-${i === 0 ? 'rsqrt' : 'sqrt'}`, pattern: pattern as Rule['pattern'], rewrite: layerNormRewrite })),
  ...normalized(P.any('x'), msq).map((pattern, i): Rule => ({ name: `rms-norm-${i === 0 ? 'rsqrt' : 'sqrt'}`, pattern: pattern as Rule['pattern'], rewrite: rmsNormRewrite })),
  {
    name: 'layer-norm-modulate',
    pattern: P.op('add', [
      P.op('mul', [P.op('layer_norm', [P.any('x'), P.opt(P.any('w')), P.opt(P.any('b'))], { name: 'ln', singleUse: true, attrs: (a) => a.normalized_ndim === 1 }),
        P.op('add', [P.any('scaleU'), P.value(1)], { commutative: true })], { commutative: true, singleUse: true }),
      P.any('shiftU'),
    ], { commutative: true }),
    rewrite(m, rw) {
      if (!rw.canEmit('layer_norm_modulate')) return null;
      const x = m.v('x');
      if (!keepsShape(m, rw, m.v('ln'))) return null;
      const scale = perSample(rw, m.v('scaleU'), x);
      const shift = scale === null ? null : perSample(rw, m.v('shiftU'), x);
      if (scale === null || shift === null) return null;
      return rw.emit1('layer_norm_modulate', [x, shift, scale, m.opt('w'), m.opt('b')], { eps: m.node('ln').attrs.eps });
    },
  },
  {
    name: 'layer-norm-weight',
    pattern: P.op('mul', [lnNoAffine, P.any('w')], { commutative: true }),
    rewrite(m, rw) {
      const ln = m.node('ln');
      if (!keepsShape(m, rw, m.v('ln'))) return null;
      const w = asTailParam(rw, m.v('w'), m.v('x'), ln.attrs.normalized_ndim as number);
      return w === null ? null : rw.emit1('layer_norm', [m.v('x'), w, null], ln.attrs);
    },
  },
  {
    name: 'layer-norm-bias',
    pattern: P.op('add', [P.alt(lnWeightOnly, lnNoAffine), P.any('b')], { commutative: true }),
    rewrite(m, rw) {
      const ln = m.node('ln');
      if (!keepsShape(m, rw, m.v('ln'))) return null;
      const b = asTailParam(rw, m.v('b'), m.v('x'), ln.attrs.normalized_ndim as number);
      return b === null ? null : rw.emit1('layer_norm', [m.v('x'), m.opt('w'), b], ln.attrs);
    },
  },
  {
    name: 'rms-norm-weight',
    pattern: P.op('mul', [rmsNoWeight, P.any('w')], { commutative: true }),
    rewrite(m, rw) {
      if (!keepsShape(m, rw, m.v('rms'))) return null;
      const w = asTailParam(rw, m.v('w'), m.v('x'), 1);
      return w === null ? null : rw.emit1('rms_norm', [m.v('x'), w], m.node('rms').attrs);
    },
  },
];

export const normFusionPass: Pass = {
  name: 'norm-fusion',
  description: 'decomposed LayerNorm/RMSNorm into layer_norm/rms_norm (with affine); adaLN modulate into layer_norm_modulate',
  run: (graph: Graph, context: PassContext) => applyRules(graph, NORM_RULES, context),
};
