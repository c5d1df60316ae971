// Quantized weights as parameter tensors. A quantized weight is a logical [out, in] = [N, K] matrix
// stored in the block layout the native weight-only kernels read in place (native/quant/qmatmul.h):
// GGUF Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K blocks row after row, or inferjit's int8 per-channel and
// int4 group-wise formats (int8 q[N][K] or int4 nibbles [N][K/2], then the f32 scales). The tensor
// itself is a flat u8 tensor over those bytes, so it travels everywhere a parameter does (module
// state, the trace's constants, the plan's constants, the disk cache's parameter guards, which go
// by version counter and never hash weights); the format and logical shape live in this module's
// registry, keyed by the tensor object. `linear` (src/ops/api.ts) on such a weight records a
// `quant_linear` node whose attributes carry the format and shape, so the graph, its printing and
// its hash say what the weight is; other ops reject quantized tensors (src/ops/dispatch.ts) and
// `dequantize` turns one into an f32 [N, K] tensor.
import { Tensor } from './tensor.js';
import { dequantize as ggufDequantize, quantizeQ8_0, quantizeQ4_0, quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from '../io/gguf/quants.js';
import type { GgmlTypeName } from '../io/gguf/types.js';
import type { GgufFile } from '../io/gguf/reader.js';

export type QuantFormat = 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k' | 'int8' | 'int4';
export const QUANT_FORMATS: readonly QuantFormat[] = ['q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k', 'int8', 'int4'];
/** Codes of native/quant/qmatmul.h enum WeightFormat. */
export const QUANT_FORMAT_CODES: Record<QuantFormat, number> = { q8_0: 3, q4_0: 4, int8: 5, int4: 6, q4_k: 9, q5_k: 10, q6_k: 11 };

/** Values per block and bytes per block of the GGUF formats. */
const GGUF_BLOCKS: Partial<Record<QuantFormat, { values: number; bytes: number; ggml: GgmlTypeName }>> = {
  q8_0: { values: 32, bytes: 34, ggml: 'Q8_0' },
  q4_0: { values: 32, bytes: 18, ggml: 'Q4_0' },
  q4_k: { values: 256, bytes: 144, ggml: 'Q4_K' },
  q5_k: { values: 256, bytes: 176, ggml: 'Q5_K' },
  q6_k: { values: 256, bytes: 210, ggml: 'Q6_K' },
};

export interface QuantSpec {
  format: QuantFormat;
  /** Output features (rows of the logical [N, K] weight). */
  N: number;
  /** Input features; a multiple of 32 (256 for the K-quants). */
  K: number;
  /** int4 scale group (32, 64 or 128); 32 for the other formats. */
  group: number;
}

export function isQuantFormat(x: unknown): x is QuantFormat {
  return typeof x === 'string' && (QUANT_FORMATS as readonly string[]).includes(x);
}

/** The values each block covers along K (what K must be a multiple of). */
export const quantBlockValues = (f: QuantFormat): number => GGUF_BLOCKS[f]?.values ?? 32;

/** Checks a spec; throws a RangeError naming what is wrong. */
export function checkQuantSpec(spec: QuantSpec, where: string): void {
  const { format, N, K, group } = spec;
  if (!isQuantFormat(format)) throw new TypeError(`${where}: unknown quantized format ${JSON.stringify(format)}; expected one of ${QUANT_FORMATS.join(', ')}`);
  if (!Number.isInteger(N) || N < 1 || !Number.isInteger(K) || K < 1) throw new RangeError(`${where}: shape [${N}, ${K}] must be positive integers`);
  const bv = quantBlockValues(format);
  if (K % bv !== 0) throw new RangeError(`${where}: ${format} needs the input features K = ${K} to be a multiple of ${bv}`);
  if (format === 'int4' && (![32, 64, 128].includes(group) || K % group !== 0)) {
    throw new RangeError(`${where}: int4 group size must be 32, 64 or 128 and divide K = ${K}, got ${group}`);
  }
}

/** Bytes of the blocks (or int8/int4 values), and the number of f32 scales that follow them. */
export function quantLayout(spec: QuantSpec): { dataBytes: number; scaleCount: number; totalBytes: number } {
  const { format, N, K, group } = spec;
  const g = GGUF_BLOCKS[format];
  let dataBytes: number, scaleCount = 0;
  if (g) dataBytes = N * (K / g.values) * g.bytes;
  else if (format === 'int8') { dataBytes = N * K; scaleCount = N; }
  else { dataBytes = (N * K) / 2; scaleCount = N * (K / group); }
  return { dataBytes, scaleCount, totalBytes: dataBytes + 4 * scaleCount };
}

const registry = new WeakMap<Tensor, QuantSpec>();

/** The format and logical shape of a quantized weight tensor, or undefined for ordinary tensors. */
export const quantSpecOf = (t: Tensor): QuantSpec | undefined => registry.get(t);
export const isQuantized = (t: Tensor): boolean => registry.has(t);

/** Wraps bytes in the layout of `spec` (blocks, then int8/int4 scales) as a quantized weight tensor
 *  (no copy unless the scales would be misaligned). */
export function quantizedTensor(spec: QuantSpec, bytes: Uint8Array): Tensor {
  const s: QuantSpec = { format: spec.format, N: spec.N, K: spec.K, group: spec.format === 'int4' ? spec.group : 32 };
  checkQuantSpec(s, 'quantizedTensor');
  const { totalBytes, scaleCount } = quantLayout(s);
  if (bytes.byteLength !== totalBytes) {
    throw new RangeError(`quantizedTensor: a ${s.format} [${s.N}, ${s.K}] weight is ${totalBytes} bytes, got ${bytes.byteLength}`);
  }
  // the f32 scales must be 4-byte aligned for the native kernels
  const data = scaleCount > 0 && bytes.byteOffset % 4 !== 0 ? bytes.slice() : bytes;
  const t = Tensor.fromStorage('u8', [totalBytes], data);
  registry.set(t, s);
  return t;
}

/** A quantized weight's blocks and (int8/int4) scales as typed views of its storage. */
export function quantParts(t: Tensor): { spec: QuantSpec; data: Uint8Array; scales: Float32Array | null } {
  const spec = quantSpecOf(t);
  if (!spec) throw new TypeError(`quantParts: tensor u8[${t.shape.join(', ')}] is not a quantized weight`);
  const bytes = t.data as Uint8Array;
  const { dataBytes, scaleCount } = quantLayout(spec);
  return {
    spec,
    data: bytes.subarray(0, dataBytes),
    scales: scaleCount > 0 ? new Float32Array(bytes.buffer, bytes.byteOffset + dataBytes, scaleCount) : null,
  };
}

/** Quantizes f32 values [N·K] (row-major [N, K]) into the bytes of `spec`. int8: symmetric per row,
 *  scale = max|w| / 127; int4: symmetric per group of `group` values, scale = max|w| / 7, nibbles in
 *  Q4_0's order within each 32-block; the GGUF formats: ggml's Q8_0/Q4_0 reference rounding and
 *  the min/max K-quant quantizers of src/io/gguf/quants.ts. */
export function quantizeValues(values: ArrayLike<number>, spec: QuantSpec): Uint8Array {
  checkQuantSpec(spec, 'quantize');
  const { format, N, K, group } = spec;
  if (values.length !== N * K) throw new RangeError(`quantize: ${values.length} values for a [${N}, ${K}] weight`);
  switch (format) {
    case 'q8_0': return quantizeQ8_0(values);
    case 'q4_0': return quantizeQ4_0(values);
    case 'q4_k': return quantizeQ4_K(values);
    case 'q5_k': return quantizeQ5_K(values);
    case 'q6_k': return quantizeQ6_K(values);
    default: break;
  }
  const { dataBytes, scaleCount, totalBytes } = quantLayout(spec);
  const out = new Uint8Array(totalBytes);
  const scales = new Float32Array(out.buffer, dataBytes, scaleCount);
  if (format === 'int8') {
    const q = new Int8Array(out.buffer, 0, dataBytes);
    for (let n = 0; n < N; n++) {
      let amax = 0;
      for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(values[n * K + k]));
      const s = Math.fround(amax / 127);
      scales[n] = s;
      for (let k = 0; k < K; k++) q[n * K + k] = s > 0 ? Math.max(-127, Math.min(127, Math.round(values[n * K + k] / s))) : 0;
    }
    return out;
  }
  const groups = K / group;
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      let amax = 0;
      for (let k = g * group; k < (g + 1) * group; k++) amax = Math.max(amax, Math.abs(values[n * K + k]));
      scales[n * groups + g] = Math.fround(amax / 7);
    }
    for (let b = 0; b < K / 32; b++) {
      const s = scales[n * groups + Math.floor((b * 32) / group)];
      const nib = (k: number): number => (s > 0 ? Math.max(-8, Math.min(7, Math.round(values[n * K + k] / s))) : 0) + 8;
      for (let j = 0; j < 16; j++) out[n * (K / 2) + b * 16 + j] = nib(b * 32 + j) | (nib(b * 32 + 16 + j) << 4);
    }
  }
  return out;
}

