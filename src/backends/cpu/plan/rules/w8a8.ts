// W8A8 / FP8 GEMM rule: w8_linear (8-bit weight codes + per-channel scales, activations quantized
// per token, or per 32 values with actGroup 32; src/quant/w8-linear-op.ts) becomes one w8a8_gemm (int8 weights, int8 activations,
// VNNI int32 accumulation) or fp8_gemm (E4M3 weights converted in registers, activations E4M3 or
// f32) kernel, native/quant/w8a8.cc. The weight is re-laid-out once per weight version, here at
// lowering, into the kernel's packed layout (native/quant/w8a8.h): int8 as 16 rows × 4 k per 64
// bytes with the 128·Σw column sums vpdpbusd's unsigned activations need, fp8 as 16 rows per k
// with the scales ×256 (the in-register E4M3 → fp16 conversion scales by 2^-8). Bias, activation
// and a same-shape residual run in the kernel's epilogue; A is read in place when it is a
// row-major matrix with unit column stride.
import { ACTIVATION_CODES, encodeFp8Gemm, encodeW8a8Gemm } from '../kernel-table.gen.js';
import type { Tensor } from '../../../../tensor/tensor.js';
import type { PlanBuilder, View } from '../builder.js';
import { numelOf } from '../views.js';
import { definePlanRule } from './registry.js';

const GROUP = 16;

export interface PackedW8 { weight: Uint8Array; colSum: Int32Array | null; scales: Float32Array }

/** int8 [N, K] codes in the W8A8 kernel's layout: group g, k-quad j at byte (g·Kq + j)·64, byte
 *  4r+i = w[16g+r][4j+i]; rows padded to a multiple of 16. With one activation scale per row
 *  (actGroup 0) colSum[n] = 128·Σ_k w[n][k]; with one per actGroup (32) values, colSum[b·Np + n] =
 *  −128·Σ_{k in block b} w[n][k], the block's starting value of the kernel's int32 dot. */
export function packInt8(codes: Int8Array, scales: Float32Array, N: number, K: number, actGroup: 0 | 32 = 0): PackedW8 {
  const Np = Math.ceil(N / GROUP) * GROUP, Kq = Math.ceil(K / 4);
  const weight = new Uint8Array((Np / GROUP) * Kq * 64);
  const signed = new Int8Array(weight.buffer);
  const blocks = actGroup ? Math.ceil(K / actGroup) : 1;
  const colSum = new Int32Array(blocks * Np), s = new Float32Array(Np);
  for (let n = 0; n < N; n++) {
    const g = Math.floor(n / GROUP), r = n % GROUP;
    for (let k = 0; k < K; k++) {
      const v = codes[n * K + k];
      if (actGroup) colSum[Math.floor(k / actGroup) * Np + n] -= 128 * v;
      else colSum[n] += 128 * v;
      signed[(g * Kq + (k >> 2)) * 64 + 4 * r + (k & 3)] = v;
    }
    s[n] = scales[n];
  }
  return { weight, colSum, scales: s };
}

/** E4M3 [N, K] bits in the FP8 kernel's layout: group g, column k at byte (g·K + k)·16, byte r =
 *  w[16g+r][k]; the scales times 256; rows padded to a multiple of 16. */
export function packFp8(bits: Uint8Array, scales: Float32Array, N: number, K: number): PackedW8 {
  const Np = Math.ceil(N / GROUP) * GROUP;
  const weight = new Uint8Array(Np * K);
  const s = new Float32Array(Np);
  for (let n = 0; n < N; n++) {
    const g = Math.floor(n / GROUP), r = n % GROUP;
    for (let k = 0; k < K; k++) weight[(g * K + k) * GROUP + r] = bits[n * K + k];
    s[n] = scales[n] * 256;
  }
  return { weight, colSum: null, scales: s };
}

const packedCopies = new WeakMap<Tensor, { version: number; scales: Tensor; scalesVersion: number; actGroup: number; packed: PackedW8 }>();

/** The packed copy of a w8_linear weight (made once per weight and scales version; the plan rule and
 *  the eager kernel, src/backends/cpu/kernels/w8a8.ts, share it). */
export function packedOf(weight: Tensor, scales: Tensor, format: 'int8' | 'fp8', N: number, K: number, actGroup: 0 | 32): PackedW8 {
  const hit = packedCopies.get(weight);
  if (hit && hit.version === weight.version && hit.scales === scales && hit.scalesVersion === scales.version && hit.actGroup === actGroup) return hit.packed;
  const s = scales.data as Float32Array;
  const packed = format === 'int8' ? packInt8(weight.data as Int8Array, s, N, K, actGroup) : packFp8(weight.data as Uint8Array, s, N, K);
  packedCopies.set(weight, { version: weight.version, scales, scalesVersion: scales.version, actGroup, packed });
  return packed;
}

function constView(b: PlanBuilder, data: Uint8Array | Int32Array | Float32Array, dtype: 'u8' | 'i32' | 'f32'): View {
  const index = b.constants.push(data) - 1;
  return b.contiguousView({ kind: 'const', index }, [data.length], dtype);
}

definePlanRule('w8_linear', (node, b) => {
  const outV = node.outputs[0];
  const [xv, wv, sv, bv, rv] = node.inputs;
  if (!b.isConstant(wv!) || !b.isConstant(sv!)) b.unsupported('w8_linear needs constant (parameter) weight codes and scales; the plan packs them once at lowering');
  for (const v of [xv, bv ?? null, rv ?? null, outV]) {
    if (!b.isF32(v)) b.unsupported(`w8_linear computes in f32; got a ${b.dtypeOf(v!)} operand`);
  }
  const { weights, activations, activation, actGroup } = node.attrs as { weights: 'int8' | 'fp8'; activations: 'int8' | 'fp8' | 'none'; activation: keyof typeof ACTIVATION_CODES; actGroup?: 0 | 32 };
  const group = weights === 'int8' ? (actGroup ?? 0) : 0;
  const [N, K] = b.shape(wv!);
  const M = numelOf(b.shape(outV)) / N;
  const A = b.asMatrix(xv!, M, K);
  const packed = packedOf(b.constantTensor(wv!), b.constantTensor(sv!), weights, N, K, group);
  const bias = b.optional(bv);
  let residual: View | null = null, ldr = N;
  if (rv !== undefined && rv !== null) {
    const R = b.asMatrix(rv, M, N);
    residual = R.view;
    ldr = R.ld;
  }
  const dst = b.dest(outV);
  const common = {
    a: A.view, weight: constView(b, packed.weight, 'u8'), scales: constView(b, packed.scales, 'f32'), bias, residual, out: dst,
    M, N, K, act: ACTIVATION_CODES[activation ?? 'none'], lda: A.ld, ldr,
  };
  if (weights === 'int8') b.emit(node.op, encodeW8a8Gemm({ ...common, colSum: constView(b, packed.colSum!, 'i32'), group }));
  else b.emit(node.op, encodeFp8Gemm({ ...common, actFp8: activations === 'fp8' ? 1 : 0 }));
  b.setView(outV, dst);
});
