// ONNX mappings of the fused ops graph passes emit (src/ops/fused.ts). Each is written as the
// composition of the unfused ops' mappings, mirroring how its reference kernel is defined, so a
// graph exports the same whether or not fusion ran (runtimes fuse the standard pattern themselves).
import { getOp, type TensorMeta } from '../../ops/registry.js';
import { normalizeAttrs } from '../../ops/attrs.js';
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
