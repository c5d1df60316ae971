// Convolution rules: NCHW conv2d and conv2d_fused (groups, stride, padding, dilation; a per-image
// channel bias, an activation and a residual in the epilogue) as one implicit-GEMM kernel
// (native/ops/conv.cc conv2dImplicit), or for wide fp32 3×3 stride-1 images a direct convolution
// (native/ops/conv_direct.cc) or Winograd F(4×4, 3×3) (native/ops/conv_winograd.cc). In a bf16
// plan the im2col panels are packed as bf16 and the product runs on the bf16 GEMM (fp32
// accumulation), like the plan's linear layers, except Winograd, which runs in fp32 on the fp32
// weight in every plan; where bf16 plans compute in fp32 (builder.bf16AsFp32) the direct and
// implicit-GEMM fp32 forms read the weight rounded to bf16.
import { ACTIVATION_CODES, encodeConv2dFused } from '../kernel-table.gen.js';
import type { View, WeightRef } from '../builder.js';
import { definePlanRule } from './registry.js';

/** Convolutions with at most this many output pixels (all images) run in the pixels-as-rows form:
 *  the weight is packed once at lowering into the GEMM's B panels (Wᵀ [C·kh·kw, O], fp32 or bf16 by
 *  the plan's precision) and the pixels' patches are the A rows; larger ones keep the weight as A
 *  (read in place) and pack the pixels as B panels. Measured with bench/sd-conv.ts (shared Zen 4,
 *  2 threads): the rows form wins at SD's 8×8 and 4×4 levels (batch 2: 128 and 32 pixels; in bf16
 *  by 3×, since the panels form converts the whole weight to bf16 on every call) and loses from
 *  16×16 up. INFERJIT_CONV_ROWS overrides the threshold (tuning, A/B runs). */
const pixelRowsMax = (): number => Number(process.env.INFERJIT_CONV_ROWS ?? 128);

/** fp32 3×3 stride-1 convolutions whose output rows are at least this wide run as a direct
 *  convolution (native/ops/conv_direct.cc: output-row register tiles of 64 pixels × 6 channels,
 *  or 32 × 12, no im2col panels); narrower ones keep the implicit GEMM. On Zen 5 (process CPU time
 *  per call, 2 threads) the direct form beat the implicit GEMM by 6-11% at 32×32 (the VAE's 512
 *  channels, batch 1; the UNet's 320, batch 2) and lost by 15% at 16×16 (640 channels, batch 2).
 *  INFERJIT_CONV_DIRECT_WIDTH overrides the threshold (tuning, A/B runs; 'Infinity' turns the
 *  direct form off). */
const directMinWidth = (): number => Number(process.env.INFERJIT_CONV_DIRECT_WIDTH ?? 32);

/** fp32 3×3 stride-1 convolutions (one group, a constant weight, not in the pixels-as-rows form)
 *  with at least INFERJIT_CONV_WINOGRAD_MIN (32) input and output channels and output rows at least
 *  INFERJIT_CONV_WINOGRAD_WIDTH (16) wide run as Winograd F(4×4, 3×3) (native/ops/conv_winograd.cc:
 *  4× fewer multiplies; the weight is transformed once when the plan is created). Process CPU time
 *  per call, 2 threads, Emerald Rapids: 0.45-0.75× the direct form's time on the VAE decoder's
 *  shapes (32²-256², 128-512 channels), 0.6-0.9× the implicit GEMM's at 16² (640 and 1280
 *  channels), 0.67× the direct form's at 32 channels 128²; at 32 channels 64² it ties.
 *  INFERJIT_CONV_WINOGRAD=0 turns it off (A/B: bench/vae-ab.ts --variant INFERJIT_CONV_WINOGRAD=0). */
const winogradOn = (): boolean => process.env.INFERJIT_CONV_WINOGRAD !== '0';
/** INFERJIT_CONV_WINOGRAD=2 picks F(2×2, 3×3) instead (2.25× fewer multiplies, cheaper
 *  transforms, 16/9 the weight's size instead of 4×): an A/B variant. */
