// ONNX mappings of the broadcasting binary ops and where (src/ops/binary.ts). ONNX requires both
// operands in one type, so each input is first cast to the promoted dtype (exactly what the
// reference kernel does before computing); dtypes ONNX Runtime's CPU kernels lack are computed in a
// wider dtype that holds every value (i8/u8/bool in i32, f16/bf16 in f32 for comparisons).
import { promoteTypes, type DType } from '../../tensor/dtype.js';
import { registerOnnxMapping } from '../mapping.js';
import { computeDType, inDType, ARITH_TYPES, COMPARE_TYPES } from './util.js';

const ARITH: Record<string, string> = { add: 'Add', sub: 'Sub', mul: 'Mul', pow: 'Pow', maximum: 'Max', minimum: 'Min' };
for (const [name, opType] of Object.entries(ARITH)) {
  registerOnnxMapping(name, (ctx, [a, b], _attrs, [out], [ma, mb]) => {
    const promoted = promoteTypes(ma!.dtype, mb!.dtype);
    const compute = computeDType(promoted, ARITH_TYPES);
    const ins = [{ name: a!, dtype: ma!.dtype }, { name: b!, dtype: mb!.dtype }];
    // casting the inputs to `promoted` first keeps the reference's rounding when compute is wider
    const pre = ins.map((i) => ({ name: ctx.cast(i.name, i.dtype, promoted), dtype: promoted }));
    return [inDType(ctx, pre, compute, out.dtype, ([x, y]) => ctx.node1(opType, [x, y]))];
  });
}

// True division: integer operands give f32 (cast first, as the reference does).
registerOnnxMapping('div', (ctx, [a, b], _attrs, [out], [ma, mb]) => {
  const x = ctx.cast(a!, ma!.dtype, out.dtype), y = ctx.cast(b!, mb!.dtype, out.dtype);
  const compute = computeDType(out.dtype, ARITH_TYPES);
  return [inDType(ctx, [{ name: x, dtype: out.dtype }, { name: y, dtype: out.dtype }], compute, out.dtype, ([p, q]) => ctx.node1('Div', [p, q]))];
});

const COMPARE: Record<string, string> = { equal: 'Equal', less: 'Less', greater: 'Greater' };
for (const [name, opType] of Object.entries(COMPARE)) {
  registerOnnxMapping(name, (ctx, [a, b], _attrs, _outs, [ma, mb]) => {
    const promoted = promoteTypes(ma!.dtype, mb!.dtype);
    const compute: DType = name === 'equal' && promoted === 'bool' ? 'bool' : computeDType(promoted, COMPARE_TYPES);
    const x = ctx.cast(ctx.cast(a!, ma!.dtype, promoted), promoted, compute);
    const y = ctx.cast(ctx.cast(b!, mb!.dtype, promoted), promoted, compute);
    return [ctx.node1(opType, [x, y])];
  });
}

const WHERE_TYPES: readonly DType[] = ['f32', 'f16', 'i32', 'i64', 'u8', 'bool'];
registerOnnxMapping('where', (ctx, [cond, a, b], _attrs, [out], [, ma, mb]) => {
  const compute = computeDType(out.dtype, WHERE_TYPES);
  const x = ctx.cast(ctx.cast(a!, ma!.dtype, out.dtype), out.dtype, compute);
  const y = ctx.cast(ctx.cast(b!, mb!.dtype, out.dtype), out.dtype, compute);
  return [ctx.cast(ctx.node1('Where', [cond!, x, y]), compute, out.dtype)];
});