/** The f32 values [N·K] of quantized bytes (the reference kernels' oracle). */
export function dequantizeValues(bytes: Uint8Array, spec: QuantSpec): Float32Array {
  const { format, N, K, group } = spec;
  const g = GGUF_BLOCKS[format];
  if (g) return ggufDequantize(g.ggml, bytes, N * K);
  const { dataBytes, scaleCount } = quantLayout(spec);
  const scales = new Float32Array(scaleCount);
  new Uint8Array(scales.buffer).set(bytes.subarray(dataBytes, dataBytes + 4 * scaleCount));
  const o = new Float32Array(N * K);
  if (format === 'int8') {
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) o[n * K + k] = scales[n] * ((bytes[n * K + k] << 24) >> 24);
    return o;
  }
  const groups = K / group;
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < K / 32; b++) {
      const d = scales[n * groups + Math.floor((b * 32) / group)];
      for (let j = 0; j < 16; j++) {
        const byte = bytes[n * (K / 2) + b * 16 + j];
        o[n * K + b * 32 + j] = d * ((byte & 15) - 8);
        o[n * K + b * 32 + 16 + j] = d * ((byte >> 4) - 8);
      }
    }
  }
  return o;
}

/** Quantizes an f32 [N, K] weight (e.g. an nn.Linear's) into a quantized weight tensor. */
export function quantizeWeight(weight: Tensor, format: QuantFormat, options: { group?: number } = {}): Tensor {
  if (weight.rank !== 2) throw new RangeError(`quantizeWeight: weight must be [out, in], got [${weight.shape.join(', ')}]`);
  if (isQuantized(weight)) throw new TypeError('quantizeWeight: the weight is already quantized; dequantize it first');
  const spec: QuantSpec = { format, N: weight.shape[0], K: weight.shape[1], group: options.group ?? 32 };
  return quantizedTensor(spec, quantizeValues(weight.toFlatArray(), spec));
}

