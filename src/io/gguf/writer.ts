// GGUF writer (v3 by default, v2 on request): metadata of every value type, tensors in F32, F16, BF16,
// I8/I16/I32/I64, F64, Q8_0 and Q4_0 (quantized with ggml's reference algorithms), Q4_K/Q5_K/Q6_K (min/max quantizers), or any type given
// as ready-made raw bytes. Writes atomically (temp file + rename). Tests and tools use it to make
// models with seeded weights that llama.cpp loads: llama.cpp checks metadata types strictly, so
// hyperparameters must be u32 and epsilons f32 — use the typed helpers (`gguf.u32(n)`) where the
// default inference below would pick another type.
import { Tensor } from '../../tensor/tensor.js';
import { floatToF16Bits, floatToBf16Bits } from '../../tensor/half.js';
import { toFloat64 } from '../../tensor/dtype.js';
import { formatShape, numel } from '../../tensor/shape.js';
import { writeFileAtomic } from './file-source.js';
import {
  GGUF_MAGIC, GGUF_DEFAULT_ALIGNMENT, GGML_MAX_DIMS, GGML_MAX_NAME, GGUF_VALUE_TYPE_IDS, GGUF_SCALAR_BYTES,
  type GgmlTypeName, type GgufMetaValue, type GgufScalarType, type GgufValueType, ggmlType, formatValueType,
} from './types.js';
import { quantizeQ8_0, quantizeQ4_0, quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from './quants.js';

/** A metadata value with an explicit GGUF type. */
export interface GgufTypedValue { readonly __ggufType: GgufValueType; readonly value: GgufMetaValue }

const typed = (type: GgufValueType, value: GgufMetaValue): GgufTypedValue => ({ __ggufType: type, value });
/** Typed metadata helpers: `gguf.u32(2048)`, `gguf.f32(1e-5)`, `gguf.array('i32', [1, 2])`. */
export const gguf = {
  u8: (v: number) => typed('u8', v), i8: (v: number) => typed('i8', v),
  u16: (v: number) => typed('u16', v), i16: (v: number) => typed('i16', v),
  u32: (v: number) => typed('u32', v), i32: (v: number) => typed('i32', v),
  u64: (v: number | bigint) => typed('u64', v), i64: (v: number | bigint) => typed('i64', v),
  f32: (v: number) => typed('f32', v), f64: (v: number) => typed('f64', v),
  bool: (v: boolean) => typed('bool', v), string: (v: string) => typed('string', v),
  array: (itemType: GgufValueType, values: GgufMetaValue) => typed({ array: itemType }, values),
};

export type GgufWriteValue = GgufMetaValue | GgufTypedValue;

export interface GgufWriteTensor {
  name: string;
  /** Stored type. F32/F16/BF16/F64/I8/I16/I32/I64/Q8_0/Q4_0/Q4_K/Q5_K/Q6_K are encoded from `data`; other types need raw bytes. */
  type: GgmlTypeName;
  /** Row-major shape (as our Tensor); written to the file reversed, in ggml's ne order. Defaults to `data.shape`. */
  shape?: readonly number[];
  /** Values (a Tensor or an array of numbers), or the already-encoded bytes of `type` as a Uint8Array. */
  data: Tensor | ArrayLike<number> | Uint8Array;
}

export interface WriteGgufOptions {
  /** Metadata in insertion order. Plain JS values get a type by the rules of `inferType`. */
  metadata?: Map<string, GgufWriteValue> | Record<string, GgufWriteValue>;
  /** Declared types that override inference (e.g. a reader's `metadataTypes`, to re-write a file exactly). */
  metadataTypes?: Map<string, GgufValueType>;
  tensors?: readonly GgufWriteTensor[];
  /** 3 (default) or 2; the layouts are identical for little-endian files. */
  version?: 2 | 3;
  /** Data alignment. When it differs from 32 (or the metadata sets it) `general.alignment` is written as u32. */
  alignment?: number;
}

const isTyped = (v: unknown): v is GgufTypedValue => typeof v === 'object' && v !== null && '__ggufType' in v;

/**
 * Type of a plain JS metadata value: string -> string, boolean -> bool, bigint -> i64 (u64 if above
 * i64's range), integer number -> u32 when it fits (else i32 when negative and fitting, else i64/u64),
 * other numbers -> f32; typed arrays -> arrays of their element type; string[] -> array<string>;
 * boolean[] -> array<bool>; number[] -> array<f32> if any element is fractional, else array<i32>.
 */
export function inferType(v: GgufMetaValue, key = '<value>'): GgufValueType {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'bigint') return v > 0x7fffffffffffffffn ? 'u64' : 'i64';
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return 'f32';
    if (v >= 0 && v <= 0xffffffff) return 'u32';
    if (v < 0 && v >= -0x80000000) return 'i32';
    return v < 0 ? 'i64' : 'u64';
  }
  if (v instanceof Uint8Array) return { array: 'u8' };
  if (v instanceof Int8Array) return { array: 'i8' };
  if (v instanceof Uint16Array) return { array: 'u16' };
  if (v instanceof Int16Array) return { array: 'i16' };
  if (v instanceof Uint32Array) return { array: 'u32' };
  if (v instanceof Int32Array) return { array: 'i32' };
  if (v instanceof Float32Array) return { array: 'f32' };
  if (v instanceof Float64Array) return { array: 'f64' };
  if (v instanceof BigUint64Array) return { array: 'u64' };
  if (v instanceof BigInt64Array) return { array: 'i64' };
  if (Array.isArray(v)) {
    if (v.length === 0) return { array: 'u32' };
    if (v.every((x) => typeof x === 'string')) return { array: 'string' };
    if (v.every((x) => typeof x === 'boolean')) return { array: 'bool' };
    if (v.every((x) => typeof x === 'number')) return { array: (v as number[]).every(Number.isInteger) ? 'i32' : 'f32' };
    if (v.every((x) => typeof x === 'object')) return { array: inferType(v[0] as GgufMetaValue, `${key}[0]`) };
  }
  throw new TypeError(`writeGguf: cannot infer a GGUF type for metadata ${JSON.stringify(key)}; wrap it with gguf.<type>(...)`);
}

