// Loaded weight matrices (src/llm/weights.ts: each in its file encoding) as the parameters of a
// model written as user code. A GGUF Q8_0/Q4_0/Q4_K/Q5_K/Q6_K matrix, or an int8/int4 one, becomes a
// quantized weight tensor over its blocks as stored (src/tensor/quantized.ts), so `F.linear` on it
// records quant_linear and the plan runs the qgemm kernel on those bytes: no f32 copy exists.
// f32/f16/bf16 matrices become f32 tensors, or, when the load asks for a weight precision, int8
// per-channel / int4 group-wise weights quantized once at load (what LlamaEngine's `precision` did).
//
// Embedding tables stay f32 (a quantized table is dequantized once at load): the lookup is a
// gather of rows, and the graph has no gather over quantized blocks; a tied output head still
// reads the file's quantized blocks, so only the table, not the head, is expanded.
import { Tensor } from '../../tensor/tensor.js';
import { fromArray } from '../../tensor/creation.js';
import { quantizedTensor, quantizeValues, quantLayout, type QuantFormat, type QuantSpec } from '../../tensor/quantized.js';
import { addon } from '../../backends/cpu/addon.js';
import { type WeightMatrix, WEIGHT_FORMAT_CODES, dequantizeMatrix } from '../weights.js';

/**
 * How linear weights run. 'auto' (default): as the file stores them (quantized formats quantized,
 * f32/f16/bf16 as f32). 'int8' / 'int4': f32/f16/bf16 linear weights are quantized at load (int8
 * per output channel; int4 per group of `groupSize` input values); already-quantized ones stay as
 * stored. 'fp32': every linear weight as f32 (a quantized file is dequantized: the reference).
 */
export type LoadPrecision = 'auto' | 'fp32' | 'int8' | 'int4';
export const LOAD_PRECISIONS: readonly LoadPrecision[] = ['auto', 'fp32', 'int8', 'int4'];

export interface WeightParamOptions {
  precision?: LoadPrecision;
  /** int4 group size: 32, 64 or 128 (default 32). */
  groupSize?: number;
}

const STORED_QUANT: Partial<Record<WeightMatrix['format'], QuantFormat>> = {
  q8_0: 'q8_0', q4_0: 'q4_0', q4_k: 'q4_k', q5_k: 'q5_k', q6_k: 'q6_k', int8: 'int8', int4: 'int4',
};

/** Checks a load's precision options; throws naming the bad value. */
export function checkWeightParamOptions(o: WeightParamOptions, where: string): void {
  if (o.precision !== undefined && !LOAD_PRECISIONS.includes(o.precision)) {
    throw new TypeError(`${where}: precision must be one of ${LOAD_PRECISIONS.join(', ')}, got ${JSON.stringify(o.precision)}`);
  }
  if (o.groupSize !== undefined && ![32, 64, 128].includes(o.groupSize)) {
    throw new RangeError(`${where}: groupSize must be 32, 64 or 128, got ${String(o.groupSize)}`);
  }
}

/** f32 [rows, cols] values of a matrix. Stored as f32: a copy (the stored array may be shared, e.g.
 *  by a tied embedding and LM head); otherwise the tensor owns the freshly dequantized array (a
 *  second copy is gigabytes at 1B scale, if briefly). */
export function f32Param(w: WeightMatrix): Tensor {
  const values = dequantizeMatrix(w);
  return w.format === 'f32' ? fromArray(values, [w.rows, w.cols], 'f32') : Tensor.fromStorage('f32', [w.rows, w.cols], values);
}

/** The stored blocks (and int8/int4 scales) of a quantized matrix in quantizedTensor's layout. */
function storedQuantBytes(w: WeightMatrix, spec: QuantSpec): Uint8Array {
  const data = new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength);
  if (!w.scales) return data;
  const lay = quantLayout(spec);
  const out = new Uint8Array(lay.totalBytes);
  out.set(data.subarray(0, lay.dataBytes), 0);
  out.set(new Uint8Array(w.scales.buffer, w.scales.byteOffset, 4 * lay.scaleCount), lay.dataBytes);
  return out;
}

interface QuantizeAddon {
  quantizeWeight(format: number, src: ArrayBufferView, srcFormat: number, N: number, K: number, group: number, data: Uint8Array, scales: Float32Array | null): void;
}

/** Quantizes an f32/f16/bf16 matrix to int8/int4 bytes: natively where the addon is built (large
 *  models quantize in seconds, not minutes; ggml-style rounding), else with the TypeScript quantizer
 *  (src/tensor/quantized.ts; same format, the int4 scale chosen as max/7 rather than ggml's max/-8). */
function quantizeAtLoad(w: WeightMatrix, spec: QuantSpec): Uint8Array {
  const native = addon as unknown as Partial<QuantizeAddon> | null;
  const lay = quantLayout(spec);
  if (native && typeof native.quantizeWeight === 'function') {
    const out = new Uint8Array(lay.totalBytes);
    const scales = new Float32Array(out.buffer, lay.dataBytes, lay.scaleCount);
    native.quantizeWeight(WEIGHT_FORMAT_CODES[spec.format as 'int8' | 'int4'], w.data, WEIGHT_FORMAT_CODES[w.format], spec.N, spec.K, spec.group,
      out.subarray(0, lay.dataBytes), scales);
    return out;
  }
  return quantizeValues(dequantizeMatrix(w), spec);
}

/** Whether linearParam gives this matrix as f32 (no quantized form under these options). */
export function linearStaysF32(w: WeightMatrix, options: WeightParamOptions = {}): boolean {
  const precision = options.precision ?? 'auto';
  if (precision === 'fp32' || w.format === 'q8_0x16' || w.format === 'q4_0x16') return true;
  if (STORED_QUANT[w.format]) return false;
  // the int8/int4 kernels need K in blocks of 32: such a layer stays f32
  return precision === 'auto' || w.cols % 32 !== 0;
}

/** A linear layer's weight [out, in] as a parameter (see the file comment for what each precision does). */
export function linearParam(w: WeightMatrix, options: WeightParamOptions = {}): Tensor {
  if (linearStaysF32(w, options)) return f32Param(w);
  const stored = STORED_QUANT[w.format];
  if (stored) {
    const spec: QuantSpec = { format: stored, N: w.rows, K: w.cols, group: w.groupSize };
    return quantizedTensor(spec, storedQuantBytes(w, spec));
  }
  const precision = options.precision as 'int8' | 'int4';
  const spec: QuantSpec = { format: precision, N: w.rows, K: w.cols, group: precision === 'int4' ? options.groupSize ?? 32 : 32 };
  return quantizedTensor(spec, quantizeAtLoad(w, spec));
}

/** An embedding table [vocab, dim] as an f32 parameter (a quantized table is dequantized once). */
export const embeddingParam = (w: WeightMatrix): Tensor => f32Param(w);