/** The GGUF tensor types that load as quantized weights, and their formats. */
export const GGUF_QUANT_FORMATS: Partial<Record<GgmlTypeName, QuantFormat>> = { Q8_0: 'q8_0', Q4_0: 'q4_0', Q4_K: 'q4_k', Q5_K: 'q5_k', Q6_K: 'q6_k' };

/**
 * A GGUF tensor as a parameter: a 2-D Q8_0/Q4_0/Q4_K/Q5_K/Q6_K matrix becomes a quantized weight
 * over its blocks as stored (no conversion: the kernels read ggml's layout); every other tensor is
 * read as the file stores it (file.toTensor: f32/f16/bf16 as stored, other quantized types
 * dequantized to f32).
 */
export function ggufParameter(file: GgufFile, name: string): Tensor {
  const info = file.tensorInfo(name);
  const format = GGUF_QUANT_FORMATS[info.type];
  if (format && info.shape.length === 2 && info.shape[1] % quantBlockValues(format) === 0) {
    return quantizedTensor({ format, N: info.shape[0], K: info.shape[1], group: 32 }, file.tensorData(name));
  }
  return file.toTensor(name);
}

/** Byte-concatenation of quantized weights along N (rows), as the horizontal GEMM fusion needs:
 *  every format here stores rows independently, so the blocks are the rows' blocks in order and
 *  the int8/int4 scales likewise. */
export function concatQuantized(parts: readonly { bytes: Uint8Array; spec: QuantSpec }[]): { bytes: Uint8Array; spec: QuantSpec } {
  if (parts.length === 0) throw new RangeError('concatQuantized: nothing to concatenate');
  const { format, K, group } = parts[0].spec;
  for (const p of parts) {
    if (p.spec.format !== format || p.spec.K !== K || p.spec.group !== group) {
      throw new TypeError(`concatQuantized: formats differ (${format}/K=${K}/group=${group} vs ${p.spec.format}/K=${p.spec.K}/group=${p.spec.group})`);
    }
  }
  const spec: QuantSpec = { format, K, group, N: parts.reduce((s, p) => s + p.spec.N, 0) };
  const lay = quantLayout(spec);
  const out = new Uint8Array(lay.totalBytes);
  let d = 0, s = lay.dataBytes;
  for (const p of parts) {
    const l = quantLayout(p.spec);
    out.set(p.bytes.subarray(0, l.dataBytes), d);
    out.set(p.bytes.subarray(l.dataBytes, l.totalBytes), s);
    d += l.dataBytes;
    s += 4 * l.scaleCount;
  }
  return { bytes: out, spec };
}
