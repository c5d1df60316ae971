// Convolution rules: NCHW conv2d and conv2d_fused (groups, stride, padding, dilation; a per-image
// channel bias, an activation and a residual in the epilogue) as one implicit-GEMM kernel
// (native/ops/conv.cc conv2dImplicit). In a bf16 plan the im2col panels are packed as bf16 and the
// product runs on the bf16 GEMM (fp32 accumulation), like the plan's linear layers.
import { ACTIVATION_CODES, encodeConv2dFused } from '../kernel-table.gen.js';
import { definePlanRule } from './registry.js';

definePlanRule(['conv2d', 'conv2d_fused'], (node, b) => {
  b.needF32(node);
  const a = node.attrs as { stride: number[]; padding: number[]; dilation: number[]; groups: number; activation?: string };
  const [xv, wv, bv, cbv, rv] = node.inputs;
  const x = b.contiguous(xv!), weight = b.contiguous(wv!), bias = b.optional(bv);
  const chanBias = b.optional(cbv), residual = b.optional(rv);
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = weight.shape;
  const out = b.dest(node.outputs[0]);
  const act = ACTIVATION_CODES[(a.activation as keyof typeof ACTIVATION_CODES | undefined) ?? 'none'];
  b.emit(node.op, encodeConv2dFused({
    x, weight, bias, chanBias, residual, out, N, C, H, W, O, kh, kw, sh: a.stride[0], sw: a.stride[1], ph: a.padding[0], pw: a.padding[1],
    dh: a.dilation[0], dw: a.dilation[1], groups: a.groups, act,
    // chan_bias is [N or 1, O, 1, 1]: one O-vector per image, or one for all
    chanBiasStride: chanBias && chanBias.shape[0] !== 1 ? O : 0, bf16: b.bf16 ? 1 : 0,
  }));
  b.setView(node.outputs[0], out);
});
