// Attention rules: scaled-dot-product attention (plain or fused, [B, H, L, D] or [B, L, H, D]) as
// one flash-attention kernel over strided views, and rotary position embedding over strided rows.
import { normAxis, type View } from '../builder.js';
import { encodeAttention, encodeRotary } from '../kernel-table.gen.js';
import { broadcastTo, numelOf, reshapeStrides } from '../views.js';
import { definePlanRule } from './registry.js';

/** Whether a bf16 plan runs this attention on the bf16 kernel (native/attention/attention_bf16.cc).
 *  That kernel pads the head dims D and Dv to 32 (its packed panels' depth and width); on the
 *  AVX512_BF16 kernel its products gain too little to pay for more: Zen 5, 2 threads, [2, 8, L, D]
 *  (scratch A/B, bf16 ÷ fp32 time): D 40 (SD's 320-channel level, padded to 64) 1.14× at 4096
 *  keys, 1.15× at 1024, 1.56× at 77 (cross-attention); D 80 (padded to 96) 1.02× / 0.68×; D 64
 *  0.90×; D 160 0.75×. So without AMX a head dim padded by more than a quarter stays fp32; AMX
 *  tiles are fast enough to keep bf16 everywhere. INFERJIT_BF16_ATTENTION=bf16 / fp32 forces
 *  either (tests, A/B). */
function bf16AttentionPays(D: number, Dv: number, amx: boolean): boolean {
  const mode = process.env.INFERJIT_BF16_ATTENTION ?? 'auto';
  if (mode === 'bf16') return true;
  if (mode === 'fp32') return false;
  if (mode !== 'auto') throw new Error(`INFERJIT_BF16_ATTENTION must be auto, bf16 or fp32, got '${mode}'`);
  const padded = (d: number): number => Math.ceil(d / 32) * 32;
  return amx || (padded(D) <= 1.25 * D && padded(Dv) <= 1.25 * Dv);
}

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
  const bf16 = b.bf16 && bf16AttentionPays(D, Dv, b.bf16Amx);
  // the bf16 kernel reads the same strided views
  b.emit(op, encodeAttention({
    q: q.view, k: k.view, v: v.view, mask, out, B, Hq, Hkv, Lq, Lk, D, Dv, causal: Boolean(a.causal), maskIsBool: mask?.dtype === 'bool',
    qStrides: q.st, kStrides: k.st, vStrides: v.st, outStrides, maskStrides, bf16, scale,
  }));
  if (bf16) b.stats.bf16Attention++;
  b.setView(outV, out);
});

definePlanRule('rotary_embedding', (node, b) => {
  b.needF32(node);
  const [xv, cv, sv] = node.inputs as number[];
  const outV = node.outputs[0];
  const cos = b.contiguous(cv), sin = b.contiguous(sv);
  const s = b.shape(xv), d = s[s.length - 1], seq = s[s.length - 2];
  const outer = d * seq === 0 ? 0 : numelOf(s) / (d * seq);
  const as3 = (view: View): number[] | null => {
    const st = reshapeStrides(view.shape, view.strides, [outer, seq, d]);
    return st && (d <= 1 || st[2] === 1) ? st : null;
  };
  // x as strided [outer, seq, d] rows (a [heads, tokens, d] transpose of a projection's columns is
  // read where it lies); the result keeps x's layout, so the transpose back to [tokens, heads, d]
  // that kv_write and paged_attention read is contiguous again. A graph output stays contiguous.
  let x = b.viewOf(xv), xSt = as3(x);
  if (!xSt) { x = b.contiguous(xv); xSt = as3(x)!; }
  let out = b.slotThroughReshapes(outV) === undefined ? b.allocLayoutOf(x) : b.dest(outV);
  let outSt = as3(out);
  if (!outSt) { out = b.dest(outV); outSt = as3(out)!; }
  b.emit('rotary_embedding', encodeRotary({
    x, cos, sin, out, outer, seq, d, half: cos.shape[1], interleaved: Boolean(node.attrs.interleaved), xStrides: xSt.slice(0, 2), outStrides: outSt.slice(0, 2),
  }));
  b.setView(outV, out);
});
