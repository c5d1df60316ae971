// Native eager kernels for the fused ops the optimizer creates (layer_norm_modulate,
// fused_elementwise, attention_fused), composed from the native eager kernels of their parts, one pass per part.
// Why: the plan executor runs these fused ops as single kernels, but a graph it cannot run (an op
// it lacks: pad, group_norm, upsample, ...) is interpreted op by op, and there these ops had only
// their float64 reference kernels — the 23–42× "plan executor off" row of bench/dit.ts. Every
// part is an f32 op rounded to f32, which is what the fused op's definition asks of each register.
import { registerKernel } from '../../../ops/registry.js';
import { dispatch1, withoutTraceHook } from '../../../ops/dispatch.js';
import { parseElementwiseProgram } from '../../../ops/fused.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { fromArray } from '../../../tensor/creation.js';

const f32OrBool = (inputs: (Tensor | null)[]): boolean => inputs.every((t) => !t || t.dtype === 'f32' || t.dtype === 'bool');

export function registerFusedKernels(): void {
  registerKernel<{ program: string }>('fused_elementwise', 'cpu', (inputs, { program }) => {
    const ins = inputs as Tensor[];
    const prog = parseElementwiseProgram(program, ins.length);
    // The parts must run as kernels, not be recorded, if this ever executes under a trace hook.
    return withoutTraceHook(() => {
      const regs: Tensor[] = [...ins];
      for (const p of prog) regs.push(dispatch1(p.op, p.args.map((a) => regs[a])));
      return [regs[regs.length - 1]];
    });
  }, f32OrBool);

  // [B, L, H, D] operands are permuted to [B, H, L, D] (a copy each) around the native attention.
  registerKernel<{ causal: boolean; scale: number; layout: string }>('attention_fused', 'cpu', ([q, k, v, mask], { causal, scale, layout }) => withoutTraceHook(() => {
    const bhsd = (t: Tensor | null): Tensor | null => (t && layout === 'bshd' ? dispatch1('permute', [t], { perm: [0, 2, 1, 3] }) : t);
    return [bhsd(dispatch1('scaled_dot_product_attention', [bhsd(q), bhsd(k), bhsd(v), mask], { causal, scale }))!];
  }), (inputs) => inputs.every((t) => !t || t.dtype === 'f32' || t.dtype === 'bool'));

  registerKernel<{ eps: number }>('layer_norm_modulate', 'cpu', ([x, shift, scale, weight, bias], { eps }) => withoutTraceHook(() => {
    // shift, scale [N, D] -> [N, 1, ..., 1, D]: broadcast over the token dims of x [N, ..., D]
    const perSample = (v: Tensor): Tensor => dispatch1('reshape', [v], { shape: [v.shape[0], ...new Array<number>(x!.rank - 2).fill(1), v.shape[1]] });
    const normed = dispatch1('layer_norm', [x, weight, bias], { normalized_ndim: 1, eps });
    const onePlusScale = dispatch1('add', [perSample(scale!), fromArray([1], [], 'f32')]);
    return [dispatch1('add', [dispatch1('mul', [normed, onePlusScale]), perSample(shift!)])];
  }), (inputs) => inputs.every((t) => !t || t.dtype === 'f32'));
}
