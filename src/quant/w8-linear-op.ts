// w8_linear: a linear layer on 8-bit weights with per-output-channel scales, with the activation
// side quantized per token inside the op — what the real W8A8 / FP8 kernels compute
// (native/quant/w8a8.h; the plan rule is src/backends/cpu/plan/rules/w8a8.ts):
//   weights 'int8', activations 'int8':  W8A8. Each row of x gets sa = max|x| / 127 and
//       q = clamp(round_half_away(fround(x / sa)), ±127); y = fround(Σ q·w) · fround(sa · scale[n]),
//       the sum exact in integers (the kernel's int32 accumulation).
//       With actGroup 32 each block of 32 values of a row gets its own scale sa[m][b] (the last block
//       K % 32 values); y = fround(Σ_b fround(Σ_{k∈b} q·w)·sa[m][b], block by block as fused
//       multiply-adds in fp32) · scale[n] — the granularity llama.cpp's Q8_0 activations use.
//   weights 'fp8', activations 'fp8' | 'none':  E4M3 weight codes (u8 bits) times scale[n]; with
//       'fp8' each row of x is first rounded to E4M3 under sa = max|x| / 448 (round to nearest even).
// then + bias, activation, + residual (the GEMM epilogue). The reference kernel below is the
// oracle: the W8A8 kernel matches it exactly without a bias and to one rounding with one (the
// kernel adds the bias in a fused multiply-add); the FP8 kernel sums in fp32 in its own order.
// quantize() (src/quant/quantize.ts) emits it when its kernel is 'w8a8' (the default where the
// native kernels are built), in place of fake_quant + an f32 linear on dequantized weights.
import { defineOp, getOp, hasOp } from '../ops/registry.js';
import { values, tensorFrom, concrete } from '../ops/kernel-utils.js';
import { Tensor } from '../tensor/tensor.js';
import { formatShape, type Dim } from '../tensor/shape.js';
import { FUSED_ACTIVATIONS, type FusedActivation } from '../ops/fused.js';
import { roundE4M3, roundSym, INT8_MAX, FP8_E4M3_MAX } from './numerics.js';
import { decodeE4M3 } from './packing.js';

export const W8_LINEAR = 'w8_linear';

export interface W8LinearAttrs { weights: 'int8' | 'fp8'; activations: 'int8' | 'fp8' | 'none'; activation: FusedActivation; actGroup?: 0 | 32 }

/** Values per activation scale with `actGroup` 32 (W8A8 only): a row's blocks of 32, the last K % 32. */
export const W8_ACT_GROUP = 32 as const;

const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;

/** Quantizes x[off, off + n) into q under its own absmax scale (int8 codes or E4M3 values) and
 *  returns the scale (0 for an all-zero span, whose q stays 0). */
function quantizeSpan(x: ArrayLike<number>, off: number, n: number, format: 'int8' | 'fp8', q: Float64Array): number {
  let amax = 0;
  for (let k = off; k < off + n; k++) amax = Math.max(amax, Math.abs(x[k]));
  const s = Math.fround(amax / (format === 'int8' ? INT8_MAX : FP8_E4M3_MAX));
  if (!(s > 0)) return s;
  for (let k = off; k < off + n; k++) {
    const v = Math.fround(x[k] / s);
    q[k] = format === 'int8' ? Math.max(-INT8_MAX, Math.min(INT8_MAX, roundSym(v))) : roundE4M3(v);
  }
  return s;
}

/** The per-row scale and quantized values (codes for int8, E4M3 values for fp8) of x [M, K]. */
export function quantizeRows(x: ArrayLike<number>, M: number, K: number, format: 'int8' | 'fp8'): { q: Float64Array; scales: Float32Array } {
  const q = new Float64Array(M * K), scales = new Float32Array(M);
  for (let m = 0; m < M; m++) scales[m] = quantizeSpan(x, m * K, K, format, q);
  return { q, scales };
}

/** The per-block scales [M, ceil(K / group)] and int8 codes of x [M, K], each block of `group`
 *  values of a row quantized like a row of quantizeRows (the last block holds K % group values). */
export function quantizeRowBlocks(x: ArrayLike<number>, M: number, K: number, group: number): { q: Float64Array; scales: Float32Array; blocks: number } {
  const blocks = Math.ceil(K / group);
  const q = new Float64Array(M * K), scales = new Float32Array(M * blocks);
  for (let m = 0; m < M; m++) {
    for (let b = 0; b < blocks; b++) scales[m * blocks + b] = quantizeSpan(x, m * K + b * group, Math.min(group, K - b * group), 'int8', q);
  }
  return { q, scales, blocks };
}

/** y = fround(Σ_k xq·w) · fround(sa[m] · scale[n]) + bias: activations quantized per row (or kept, with 'none'). */
function rowScaledRows(xv: ArrayLike<number>, w: Float64Array, ws: ArrayLike<number>, bv: ArrayLike<number> | null, M: number, N: number, K: number, activations: 'int8' | 'fp8' | 'none'): Float32Array {
  const quantized = activations === 'none' ? null : quantizeRows(xv, M, K, activations);
  const xq = quantized ? quantized.q : Float64Array.from(xv);
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    const sa = quantized ? quantized.scales[m] : 1;
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += xq[m * K + k] * w[n * K + k];
      y[m * N + n] = Math.fround(Math.fround(acc) * Math.fround(sa * ws[n]) + (bv ? bv[n] : 0));
    }
  }
  return y;
}

