// GGUF reader (v2 and v3, little-endian): header, metadata of every value type, tensor infos and
// tensor data. The header is parsed through a chunked window, so opening a multi-gigabyte model reads
// only its first megabytes. Tensor bytes are read on request straight into the buffer that backs
// the returned Tensor (one copy from disk, none after), or viewed in place when parsing a buffer.
//
// File layout (ggml docs/gguf.md):
//   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count x { string key | u32 value_type | value }          string = u64 length + UTF-8 bytes
//   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32) | tensor data (each offset relative to here, aligned)
import * as fs from 'node:fs';
import { Tensor } from '../../tensor/tensor.js';
import { type DType } from '../../tensor/dtype.js';
import { GgufError } from '../errors.js';
import { type ByteSource, ChunkedReader, bufferSource, fileSource, assertLittleEndianHost } from './file-source.js';
import {
  GGUF_MAGIC, GGUF_DEFAULT_ALIGNMENT, GGML_MAX_DIMS, GGML_MAX_NAME, GGUF_VALUE_TYPE_NAMES, GGUF_SCALAR_BYTES,
  type GgmlTypeInfo, type GgmlTypeName, type GgufMetaValue, type GgufScalarType, type GgufValueType,
  ggmlTypeById, formatValueType,
} from './types.js';
import { dequantize, DEQUANTIZABLE_TYPES } from './quants.js';

export interface GgufTensorInfo {
  name: string;
  type: GgmlTypeName;
  typeInfo: GgmlTypeInfo;
  /** Dims in ggml order: ne[0] is the innermost (fastest-varying) dim, e.g. [in, out] for a weight. */
  ne: readonly number[];
  /** Row-major shape as our Tensor uses it: `ne` reversed, e.g. [out, in]. */
  shape: readonly number[];
  numElements: number;
  /** Offset of the tensor's first byte from the start of the file. */
  offset: number;
  /** Offset as stored in the file, relative to the start of the data section. */
  relativeOffset: number;
  byteLength: number;
}

export interface ReadGgufOptions {
  /**
   * 'lazy' (default): parse the header now; read each tensor's bytes from the file when asked, straight
   * into its own buffer. Works for files of any size and never holds weights the caller did not ask for.
   * 'memory': read the whole file into one buffer (at most 2 GiB, Node's readFileSync limit) and return
   * tensor data as views into it.
   */
  load?: 'lazy' | 'memory';
}

const MAX_ARRAY_NESTING = 32;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parsing cursor over a ByteSource that reports every short read with the offset and what was being read. */
class Cursor {
  pos = 0;
  private readonly win: ChunkedReader;
  constructor(readonly src: ByteSource) { this.win = new ChunkedReader(src); }

  fail(detail: string, at = this.pos): never { throw new GgufError(this.src.name, detail, at); }
  remaining(): number { return this.src.size - this.pos; }

