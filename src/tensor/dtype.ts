// Data types: names, storage arrays, and exact conversions between stored values and JS numbers.
// f16 and bf16 are stored as raw 16-bit patterns (Uint16Array); i64 as BigInt64Array.
import { f16BitsToFloat, floatToF16Bits, bf16BitsToFloat, floatToBf16Bits } from './half.js';

export type DType = 'f32' | 'f16' | 'bf16' | 'i8' | 'u8' | 'i32' | 'i64' | 'bool';
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i8', 'u8', 'i32', 'i64', 'bool'];

export type Storage =
  | Float32Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | Int32Array
  | BigInt64Array;

interface DTypeInfo {
  bytes: number;
  isFloat: boolean;
  isInt: boolean;
  make(n: number): Storage;
}

const INFO: Record<DType, DTypeInfo> = {
  f32: { bytes: 4, isFloat: true, isInt: false, make: (n) => new Float32Array(n) },
  f16: { bytes: 2, isFloat: true, isInt: false, make: (n) => new Uint16Array(n) },
  bf16: { bytes: 2, isFloat: true, isInt: false, make: (n) => new Uint16Array(n) },
  i8: { bytes: 1, isFloat: false, isInt: true, make: (n) => new Int8Array(n) },
  u8: { bytes: 1, isFloat: false, isInt: true, make: (n) => new Uint8Array(n) },
  i32: { bytes: 4, isFloat: false, isInt: true, make: (n) => new Int32Array(n) },
  i64: { bytes: 8, isFloat: false, isInt: true, make: (n) => new BigInt64Array(n) },
  bool: { bytes: 1, isFloat: false, isInt: false, make: (n) => new Uint8Array(n) },
};

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && (DTYPES as readonly string[]).includes(x);
}
export function assertDType(x: unknown, where: string): DType {
  if (!isDType(x)) throw new TypeError(`${where}: unknown dtype ${JSON.stringify(x)}; expected one of ${DTYPES.join(', ')}`);
  return x;
}
export const dtypeBytes = (d: DType): number => INFO[d].bytes;
export const isFloatDType = (d: DType): boolean => INFO[d].isFloat;
export const isIntDType = (d: DType): boolean => INFO[d].isInt;
export const allocStorage = (d: DType, n: number): Storage => INFO[d].make(n);

/** Reads element i of a storage array as a JS number (i64 via Number(), exact below 2^53). */
export function readElement(d: DType, s: Storage, i: number): number {
  switch (d) {
    case 'f16': return f16BitsToFloat((s as Uint16Array)[i]);
    case 'bf16': return bf16BitsToFloat((s as Uint16Array)[i]);
    case 'i64': return Number((s as BigInt64Array)[i]);
    default: return (s as Float32Array)[i];
  }
}

/** Converts a JS number to the stored representation of dtype d: rounding for floats,
 *  truncation toward zero with wrap-around for ints (like a C cast), 0/1 for bool. */
export function writeElement(d: DType, s: Storage, i: number, v: number): void {
  switch (d) {
    case 'f16': (s as Uint16Array)[i] = floatToF16Bits(v); return;
    case 'bf16': (s as Uint16Array)[i] = floatToBf16Bits(v); return;
    case 'i64': (s as BigInt64Array)[i] = BigInt(Number.isFinite(v) ? Math.trunc(v) : 0); return;
    case 'bool': (s as Uint8Array)[i] = v !== 0 && !Number.isNaN(v) ? 1 : 0; return;
    case 'i8': case 'u8': case 'i32':
      (s as Int32Array)[i] = Number.isFinite(v) ? Math.trunc(v) : 0; return;
    default: (s as Float32Array)[i] = v;
  }
}

/** Whole-array conversion to float64 numbers (the reference kernels' working format). */
export function toFloat64(d: DType, s: Storage): Float64Array {
  const n = s.length;
  const out = new Float64Array(n);
  if (d === 'f32' || d === 'i8' || d === 'u8' || d === 'i32' || d === 'bool') {
    for (let i = 0; i < n; i++) out[i] = (s as Float32Array)[i];
  } else {
    for (let i = 0; i < n; i++) out[i] = readElement(d, s, i);
  }
  return out;
}

/** Whole-array conversion from JS numbers into a new storage of dtype d. */
export function fromNumbers(d: DType, values: ArrayLike<number>): Storage {
  const n = values.length;
  const s = allocStorage(d, n);
  if (d === 'f32') { (s as Float32Array).set(values); return s; }
  for (let i = 0; i < n; i++) writeElement(d, s, i, values[i]);
  return s;
}

/** Result dtype of a binary arithmetic op: the "larger" of the two, floats beat ints. */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  const rank: DType[] = ['bool', 'u8', 'i8', 'i32', 'i64', 'bf16', 'f16', 'f32'];
  if ((a === 'f16' && b === 'bf16') || (a === 'bf16' && b === 'f16')) return 'f32';
  if ((a === 'u8' && b === 'i8') || (a === 'i8' && b === 'u8')) return 'i32';
  return rank.indexOf(a) > rank.indexOf(b) ? a : b;
}
