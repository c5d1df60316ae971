// ONNX mappings of the reductions, argmax and softmax/log_softmax (src/ops/reduce.ts). Opset 18
// takes reduction axes as an input; an empty axes list means every axis, as in our ops.
import type { DType } from '../../tensor/dtype.js';
import { registerOnnxMapping } from '../mapping.js';
import { computeDType, inDType } from './util.js';

interface ReduceAttrs { axes: readonly number[]; keepdim: boolean }
interface AxisAttrs { axis: number; keepdim: boolean }
interface SoftmaxAttrs { axis: number }

const REDUCE: Record<string, { opType: string; types: readonly DType[] }> = {
  sum: { opType: 'ReduceSum', types: ['f32', 'f16', 'i32', 'i64'] },
  mean: { opType: 'ReduceMean', types: ['f32', 'f16', 'i32', 'i64'] },
  max: { opType: 'ReduceMax', types: ['f32', 'f16', 'i32', 'i64', 'i8', 'u8'] },
  min: { opType: 'ReduceMin', types: ['f32', 'f16', 'i32', 'i64', 'i8', 'u8'] },
};

for (const [name, { opType, types }] of Object.entries(REDUCE)) {
  registerOnnxMapping<ReduceAttrs>(name, (ctx, [x], { axes, keepdim }, [out], [mx]) => {
    // sum widens integers to i64 (like the reference) before adding, so counts do not overflow
    const x1 = ctx.cast(x!, mx!.dtype, out.dtype);
    if (mx!.shape.length === 0) return [x1]; // nothing to reduce on a scalar
    const compute = computeDType(out.dtype, types);
    return [inDType(ctx, [{ name: x1, dtype: out.dtype }], compute, out.dtype, ([v]) =>
      ctx.node1(opType, axes.length ? [v, ctx.i64(axes)] : [v], { keepdims: keepdim ? 1 : 0 }))];
  });
}

registerOnnxMapping<AxisAttrs>('argmax', (ctx, [x], { axis, keepdim }, _outs, [mx]) => {
  if (mx!.shape.length === 0) return [ctx.constant('i64', [], [0])];
  const v = ctx.cast(x!, mx!.dtype, computeDType(mx!.dtype, ['f32', 'i32', 'i8', 'u8']));
  return [ctx.node1('ArgMax', [v], { axis, keepdims: keepdim ? 1 : 0, select_last_index: 0 })];
});

for (const [name, opType] of [['softmax', 'Softmax'], ['log_softmax', 'LogSoftmax']] as const) {
  registerOnnxMapping<SoftmaxAttrs>(name, (ctx, [x], { axis }, _outs, [mx]) => {
    if (mx!.shape.length > 0) return [ctx.node1(opType, [x!], { axis })];
    // a scalar is a one-element row: Softmax needs rank >= 1
    const row = ctx.node1('Unsqueeze', [x!, ctx.i64([0])]);
    return [ctx.node1('Squeeze', [ctx.node1(opType, [row], { axis: 0 }), ctx.i64([0])])];
  });
}
