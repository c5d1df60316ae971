// ONNX mappings of the normalizations (src/ops/norm.ts): layer_norm is the standard
// LayerNormalization (opset 17); rms_norm and group_norm decompose into standard nodes (opset 18's
// GroupNormalization scales per group, not per channel, so it does not match group_norm), with
// statistics in f32 for half inputs. rms_norm becomes ORT's SimplifiedLayerNormalization only when
// contrib ops are allowed.
import type { DType } from '../../tensor/dtype.js';
import { onnxFloat, registerOnnxMapping, type OnnxEmitContext } from '../mapping.js';

interface LayerNormAttrs { normalized_ndim: number; eps: number }
interface RmsNormAttrs { eps: number }
interface GroupNormAttrs { num_groups: number; eps: number }

const statsDType = (d: DType): DType => (d === 'f16' || d === 'bf16' ? 'f32' : d);

/** Ones shaped like the last `count` dims of x (for a required scale input we were not given). */
function onesLikeTail(ctx: OnnxEmitContext, x: string, count: number, dtype: DType): string {
  const shape = ctx.node1('Shape', [x], { start: -count });
  return ctx.node1('ConstantOfShape', [shape], { value: { tensor: { dtype, shape: [1], values: [1] } } });
}

registerOnnxMapping<LayerNormAttrs>('layer_norm', (ctx, [x, weight, bias], { normalized_ndim: nd, eps }, [out]) => {
  const scale = weight ?? onesLikeTail(ctx, x!, nd, out.dtype);
  return [ctx.node1('LayerNormalization', bias ? [x!, scale, bias] : [x!, scale], { axis: -nd, epsilon: onnxFloat(eps), stash_type: 1 })];
});

registerOnnxMapping<RmsNormAttrs>('rms_norm', (ctx, [x, weight], { eps }, [out]) => {
  if (ctx.contribOps) {
    // ORT registers SimplifiedLayerNormalization in the default domain (it is not in the ONNX standard)
    const scale = weight ?? onesLikeTail(ctx, x!, 1, out.dtype);
    return [ctx.node1('SimplifiedLayerNormalization', [x!, scale], { axis: -1, epsilon: onnxFloat(eps), stash_type: 1 })];
  }
  const s = statsDType(out.dtype);
  const xs = ctx.cast(x!, out.dtype, s);
  const meanSquare = ctx.node1('ReduceMean', [ctx.node1('Mul', [xs, xs]), ctx.i64([-1])], { keepdims: 1 });
  const inv = ctx.node1('Reciprocal', [ctx.node1('Sqrt', [ctx.node1('Add', [meanSquare, ctx.scalar(eps, s)])])]);
  let y = ctx.cast(ctx.node1('Mul', [xs, inv]), s, out.dtype);
  if (weight) y = ctx.node1('Mul', [y, weight]);
  return [y];
});

registerOnnxMapping<GroupNormAttrs>('group_norm', (ctx, [x, weight, bias], { num_groups: groups, eps }, [out], [mx]) => {
  const rank = mx!.shape.length;
  const s = statsDType(out.dtype);
  const xs = ctx.cast(x!, out.dtype, s);
  // [N, C, *] -> [N, G, C/G · prod(*)]: 0 copies N from the input
  const grouped = ctx.node1('Reshape', [xs, ctx.i64([0, groups, -1])]);
  const axes = ctx.i64([2]);
  const mean = ctx.node1('ReduceMean', [grouped, axes], { keepdims: 1 });
  const dev = ctx.node1('Sub', [grouped, mean]);
  const variance = ctx.node1('ReduceMean', [ctx.node1('Mul', [dev, dev]), axes], { keepdims: 1 });
  const normed = ctx.node1('Div', [dev, ctx.node1('Sqrt', [ctx.node1('Add', [variance, ctx.scalar(eps, s)])])]);
  let y = ctx.cast(ctx.node1('Reshape', [normed, ctx.node1('Shape', [x!])]), s, out.dtype);
  // per-channel parameters [C] -> [C, 1, ..., 1] so they broadcast over the spatial dims
  const perChannel = ctx.i64([-1, ...new Array<number>(rank - 2).fill(1)]);
  if (weight) y = ctx.node1('Mul', [y, ctx.node1('Reshape', [weight, perChannel])]);
  if (bias) y = ctx.node1('Add', [y, ctx.node1('Reshape', [bias, perChannel])]);
  return [y];
});