/** Σ_b fround(dot_b · sa[m][b] + acc) in block order (the kernel's fused multiply-adds; dot_b is an
 *  exact integer below 2^24, so its product with an f32 scale is exact in f64), then · scale[n] + bias. */
function groupedRows(xv: ArrayLike<number>, w: Float64Array, ws: ArrayLike<number>, bv: ArrayLike<number> | null, M: number, N: number, K: number): Float32Array {
  const { q, scales, blocks } = quantizeRowBlocks(xv, M, K, W8_ACT_GROUP);
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let b = 0; b < blocks; b++) {
        let dot = 0;
        for (let k = b * W8_ACT_GROUP; k < Math.min(K, (b + 1) * W8_ACT_GROUP); k++) dot += q[m * K + k] * w[n * K + k];
        acc = Math.fround(dot * scales[m * blocks + b] + acc);
      }
      y[m * N + n] = Math.fround(acc * ws[n] + (bv ? bv[n] : 0));
    }
  }
  return y;
}

function define(): void {
  defineOp<W8LinearAttrs>({
    name: W8_LINEAR,
    kind: 'linalg',
    inputs: ['x', 'weight', 'scales', 'bias?', 'residual?'],
    attrs: {
      weights: { type: 'string', oneOf: ['int8', 'fp8'], required: true },
      activations: { type: 'string', oneOf: ['int8', 'fp8', 'none'], required: true },
      activation: { type: 'string', default: 'none', oneOf: FUSED_ACTIVATIONS },
      actGroup: { type: 'int', default: 0 },
    },
    doc: 'act(x · (scales ⊙ W)ᵀ + bias) + residual for 8-bit W [N, K] (int8 codes i8, or FP8 E4M3 bits u8) with per-channel scales [N], x quantized per token (int8 with int8 weights; E4M3 or kept f32 with fp8 weights).',
    infer([x, weight, scales, bias, residual], a) {
      const op = W8_LINEAR;
      if (a.weights === 'int8' && a.activations !== 'int8') throw new TypeError(`${op}: int8 weights run with int8 activations (W8A8), got activations '${a.activations}'`);
      if (a.weights === 'fp8' && a.activations === 'int8') throw new TypeError(`${op}: fp8 weights run with fp8 or unquantized activations, got 'int8'`);
      if (![0, W8_ACT_GROUP].includes(a.actGroup ?? 0)) throw new RangeError(`${op}: actGroup must be 0 (one activation scale per row) or ${W8_ACT_GROUP}, got ${a.actGroup}`);
      if ((a.actGroup ?? 0) !== 0 && a.weights !== 'int8') throw new TypeError(`${op}: actGroup ${a.actGroup} (activation scales per ${a.actGroup} values) applies to int8 W8A8 only, got weights '${a.weights}'`);
      const wDtype = a.weights === 'int8' ? 'i8' : 'u8';
      if (!weight || weight.dtype !== wDtype || weight.shape.length !== 2) throw new TypeError(`${op}: ${a.weights} weight must be ${wDtype} [N, K], got ${weight ? weight.dtype + formatShape(weight.shape) : 'nothing'}`);
      const [N, K] = weight.shape;
      if (!scales || scales.dtype !== 'f32' || scales.shape.length !== 1 || !mayEqual(scales.shape[0], N)) {
        throw new TypeError(`${op}: scales must be f32 [${N}] (one per output channel), got ${scales ? scales.dtype + formatShape(scales.shape) : 'nothing'}`);
      }
      if (!x || x.dtype !== 'f32' || x.shape.length < 1 || !mayEqual(x.shape[x.shape.length - 1], K)) {
        throw new RangeError(`${op}: x ${x ? x.dtype + formatShape(x.shape) : 'nothing'} must be f32 ending in the weight's ${K} input features`);
      }
      const out = { dtype: 'f32' as const, shape: [...x.shape.slice(0, -1), N] };
      if (bias && (bias.dtype !== 'f32' || bias.shape.length !== 1 || !mayEqual(bias.shape[0], N))) throw new RangeError(`${op}: bias ${bias.dtype}${formatShape(bias.shape)} must be f32 [${N}]`);
      if (residual && (residual.dtype !== 'f32' || residual.shape.length !== out.shape.length || !residual.shape.every((d, i) => mayEqual(d, out.shape[i])))) {
        throw new RangeError(`${op}: residual ${residual.dtype}${formatShape(residual.shape)} must be f32 with the output's shape ${formatShape(out.shape)}`);
      }
      return [out];
    },
    reference([x, weight, scales, bias, residual], a, [out]) {
      const [N, K] = concrete(weight!.shape);
      const xv = values(x!), ws = values(scales!), bv = bias ? values(bias) : null;
      const M = K > 0 ? xv.length / K : 0;
      const w = a.weights === 'int8' ? Float64Array.from(weight!.data as Int8Array) : Float64Array.from(weight!.data as Uint8Array, decodeE4M3);
      const y = (a.actGroup ?? 0) !== 0 ? groupedRows(xv, w, ws, bv, M, N, K) : rowScaledRows(xv, w, ws, bv, M, N, K, a.activations);
      let t: Tensor = tensorFrom(out, y);
      const run = (op: string, inputs: Tensor[]): Tensor => {
        const def = getOp(op);
        return def.reference(inputs, {}, def.infer(inputs.map((i) => ({ dtype: i.dtype, shape: i.shape })), {}))[0];
      };
      if (a.activation !== 'none') t = run(a.activation, [t]);
      if (residual) t = run('add', [t, residual]);
      return [t];
    },
  });
}

// idempotent: src/quant may be imported through several entry points
if (!hasOp(W8_LINEAR)) define();
