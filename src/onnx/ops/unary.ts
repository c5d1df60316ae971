// ONNX mappings of the elementwise unary ops (src/ops/unary.ts): one standard node where ONNX has
// the op, short standard subgraphs otherwise (rsqrt, silu, gelu, gelu_tanh), com.microsoft Gelu /
// FastGelu only when contrib ops are allowed.
import type { DType } from '../../tensor/dtype.js';
import { registerOnnxMapping, type OnnxEmitContext } from '../mapping.js';
import { computeDType, inDType } from './util.js';

const DIRECT: Record<string, string> = {
  exp: 'Exp', log: 'Log', sqrt: 'Sqrt', tanh: 'Tanh', sigmoid: 'Sigmoid', erf: 'Erf', sin: 'Sin', cos: 'Cos',
};
for (const [name, opType] of Object.entries(DIRECT)) {
  registerOnnxMapping(name, (ctx, [x]) => [ctx.node1(opType, [x])]);
}

// neg/abs/relu accept integers; i8/u8 are computed in i32 and cast back, which wraps exactly as
// the reference kernel's rounding into the narrow type does.
const INT_OK: readonly DType[] = ['f32', 'f16', 'i32', 'i64'];
registerOnnxMapping('neg', (ctx, [x], _a, [out]) => [inDType(ctx, [{ name: x!, dtype: out.dtype }], computeDType(out.dtype, INT_OK), out.dtype, ([v]) => ctx.node1('Neg', [v]))]);
registerOnnxMapping('abs', (ctx, [x], _a, [out]) => [inDType(ctx, [{ name: x!, dtype: out.dtype }], computeDType(out.dtype, INT_OK), out.dtype, ([v]) => ctx.node1('Abs', [v]))]);
registerOnnxMapping('relu', (ctx, [x], _a, [out]) => {
  if (out.dtype === 'f32' || out.dtype === 'f16' || out.dtype === 'bf16') return [ctx.node1('Relu', [x!])];
  const c = computeDType(out.dtype, INT_OK);
  return [inDType(ctx, [{ name: x!, dtype: out.dtype }], c, out.dtype, ([v]) => ctx.node1('Max', [v, ctx.scalar(0, c)]))];
});

registerOnnxMapping('rsqrt', (ctx, [x]) => [ctx.node1('Reciprocal', [ctx.node1('Sqrt', [x!])])]);
registerOnnxMapping('silu', (ctx, [x]) => [ctx.node1('Mul', [x!, ctx.node1('Sigmoid', [x!])])]);

/** 0.5 · x · (1 + inner) */
function halfXTimesOnePlus(ctx: OnnxEmitContext, x: string, inner: string, dtype: DType): string {
  const onePlus = ctx.node1('Add', [inner, ctx.scalar(1, dtype)]);
  return ctx.node1('Mul', [ctx.node1('Mul', [x, ctx.scalar(0.5, dtype)]), onePlus]);
}

registerOnnxMapping('gelu', (ctx, [x], _a, [out]) => {
  if (ctx.contribOps) return [ctx.node1('Gelu', [x!], {}, { domain: 'com.microsoft' })];
  const erf = ctx.node1('Erf', [ctx.node1('Mul', [x!, ctx.scalar(Math.SQRT1_2, out.dtype)])]);
  return [halfXTimesOnePlus(ctx, x!, erf, out.dtype)];
});

registerOnnxMapping('gelu_tanh', (ctx, [x], _a, [out]) => {
  if (ctx.contribOps) return [ctx.node1('FastGelu', [x!], {}, { domain: 'com.microsoft' })];
  const d = out.dtype;
  const cube = ctx.node1('Mul', [ctx.node1('Mul', [x!, x!]), x!]);
  const poly = ctx.node1('Add', [x!, ctx.node1('Mul', [cube, ctx.scalar(0.044715, d)])]);
  const t = ctx.node1('Tanh', [ctx.node1('Mul', [poly, ctx.scalar(Math.sqrt(2 / Math.PI), d)])]);
  return [halfXTimesOnePlus(ctx, x!, t, d)];
});
