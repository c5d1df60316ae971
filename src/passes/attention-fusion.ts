// Attention fusion: softmax(q·kᵀ·scale + mask)·v written out of matmul, mul/div, add, softmax and
// matmul becomes scaled_dot_product_attention, whose kernel never materializes the score matrix
// for long sequences. Recognized forms: scale as ·c or ÷c on the scores or ·c on q (or none),
// an additive float mask, or a bool mask applied as where(mask, scores, −inf); kᵀ as a permute of k
// (absorbed: the op reads k untransposed) or any other value (transposed back explicitly). Rank-3
// [B, L, D] operands are given a unit head dim.
// A second rule absorbs the head-split transposes: attention on permute(·, [0, 2, 1, 3]) of q, k
// and v whose result is permuted back is attention_fused in the [B, L, H, D] layout, so the
// reshape from [B, L, H·D] feeds attention directly and its result reshapes straight back.
// Safe: the fused op is defined as this composition (scale applied before the mask, softmax over
// the last axis, the same broadcasting of a head-shared k/v); scores, probabilities and the
// intermediate products must have no other reader. The fused kernel accumulates in higher
// precision than the unfused f32 chain, so results move by a few ulps. One documented difference:
// a query row whose keys are all masked gives NaN unfused (softmax of all −inf) and zeros fused.
import type { Graph } from '../ir/graph.js';
import { shapesEqual, dimsEqual } from '../ir/dims.js';
import type { Dim } from '../tensor/shape.js';
import type { Pass, PassContext } from './manager.js';
import { P, applyRules, type Match, type Pattern, type Rewriter, type Rule } from './pattern.js';

const SWAP_LAST = (rank: number): number[] => [...Array(rank).keys()].map((i) => (i === rank - 2 ? rank - 1 : i === rank - 1 ? rank - 2 : i));
const isSwapLast = (perm: readonly number[]): boolean => perm.length >= 2 && perm.join() === SWAP_LAST(perm.length).join();

const qPattern = P.alt(P.op('mul', [P.any('q'), P.scalar('qscale')], { commutative: true, singleUse: true }), P.any('q'));
const scores = P.op('matmul', [qPattern, P.any('kT')], { name: 'qk', singleUse: true });
const scaled = P.alt(
  P.op('mul', [scores, P.scalar('mulscale')], { commutative: true, singleUse: true }),
  P.op('div', [scores, P.scalar('divscale')], { singleUse: true }),
  scores,
);
const masked = P.alt(
  P.op('add', [scaled, P.any('mask')], { commutative: true, singleUse: true }),
  P.op('where', [P.any('boolMask'), scaled, P.scalar(undefined, (x) => x === -Infinity)], { singleUse: true }),
  scaled,
);
const probs = P.op('softmax', [masked], { name: 'softmax', singleUse: true });
const attentionPattern = P.op('matmul', [probs, P.any('v')]);

function fuseAttention(m: Match, rw: Rewriter): number | null {
  const g = rw.graph;
  const q = m.v('q'), kT = m.v('kT'), v = m.v('v');
  const qm = rw.meta(q), km = rw.meta(kT), vm = rw.meta(v);
  const rank = qm.shape.length;
  if ((rank !== 3 && rank !== 4) || km.shape.length !== rank || vm.shape.length !== rank) return null;
  const axis = m.node('softmax').attrs.axis as number;
  if (axis !== -1 && axis !== rank - 1) return null;
  if (qm.dtype !== km.dtype || qm.dtype !== vm.dtype) return null;
  let scale = 1;
  if (m.has('qscale')) scale *= m.scalar('qscale');
  if (m.has('mulscale')) scale *= m.scalar('mulscale');
  if (m.has('divscale')) scale /= m.scalar('divscale');
  if (!(Number.isFinite(scale) && scale !== 0)) return null; // attribute 0 means 1/sqrt(D)
  // batch must match exactly; heads may be shared by k and v (a broadcast head dim of 1)
  const [b] = qm.shape;
  if (!dimsEqual(km.shape[0], b) || !dimsEqual(vm.shape[0], b)) return null;
  if (rank === 4) {
    const hq = qm.shape[1], hk = km.shape[1];
    if (!dimsEqual(vm.shape[1], hk) || !(dimsEqual(hk, hq) || hk === 1)) return null;
  }
  let mask: number | null = m.opt('mask') ?? m.opt('boolMask');
  if (mask !== null) {
    const mm = rw.meta(mask);
    if (m.has('mask') && mm.dtype !== qm.dtype) return null;
    if (m.has('boolMask') && mm.dtype !== 'bool') return null;
    if (mm.shape.length > 4) return null;
  }
  // the root keeps its type: scores and probabilities were [.., Lq, Lk] of q's dtype
  const out = rw.meta(m.root.outputs[0]);
  if (out.dtype !== qm.dtype) return null;
  const kProducer = rw.view.producers.get(kT);
  let k: number;
  if (kProducer?.op === 'permute' && isSwapLast(kProducer.attrs.perm as number[]) && kProducer.inputs[0] !== null) k = kProducer.inputs[0];
  else k = rw.emit1('permute', [kT], { perm: SWAP_LAST(rank) });
  const to4 = (x: number): number => {
    const s = g.meta(x).shape;
    return rw.emit1('reshape', [x], { shape: [s[0], 1, ...s.slice(1)] as Dim[] });
  };
  if (rank === 3) {
    const q4 = to4(q), k4 = to4(k), v4 = to4(v);
    // a rank-3 mask [B, Lq, Lk] must gain the unit head dim too; lower ranks broadcast as they are
    let mask4 = mask;
    if (mask !== null) {
      const ms = g.meta(mask).shape;
      if (ms.length === 4) return null;
      if (ms.length === 3) mask4 = rw.emit1('reshape', [mask], { shape: [ms[0], 1, ms[1], ms[2]] as Dim[] });
    }
    const o = rw.emit1('scaled_dot_product_attention', [q4, k4, v4, mask4], { scale });
    const o3 = rw.emit1('reshape', [o], { shape: [...out.shape] as Dim[] });
    return shapesEqual(g.meta(o3).shape, out.shape) ? o3 : null;
  }
  const o = rw.emit1('scaled_dot_product_attention', [q, k, v, mask], { scale });
  return shapesEqual(g.meta(o).shape, out.shape) ? o : null;
}

const HEADS = [0, 2, 1, 3];
const headPermute = (name: string): Pattern => P.op('permute', [P.any(name)], { attrs: (a) => (a.perm as number[]).join() === HEADS.join() });

export const ATTENTION_RULES: Rule[] = [
  { name: 'attention', pattern: attentionPattern, rewrite: fuseAttention },
  {
    name: 'attention-head-layout',
    pattern: P.op('permute', [
      P.op('scaled_dot_product_attention', [headPermute('q'), headPermute('k'), headPermute('v'), P.opt(P.any('mask'))], { name: 'sdpa', singleUse: true }),
    ], { attrs: (a) => (a.perm as number[]).join() === HEADS.join() }),
    rewrite(m, rw) {
      if (!rw.canEmit('attention_fused')) return null;
      const { causal, scale } = m.node('sdpa').attrs;
      return rw.emit1('attention_fused', [m.v('q'), m.v('k'), m.v('v'), m.opt('mask')], { causal, scale, layout: 'bshd' });
    },
  },
];

export const attentionFusionPass: Pass = {
  name: 'attention-fusion',
  description: 'matmul-scale-mask-softmax-matmul into scaled_dot_product_attention; head-split transposes into attention_fused',
  run: (graph: Graph, context: PassContext) => applyRules(graph, ATTENTION_RULES, context),
};
