// safetensors writer: tensors (any of our dtypes) and string metadata into one file, written
// atomically. The JSON header is padded with spaces to a multiple of 8 bytes, as Hugging Face's
// writer does, so the data section starts 8-byte aligned and readers can view it in place.
import { Tensor } from '../tensor/tensor.js';
import { type DType } from '../tensor/dtype.js';
import { SafetensorsError } from './errors.js';
import { writeFileAtomic } from './gguf/file-source.js';
import { type SafetensorsDType } from './safetensors.js';

const NAMES: Record<DType, SafetensorsDType> = {
  f32: 'F32', f16: 'F16', bf16: 'BF16', i8: 'I8', u8: 'U8', i32: 'I32', i64: 'I64', bool: 'BOOL',
};

export interface WriteSafetensorsOptions {
  /** Stored as "__metadata__" (string values only, per the format). */
  metadata?: Record<string, string>;
}

/** The complete file as chunks: 8-byte length, padded JSON header, then each tensor's bytes. */
export function encodeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, options: WriteSafetensorsOptions = {}): Uint8Array[] {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (options.metadata) {
    for (const [k, v] of Object.entries(options.metadata)) {
      if (typeof v !== 'string') throw new TypeError(`writeSafetensors: metadata ${JSON.stringify(k)} must be a string, got ${typeof v}`);
    }
    header.__metadata__ = options.metadata;
  }
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new TypeError('writeSafetensors: "__metadata__" is reserved and cannot name a tensor');
    if (!(t instanceof Tensor)) throw new TypeError(`writeSafetensors: ${JSON.stringify(name)} is not a Tensor`);
    header[name] = null; // keeps the caller's order in the header
  }
  // Data goes in order of decreasing element size (as Hugging Face's writer does), so every tensor
  // starts at a multiple of its element size and can be viewed in place.
  const byWidth = [...entries].sort((a, b) => b[1].data.BYTES_PER_ELEMENT - a[1].data.BYTES_PER_ELEMENT);
  const datas: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of byWidth) {
    const s = t.data;
    const bytes = new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
    header[name] = { dtype: NAMES[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    datas.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  const len = new TextEncoder().encode(json).length;
  json += ' '.repeat((8 - ((8 + len) % 8)) % 8);
  const jsonBytes = new TextEncoder().encode(json);
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  return [head, jsonBytes, ...datas];
}

/** Writes tensors to a .safetensors file atomically (temp file + rename). */
export function writeSafetensors(file: string, tensors: Map<string, Tensor> | Record<string, Tensor>, options: WriteSafetensorsOptions = {}): void {
  const chunks = encodeSafetensors(tensors, options);
  try {
    writeFileAtomic(file, (append) => { for (const c of chunks) append(c); });
  } catch (e) {
    throw new SafetensorsError(file, `cannot write: ${(e as Error).message}`);
  }
}

/** The whole file as one buffer (tests). */
export function encodeSafetensorsBytes(tensors: Map<string, Tensor> | Record<string, Tensor>, options: WriteSafetensorsOptions = {}): Uint8Array {
  const chunks = encodeSafetensors(tensors, options);
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.byteLength; }
  return out;
}
