// Convolution rules: NCHW conv2d (groups, stride, padding, dilation) as im2col + GEMM.
import { encodeConv2d } from '../kernel-table.gen.js';
import { definePlanRule } from './registry.js';

definePlanRule('conv2d', (node, b) => {
  b.needF32(node);
  const a = node.attrs as { stride: number[]; padding: number[]; dilation: number[]; groups: number };
  const x = b.contiguous(node.inputs[0]!), weight = b.contiguous(node.inputs[1]!), bias = b.optional(node.inputs[2]);
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = weight.shape;
  const out = b.dest(node.outputs[0]);
  b.emit('conv2d', encodeConv2d({
    x, weight, bias, out, N, C, H, W, O, kh, kw, sh: a.stride[0], sw: a.stride[1], ph: a.padding[0], pw: a.padding[1],
    dh: a.dilation[0], dw: a.dilation[1], groups: a.groups, act: 0,
  }));
  b.setView(node.outputs[0], out);
});