/** Growable little-endian byte buffer for the header. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.ensure(1); this.view.setUint8(this.length, v); this.length += 1; }
  u32(v: number) { this.ensure(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  u64(v: number | bigint) { this.ensure(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  bytes(b: Uint8Array) { this.ensure(b.length); this.buf.set(b, this.length); this.length += b.length; }
  string(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); this.bytes(b); }
  scalar(type: Exclude<GgufScalarType, 'string'>, v: number | bigint | boolean, key: string) {
    const n = GGUF_SCALAR_BYTES[type];
    this.ensure(n);
    const dv = this.view, o = this.length;
    const num = (): number => {
      if (typeof v !== 'number') throw new TypeError(`writeGguf: metadata ${JSON.stringify(key)} of type ${type} needs a number, got ${typeof v}`);
      return v;
    };
    const int = (lo: number, hi: number): number => {
      const x = num();
      if (!Number.isInteger(x) || x < lo || x > hi) throw new RangeError(`writeGguf: metadata ${JSON.stringify(key)} = ${x} does not fit ${type}`);
      return x;
    };
    switch (type) {
      case 'u8': dv.setUint8(o, int(0, 0xff)); break;
      case 'i8': dv.setInt8(o, int(-0x80, 0x7f)); break;
      case 'u16': dv.setUint16(o, int(0, 0xffff), true); break;
      case 'i16': dv.setInt16(o, int(-0x8000, 0x7fff), true); break;
      case 'u32': dv.setUint32(o, int(0, 0xffffffff), true); break;
      case 'i32': dv.setInt32(o, int(-0x80000000, 0x7fffffff), true); break;
      case 'f32': dv.setFloat32(o, num(), true); break;
      case 'f64': dv.setFloat64(o, num(), true); break;
      case 'bool':
        if (typeof v !== 'boolean') throw new TypeError(`writeGguf: metadata ${JSON.stringify(key)} of type bool needs a boolean, got ${typeof v}`);
        dv.setUint8(o, v ? 1 : 0); break;
      case 'u64': case 'i64': {
        if (typeof v === 'boolean') throw new TypeError(`writeGguf: metadata ${JSON.stringify(key)} of type ${type} needs a number or bigint`);
        if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new RangeError(`writeGguf: metadata ${JSON.stringify(key)} = ${v} is not an exact integer; pass a bigint`);
        const b = BigInt(v);
        const ok = type === 'u64' ? b >= 0n && b <= 0xffffffffffffffffn : b >= -0x8000000000000000n && b <= 0x7fffffffffffffffn;
        if (!ok) throw new RangeError(`writeGguf: metadata ${JSON.stringify(key)} = ${b} does not fit ${type}`);
        if (type === 'u64') dv.setBigUint64(o, b, true); else dv.setBigInt64(o, b, true);
        break;
      }
    }
    this.length += n;
  }
  value(type: GgufValueType, v: GgufMetaValue, key: string): void {
    if (typeof type === 'string') {
      if (type === 'string') {
        if (typeof v !== 'string') throw new TypeError(`writeGguf: metadata ${JSON.stringify(key)} of type string needs a string, got ${typeof v}`);
        this.string(v);
      } else {
        this.scalar(type, v as number | bigint | boolean, key);
      }
      return;
    }
    if (typeof v !== 'object' || v === null || typeof (v as ArrayLike<unknown>).length !== 'number') {
      throw new TypeError(`writeGguf: metadata ${JSON.stringify(key)} of type ${formatValueType(type)} needs an array`);
    }
    const items = v as ArrayLike<unknown>;
    const item = type.array;
    this.u32(GGUF_VALUE_TYPE_IDS[typeof item === 'string' ? item : 'array']);
    this.u64(items.length);
    for (let i = 0; i < items.length; i++) this.value(item, items[i] as GgufMetaValue, `${key}[${i}]`);
  }
  result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

/** Encodes tensor values into the bytes of a ggml type. */
export function encodeTensorData(type: GgmlTypeName, data: Tensor | ArrayLike<number>, name = '<tensor>'): Uint8Array {
  // Stored f16/bf16 tensors already hold the right bit patterns: copy them without a float round trip.
  if (data instanceof Tensor && ((type === 'F16' && data.dtype === 'f16') || (type === 'BF16' && data.dtype === 'bf16'))) {
    const s = data.data as Uint16Array;
    return new Uint8Array(s.buffer.slice(s.byteOffset, s.byteOffset + s.byteLength));
  }
  if (data instanceof Tensor && type === 'I64' && data.dtype === 'i64') {
    const s = data.data as BigInt64Array;
    return new Uint8Array(s.buffer.slice(s.byteOffset, s.byteOffset + s.byteLength));
  }
  const values: ArrayLike<number> = data instanceof Tensor ? toFloat64(data.dtype, data.data) : data;
  const n = values.length;
  const out = (T: { new(n: number): ArrayLike<number> & { buffer: ArrayBufferLike; set(a: ArrayLike<number>): void } }) => {
    const a = new T(n);
    a.set(values);
    return new Uint8Array(a.buffer);
  };
  switch (type) {
    case 'F32': return out(Float32Array);
    case 'F64': return out(Float64Array);
    case 'I8': return out(Int8Array);
    case 'I16': return out(Int16Array);
    case 'I32': return out(Int32Array);
    case 'I64': { const a = new BigInt64Array(n); for (let i = 0; i < n; i++) a[i] = BigInt(Math.trunc(values[i])); return new Uint8Array(a.buffer); }
    case 'F16': { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = floatToF16Bits(values[i]); return new Uint8Array(a.buffer); }
    case 'BF16': { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = floatToBf16Bits(values[i]); return new Uint8Array(a.buffer); }
    case 'Q8_0': return quantizeQ8_0(values);
    case 'Q4_0': return quantizeQ4_0(values);
    // min/max K-quant quantizers (valid blocks, not ggml's error-minimizing search; see quants.ts)
    case 'Q4_K': return quantizeQ4_K(values);
    case 'Q5_K': return quantizeQ5_K(values);
    case 'Q6_K': return quantizeQ6_K(values);
    default:
      throw new TypeError(`writeGguf: tensor ${JSON.stringify(name)}: cannot encode type ${type} from values; pass its raw bytes as a Uint8Array`);
  }
}

