// ONNX mappings of the convolution / group-norm fused ops (src/ops/fused-conv-norm.ts), written as
// the composition of the unfused ops' mappings (as in fused.ts), so a graph exports the same
// whether or not the fusions ran.
import { getOp, type TensorMeta } from '../../ops/registry.js';
import { normalizeAttrs } from '../../ops/attrs.js';
import { getOnnxMapping, registerOnnxMapping, type OnnxEmitContext } from '../mapping.js';

function emit(ctx: OnnxEmitContext, op: string, inputs: (string | null)[], ins: (TensorMeta | null)[], attrs: Record<string, unknown> = {}): { names: string[]; metas: TensorMeta[] } {
  const def = getOp(op);
  const a = normalizeAttrs(def.name, def.attrs, attrs);
  const metas = def.infer(ins, a);
  return { names: getOnnxMapping(op)(ctx, inputs, a, metas, ins), metas };
}

interface ConvAttrs { stride: number[]; padding: number[]; dilation: number[]; groups: number; activation: string }
interface GnAttrs { num_groups: number; eps: number; activation: string }

registerOnnxMapping<ConvAttrs>('conv2d_fused', (ctx, [x, weight, bias, chanBias, residual], { activation, ...conv }, _outs, [mx, mw, mb, mc, mr]) => {
  let y = emit(ctx, 'conv2d', [x, weight, bias], [mx, mw, mb], conv);
  if (chanBias) y = emit(ctx, 'add', [y.names[0], chanBias], [y.metas[0], mc]);
  if (activation !== 'none') y = emit(ctx, activation, y.names, y.metas);
  if (residual) y = emit(ctx, 'add', [y.names[0], residual], [y.metas[0], mr]);
  return y.names;
});

registerOnnxMapping<GnAttrs>('group_norm_act', (ctx, [x, weight, bias], { activation, num_groups, eps }, _outs, [mx, mw, mb]) => {
  const y = emit(ctx, 'group_norm', [x, weight, bias], [mx, mw, mb], { num_groups, eps });
  return activation === 'none' ? y.names : emit(ctx, activation, y.names, y.metas).names;
});

registerOnnxMapping<GnAttrs>('add_group_norm_act', (ctx, [x, residual, weight, bias], { activation, num_groups, eps }, _outs, [mx, mr, mw, mb]) => {
  const sum = emit(ctx, 'add', [x, residual], [mx, mr]);
  const y = emit(ctx, 'group_norm', [sum.names[0], weight, bias], [sum.metas[0], mw, mb], { num_groups, eps });
  return [activation === 'none' ? y.names[0] : emit(ctx, activation, y.names, y.metas).names[0], sum.names[0]];
});
