// Byte layouts of quantized weight codes: int8 as i8 [N, K]; int4 as u8 [N, K/2] nibbles (code + 8)
// in inferjit's int4 order (per 32-value block: values j and j + 16 share byte j, as Q4_0), which is
// the data section src/tensor/quantized.ts and the native qgemm kernel read; fp8 as E4M3 bits
// ("fn" variant: no infinities, 0x7f/0xff NaN). packedWeight() appends the f32 scales, giving a
// quantized weight tensor the quant_linear op runs.
import { Tensor } from '../tensor/tensor.js';
import { fromArray } from '../tensor/creation.js';
import { quantizedTensor } from '../tensor/quantized.js';
import { codeArray, type QuantizedMatrix } from './gptq.js';

/** E4M3 bits of a value that is exactly representable (roundE4M3's output). */
export function encodeE4M3(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x80 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  const e = Math.floor(Math.log2(a));
  if (e < -6) return sign | Math.round(a / 2 ** -9); // subnormal: exponent field 0
  return sign | ((e + 7) << 3) | Math.round((a / 2 ** e - 1) * 8);
}
export function decodeE4M3(b: number): number {
  const sign = b & 0x80 ? -1 : 1, exp = (b >> 3) & 15, m = b & 7;
  return sign * (exp === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (exp - 7));
}

export function encodeCodes(q: QuantizedMatrix): Tensor {
  const { N, K } = q;
  // int8: the codes' own bytes (shared, not copied: a kernel tensor and the matrix never write them)
  if (q.format === 'int8') return q.codes instanceof Int8Array ? Tensor.fromStorage('i8', [N, K], q.codes) : fromArray(new Int8Array(q.codes), [N, K], 'i8');
  if (q.format === 'fp8') return fromArray(Uint8Array.from(q.codes, encodeE4M3), [N, K], 'u8');
  const out = new Uint8Array((N * K) / 2);
  const nib = (n: number, k: number): number => q.codes[n * K + k] + 8;
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < K / 32; b++) for (let j = 0; j < 16; j++) out[n * (K / 2) + b * 16 + j] = nib(n, b * 32 + j) | (nib(n, b * 32 + 16 + j) << 4);
  }
  return fromArray(out, [N, K / 2], 'u8');
}

export function decodeCodes(t: Tensor, spec: { format: QuantizedMatrix['format']; N: number; K: number }): Int8Array | Float32Array {
  const { N, K } = spec;
  const codes = codeArray(spec.format, N * K);
  if (spec.format === 'int8') codes.set(t.data as Int8Array);
  else if (spec.format === 'fp8') { const d = t.data as Uint8Array; for (let i = 0; i < d.length; i++) codes[i] = decodeE4M3(d[i]); }
  else {
    const d = t.data as Uint8Array;
    for (let n = 0; n < N; n++) {
      for (let b = 0; b < K / 32; b++) {
        for (let j = 0; j < 16; j++) {
          const byte = d[n * (K / 2) + b * 16 + j];
          codes[n * K + b * 32 + j] = (byte & 15) - 8;
          codes[n * K + b * 32 + 16 + j] = (byte >> 4) - 8;
        }
      }
    }
  }
  return codes;
}

/** An int8 / int4 matrix as a quantized weight tensor (codes, then scales) for quant_linear. */
export function packedWeight(q: QuantizedMatrix): Tensor {
  if (q.format === 'fp8') throw new TypeError('packedWeight: FP8 weights have no quant_linear format');
  const codes = encodeCodes(q).data as Uint8Array | Int8Array;
  const bytes = new Uint8Array(codes.byteLength + 4 * q.scales.length);
  bytes.set(new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength));
  bytes.set(new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength), codes.byteLength);
  return quantizedTensor({ format: q.format, N: q.N, K: q.K, group: q.group }, bytes);
}