  need(n: number, what: string): void {
    if (this.pos + n > this.src.size) {
      this.fail(`file is truncated: ${what} needs ${n} bytes at offset ${this.pos} but the file is ${this.src.size} bytes long`);
    }
  }
  private take(n: number, what: string): { view: DataView; bytes: Uint8Array; at: number } {
    this.need(n, what);
    const w = this.win.window(this.pos, n);
    this.pos += n;
    return w;
  }
  u8(what: string): number { const w = this.take(1, what); return w.view.getUint8(w.at); }
  u32(what: string): number { const w = this.take(4, what); return w.view.getUint32(w.at, true); }
  u64(what: string): bigint { const w = this.take(8, what); return w.view.getBigUint64(w.at, true); }
  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  count(what: string, max = Number.MAX_SAFE_INTEGER): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(max)) this.fail(`${what} is ${v}, larger than ${max}`, at);
    return Number(v);
  }
  bytes(n: number, what: string): Uint8Array { const w = this.take(n, what); return w.bytes.subarray(w.at, w.at + n); }
  string(what: string): string {
    const at = this.pos;
    const len = this.count(`${what} length`);
    if (len > this.remaining()) this.fail(`${what} length ${len} runs past the end of the file (${this.remaining()} bytes left)`, at);
    const b = this.bytes(len, what);
    try { return utf8.decode(b); } catch { this.fail(`${what} is not valid UTF-8`, at + 8); }
  }
  scalar(type: Exclude<GgufScalarType, 'string'>, what: string): number | bigint | boolean {
    const at = this.pos;
    const w = this.take(GGUF_SCALAR_BYTES[type], what);
    const v = w.view, o = w.at;
    switch (type) {
      case 'u8': return v.getUint8(o);
      case 'i8': return v.getInt8(o);
      case 'u16': return v.getUint16(o, true);
      case 'i16': return v.getInt16(o, true);
      case 'u32': return v.getUint32(o, true);
      case 'i32': return v.getInt32(o, true);
      case 'f32': return v.getFloat32(o, true);
      case 'f64': return v.getFloat64(o, true);
      case 'u64': return narrow(v.getBigUint64(o, true));
      case 'i64': return narrow(v.getBigInt64(o, true));
      case 'bool': {
        const b = v.getUint8(o);
        if (b > 1) this.fail(`${what} is a bool stored as ${b}; only 0 and 1 are valid`, at);
        return b === 1;
      }
    }
  }
}

/** 64-bit integers become numbers when exact, bigints otherwise. */
const narrow = (v: bigint): number | bigint =>
  v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;

const TYPED_ARRAYS = {
  u8: Uint8Array, i8: Int8Array, u16: Uint16Array, i16: Int16Array, u32: Uint32Array, i32: Int32Array,
  f32: Float32Array, f64: Float64Array, u64: BigUint64Array, i64: BigInt64Array,
} as const;

function readValueType(c: Cursor, what: string): GgufScalarType | 'array' {
  const at = c.pos;
  const id = c.u32(`${what} type`);
  const name = GGUF_VALUE_TYPE_NAMES[id];
  if (name === undefined) c.fail(`${what} has unknown value type ${id} (valid: 0-12)`, at);
  return name;
}

/** Minimum bytes one element of a type occupies, used to reject absurd array lengths before looping. */
function minBytes(t: GgufScalarType | 'array'): number {
  if (t === 'string') return 8;
  if (t === 'array') return 12;
  return GGUF_SCALAR_BYTES[t];
}