const winogradF2 = (): boolean => process.env.INFERJIT_CONV_WINOGRAD === '2';
const winogradMinChannels = (): number => Number(process.env.INFERJIT_CONV_WINOGRAD_MIN ?? 32);
const winogradMinWidth = (): number => Number(process.env.INFERJIT_CONV_WINOGRAD_WIDTH ?? 16);

definePlanRule(['conv2d', 'conv2d_fused'], (node, b) => {
  b.needF32(node);
  const a = node.attrs as { stride: number[]; padding: number[]; dilation: number[]; groups: number; activation?: string };
  const [xv, wv, bv, cbv, rv] = node.inputs;
  const x = b.contiguous(xv!), bias = b.optional(bv);
  let weight = b.contiguous(wv!);
  const residual = b.optional(rv);
  // chan_bias [N or 1, O, 1, 1]: read in place when each image's O values are contiguous (SD's
  // timestep projections, merged into one GEMM by horizontal fusion, are row slices of its output)
  let chanBias: View | null = null, chanBiasStride = 0;
  if (cbv !== null && cbv !== undefined) {
    const v = b.viewOf(cbv);
    const inPlace = v.shape[1] <= 1 || v.strides[1] === 1;
    chanBias = inPlace ? v : b.contiguous(cbv);
    chanBiasStride = chanBias.shape[0] <= 1 ? 0 : inPlace ? v.strides[0] : chanBias.shape[1];
  }
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = weight.shape;
  const [, , Ho, Wo] = b.shape(node.outputs[0]);
  let w: WeightRef | undefined;
  if (a.groups === 1 && b.precision !== 'fp16' && b.isConstant(wv!) && N * Ho * Wo <= pixelRowsMax()) {
    w = b.weightOf(wv!, C * kh * kw, O, true);
  }
  const threeByThree = w === undefined && b.precision !== 'fp16' && a.groups === 1 && kh === 3 && kw === 3 &&
    a.stride[0] === 1 && a.stride[1] === 1 && a.dilation[0] === 1 && a.dilation[1] === 1;
  // bf16 plans run Winograd too, in fp32 on the fp32 weight: its 4× fewer multiplies beat bf16
  // products (1.1-2.3× fp32 FMA on Zen 5: the SD VAE decoder's bf16 plan took 1599 ms with bf16
  // implicit-GEMM convs against 795 ms for the fp32 plan with Winograd, Zen 5, quiet), and the
  // transformed weight (4× the weight's size) is the one an fp32 plan of the same model already
  // holds (shared per weight, native/plan/plan.cc), with no bf16-rounded copy beside it.
  const winograd = threeByThree && winogradOn() && b.isConstant(wv!) &&
    Math.min(C, O) >= winogradMinChannels() && Wo >= winogradMinWidth();
  const direct = threeByThree && !b.bf16 && !winograd && Wo >= directMinWidth();
  const fp32Kernel = winograd || !b.bf16;
  // bf16 computed in fp32: the direct and implicit-GEMM forms read the unpacked weight as rounded
  // to bf16 (packed ones are rounded already), as the bf16 kernels would
  if (w === undefined && !winograd && b.bf16AsFp32) weight = b.weightView(wv!);
  const out = b.dest(node.outputs[0]);
  const act = ACTIVATION_CODES[(a.activation as keyof typeof ACTIVATION_CODES | undefined) ?? 'none'];
  // the direct and Winograd forms are named apart so that plan descriptions and profiles show which form ran
  b.emit(winograd ? `${node.op}_winograd` : direct ? `${node.op}_direct` : node.op, encodeConv2dFused({
    x, weight, bias, chanBias, residual, out, N, C, H, W, O, kh, kw, sh: a.stride[0], sw: a.stride[1], ph: a.padding[0], pw: a.padding[1],
    dh: a.dilation[0], dw: a.dilation[1], groups: a.groups, act,
    chanBiasStride, bf16: fp32Kernel ? 0 : 1, direct: winograd ? (winogradF2() ? 3 : 2) : direct ? 1 : 0,
  }), w);
  b.setView(node.outputs[0], out);
});
