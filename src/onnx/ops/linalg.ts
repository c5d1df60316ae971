// ONNX mappings of matmul, linear and conv2d (src/ops/linalg.ts). matmul's NumPy semantics are
// ONNX MatMul's; linear is Gemm for 2-D inputs and MatMul with the transposed weight otherwise (the
// transpose of an initializer is folded by runtimes at load time); conv2d is Conv with symmetric pads.
import { registerOnnxMapping } from '../mapping.js';

interface Conv2dAttrs { stride: readonly number[]; padding: readonly number[]; dilation: readonly number[]; groups: number }

registerOnnxMapping('matmul', (ctx, [a, b]) => [ctx.node1('MatMul', [a!, b!])]);

registerOnnxMapping('linear', (ctx, [x, weight, bias], _attrs, _outs, [mx]) => {
  if (mx!.shape.length === 2) return [ctx.node1('Gemm', bias ? [x!, weight!, bias] : [x!, weight!], { transB: 1 })];
  const y = ctx.node1('MatMul', [x!, ctx.node1('Transpose', [weight!], { perm: [1, 0] })]);
  return [bias ? ctx.node1('Add', [y, bias]) : y];
});

registerOnnxMapping<Conv2dAttrs>('conv2d', (ctx, [x, weight, bias], { stride, padding, dilation, groups }, _outs, [, mw]) => {
  const [kh, kw] = mw!.shape.slice(2);
  return [ctx.node1('Conv', bias ? [x!, weight!, bias] : [x!, weight!], {
    kernel_shape: [kh as number, kw as number],
    strides: [...stride],
    pads: [padding[0], padding[1], padding[0], padding[1]],
    dilations: [...dilation],
    group: groups,
  })];
});
