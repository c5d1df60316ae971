// Quantized GEMM rule: quant_linear (a linear layer on a quantized weight, src/ops/quantized.ts)
// becomes one qgemm kernel (native/plan/qgemm.cc) that reads the weight's blocks in place from the
// plan's constants: the weight-only kernels of native/quant/qmatmul.h choose GEMV tiles for
// decode-sized row counts and row-blocked GEMM for prefill by M at run time, as they do in the LLM
// engine. Bias, activation and a same-shape residual are applied in the kernel's epilogue (the
// fp32 GEMM rule's epilogues); A is read in place when it is a row-major matrix with unit column
// stride.
import { ACTIVATION_CODES, encodeQgemm } from '../kernel-table.gen.js';
import type { View } from '../builder.js';
import { numelOf } from '../views.js';
import { QUANT_FORMAT_CODES, type QuantFormat } from '../../../../tensor/quantized.js';
import { definePlanRule } from './registry.js';

definePlanRule('quant_linear', (node, b) => {
  const outV = node.outputs[0];
  const [xv, wv, bv, rv] = node.inputs;
  if (!b.isConstant(wv!)) b.unsupported('quant_linear needs a constant (parameter) weight; the plan reads its blocks in place');
  for (const v of [xv, bv ?? null, rv ?? null, outV]) {
    if (!b.isF32(v)) b.unsupported(`quant_linear computes in f32; got a ${b.dtypeOf(v!)} operand`);
  }
  const { format, N, K, group, activation } = node.attrs as { format: QuantFormat; N: number; K: number; group: number; activation: keyof typeof ACTIVATION_CODES };
  const outShape = b.shape(outV);
  const M = numelOf(outShape) / N;
  const A = b.asMatrix(xv!, M, K);
  const weight = b.viewOf(wv!);
  const bias = b.optional(bv);
  let residual: View | null = null, ldr = N;
  if (rv !== undefined && rv !== null) {
    const R = b.asMatrix(rv, M, N);
    residual = R.view;
    ldr = R.ld;
  }
  const dst = b.dest(outV);
  b.emit(node.op, encodeQgemm({
    a: A.view, weight, bias, residual, out: dst, M, N, K, format: QUANT_FORMAT_CODES[format], group: format === 'int4' ? group : 32,
    act: ACTIVATION_CODES[activation ?? 'none'], lda: A.ld, ldr,
  }));
  b.setView(outV, dst);
});
