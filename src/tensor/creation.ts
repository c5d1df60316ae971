// Tensor creation: constants, ranges, nested arrays, and seeded random tensors.
import { type DType, allocStorage, fromNumbers, fromUserNumbers, assertDType, isFloatDType } from './dtype.js';
import { numel, formatShape } from './shape.js';
import { Tensor, type NestedArray } from './tensor.js';
import { Rng, defaultRng } from './random.js';

function checkShape(shape: readonly number[], op: string): number[] {
  if (!Array.isArray(shape)) throw new TypeError(`${op}: shape must be an array of integers, got ${JSON.stringify(shape)}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${op}: invalid shape ${formatShape(shape)}: dims must be non-negative integers`);
  }
  return [...shape];
}

export function zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return Tensor.empty(assertDType(dtype, 'zeros'), checkShape(shape, 'zeros'));
}

/** A tensor filled with `value`; a value the dtype cannot hold (1e10 as i32, 0.5 as i64, NaN as an
 *  integer) is a RangeError, not a wrapped or truncated number. */
export function full(shape: readonly number[], value: number, dtype: DType = 'f32'): Tensor {
  const s = checkShape(shape, 'full');
  const one = fromUserNumbers(assertDType(dtype, 'full'), [value], `full(${formatShape(s)}, ${value}, '${dtype}')`);
  const data = allocStorage(dtype, numel(s));
  if (data.length > 0) (data as Float32Array).fill((one as Float32Array)[0]); // one stored value, any kind of typed array
  return Tensor.fromStorage(dtype, s, data);
}

export const ones = (shape: readonly number[], dtype: DType = 'f32'): Tensor => full(shape, 1, dtype);

/** Values start, start+step, ... below end (like NumPy's arange). The default dtype is f32, which is
 *  how models use it (positions, frequencies); pass i64/i32 for indices. */
export function arange(start: number, end?: number, step = 1, dtype: DType = 'f32'): Tensor {
  if (end === undefined) { end = start; start = 0; }
  if (step === 0 || !Number.isFinite(step)) throw new RangeError(`arange: step must be a non-zero finite number, got ${step}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = start + i * step;
  return Tensor.fromStorage(dtype, [n], fromUserNumbers(assertDType(dtype, 'arange'), values, `arange(${start}, ${end}, ${step}, '${dtype}')`));
}

/** Builds a tensor from nested arrays (shape inferred) or from a flat array plus a shape. */
export function fromArray(values: NestedArray | ArrayLike<number>, shapeOrDtype?: readonly number[] | DType, maybeDtype?: DType): Tensor {
  let shape: number[] | undefined;
  if (typeof shapeOrDtype === 'string' && maybeDtype !== undefined) {
    throw new TypeError(`fromArray: dtype given twice (${JSON.stringify(shapeOrDtype)} and ${JSON.stringify(maybeDtype)}); call fromArray(values, dtype) or fromArray(values, shape, dtype)`);
  }
  if (Array.isArray(shapeOrDtype)) shape = checkShape(shapeOrDtype, 'fromArray');
  else if (shapeOrDtype !== undefined && typeof shapeOrDtype !== 'string') {
    throw new TypeError(`fromArray: the second argument must be a shape (array of integers) or a dtype, got ${JSON.stringify(shapeOrDtype)}`);
  }
  // fromArray(values, undefined, 'i64') is the shape-inferred form with an explicit dtype
  const dtype = assertDType(typeof shapeOrDtype === 'string' ? shapeOrDtype : maybeDtype ?? 'f32', 'fromArray');
  let flat: ArrayLike<number>;
  if (typeof values === 'number') {
    flat = [values];
    shape ??= [];
  } else if (!Array.isArray(values)) {
    flat = values as ArrayLike<number>;
    shape ??= [flat.length];
  } else {
    const inferred: number[] = [];
    const out: number[] = [];
    const walk = (v: NestedArray, depth: number, path: string): void => {
      if (Array.isArray(v)) {
        if (inferred.length <= depth) inferred.push(v.length);
        else if (inferred[depth] !== v.length) {
          throw new RangeError(`fromArray: ragged nested array: ${path} has length ${v.length}, expected ${inferred[depth]}`);
        }
        v.forEach((x, i) => walk(x, depth + 1, `${path}[${i}]`));
      } else {
        if (depth !== inferred.length && out.length > 0) throw new RangeError(`fromArray: ragged nested array at ${path}`);
        if (typeof v !== 'number' && typeof v !== 'boolean') throw new TypeError(`fromArray: ${path} is ${typeof v}, expected a number`);
        out.push(Number(v));
      }
    };
    walk(values, 0, 'values');
    flat = out;
    shape ??= inferred;
  }
  if (numel(shape) !== flat.length) {
    throw new RangeError(`fromArray: ${flat.length} values do not fill shape ${formatShape(shape)} (${numel(shape)} elements)`);
  }
  return Tensor.fromStorage(dtype, shape, fromUserNumbers(dtype, flat, `fromArray(..., '${dtype}')`));
}

/** Alias of fromArray, for readers coming from other frameworks. */
export const tensor = fromArray;

export interface RandomOptions { seed?: number; dtype?: DType }

/** Random samples are real numbers: an integer dtype would silently truncate them. */
function floatDType(dtype: DType | undefined, op: string): DType {
  const d = assertDType(dtype ?? 'f32', op);
  if (!isFloatDType(d)) throw new TypeError(`${op}: dtype ${d} is not a floating-point dtype; sample as f32 and cast (or round) explicitly`);
  return d;
}

/** Standard-normal samples. With `seed`, the result depends only on (seed, shape); without, on the
 *  global generator (see manualSeed). The PRNG is xoshiro128** + Box-Muller (src/tensor/random.ts). */
export function randn(shape: readonly number[], options: RandomOptions = {}): Tensor {
  const s = checkShape(shape, 'randn');
  const dtype = floatDType(options.dtype, 'randn');
  const rng = options.seed !== undefined ? new Rng(options.seed) : defaultRng();
  const n = numel(s);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal();
  return Tensor.fromStorage(dtype, s, fromNumbers(dtype, v));
}

/** Uniform samples in [low, high). */
export function rand(shape: readonly number[], options: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const s = checkShape(shape, 'rand');
  const dtype = floatDType(options.dtype, 'rand');
  const rng = options.seed !== undefined ? new Rng(options.seed) : defaultRng();
  const lo = options.low ?? 0, hi = options.high ?? 1;
  const n = numel(s);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.uniform();
  return Tensor.fromStorage(dtype, s, fromNumbers(dtype, v));
}

/** A scalar (rank-0) tensor. */
export const scalar = (value: number, dtype: DType = 'f32'): Tensor => full([], value, dtype);
