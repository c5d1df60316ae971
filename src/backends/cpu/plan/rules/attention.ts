// Attention rules: scaled-dot-product attention (plain or fused, [B, H, L, D] or [B, L, H, D]) as
// one flash-attention kernel over strided views, and rotary position embedding.
import { normAxis, type View } from '../builder.js';
import { encodeAttention, encodeRotary } from '../kernel-table.gen.js';
import { broadcastTo, numelOf } from '../views.js';
import { definePlanRule } from './registry.js';

definePlanRule(['scaled_dot_product_attention', 'attention_fused'], (node, b) => {
  const op = node.op, a = node.attrs, outV = node.outputs[0];
  const [qv, kv, vv, mv] = node.inputs;
  if (![qv, kv, vv].every((v) => b.isF32(v)) || !b.isF32(outV)) b.unsupported('attention runs on f32 q/k/v');
  if (mv !== null && mv !== undefined && b.dtypeOf(mv) !== 'f32' && b.dtypeOf(mv) !== 'bool') b.unsupported(`mask dtype ${b.dtypeOf(mv)}`);
  const bshd = op === 'attention_fused' && a.layout === 'bshd';
  const perm = bshd ? [0, 2, 1, 3] : [0, 1, 2, 3];
  /** An operand as a view with a unit last stride: its (batch, head, position) strides and dims. */
  const operand = (v: number): { view: View; st: number[]; dims: number[] } => {
    let view = b.viewOf(v);
    if (view.shape.length !== 4) b.unsupported(`attention operands must be rank 4, got [${view.shape.join(', ')}]`);
    if (view.shape[3] > 1 && view.strides[3] !== 1) view = b.contiguous(v);
    return { view, st: perm.slice(0, 3).map((p) => view.strides[p]), dims: perm.map((p) => view.shape[p]) };
  };
  const q = operand(qv!), k = operand(kv!), v = operand(vv!);
  const [B, Hq, Lq, D] = q.dims;
  const [, Hkv, Lk] = k.dims;
  const Dv = v.dims[3];
  let mask: View | null = null, maskStrides = [0, 0, 0, 0];
  if (mv !== null && mv !== undefined) {
    mask = b.viewOf(mv);
    maskStrides = broadcastTo(mask.shape, mask.strides, [B, Hq, Lq, Lk]);
  }
  let out: View, outStrides: number[];
  const consumers = b.users.get(outV) ?? [];
  const next = consumers.length === 1 ? consumers[0] : null;
  const permuteAfter = !bshd && !b.slotOf.has(outV) && next !== null && next.op === 'permute'
    && (next.attrs.perm as number[]).map((p) => normAxis(p, 4)).join() === '0,2,1,3';
  if (bshd || permuteAfter) {
    // write [B, L, H, Dv] rows directly: the layout the head-merge reshape wants
    const target = bshd ? b.dest(outV) : b.dest(next!.outputs[0]);
    outStrides = [Lq * Hq * Dv, Dv, Hq * Dv];
    out = bshd ? target : { ...target, shape: [B, Hq, Lq, Dv], strides: [...outStrides, 1] };
  } else {
    out = b.dest(outV);
    outStrides = [Hq * Lq * Dv, Lq * Dv, Dv];
  }
  const scale = (a.scale as number) === 0 ? 1 / Math.sqrt(D) : (a.scale as number);
  // the bf16 kernel reads the same strided views
  b.emit(op, encodeAttention({
    q: q.view, k: k.view, v: v.view, mask, out, B, Hq, Hkv, Lq, Lk, D, Dv, causal: Boolean(a.causal), maskIsBool: mask?.dtype === 'bool',
    qStrides: q.st, kStrides: k.st, vStrides: v.st, outStrides, maskStrides, bf16: b.bf16, scale,
  }));
  if (b.bf16) b.stats.bf16Attention++;
  b.setView(outV, out);
});

definePlanRule('rotary_embedding', (node, b) => {
  b.needF32(node);
  const [xv, cv, sv] = node.inputs as number[];
  const x = b.contiguous(xv), cos = b.contiguous(cv), sin = b.contiguous(sv);
  const s = x.shape, d = s[s.length - 1];
  const out = b.dest(node.outputs[0]);
  b.emit('rotary_embedding', encodeRotary({
    x, cos, sin, out, rows: d === 0 ? 0 : numelOf(s) / d, seq: s[s.length - 2], d, half: cos.shape[1], interleaved: Boolean(node.attrs.interleaved),
  }));
  b.setView(node.outputs[0], out);
});
