// ONNX mappings of the fused ops graph passes emit (src/ops/fused.ts). Each is written as the
// composition of the unfused ops' mappings, mirroring how its reference kernel is defined, so a
// graph exports the same whether or not fusion ran (runtimes fuse the standard pattern themselves).
import { getOp, type TensorMeta } from '../../ops/registry.js';
import { normalizeAttrs } from '../../ops/attrs.js';
import { parseElementwiseProgram } from '../../ops/fused.js';
import { getOnnxMapping, registerOnnxMapping, type OnnxEmitContext } from '../mapping.js';

interface LinearFusedAttrs { activation: string }
interface NormAttrs { normalized_ndim?: number; eps: number }

/** Emits op `op` through its own mapping; returns its output names and metadata. */
function emit(ctx: OnnxEmitContext, op: string, inputs: (string | null)[], ins: (TensorMeta | null)[], attrs: Record<string, unknown> = {}): { names: string[]; metas: TensorMeta[] } {
  const def = getOp(op);
  const a = normalizeAttrs(def.name, def.attrs, attrs);
  const metas = def.infer(ins, a);
  return { names: getOnnxMapping(op)(ctx, inputs, a, metas, ins), metas };
}

registerOnnxMapping<LinearFusedAttrs>('linear_fused', (ctx, [x, weight, bias, residual], { activation }, _outs, [mx, mw, mb, mr]) => {
  let y = emit(ctx, 'linear', [x, weight, bias], [mx, mw, mb]);
  if (activation !== 'none') y = emit(ctx, activation, y.names, y.metas);
  if (residual) y = emit(ctx, 'add', [y.names[0], residual], [y.metas[0], mr]);
  return y.names;
});

registerOnnxMapping<NormAttrs>('add_layer_norm', (ctx, [x, residual, weight, bias], attrs, _outs, [mx, mr, mw, mb]) => {
  const sum = emit(ctx, 'add', [x, residual], [mx, mr]);
  const normed = emit(ctx, 'layer_norm', [sum.names[0], weight, bias], [sum.metas[0], mw, mb], { normalized_ndim: attrs.normalized_ndim, eps: attrs.eps });
  return [normed.names[0], sum.names[0]];
});

registerOnnxMapping<NormAttrs>('add_rms_norm', (ctx, [x, residual, weight], { eps }, _outs, [mx, mr, mw]) => {
  const sum = emit(ctx, 'add', [x, residual], [mx, mr]);
  const normed = emit(ctx, 'rms_norm', [sum.names[0], weight], [sum.metas[0], mw], { eps });
  return [normed.names[0], sum.names[0]];
});

registerOnnxMapping<{ num_groups: number; eps: number }>('add_group_norm', (ctx, [x, residual, weight, bias], { num_groups, eps }, _outs, [mx, mr, mw, mb]) => {
  const sum = emit(ctx, 'add', [x, residual], [mx, mr]);
  const normed = emit(ctx, 'group_norm', [sum.names[0], weight, bias], [sum.metas[0], mw, mb], { num_groups, eps });
  return [normed.names[0], sum.names[0]];
});

registerOnnxMapping<{ axis: number }>('add_softmax', (ctx, [x, addend], { axis }, _outs, [mx, ma]) => {
  const sum = emit(ctx, 'add', [x, addend], [mx, ma]);
  return emit(ctx, 'softmax', sum.names, sum.metas, { axis }).names;
});

interface LayerNormModulateAttrs { eps: number }

registerOnnxMapping<LayerNormModulateAttrs>('layer_norm_modulate', (ctx, [x, shift, scale, weight, bias], { eps }, _outs, [mx, msh, msc, mw, mb]) => {
  const normed = emit(ctx, 'layer_norm', [x, weight, bias], [mx, mw, mb], { normalized_ndim: 1, eps });
  const rank = mx!.shape.length;
  const perSample = (m: TensorMeta): (number | string)[] => [m.shape[0], ...new Array<number>(rank - 2).fill(1), m.shape[1]];
  const sc = emit(ctx, 'reshape', [scale], [msc], { shape: perSample(msc!) });
  const oneMeta: TensorMeta = { dtype: msc!.dtype, shape: [] };
  const onePlus = emit(ctx, 'add', [sc.names[0], ctx.scalar(1, msc!.dtype)], [sc.metas[0], oneMeta]);
  const scaled = emit(ctx, 'mul', [normed.names[0], onePlus.names[0]], [normed.metas[0], onePlus.metas[0]]);
  const sh = emit(ctx, 'reshape', [shift], [msh], { shape: perSample(msh!) });
  return emit(ctx, 'add', [scaled.names[0], sh.names[0]], [scaled.metas[0], sh.metas[0]]).names;
});

registerOnnxMapping<{ program: string }>('fused_elementwise', (ctx, inputs, { program }, _outs, ins) => {
  const prog = parseElementwiseProgram(program, inputs.length);
  const names = inputs.map((n) => n!);
  const metas = ins.map((m) => m!);
  for (const p of prog) {
    const r = emit(ctx, p.op, p.args.map((a) => names[a]), p.args.map((a) => metas[a]));
    names.push(r.names[0]);
    metas.push(r.metas[0]);
  }
  return [names[names.length - 1]];
});

interface AttentionFusedAttrs { causal: boolean; scale: number; layout: string }

registerOnnxMapping<AttentionFusedAttrs>('attention_fused', (ctx, [q, k, v, mask], { causal, scale, layout }, _outs, [mq, mk, mv, mm]) => {
  if (layout === 'bhsd') return emit(ctx, 'scaled_dot_product_attention', [q, k, v, mask], [mq, mk, mv, mm], { causal, scale }).names;
  const perm = [0, 2, 1, 3];
  const t = (name: string, m: TensorMeta) => emit(ctx, 'permute', [name], [m], { perm });
  const [tq, tk, tv] = [t(q!, mq!), t(k!, mk!), t(v!, mv!)];
  const o = emit(ctx, 'scaled_dot_product_attention', [tq.names[0], tk.names[0], tv.names[0], mask], [tq.metas[0], tk.metas[0], tv.metas[0], mm], { causal, scale });
  return t(o.names[0], o.metas[0]).names;
});
