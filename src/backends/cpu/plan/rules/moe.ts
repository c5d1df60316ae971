// moe (src/ops/moe.ts) becomes one kernel (native/llm/moe.cc through native/plan/llm_kernels.cc):
// route, group the tokens of each expert, run each expert as one GEMM over its tokens (f32 experts
// on the fp32 GEMM tile, quantized ones on the weight-only GEMM/GEMV cores of native/quant), all
// (expert, column tile) pairs in one parallel job. The expert stacks are plan constants read in place,
// or, for Q8_0 / Q4_0 where the VNNI/AMX kernels are the fast path, from a 16-row interleaved copy
// made once per weight version (qgemm's packing, src/backends/cpu/plan/rules/quant.ts).
import { encodeMoe } from '../kernel-table.gen.js';
import { expertFormatCode } from '../../kernels/moe.js';
import type { ExpertFormat, MoeAttrs } from '../../../../ops/moe.js';
import type { View } from '../builder.js';
import { packedCopy } from './quant.js';
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
  const E = a.num_experts, F = a.ffn;
  // Q8_0 / Q4_0 stacks are read 16-row interleaved where the packed kernels are the fast path (as
  // qgemm does); every expert's rows must then start on a 16-row group, so its row count must be a
  // multiple of 16 (Mixtral's are)
  const stack = (v: number, format: ExpertFormat, rows: number, K: number): { view: View; code: number } => {
    const packed = format !== 'f32' && rows % 16 === 0 ? packedCopy(b.constantTensor(v), format, E * rows, K) : null;
    if (!packed) return { view: b.contiguous(v), code: expertFormatCode(format) };
    const index = b.constants.push(packed.bytes) - 1;
    return { view: b.contiguousView({ kind: 'const', index }, [packed.bytes.length], 'u8'), code: packed.code };
  };
  const gate = stack(gv, a.gate_format, F, H), up = stack(uv, a.up_format, F, H), down = stack(dv, a.down_format, H, F);
  const out = b.dest(node.outputs[0]);
  b.emit('moe', encodeMoe({
    x, logits, gate: gate.view, up: up.view, down: down.view, out, T, H, F, E, topK: a.top_k,
    gateFormat: gate.code, upFormat: up.code, downFormat: down.code, group: a.group,
  }));
  b.setView(node.outputs[0], out);
});