function readValue(c: Cursor, type: GgufScalarType | 'array', what: string, depth: number): { value: GgufMetaValue; type: GgufValueType } {
  if (type === 'string') return { value: c.string(what), type };
  if (type !== 'array') return { value: c.scalar(type, what) as GgufMetaValue, type };
  if (depth >= MAX_ARRAY_NESTING) c.fail(`${what} nests arrays more than ${MAX_ARRAY_NESTING} deep`);
  const itemType = readValueType(c, `${what} element`);
  const lenAt = c.pos;
  const n = c.count(`${what} length`);
  if (n * minBytes(itemType) > c.remaining()) {
    c.fail(`${what} claims ${n} elements of type ${itemType}, which cannot fit in the ${c.remaining()} bytes left`, lenAt);
  }
  if (itemType === 'string') {
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = c.string(`${what}[${i}]`);
    return { value: out, type: { array: 'string' } };
  }
  if (itemType === 'bool') {
    const out: boolean[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = c.scalar('bool', `${what}[${i}]`) as boolean;
    return { value: out, type: { array: 'bool' } };
  }
  if (itemType === 'array') {
    const out: GgufMetaValue[] = new Array(n);
    let elemType: GgufValueType = { array: 'u8' };
    for (let i = 0; i < n; i++) {
      const inner = readValue(c, 'array', `${what}[${i}]`, depth + 1);
      out[i] = inner.value;
      elemType = inner.type;
    }
    return { value: out, type: { array: elemType } };
  }
  // Numeric array: copy into a fresh (hence aligned) buffer and view it with the matching typed array.
  const bytes = c.bytes(n * GGUF_SCALAR_BYTES[itemType], what).slice();
  const Ctor = TYPED_ARRAYS[itemType];
  return { value: new Ctor(bytes.buffer, 0, n) as GgufMetaValue, type: { array: itemType } };
}

export class GgufFile {
  /** @internal */
  constructor(
    readonly source: ByteSource,
    readonly version: number,
    readonly metadata: Map<string, GgufMetaValue>,
    /** The declared type of each metadata value (what a writer needs to reproduce the file exactly). */
    readonly metadataTypes: Map<string, GgufValueType>,
    readonly tensors: readonly GgufTensorInfo[],
    readonly alignment: number,
    /** File offset where the tensor data section starts. */
    readonly dataOffset: number,
  ) {
    for (const t of tensors) this.byName.set(t.name, t);
  }
  private readonly byName = new Map<string, GgufTensorInfo>();

  get path(): string { return this.source.name; }
  get architecture(): string | undefined {
    const a = this.metadata.get('general.architecture');
    return typeof a === 'string' ? a : undefined;
  }

  hasTensor(name: string): boolean { return this.byName.has(name); }
  tensorInfo(name: string): GgufTensorInfo {
    const t = this.byName.get(name);
    if (!t) {
      const some = this.tensors.slice(0, 8).map((x) => x.name).join(', ');
      throw new GgufError(this.path, `no tensor named ${JSON.stringify(name)} (the file has ${this.tensors.length} tensors: ${some}${this.tensors.length > 8 ? ', ...' : ''})`);
    }
    return t;
  }

  /**
   * The tensor's raw bytes in its stored encoding (for quantized types: the ggml blocks, ready for
   * kernels that compute on them directly). Lazy files read the range from disk into a new buffer on
   * every call (the caller owns it); in-memory files return a view.
   */
  tensorData(name: string): Uint8Array {
    const t = this.tensorInfo(name);
    if (t.offset + t.byteLength > this.source.size) {
      throw new GgufError(this.path, `tensor ${JSON.stringify(name)} ends at byte ${t.offset + t.byteLength} but the file is ${this.source.size} bytes`, t.offset);
    }
    return this.source.read(t.offset, t.byteLength);
  }

  /**
   * The tensor as our Tensor, shape row-major (`info.shape`). F32, F16, BF16, I8, I32 and I64 data is
   * used as stored, without conversion (a view over the bytes `tensorData` returns); quantized types,
   * F64 and I16 are converted to f32 (I16 to i32). `dtype: 'f32'` forces f32 for every type.
   */
  toTensor(name: string, options: { dtype?: 'f32' } = {}): Tensor {
    const t = this.tensorInfo(name);
    const direct: Partial<Record<GgmlTypeName, DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I8: 'i8', I32: 'i32', I64: 'i64' };
    let dtype = direct[t.type];
    if (options.dtype === 'f32' && dtype !== 'f32') dtype = undefined;
    const bytes = this.tensorData(name);
    if (dtype !== undefined) return Tensor.fromStorage(dtype, t.shape, viewAs(dtype, bytes, t.numElements));
    if (t.type === 'I16' && options.dtype !== 'f32') {
      const src = viewAligned(bytes, 2);
      const out = new Int32Array(t.numElements);
      out.set(new Int16Array(src.buffer, src.byteOffset, t.numElements));
      return Tensor.fromStorage('i32', t.shape, out);
    }
    if (!DEQUANTIZABLE_TYPES.includes(t.type)) {
      throw new GgufError(this.path, `tensor ${JSON.stringify(name)} has type ${t.type}, which this reader cannot decode (supported: ${DEQUANTIZABLE_TYPES.join(', ')})`, t.offset);
    }
    return Tensor.fromStorage('f32', t.shape, dequantize(t.typeInfo, bytes, t.numElements));
  }

  // ---- metadata accessors: throw a GgufError naming the key when it is missing or has another type ----

  get(key: string): GgufMetaValue | undefined { return this.metadata.get(key); }

  private require(key: string): GgufMetaValue {
    const v = this.metadata.get(key);
    if (v === undefined) throw new GgufError(this.path, `metadata key ${JSON.stringify(key)} is missing`);
    return v;
  }
  private wrongType(key: string, want: string): never {
    const t = this.metadataTypes.get(key)!;
    throw new GgufError(this.path, `metadata key ${JSON.stringify(key)} has type ${formatValueType(t)}, expected ${want}`);
  }

  getString(key: string): string;
  getString(key: string, fallback: string): string;
  getString(key: string, fallback?: string): string {
    if (fallback !== undefined && !this.metadata.has(key)) return fallback;
    const v = this.require(key);
    if (typeof v !== 'string') this.wrongType(key, 'string');
    return v;
  }
  /** Any numeric scalar type as a number (64-bit values beyond 2^53 are an error). */
  getNumber(key: string): number;
  getNumber(key: string, fallback: number): number;
  getNumber(key: string, fallback?: number): number {
    if (fallback !== undefined && !this.metadata.has(key)) return fallback;
    const v = this.require(key);
    if (typeof v === 'bigint') throw new GgufError(this.path, `metadata key ${JSON.stringify(key)} is ${v}, beyond the range of exact JS numbers`);
    if (typeof v !== 'number') this.wrongType(key, 'a number');
    return v;
  }
  getBool(key: string): boolean;
  getBool(key: string, fallback: boolean): boolean;
  getBool(key: string, fallback?: boolean): boolean {
    if (fallback !== undefined && !this.metadata.has(key)) return fallback;
    const v = this.require(key);
    if (typeof v !== 'boolean') this.wrongType(key, 'bool');
    return v;
  }
  getStringArray(key: string): string[] {
    const v = this.require(key);
    const t = this.metadataTypes.get(key)!;
    if (typeof t === 'string' || t.array !== 'string') this.wrongType(key, 'array<string>');
    return v as string[];
  }
  /** A numeric array as numbers (any element width; 64-bit elements must be exact). */
  getNumberArray(key: string): ArrayLike<number> {
    const v = this.require(key);
    const t = this.metadataTypes.get(key)!;
    if (typeof t === 'string' || typeof t.array !== 'string' || t.array === 'string' || t.array === 'bool') this.wrongType(key, 'a numeric array');
    if (v instanceof BigInt64Array || v instanceof BigUint64Array) {
      return Array.from(v, (x) => {
        const n = narrow(x);
        if (typeof n === 'bigint') throw new GgufError(this.path, `metadata key ${JSON.stringify(key)} holds ${x}, beyond the range of exact JS numbers`);
        return n;
      });
    }
    return v as ArrayLike<number>;
  }
}

