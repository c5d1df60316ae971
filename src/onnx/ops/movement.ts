// ONNX mappings of the data-movement ops (src/ops/movement.ts). Shapes in attributes may hold
// symbolic dims: a lone symbolic dim of a reshape becomes -1 (the runtime infers it); otherwise
// dims are computed at run time from the model inputs' shapes (OnnxEmitContext.shape).
import type { DType } from '../../tensor/dtype.js';
import type { Dim } from '../../tensor/shape.js';
import { onnxDataType } from '../proto.js';
import { registerOnnxMapping } from '../mapping.js';

interface ShapeAttrs { shape: readonly Dim[] }
interface AxisAttrs { axis: number }
interface SplitAttrs { axis: number; sizes: readonly number[] }
interface SliceAttrs { starts: readonly number[]; ends: readonly number[]; axes: readonly number[]; steps: readonly number[] }
interface PadAttrs { pads: readonly number[]; mode: 'constant' | 'reflect' | 'replicate'; value: number }
interface CastAttrs { dtype: DType }
interface UpsampleAttrs { scale: readonly number[] }

registerOnnxMapping<ShapeAttrs>('reshape', (ctx, [x], { shape }) => {
  const symbolic = shape.filter((d) => typeof d === 'string').length;
  const target = symbolic === 1 && !shape.includes(-1) ? shape.map((d) => (typeof d === 'string' ? -1 : d)) : shape;
  // a literal 0 is a size-0 dim for us; ONNX reads 0 as "copy the input dim" unless allowzero is set
  const allowzero = target.every((d) => typeof d === 'number') && target.includes(0);
  return [ctx.node1('Reshape', [x!, ctx.shape(target)], allowzero ? { allowzero: 1 } : {})];
});

registerOnnxMapping<{ perm: readonly number[] }>('permute', (ctx, [x], { perm }) => [ctx.node1('Transpose', [x!], { perm: [...perm] })]);

registerOnnxMapping<AxisAttrs>('concat', (ctx, inputs, { axis }) => [ctx.node1('Concat', inputs.map((n) => n!), { axis })]);

registerOnnxMapping<SplitAttrs>('split', (ctx, [x], { axis, sizes }) =>
  ctx.node('Split', [x!, ctx.i64(sizes)], { axis }, { outputs: sizes.length }));

registerOnnxMapping<SliceAttrs>('slice', (ctx, [x], { starts, ends, axes, steps }) =>
  [ctx.node1('Slice', [x!, ctx.i64(starts), ctx.i64(ends), ctx.i64(axes), ctx.i64(steps)])]);

const PAD_MODES = { constant: 'constant', reflect: 'reflect', replicate: 'edge' } as const;
registerOnnxMapping<PadAttrs>('pad', (ctx, [x], { pads, mode, value }, [out]) => {
  // ours: [b0, e0, b1, e1, ...]; ONNX: [b0, b1, ..., e0, e1, ...]
  const rank = pads.length / 2;
  const onnxPads = [...Array.from({ length: rank }, (_, d) => pads[2 * d]), ...Array.from({ length: rank }, (_, d) => pads[2 * d + 1])];
  const inputs = mode === 'constant' ? [x!, ctx.i64(onnxPads), ctx.scalar(value, out.dtype)] : [x!, ctx.i64(onnxPads)];
  return [ctx.node1('Pad', inputs, { mode: PAD_MODES[mode] })];
});

registerOnnxMapping<ShapeAttrs>('expand', (ctx, [x], { shape }, _outs, [mx]) => {
  const lead = shape.length - mx!.shape.length;
  // ONNX Expand broadcasts, so 1 keeps x's dim: use it for -1 and for dims x already has
  const target = shape.map((d, i) => (d === -1 || (i >= lead && mx!.shape[i - lead] === d) ? 1 : d));
  return [ctx.node1('Expand', [x!, ctx.shape(target)])];
});

registerOnnxMapping<AxisAttrs>('gather', (ctx, [x, indices], { axis }) => [ctx.node1('Gather', [x!, indices!], { axis })]);
registerOnnxMapping('embedding', (ctx, [weight, ids]) => [ctx.node1('Gather', [weight!, ids!], { axis: 0 })]);

registerOnnxMapping<CastAttrs>('cast', (ctx, [x], { dtype }) => [ctx.node1('Cast', [x!], { to: onnxDataType(dtype) })]);

registerOnnxMapping<UpsampleAttrs>('upsample_nearest2d', (ctx, [x], { scale }) => {
  // asymmetric coordinates with floor rounding: out[y] = in[floor(y / s)], exactly our rule
  const scales = ctx.constant('f32', [4], [1, 1, scale[0], scale[1]]);
  return [ctx.node1('Resize', [x!, null, scales], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' })];
});
