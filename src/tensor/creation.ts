// Tensor creation: constants, ranges, nested arrays, and seeded random tensors.
import { type DType, allocStorage, fromNumbers, writeElement, assertDType } from './dtype.js';
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

export function full(shape: readonly number[], value: number, dtype: DType = 'f32'): Tensor {
  const s = checkShape(shape, 'full');
  const data = allocStorage(assertDType(dtype, 'full'), numel(s));
  writeElement(dtype, data, 0, value);
  if (data.length > 0) {
    if (data instanceof BigInt64Array) data.fill(data[0]);
    else (data as Uint8Array).fill((data as Uint8Array)[0]);
  }
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
  return Tensor.fromStorage(dtype, [n], fromNumbers(dtype, values));
}

/** Builds a tensor from nested arrays (shape inferred) or from a flat array plus a shape. */
export function fromArray(values: NestedArray | ArrayLike<number>, shapeOrDtype?: readonly number[] | DType, maybeDtype?: DType): Tensor {
  let shape: number[] | undefined;
  let dtype: DType = 'f32';
  if (Array.isArray(shapeOrDtype)) { shape = checkShape(shapeOrDtype, 'fromArray'); dtype = maybeDtype ?? 'f32'; }
  else if (typeof shapeOrDtype === 'string') dtype = shapeOrDtype;
  assertDType(dtype, 'fromArray');
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
  return Tensor.fromStorage(dtype, shape, fromNumbers(dtype, flat));
}

/** Alias of fromArray, for readers coming from other frameworks. */
export const tensor = fromArray;

export interface RandomOptions { seed?: number; dtype?: DType }

/** Standard-normal samples. With `seed`, the result depends only on (seed, shape); without, on the
 *  global generator (see manualSeed). The PRNG is xoshiro128** + Box-Muller (src/tensor/random.ts). */
export function randn(shape: readonly number[], options: RandomOptions = {}): Tensor {
  const s = checkShape(shape, 'randn');
  const rng = options.seed !== undefined ? new Rng(options.seed) : defaultRng();
  const n = numel(s);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal();
  const dtype = options.dtype ?? 'f32';
  return Tensor.fromStorage(dtype, s, fromNumbers(dtype, v));
}

/** Uniform samples in [low, high). */
export function rand(shape: readonly number[], options: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const s = checkShape(shape, 'rand');
  const rng = options.seed !== undefined ? new Rng(options.seed) : defaultRng();
  const lo = options.low ?? 0, hi = options.high ?? 1;
  const n = numel(s);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.uniform();
  const dtype = options.dtype ?? 'f32';
  return Tensor.fromStorage(dtype, s, fromNumbers(dtype, v));
}

/** A scalar (rank-0) tensor. */
export const scalar = (value: number, dtype: DType = 'f32'): Tensor => full([], value, dtype);