const ELEMENT_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i8: 1, u8: 1, i32: 4, i64: 8, bool: 1 };

/** The bytes as-is if they start at a multiple of `align`, else an aligned copy (views need alignment). */
function viewAligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

function viewAs(dtype: DType, raw: Uint8Array, n: number) {
  const b = viewAligned(raw, ELEMENT_BYTES[dtype]);
  switch (dtype) {
    case 'f32': return new Float32Array(b.buffer, b.byteOffset, n);
    case 'f16': case 'bf16': return new Uint16Array(b.buffer, b.byteOffset, n);
    case 'i8': return new Int8Array(b.buffer, b.byteOffset, n);
    case 'i32': return new Int32Array(b.buffer, b.byteOffset, n);
    case 'i64': return new BigInt64Array(b.buffer, b.byteOffset, n);
    default: return new Uint8Array(b.buffer, b.byteOffset, n);
  }
}

function parse(source: ByteSource): GgufFile {
  assertLittleEndianHost('gguf');
  const c: Cursor = new Cursor(source);
  if (source.size < 24) {
    c.fail(`file is ${source.size} bytes, too short for a GGUF header (24 bytes: magic, version, tensor count, metadata count)`, 0);
  }
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const got = Array.from(new Uint8Array(new Uint32Array([magic]).buffer), (b) => b.toString(16).padStart(2, '0')).join(' ');
    c.fail(`not a GGUF file: magic bytes are ${got}, expected 47 47 55 46 ("GGUF")`, 0);
  }
  const version = c.u32('version');
  if (version === 1) c.fail('GGUF version 1 (32-bit counts) is not supported; re-convert the model to GGUF v2 or v3', 4);
  if (version !== 2 && version !== 3) {
    if ((version & 0xffff) === 0) c.fail(`version field reads ${version}, which looks byte-swapped: big-endian GGUF files are not supported`, 4);
    c.fail(`unsupported GGUF version ${version} (supported: 2, 3)`, 4);
  }
  const tensorCountAt = c.pos;
  const tensorCount = c.count('tensor count');
  const kvCountAt = c.pos;
  const kvCount = c.count('metadata count');
  // Every kv takes at least 13 bytes and every tensor info at least 24: reject absurd counts up front
  // instead of looping over billions of entries of a corrupt header.
  if (kvCount * 13 > c.remaining()) {
    c.fail(`file is truncated or its metadata count is corrupt: ${kvCount} key-value pairs need at least ${kvCount * 13} bytes, but ${c.remaining()} bytes follow the header`, kvCountAt);
  }
  if (tensorCount * 24 + kvCount * 13 > c.remaining()) {
    c.fail(`file is truncated or its tensor count is corrupt: ${tensorCount} tensor infos (at least ${tensorCount * 24} bytes) and ${kvCount} key-value pairs (at least ${kvCount * 13} bytes) do not fit in the ${c.remaining()} bytes after the header`, tensorCountAt);
  }

  const metadata = new Map<string, GgufMetaValue>();
  const metadataTypes = new Map<string, GgufValueType>();
  for (let i = 0; i < kvCount; i++) {
    const keyAt = c.pos;
    const key = c.string(`metadata key #${i}`);
    if (metadata.has(key)) c.fail(`duplicate metadata key ${JSON.stringify(key)}`, keyAt);
    const what = `metadata ${JSON.stringify(key)}`;
    const type = readValueType(c, what);
    const { value, type: full } = readValue(c, type, what, 0);
    metadata.set(key, value);
    metadataTypes.set(key, full);
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if (metadata.has('general.alignment')) {
    const a = metadata.get('general.alignment');
    if (metadataTypes.get('general.alignment') !== 'u32') {
      c.fail(`general.alignment has type ${formatValueType(metadataTypes.get('general.alignment')!)}; it must be u32`, 24);
    }
    if (typeof a !== 'number' || a === 0 || (a & (a - 1)) !== 0) c.fail(`general.alignment is ${a}; it must be a non-zero power of two`, 24);
    alignment = a;
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const infoAt = c.pos;
    const name = c.string(`tensor info #${i} name`);
    const label = `tensor ${JSON.stringify(name)}`;
    if (new TextEncoder().encode(name).length >= GGML_MAX_NAME) c.fail(`${label}: name is longer than ${GGML_MAX_NAME - 1} bytes`, infoAt);
    if (names.has(name)) c.fail(`duplicate tensor name ${JSON.stringify(name)}`, infoAt);
    names.add(name);
    const dimsAt = c.pos;
    const nDims = c.u32(`${label} n_dims`);
    if (nDims > GGML_MAX_DIMS) c.fail(`${label} has ${nDims} dims; ggml allows at most ${GGML_MAX_DIMS}`, dimsAt);
    const ne: number[] = [];
    let numElements = 1;
    for (let d = 0; d < nDims; d++) {
      const dimAt = c.pos;
      const v = c.count(`${label} ne[${d}]`);
      numElements *= v;
      if (numElements > Number.MAX_SAFE_INTEGER) c.fail(`${label} has more than 2^53 elements`, dimAt);
      ne.push(v);
    }
    const typeAt = c.pos;
    const typeId = c.u32(`${label} type`);
    const typeInfo = ggmlTypeById(typeId);
    if (!typeInfo) c.fail(`${label} has unknown or removed ggml type id ${typeId}`, typeAt);
    if ((ne[0] ?? 1) % typeInfo.blockSize !== 0) {
      c.fail(`${label} has type ${typeInfo.name} with blocks of ${typeInfo.blockSize}, but its innermost dim ne[0] = ${ne[0]} is not a multiple of that`, dimsAt);
    }
    const offAt = c.pos;
    const relativeOffset = c.count(`${label} data offset`);
    if (relativeOffset % alignment !== 0) c.fail(`${label} data offset ${relativeOffset} is not a multiple of the alignment ${alignment}`, offAt);
    const byteLength = (numElements / typeInfo.blockSize) * typeInfo.typeSize;
    tensors.push({
      name, type: typeInfo.name, typeInfo, ne, shape: [...ne].reverse(), numElements,
      offset: relativeOffset, relativeOffset, byteLength,
    });
  }

  const dataOffset = c.pos + ((alignment - (c.pos % alignment)) % alignment);
  // As llama.cpp's gguf reader: tensors are packed in the order of their infos, each at the running
  // offset rounded up to the alignment. Checking every offset against that (rather than only for
  // overlaps) catches a changed type id (a tensor whose byte size no longer matches the gap to the
  // next one) and a changed tensor count (the data section no longer starts where the writer put it).
  let expected = 0;
  for (const t of tensors) {
    t.offset = dataOffset + t.relativeOffset;
    if (t.relativeOffset !== expected) {
      c.fail(`tensor ${JSON.stringify(t.name)} (${t.type} ${formatNe(t.ne)}, ${t.byteLength} bytes) has data offset ${t.relativeOffset}, ` +
        `expected ${expected} (tensors are packed in order at ${alignment}-byte alignment; a tensor's type or shape, or the tensor count, was changed)`, t.offset);
    }
    if (t.offset + t.byteLength > source.size) {
      c.fail(`file is truncated: tensor ${JSON.stringify(t.name)} (${t.type} ${formatNe(t.ne)}, ${t.byteLength} bytes) spans bytes ${t.offset}..${t.offset + t.byteLength} but the file is ${source.size} bytes long`, t.offset);
    }
    expected += t.byteLength + ((alignment - (t.byteLength % alignment)) % alignment);
  }
  // Only the final alignment padding may follow the last tensor: more bytes mean the tensor infos no
  // longer describe the data (e.g. a tensor count one too small shifts the data start and drops a tensor).
  const dataEnd = tensors.length > 0 ? tensors[tensors.length - 1].offset + tensors[tensors.length - 1].byteLength : dataOffset;
  if (source.size - dataEnd >= alignment && source.size > dataOffset) {
    c.fail(`${source.size - dataEnd} bytes follow the last tensor's data (at most ${alignment - 1} bytes of padding may): ` +
      `the tensor infos (count ${tensors.length}) do not describe the whole data section`, dataEnd);
  }
  return new GgufFile(source, version, metadata, metadataTypes, tensors, alignment, dataOffset);
}

const formatNe = (ne: readonly number[]): string => `ne=[${ne.join(', ')}]`;

/** Opens a GGUF file: parses its header and returns a reader for its metadata and tensors. */
export function readGguf(file: string, options: ReadGgufOptions = {}): GgufFile {
  let stat: fs.Stats;
  try { stat = fs.statSync(file); } catch (e) { throw new GgufError(file, `cannot open: ${(e as Error).message}`); }
  if (!stat.isFile()) throw new GgufError(file, 'not a regular file');
  if (options.load === 'memory') {
    if (stat.size > 0x7fffffff) throw new GgufError(file, `file is ${stat.size} bytes; load: 'memory' reads at most 2 GiB, use load: 'lazy'`);
    return parse(bufferSource(fs.readFileSync(file), file));
  }
  return parse(fileSource(file, (offset, got, want) =>
    new GgufError(file, `file is truncated (changed since it was opened?): read ${got} of ${want} bytes`, offset)));
}

/** Parses a GGUF file already in memory; tensor data are views into `bytes`. */
export function parseGguf(bytes: Uint8Array, name = '<buffer>'): GgufFile {
  return parse(bufferSource(bytes, name));
}
