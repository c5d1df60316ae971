// safetensors reader: one file, or a sharded checkpoint through its model.safetensors.index.json.
// The JSON header is validated in full (dtypes, shapes, offsets in range and non-overlapping) before
// any tensor is read; tensor bytes are read on request straight into the buffer behind the returned
// Tensor (one copy from disk), or viewed in place when the file was loaded into memory.
//
// File layout: u64 little-endian header length N | N bytes of JSON | data. The JSON maps each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data start) and
// may hold "__metadata__": {string: string}.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { type DType } from '../tensor/dtype.js';
import { formatShape } from '../tensor/shape.js';
import { SafetensorsError } from './errors.js';
import { type ByteSource, bufferSource, fileSource, assertLittleEndianHost } from './gguf/file-source.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I8' | 'U8' | 'I32' | 'I64' | 'BOOL';

/** safetensors dtype -> our dtype and element size. */
export const SAFETENSORS_DTYPES: Record<SafetensorsDType, { dtype: DType; bytes: number }> = {
  F32: { dtype: 'f32', bytes: 4 }, F16: { dtype: 'f16', bytes: 2 }, BF16: { dtype: 'bf16', bytes: 2 },
  I8: { dtype: 'i8', bytes: 1 }, U8: { dtype: 'u8', bytes: 1 }, I32: { dtype: 'i32', bytes: 4 },
  I64: { dtype: 'i64', bytes: 8 }, BOOL: { dtype: 'bool', bytes: 1 },
};
/** Dtypes the format defines that we cannot hold (reported as unsupported rather than unknown). */
const KNOWN_UNSUPPORTED = ['F64', 'I16', 'U16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64'];
/** Hugging Face's reader refuses headers above 100 MB; a larger length means a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  /** File offset of the first byte. */
  offset: number;
  byteLength: number;
  /** The file holding the tensor (differs per shard). */
  file: string;
}