/** Builds a complete GGUF file in memory. */
export function encodeGguf(options: WriteGgufOptions): Uint8Array[] {
  const version = options.version ?? 3;
  if (version !== 2 && version !== 3) throw new RangeError(`writeGguf: version must be 2 or 3, got ${version}`);
  const entries: [string, GgufWriteValue][] = options.metadata instanceof Map
    ? [...options.metadata.entries()] : Object.entries(options.metadata ?? {});
  let alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const metaAlign = entries.find(([k]) => k === 'general.alignment');
  if (metaAlign) {
    const v = isTyped(metaAlign[1]) ? metaAlign[1].value : metaAlign[1];
    if (options.alignment !== undefined && v !== options.alignment) {
      throw new RangeError(`writeGguf: alignment option ${options.alignment} disagrees with metadata general.alignment = ${String(v)}`);
    }
    alignment = Number(v);
  } else if (alignment !== GGUF_DEFAULT_ALIGNMENT) {
    entries.push(['general.alignment', gguf.u32(alignment)]);
  }
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new RangeError(`writeGguf: alignment must be a power of two, got ${alignment}`);
  }

  const tensors = options.tensors ?? [];
  const encoded = tensors.map((t) => {
    const info = ggmlType(t.type);
    const shape = t.shape ?? (t.data instanceof Tensor ? t.data.shape : undefined);
    if (!shape) throw new TypeError(`writeGguf: tensor ${JSON.stringify(t.name)} needs a shape (data is not a Tensor)`);
    if (shape.length > GGML_MAX_DIMS) throw new RangeError(`writeGguf: tensor ${JSON.stringify(t.name)} has shape ${formatShape(shape)}; ggml allows at most ${GGML_MAX_DIMS} dims`);
    if (new TextEncoder().encode(t.name).length >= GGML_MAX_NAME) throw new RangeError(`writeGguf: tensor name ${JSON.stringify(t.name)} is longer than ${GGML_MAX_NAME - 1} bytes`);
    const ne = [...shape].reverse();
    const n = numel(shape);
    if ((ne[0] ?? 1) % info.blockSize !== 0) {
      throw new RangeError(`writeGguf: tensor ${JSON.stringify(t.name)} of type ${t.type} needs its last dim to be a multiple of ${info.blockSize}, shape is ${formatShape(shape)}`);
    }
    // A Uint8Array is always the encoded bytes (use Int8Array / number[] / a Tensor for values).
    const bytes = t.data instanceof Uint8Array ? t.data : encodeTensorData(t.type, t.data, t.name);
    const want = (n / info.blockSize) * info.typeSize;
    if (bytes.byteLength !== want) {
      throw new RangeError(`writeGguf: tensor ${JSON.stringify(t.name)} (${t.type} ${formatShape(shape)}) needs ${want} bytes of data, got ${bytes.byteLength}` +
        (t.data instanceof Uint8Array ? '' : ` from ${(t.data as ArrayLike<number>).length ?? (t.data as Tensor).size} values`));
    }
    return { name: t.name, ne, typeId: info.id, bytes };
  });
  const seen = new Set<string>();
  for (const t of encoded) {
    if (seen.has(t.name)) throw new RangeError(`writeGguf: duplicate tensor name ${JSON.stringify(t.name)}`);
    seen.add(t.name);
  }

  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(version);
  w.u64(encoded.length);
  w.u64(entries.length);
  const keys = new Set<string>();
  for (const [key, raw] of entries) {
    if (keys.has(key)) throw new RangeError(`writeGguf: duplicate metadata key ${JSON.stringify(key)}`);
    keys.add(key);
    const value = isTyped(raw) ? raw.value : raw;
    const type = isTyped(raw) ? raw.__ggufType : options.metadataTypes?.get(key) ?? inferType(value, key);
    w.string(key);
    w.u32(GGUF_VALUE_TYPE_IDS[typeof type === 'string' ? type : 'array']);
    w.value(type, value, key);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of encoded) {
    w.string(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(t.typeId);
    w.u64(offset);
    offsets.push(offset);
    offset += t.bytes.byteLength;
    offset += (alignment - (offset % alignment)) % alignment;
  }
  const chunks: Uint8Array[] = [];
  const header = w.result();
  chunks.push(header);
  const pad = (n: number) => { if (n > 0) chunks.push(new Uint8Array(n)); };
  pad((alignment - (header.length % alignment)) % alignment);
  let pos = 0;
  encoded.forEach((t, i) => {
    pad(offsets[i] - pos);
    chunks.push(t.bytes);
    pos = offsets[i] + t.bytes.byteLength;
  });
  pad((alignment - (pos % alignment)) % alignment);
  return chunks;
}

/** Writes a GGUF file atomically. */
export function writeGguf(file: string, options: WriteGgufOptions): void {
  const chunks = encodeGguf(options);
  writeFileAtomic(file, (append) => { for (const c of chunks) append(c); });
}

/** The whole file as one buffer (tests, fuzzing). */
export function encodeGgufBytes(options: WriteGgufOptions): Uint8Array {
  const chunks = encodeGguf(options);
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.byteLength; }
  return out;
}
