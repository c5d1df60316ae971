// Quantized GEMM rule: quant_linear (a linear layer on a quantized weight, src/ops/quantized.ts)
// becomes one qgemm kernel (native/plan/qgemm.cc) that reads the weight's blocks in place from the
// plan's constants: the weight-only kernels of native/quant/qmatmul.h choose GEMV tiles for
// decode-sized row counts and row-blocked GEMM for prefill by M at run time, as they do in the LLM
// engine. Bias, activation and a same-shape residual are applied in the kernel's epilogue (the
// fp32 GEMM rule's epilogues); A is read in place when it is a row-major matrix with unit column
// stride. Where the packed kernels are the fast path (AVX-512 VNNI, AMX-INT8 for prefill), a Q8_0 or
// Q4_0 weight is read from a copy with 16 rows interleaved (the engine's load-time packing, made
// once per weight version: a refresh after an in-place update lowers the plan again). Q4_K/Q5_K/Q6_K
// weights are packed on every CPU (their integer-dot kernels read only the 16-row layout; a GGUF-layout
// weight is re-laid per task, 16 rows at a time, on every call).
import { ACTIVATION_CODES, encodeQgemm } from '../kernel-table.gen.js';
import { addon } from '../../addon.js';
import type { Tensor } from '../../../../tensor/tensor.js';
import type { View } from '../builder.js';
import { numelOf } from '../views.js';
import { QUANT_FORMAT_CODES, type QuantFormat } from '../../../../tensor/quantized.js';
import { definePlanRule } from './registry.js';

type Packing = 'auto' | 'always' | 'never';
let packing: Packing = 'auto';
/** Whether plans read Q8_0/Q4_0 weights 16-row interleaved: 'auto' (where the packed kernels are the
 *  fast path), 'always' or 'never' (tests compare both layouts). Plans lowered afterwards use it. */
export function setQuantPacking(p: Packing): Packing { const prev = packing; packing = p; return prev; }

interface PackAddon { packWeight(w: [number, ArrayBufferView, Float32Array | null, number, number, number]): Uint8Array | null; llmPackedFast: boolean }
const PACKED_CODES: Partial<Record<QuantFormat, number>> = { q8_0: 7, q4_0: 8, q4_k: 12, q5_k: 13, q6_k: 14 };
const K_QUANTS: ReadonlySet<QuantFormat> = new Set(['q4_k', 'q5_k', 'q6_k']);
const packedCopies = new WeakMap<Tensor, { version: number; bytes: Uint8Array }>();

/** The weight's 16-row interleaved copy and its format code, when this plan should read one (N rows of K;
 *  the moe rule packs a whole expert stack, N = experts·rows). K-quant copies only with `kquants` (the
 *  MoE kernel reads K-quant experts in their GGUF layout). */
export function packedCopy(t: Tensor, format: QuantFormat, N: number, K: number, kquants = false): { bytes: Uint8Array; code: number } | null {
  const code = PACKED_CODES[format];
  const a = addon as unknown as Partial<PackAddon> | null;
  if (code === undefined || packing === 'never' || !a || typeof a.packWeight !== 'function') return null;
  const isK = K_QUANTS.has(format);
  if (isK && !kquants) return null;
  if (packing === 'auto' && !isK && !a.llmPackedFast) return null;
  let hit = packedCopies.get(t);
  if (!hit || hit.version !== t.version) {
    const bytes = a.packWeight([QUANT_FORMAT_CODES[format], t.data as Uint8Array, null, N, K, 32]);
    if (!bytes) return null;
    packedCopies.set(t, (hit = { version: t.version, bytes }));
  }
  return { bytes: hit.bytes, code };
}

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
  let weight = b.viewOf(wv!), formatCode = QUANT_FORMAT_CODES[format];
  const packed = packedCopy(b.constantTensor(wv!), format, N, K, true);
  if (packed) {
    const index = b.constants.push(packed.bytes) - 1;
    weight = b.contiguousView({ kind: 'const', index }, [packed.bytes.length], 'u8');
    formatCode = packed.code;
  }
  const bias = b.optional(bv);
  let residual: View | null = null, ldr = N;
  if (rv !== undefined && rv !== null) {
    const R = b.asMatrix(rv, M, N);
    residual = R.view;
    ldr = R.ld;
  }
  const dst = b.dest(outV);
  b.emit(node.op, encodeQgemm({
    a: A.view, weight, bias, residual, out: dst, M, N, K, format: formatCode, group: format === 'int4' ? group : 32,
    act: ACTIVATION_CODES[activation ?? 'none'], lda: A.ld, ldr,
  }));
  b.setView(outV, dst);
});
