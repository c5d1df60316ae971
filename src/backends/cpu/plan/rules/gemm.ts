// GEMM rules: linear (with its fused bias, activation and residual epilogue) and matmul. A constant
// B operand is read pre-packed (fp32, bf16 or f16 panels by the plan's precision); A is read in
// place whenever it is a row-major matrix with unit column stride (any leading dimension).
import { ACTIVATION_CODES, BINARY_CODES, encodeGemm } from '../kernel-table.gen.js';
import type { Operand, View, WeightRef } from '../builder.js';
import { broadcastTo, contiguousStrides, numelOf } from '../views.js';
import { emitProgram } from './elementwise.js';
import { definePlanRule } from './registry.js';

const noOffsets = { aOffsets: [], bOffsets: [], cOffsets: [], rOffsets: [] };

definePlanRule(['linear', 'linear_fused'], (node, b) => {
  b.needF32(node);
  const outV = node.outputs[0];
  const [xv, wv, bv, rv] = node.inputs;
  const [N, K] = b.shape(wv!);
  const outShape = b.shape(outV);
  const M = numelOf(outShape) / N;
  const A = b.asMatrix(xv!, M, K);
  let B: Operand = null, w: WeightRef | undefined;
  if (b.isConstant(wv!)) w = b.weightOf(wv!, K, N, true);
  else B = b.contiguous(wv!);
  const bias = b.optional(bv);
  const dst = b.dest(outV);
  let residual: View | null = null, ldr = N, lateResidual: number | null = null;
  if (rv !== undefined && rv !== null) {
    const rs = b.shape(rv);
    if (rs.length === outShape.length && rs.every((d, k) => d === outShape[k])) {
      const R = b.asMatrix(rv, M, N);
      residual = R.view;
      ldr = R.ld;
    } else lateResidual = rv;
  }
  const act = ACTIVATION_CODES[(node.attrs.activation as keyof typeof ACTIVATION_CODES | undefined) ?? 'none'];
  b.emit(node.op, encodeGemm({
    a: A.view, b: B, bias, residual, out: dst, M, N, K, transA: 0, transB: 1, act, count: 1, lda: A.ld, ldb: K, ldc: N, ldr, ...noOffsets, alpha: 1,
  }), w);
  b.setView(outV, dst);
  // a broadcast residual is added in place afterwards
  if (lateResidual !== null) emitProgram(b, 'residual-add', [dst, b.viewOf(lateResidual)], dst, [[BINARY_CODES.add, 0, 1]], 'f32');
});

definePlanRule('matmul', (node, b) => {
  b.needF32(node);
  const outV = node.outputs[0];
  const [av, bv] = node.inputs as number[];
  const as = b.shape(av), bs = b.shape(bv), ys = b.shape(outV);
  const M = as.length === 1 ? 1 : as[as.length - 2], K = as[as.length - 1];
  const N = bs.length === 1 ? 1 : bs[bs.length - 1];
  const aBatch = as.length <= 2 ? [] : as.slice(0, -2), bBatch = bs.length <= 2 ? [] : bs.slice(0, -2);
  const yBatch = ys.slice(0, ys.length - (as.length > 1 ? 1 : 0) - (bs.length > 1 ? 1 : 0));
  const count = numelOf(yBatch);
  const dst = b.dest(outV);
  if (numelOf(bBatch) === 1) {
    // one B for every batch: a single [count·M, K] x [K, N] GEMM
    const A = b.asMatrix(av, count * M, K);
    let B: Operand = null, w: WeightRef | undefined;
    if (b.isConstant(bv) && bs.length <= 2) w = b.weightOf(bv, K, N, false);
    else B = b.contiguous(bv);
    b.emit(node.op, encodeGemm({
      a: A.view, b: B, bias: null, residual: null, out: dst, M: count * M, N, K, transA: 0, transB: 0, act: 0, count: 1,
      lda: A.ld, ldb: N, ldc: N, ldr: N, ...noOffsets, alpha: 1,
    }), w);
  } else {
    const A = b.contiguous(av), B = b.contiguous(bv);
    const offs = (batch: number[]): number[] => {
      const out: number[] = [];
      const st = broadcastTo(batch, contiguousStrides(batch), yBatch);
      for (let t = 0; t < count; t++) {
        let rem = t, o = 0;
        for (let d = yBatch.length - 1; d >= 0; d--) { o += (rem % yBatch[d]) * st[d]; rem = Math.floor(rem / yBatch[d]); }
        out.push(o);
      }
      return out;
    };
    b.emit(node.op, encodeGemm({
      a: A, b: B, bias: null, residual: null, out: dst, M, N, K, transA: 0, transB: 0, act: 0, count, lda: K, ldb: N, ldc: N, ldr: N,
      aOffsets: offs(aBatch).map((o) => o * M * K), bOffsets: offs(bBatch).map((o) => o * K * N),
      cOffsets: Array.from({ length: count }, (_, t) => t * M * N), rOffsets: new Array<number>(count).fill(0), alpha: 1,
    }));
  }
  b.setView(outV, dst);
});
