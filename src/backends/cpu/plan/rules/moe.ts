// moe (src/ops/moe.ts) becomes one kernel (native/llm/moe.cc through native/plan/llm_kernels.cc):
// route, group the tokens of each expert, run each expert as one GEMM over its tokens (f32 experts
// on the fp32 GEMM tile, quantized ones on the weight-only GEMM/GEMV cores of native/quant), all
// (expert, column tile) pairs in one parallel job. The expert stacks are plan constants read in place.
import { encodeMoe } from '../kernel-table.gen.js';
import { expertFormatCode } from '../../kernels/moe.js';
import type { MoeAttrs } from '../../../../ops/moe.js';
import { definePlanRule } from './registry.js';

definePlanRule('moe', (node, b) => {
  const [xv, lv, gv, uv, dv] = node.inputs as number[];
  for (const [v, what] of [[gv, 'gate'], [uv, 'up'], [dv, 'down']] as const) {
    if (!b.isConstant(v)) b.unsupported(`moe needs constant (parameter) ${what} expert weights; the plan reads them in place`);
  }
  if (!b.isF32(xv) || !b.isF32(lv) || !b.isF32(node.outputs[0])) b.unsupported('moe computes on f32 tokens and router logits');
  const a = node.attrs as unknown as MoeAttrs;
  const x = b.contiguous(xv), logits = b.contiguous(lv);
  const [T, H] = x.shape;
  const gate = b.contiguous(gv), up = b.contiguous(uv), down = b.contiguous(dv);
  const out = b.dest(node.outputs[0]);
  b.emit('moe', encodeMoe({
    x, logits, gate, up, down, out, T, H, F: a.ffn, E: a.num_experts, topK: a.top_k,
    gateFormat: expertFormatCode(a.gate_format), upFormat: expertFormatCode(a.up_format), downFormat: expertFormatCode(a.down_format), group: a.group,
  }));
  b.setView(node.outputs[0], out);
});