interface Shard { source: ByteSource; metadata: Record<string, string>; tensors: SafetensorsTensorInfo[] }

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseShard(source: ByteSource): Shard {
  assertLittleEndianHost('safetensors');
  const file = source.name;
  const fail = (detail: string, offset?: number): never => { throw new SafetensorsError(file, detail, offset); };
  if (source.size < 8) fail(`file is ${source.size} bytes, too short for the 8-byte header length`, 0);
  const lenBytes = source.read(0, 8);
  const headerLen = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`, 0);
  const n = Number(headerLen);
  if (8 + n > source.size) fail(`file is truncated: header length is ${n} bytes but only ${source.size - 8} bytes follow`, 0);
  const headerBytes = source.read(8, n);
  let text: string;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes); } catch { return fail('header is not valid UTF-8', 8); }
  if (!text.startsWith('{')) fail(`header does not start with '{' (found ${JSON.stringify(text.slice(0, 16))})`, 8);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    const m = /position (\d+)/.exec((e as Error).message);
    fail(`header is not valid JSON: ${(e as Error).message}`, m ? 8 + Number(m[1]) : 8);
  }
  if (!isObject(header)) return fail('header is not a JSON object', 8);

  const dataStart = 8 + n;
  const dataSize = source.size - dataStart;
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) fail('__metadata__ must be an object of strings', 8);
      metadata = entry as Record<string, string>;
      continue;
    }
    const label = `tensor ${JSON.stringify(name)}`;
    if (!isObject(entry)) return fail(`${label}: entry is not an object`, 8);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') return fail(`${label}: dtype is missing or not a string`, 8);
    if (!(dtype in SAFETENSORS_DTYPES)) {
      fail(KNOWN_UNSUPPORTED.includes(dtype)
        ? `${label}: dtype ${dtype} is not supported (supported: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`
        : `${label}: unknown dtype ${JSON.stringify(dtype)}`, 8);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      return fail(`${label}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`, 8);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0) || offsets[0] > offsets[1]) {
      return fail(`${label}: data_offsets ${JSON.stringify(offsets)} must be [begin, end] with 0 <= begin <= end`, 8);
    }
    const [begin, end] = offsets as [number, number];
    const info = SAFETENSORS_DTYPES[dtype as SafetensorsDType];
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    if ((end - begin) !== numel * info.bytes) {
      fail(`${label}: ${dtype} ${formatShape(shape as number[])} needs ${numel * info.bytes} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`, dataStart + begin);
    }
    if (end > dataSize) {
      fail(`file is truncated: ${label} spans bytes ${dataStart + begin}..${dataStart + end} but the file is ${source.size} bytes long`, dataStart + begin);
    }
    tensors.push({ name, dtype: dtype as SafetensorsDType, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin, file });
  }
  // Empty tensors occupy no bytes and cannot overlap anything.
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1], cur = sorted[i];
    if (cur.offset < prev.offset + prev.byteLength) {
      fail(`tensor ${JSON.stringify(cur.name)} (bytes ${cur.offset}..${cur.offset + cur.byteLength}) overlaps tensor ${JSON.stringify(prev.name)} (bytes ${prev.offset}..${prev.offset + prev.byteLength})`, cur.offset);
    }
  }
  return { source, metadata, tensors };
}

export class SafetensorsFile {
  private readonly entries = new Map<string, { info: SafetensorsTensorInfo; source: ByteSource }>();

  /** @internal */
  constructor(
    /** The path given to the reader (a .safetensors file, an index.json, or a directory). */
    readonly path: string,
    shards: Shard[],
    /** `__metadata__` of a single file, or the index's "metadata" merged over the shards' for sharded checkpoints. */
    readonly metadata: Record<string, string>,
    order?: string[],
  ) {
    for (const s of shards) for (const t of s.tensors) this.entries.set(t.name, { info: t, source: s.source });
    const names = order ?? [...this.entries.keys()];
    this.tensors = names.map((n) => this.entries.get(n)!.info);
  }
  readonly tensors: readonly SafetensorsTensorInfo[];

  get names(): string[] { return this.tensors.map((t) => t.name); }
  hasTensor(name: string): boolean { return this.entries.has(name); }

  tensorInfo(name: string): SafetensorsTensorInfo {
    const e = this.entries.get(name);
    if (!e) {
      const some = this.names.slice(0, 8).join(', ');
      throw new SafetensorsError(this.path, `no tensor named ${JSON.stringify(name)} (there are ${this.tensors.length}: ${some}${this.tensors.length > 8 ? ', ...' : ''})`);
    }
    return e.info;
  }

  /** The raw little-endian bytes (a fresh buffer for lazily read files, a view for in-memory ones). */
  tensorData(name: string): Uint8Array {
    const info = this.tensorInfo(name);
    return this.entries.get(name)!.source.read(info.offset, info.byteLength);
  }

  /** The tensor as our Tensor with its stored dtype, backed by the bytes read from the file (no conversion). */
  toTensor(name: string): Tensor {
    const info = this.tensorInfo(name);
    const { dtype, bytes } = SAFETENSORS_DTYPES[info.dtype];
    let raw = this.tensorData(name);
    if (raw.byteOffset % bytes !== 0) raw = raw.slice(); // typed-array views need aligned starts
    const n = info.byteLength / bytes;
    const b = raw.buffer, o = raw.byteOffset;
    const storage = dtype === 'f32' ? new Float32Array(b, o, n)
      : dtype === 'f16' || dtype === 'bf16' ? new Uint16Array(b, o, n)
        : dtype === 'i8' ? new Int8Array(b, o, n)
          : dtype === 'i32' ? new Int32Array(b, o, n)
            : dtype === 'i64' ? new BigInt64Array(b, o, n)
              : new Uint8Array(b, o, n);
    return Tensor.fromStorage(dtype, info.shape, storage);
  }

  /** Every tensor, in file order. */
  loadAll(): Map<string, Tensor> {
    return new Map(this.names.map((n) => [n, this.toTensor(n)]));
  }
}

export interface ReadSafetensorsOptions {
  /** 'lazy' (default) reads each tensor from disk when asked; 'memory' reads each file whole (at most 2 GiB each). */
  load?: 'lazy' | 'memory';
}

function openSource(file: string, load: 'lazy' | 'memory'): ByteSource {
  let stat: fs.Stats;
  try { stat = fs.statSync(file); } catch (e) { throw new SafetensorsError(file, `cannot open: ${(e as Error).message}`); }
  if (!stat.isFile()) throw new SafetensorsError(file, 'not a regular file');
  if (load === 'memory') {
    if (stat.size > 0x7fffffff) throw new SafetensorsError(file, `file is ${stat.size} bytes; load: 'memory' reads at most 2 GiB, use load: 'lazy'`);
    return bufferSource(fs.readFileSync(file), file);
  }
  return fileSource(file, (offset, got, want) => new SafetensorsError(file, `file is truncated (changed since it was opened?): read ${got} of ${want} bytes`, offset));
}

/**
 * Whether `target` lies inside `dir` (both resolved). A prefix test on the relative path would also
 * refuse legitimate names that merely start with two dots, such as "..s1.safetensors".
 */
function isInside(dir: string, target: string): boolean {
  const rel = path.relative(path.resolve(dir), path.resolve(target));
  return rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

function readIndex(indexFile: string, load: 'lazy' | 'memory'): SafetensorsFile {
  const fail = (detail: string): never => { throw new SafetensorsError(indexFile, detail); };
  let index: unknown;
  try { index = JSON.parse(fs.readFileSync(indexFile, 'utf8')); } catch (e) { return fail(`cannot read the shard index: ${(e as Error).message}`); }
  if (!isObject(index) || !isObject(index.weight_map)) return fail('shard index has no "weight_map" object');
  const weightMap = index.weight_map;
  const dir = path.dirname(indexFile);
  const shards = new Map<string, Shard>();
  for (const [name, shardName] of Object.entries(weightMap)) {
    if (typeof shardName !== 'string') fail(`weight_map[${JSON.stringify(name)}] is not a file name`);
    const shardPath = path.resolve(dir, shardName as string);
    if (!isInside(dir, shardPath)) fail(`weight_map[${JSON.stringify(name)}] points outside the checkpoint directory: ${shardName}`);
    if (!shards.has(shardPath)) shards.set(shardPath, parseShard(openSource(shardPath, load)));
    if (!shards.get(shardPath)!.tensors.some((t) => t.name === name)) {
      fail(`weight_map says tensor ${JSON.stringify(name)} is in ${shardName}, but that shard has no such tensor`);
    }
  }
  const metadata: Record<string, string> = {};
  for (const s of shards.values()) Object.assign(metadata, s.metadata);
  if (isObject(index.metadata)) for (const [k, v] of Object.entries(index.metadata)) metadata[k] = String(v);
  // Tensors a shard holds but the map does not list are not part of the checkpoint (as in transformers).
  const listed = new Set(Object.keys(weightMap));
  const kept = [...shards.values()].map((s) => ({ ...s, tensors: s.tensors.filter((t) => listed.has(t.name)) }));
  return new SafetensorsFile(indexFile, kept, metadata, Object.keys(weightMap));
}

/**
 * Opens a safetensors checkpoint: a `.safetensors` file, a `*.safetensors.index.json` shard index, or a
 * directory holding `model.safetensors` or `model.safetensors.index.json`.
 */
export function readSafetensors(target: string, options: ReadSafetensorsOptions = {}): SafetensorsFile {
  const load = options.load ?? 'lazy';
  let file = target;
  if (fs.existsSync(target) && fs.statSync(target).isDirectory()) {
    const single = path.join(target, 'model.safetensors');
    const index = path.join(target, 'model.safetensors.index.json');
    if (fs.existsSync(index)) file = index;
    else if (fs.existsSync(single)) file = single;
    else throw new SafetensorsError(target, 'directory has neither model.safetensors nor model.safetensors.index.json');
  }
  if (file.endsWith('.json')) return readIndex(file, load);
  const shard = parseShard(openSource(file, load));
  return new SafetensorsFile(file, [shard], shard.metadata, fileOrder(shard));
}

const fileOrder = (s: Shard): string[] => [...s.tensors].sort((a, b) => a.offset - b.offset).map((t) => t.name);

/** Parses a safetensors file already in memory; tensors are views into `bytes`. */
export function parseSafetensors(bytes: Uint8Array, name = '<buffer>'): SafetensorsFile {
  const shard = parseShard(bufferSource(bytes, name));
  return new SafetensorsFile(name, [shard], shard.metadata, fileOrder(shard));
}

/** Reads every tensor of a checkpoint into a Map (name -> Tensor). */
export function loadSafetensors(target: string, options: ReadSafetensorsOptions = {}): Map<string, Tensor> {
  return readSafetensors(target, options).loadAll();
}
