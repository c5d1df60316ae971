// GGUF constants: the ggml tensor types (id, name, block size, bytes per block) and the metadata
// value types, as numbered in ggml's ggml.h / gguf.h. Byte sizes decide where every tensor ends,
// so they are listed even for types this reader cannot dequantize.

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS: tensors have at most 4 dims. */
export const GGML_MAX_DIMS = 4;
/** ggml's GGML_MAX_NAME: names are stored in a 64-byte field including the terminating NUL. */
export const GGML_MAX_NAME = 64;
/** K-quant super-block size (QK_K). */
export const QK_K = 256;

export type GgmlTypeName =
  | 'F32' | 'F16' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q8_1'
  | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'Q8_K'
  | 'IQ2_XXS' | 'IQ2_XS' | 'IQ3_XXS' | 'IQ1_S' | 'IQ4_NL' | 'IQ3_S' | 'IQ2_S' | 'IQ4_XS'
  | 'I8' | 'I16' | 'I32' | 'I64' | 'F64' | 'IQ1_M' | 'BF16' | 'TQ1_0' | 'TQ2_0' | 'MXFP4';

export interface GgmlTypeInfo {
  id: number;
  name: GgmlTypeName;
  /** Elements per block (1 for plain element types). */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
  /** True when a block packs a scale with low-bit values (the tensor must be dequantized to compute). */
  quantized: boolean;
}

const T = (id: number, name: GgmlTypeName, blockSize: number, typeSize: number): GgmlTypeInfo =>
  ({ id, name, blockSize, typeSize, quantized: blockSize > 1 });

/** Every type a GGUF file may name. Ids 4, 5 (old Q4_2/Q4_3) and 31-33, 36-38 (repacked types) were removed from GGUF. */
export const GGML_TYPES: readonly GgmlTypeInfo[] = [
  T(0, 'F32', 1, 4), T(1, 'F16', 1, 2), T(2, 'Q4_0', 32, 18), T(3, 'Q4_1', 32, 20),
  T(6, 'Q5_0', 32, 22), T(7, 'Q5_1', 32, 24), T(8, 'Q8_0', 32, 34), T(9, 'Q8_1', 32, 36),
  T(10, 'Q2_K', QK_K, 84), T(11, 'Q3_K', QK_K, 110), T(12, 'Q4_K', QK_K, 144), T(13, 'Q5_K', QK_K, 176),
  T(14, 'Q6_K', QK_K, 210), T(15, 'Q8_K', QK_K, 292),
  T(16, 'IQ2_XXS', QK_K, 66), T(17, 'IQ2_XS', QK_K, 74), T(18, 'IQ3_XXS', QK_K, 98), T(19, 'IQ1_S', QK_K, 50),
  T(20, 'IQ4_NL', 32, 18), T(21, 'IQ3_S', QK_K, 110), T(22, 'IQ2_S', QK_K, 82), T(23, 'IQ4_XS', QK_K, 136),
  T(24, 'I8', 1, 1), T(25, 'I16', 1, 2), T(26, 'I32', 1, 4), T(27, 'I64', 1, 8), T(28, 'F64', 1, 8),
  T(29, 'IQ1_M', QK_K, 56), T(30, 'BF16', 1, 2), T(34, 'TQ1_0', QK_K, 54), T(35, 'TQ2_0', QK_K, 66),
  T(39, 'MXFP4', 32, 17),
];

const BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));
const BY_NAME = new Map(GGML_TYPES.map((t) => [t.name, t]));

export function ggmlTypeById(id: number): GgmlTypeInfo | undefined { return BY_ID.get(id); }
export function ggmlType(name: GgmlTypeName): GgmlTypeInfo {
  const t = BY_NAME.get(name);
  if (!t) throw new TypeError(`gguf: unknown ggml type ${JSON.stringify(name)}; expected one of ${GGML_TYPES.map((x) => x.name).join(', ')}`);
  return t;
}
export function isGgmlTypeName(x: unknown): x is GgmlTypeName { return typeof x === 'string' && BY_NAME.has(x as GgmlTypeName); }

/** Bytes taken by `numElements` values of a type whose innermost dim is a multiple of the block size. */
export function ggmlByteSize(type: GgmlTypeInfo, numElements: number): number {
  return (numElements / type.blockSize) * type.typeSize;
}

// ---- metadata value types (gguf_metadata_value_type) ----

export type GgufScalarType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64' | 'i64' | 'f64';
/** A metadata value's declared type: a scalar type, or an array of some (possibly array) type. */
export type GgufValueType = GgufScalarType | { array: GgufValueType };

export const GGUF_VALUE_TYPE_IDS: Record<GgufScalarType | 'array', number> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
};
export const GGUF_VALUE_TYPE_NAMES: readonly (GgufScalarType | 'array')[] =
  ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];
/** Bytes of a fixed-size scalar (strings are variable). */
export const GGUF_SCALAR_BYTES: Record<Exclude<GgufScalarType, 'string'>, number> = {
  u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8,
};

export function formatValueType(t: GgufValueType): string {
  return typeof t === 'string' ? t : `array<${formatValueType(t.array)}>`;
}

/**
 * A metadata value as JavaScript sees it. Scalars: numbers (64-bit integers as numbers when they are
 * safe integers, else bigint), booleans, strings. Numeric arrays come back as typed arrays of the
 * declared width (u64/i64 as BigUint64Array/BigInt64Array); string and bool arrays as JS arrays;
 * arrays of arrays as JS arrays of those.
 */
export type GgufMetaValue =
  | number | bigint | boolean | string
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigUint64Array | BigInt64Array
  | string[] | boolean[] | GgufMetaValue[];
