// Byte positions inside a GGUF file's header (where each metadata value and each tensor info field
// sits), found by walking the header independently of the reader, so tests and fuzz targets can
// change one field in place: a type id, the tensor count, a hyper-parameter.

export interface GgufLayout {
  tensorCountAt: number;
  /** Metadata key -> byte position of its value and the value type id. */
  values: Map<string, { at: number; type: number }>;
  /** Tensor name -> positions of its name bytes, n_dims, type id and data offset. */
  tensors: Map<string, { nameAt: number; nameLength: number; typeAt: number; offsetAt: number }>;
}

const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function ggufLayout(bytes: Uint8Array): GgufLayout {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  const u32 = () => { const v = view.getUint32(pos, true); pos += 4; return v; };
  const u64 = () => { const v = Number(view.getBigUint64(pos, true)); pos += 8; return v; };
  const str = () => { const n = u64(); const s = new TextDecoder().decode(bytes.subarray(pos, pos + n)); pos += n; return s; };
  const skip = (type: number): void => {
    if (type === 8) { str(); return; }
    if (type === 9) { const t = u32(); const n = u64(); for (let i = 0; i < n; i++) skip(t); return; }
    pos += SCALAR_BYTES[type];
  };
  const tensorCountAt = pos;
  const tensorCount = u64();
  const kvCount = u64();
  const values = new Map<string, { at: number; type: number }>();
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    const type = u32();
    values.set(key, { at: pos, type });
    skip(type);
  }
  const tensors = new Map<string, { nameAt: number; nameLength: number; typeAt: number; offsetAt: number }>();
  for (let i = 0; i < tensorCount; i++) {
    const nameAt = pos + 8;
    const name = str();
    const nameLength = pos - nameAt;
    const nDims = u32();
    pos += 8 * nDims;
    const typeAt = pos;
    pos += 4;
    const offsetAt = pos;
    pos += 8;
    tensors.set(name, { nameAt, nameLength, typeAt, offsetAt });
  }
  return { tensorCountAt, values, tensors };
}

/** A copy of `bytes` with a u32 written at `at`. */
export function withU32(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint32(at, value, true);
  return out;
}

/** A copy of `bytes` with an f32 written at `at`. */
export function withF32(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setFloat32(at, value, true);
  return out;
}

/** A copy of `bytes` with a u64 written at `at`. */
export function withU64(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setBigUint64(at, BigInt(value), true);
  return out;
}
