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
  /** The typed-array class a storage of this dtype is. */
  array: typeof Float32Array | typeof Uint16Array | typeof Int8Array | typeof Uint8Array | typeof Int32Array | typeof BigInt64Array;
  /** Smallest and largest stored value (integer dtypes). */
  range?: readonly [number, number];
}

const INFO: Record<DType, DTypeInfo> = {
  f32: { bytes: 4, isFloat: true, isInt: false, array: Float32Array },
  f16: { bytes: 2, isFloat: true, isInt: false, array: Uint16Array },
  bf16: { bytes: 2, isFloat: true, isInt: false, array: Uint16Array },
  i8: { bytes: 1, isFloat: false, isInt: true, array: Int8Array, range: [-128, 127] },
  u8: { bytes: 1, isFloat: false, isInt: true, array: Uint8Array, range: [0, 255] },
  i32: { bytes: 4, isFloat: false, isInt: true, array: Int32Array, range: [-(2 ** 31), 2 ** 31 - 1] },
  // 2^63 - 1 is not a JS number; 2^63 is the first number past the top (checked with <)
  i64: { bytes: 8, isFloat: false, isInt: true, array: BigInt64Array, range: [-(2 ** 63), 2 ** 63] },
  bool: { bytes: 1, isFloat: false, isInt: false, array: Uint8Array },
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
export const allocStorage = (d: DType, n: number): Storage => new INFO[d].array(n);

/** Throws unless `data` is the typed array dtype d is stored in (Float32Array for f32, Uint16Array
 *  for f16/bf16 bit patterns, BigInt64Array for i64, ...). A mismatch is refused rather than
 *  converted or reinterpreted, because either guess silently gives wrong values for someone. */
export function checkStorage(d: DType, data: unknown, where: string): asserts data is Storage {
  const want = INFO[d].array;
  if (data instanceof want) return;
  const got = data === null ? 'null' : typeof data === 'object' ? (data as object).constructor?.name ?? 'object' : typeof data;
  const fix = d === 'f16' || d === 'bf16' ? `pass the ${d} bit patterns as a Uint16Array, or use fromArray(values, shape, '${d}') to convert numbers`
    : `convert first (e.g. fromArray(Array.from(data), shape, '${d}')) or pass a ${want.name}`;
  throw new TypeError(`${where}: dtype ${d} is stored in a ${want.name}, got a ${got}; ${fix}`);
}

/** Reads element i of a storage array as a JS number (i64 via Number(), exact below 2^53). */
export function readElement(d: DType, s: Storage, i: number): number {
  switch (d) {
    case 'f16': return f16BitsToFloat((s as Uint16Array)[i]);
    case 'bf16': return bf16BitsToFloat((s as Uint16Array)[i]);
    case 'i64': return Number((s as BigInt64Array)[i]);
    default: return (s as Float32Array)[i];
  }
}

const I64_MAX = 2n ** 63n - 1n, I64_MIN = -(2n ** 63n);

/** Converts a number to the stored representation of dtype d, with the semantics of the `cast` op
 *  (float -> anything): floats round to nearest even; integers truncate toward zero and SATURATE at
 *  the dtype's range, NaN -> 0 (Rust's `as`; NumPy and C leave this undefined); bool is v != 0, so
 *  NaN -> true (as C++ and PyTorch). Integer results of integer arithmetic never come through here:
 *  those kernels wrap, see src/ops/integer.ts. Values supplied by users go through fromUserNumbers. */
export function writeElement(d: DType, s: Storage, i: number, v: number): void {
  switch (d) {
    case 'f16': (s as Uint16Array)[i] = floatToF16Bits(v); return;
    case 'bf16': (s as Uint16Array)[i] = floatToBf16Bits(v); return;
    case 'i64':
      (s as BigInt64Array)[i] = Number.isNaN(v) ? 0n : v >= 2 ** 63 ? I64_MAX : v <= -(2 ** 63) ? I64_MIN : BigInt(Math.trunc(v));
      return;
    case 'bool': (s as Uint8Array)[i] = v !== 0 ? 1 : 0; return;
    case 'i8': case 'u8': case 'i32': {
      const [lo, hi] = INT_LIMITS[d];
      (s as Int32Array)[i] = Number.isNaN(v) ? 0 : v <= lo ? lo : v >= hi ? hi : Math.trunc(v);
      return;
    }
    default: (s as Float32Array)[i] = v;
  }
}

/** Inclusive range of the ≤32-bit integer dtypes. */
const INT_LIMITS = { i8: [-128, 127], u8: [0, 255], i32: [-(2 ** 31), 2 ** 31 - 1] } as const;

/** Why `v` cannot be stored in dtype d exactly-or-by-rounding, or null when it can: integer dtypes
 *  take only integers in their range (i64: -2^63 <= v < 2^63), bool takes any number but NaN,
 *  float dtypes take every number (rounded to nearest, overflowing to ±Infinity). */
export function unrepresentable(d: DType, v: number): string | null {
  if (typeof v !== 'number') return `is ${typeof v}, not a number`;
  if (d === 'bool') return Number.isNaN(v) ? 'is NaN, which is neither true nor false' : null;
  if (!INFO[d].isInt) return null;
  const integer = Number.isInteger(v);
  const ok = integer && (d === 'i64' ? v >= -(2 ** 63) && v < 2 ** 63 : v >= INT_LIMITS[d as 'i8' | 'u8' | 'i32'][0] && v <= INT_LIMITS[d as 'i8' | 'u8' | 'i32'][1]);
  if (ok) return null;
  // (the message is built only for a value that fails: this runs once per element of every array a user passes)
  const range = d === 'i64' ? '-2^63 <= v < 2^63' : `${INT_LIMITS[d as 'i8' | 'u8' | 'i32'][0]}..${INT_LIMITS[d as 'i8' | 'u8' | 'i32'][1]}`;
  if (!integer) return `is not an integer; ${d} holds integers ${range} (round it first, or use a float dtype)`;
  return `is out of range for ${d} (${range}); use a wider dtype`;
}

/** Storage of dtype d from numbers a user supplied (fromArray, full, arange, scalars): a value d
 *  cannot hold is a RangeError naming it, its index and the dtype, never a silent wrap or truncation.
 *  `where` names the caller in the message. */
export function fromUserNumbers(d: DType, values: ArrayLike<number>, where: string): Storage {
  const n = values.length;
  const s = allocStorage(d, n);
  // a typed array of the storage's own element type holds only values d can: copy it as it is
  // (quantize() builds its int8 / E4M3 code tensors this way, hundreds of millions of values)
  if ((d === 'f32' && values instanceof Float32Array) || (d === 'i8' && values instanceof Int8Array) || (d === 'u8' && values instanceof Uint8Array) || (d === 'i32' && values instanceof Int32Array)) {
    (s as Float32Array | Int8Array | Uint8Array | Int32Array).set(values);
    return s;
  }
  for (let i = 0; i < n; i++) {
    const why = unrepresentable(d, values[i]);
    if (why) throw new RangeError(`${where}: value ${values[i]}${n > 1 ? ` at index ${i}` : ''} ${why}`);
  }
  if (d === 'f32') { (s as Float32Array).set(values); return s; }
  for (let i = 0; i < n; i++) writeElement(d, s, i, values[i]);
  return s;
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
