// The Tensor: dtype, shape and contiguous row-major storage on a device. A tensor either holds
// data (eager) or is symbolic (it stands for a value in a graph being traced and has no data).
// Every op method goes through the single dispatch function (src/ops/dispatch.ts).
import { type DType, type Storage, allocStorage, assertDType, checkStorage, toFloat64 } from './dtype.js';
import { type Dim, type Shape, numel, formatShape } from './shape.js';
import { formatTensor } from './format.js';
import * as ops from '../ops/api.js';

export type Device = 'cpu';
/** Thrown when traced code needs a value that only exists at run time (e.g. `if (t.item() > 0)`). */
export class GraphBreakError extends Error {
  constructor(readonly op: string, readonly sourceLine: string | undefined, detail: string) {
    super(`graph break: ${op} reads the data of a symbolic tensor${sourceLine ? ` at ${sourceLine}` : ''}. ${detail}`);
    this.name = 'GraphBreakError';
  }
}

/** Tracer-owned information attached to a symbolic tensor. */
export interface SymbolicInfo {
  /** Shape with named dynamic dims ("batch"); `Tensor.shape` holds the example's concrete dims. */
  symShape: Shape;
  /** Opaque handle the tracer uses to find the graph value this tensor stands for. */
  value: unknown;
  /** Called when user code tries to read data; should throw a GraphBreakError naming the source line. */
  onDataRead(op: string): never;
}

export class Tensor {
  /** Bumped on every in-place write, so compiled code can tell a mutated weight from an unchanged one. */
  version = 0;

  private constructor(
    readonly dtype: DType,
    readonly shape: readonly number[],
    private storage: Storage | null,
    readonly device: Device,
    readonly symbolic: SymbolicInfo | null,
  ) {}

  /** Wraps an existing storage array (no copy). It must be the dtype's own typed array (see
   *  checkStorage: Float32Array for f32, Uint16Array bit patterns for f16/bf16, BigInt64Array for
   *  i64, ...), and its length must equal the shape's element count. */
  static fromStorage(dtype: DType, shape: readonly number[], data: Storage, device: Device = 'cpu'): Tensor {
    checkStorage(assertDType(dtype, 'Tensor.fromStorage'), data, 'Tensor.fromStorage');
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new RangeError(`Tensor: invalid shape ${formatShape(shape)}: dims must be non-negative integers`);
    }
    const n = numel(shape);
    if (data.length !== n) {
      throw new RangeError(`Tensor: storage holds ${data.length} elements but shape ${formatShape(shape)} needs ${n}`);
    }
    return new Tensor(dtype, Object.freeze([...shape]), data, device, null);
  }

  /** Uninitialized (zero-filled) tensor of a concrete shape. */
  static empty(dtype: DType, shape: readonly number[], device: Device = 'cpu'): Tensor {
    return Tensor.fromStorage(dtype, shape, allocStorage(dtype, numel(shape)), device);
  }

  /** A data-less tensor standing for a traced graph value. Only the tracer creates these. */
  static symbolicTensor(dtype: DType, exampleShape: readonly number[], info: SymbolicInfo, device: Device = 'cpu'): Tensor {
    return new Tensor(dtype, Object.freeze([...exampleShape]), null, device, info);
  }

  get isSymbolic(): boolean { return this.symbolic !== null; }
  get rank(): number { return this.shape.length; }
  get size(): number { return numel(this.shape); }
  /** Shape as seen by shape inference: symbolic dims for traced tensors, concrete otherwise. */
  get metaShape(): readonly Dim[] { return this.symbolic ? this.symbolic.symShape : this.shape; }

  /** The raw storage array (contiguous, row-major). Throws a graph break on symbolic tensors. */
  get data(): Storage {
    if (this.storage === null) this.symbolic!.onDataRead('data');
    return this.storage!;
  }

  /** Replaces the contents in place (same dtype and element count) and bumps the version. */
  copyFrom(src: Tensor): this {
    if (src.dtype !== this.dtype || src.size !== this.size) {
      throw new TypeError(`copyFrom: source ${src.dtype}${formatShape(src.shape)} does not match destination ${this.dtype}${formatShape(this.shape)}`);
    }
    (this.data as Float32Array).set(src.data as Float32Array);
    this.version++;
    return this;
  }

  /** Marks the tensor as modified after writing to `data` directly. */
  markModified(): void { this.version++; }

  /** Nested JS arrays of numbers (bool as 0/1; i64 exact up to ±(2^53 - 1), a RangeError beyond, as toFlatArray). */
  toArray(): NestedArray {
    if (this.symbolic) this.symbolic.onDataRead('toArray');
    const flat = this.toFlatArray();
    if (this.rank === 0) return flat[0];
    const build = (dim: number, offset: number): NestedArray => {
      const n = this.shape[dim];
      if (dim === this.rank - 1) return Array.from(flat.subarray(offset, offset + n));
      const stride = numel(this.shape.slice(dim + 1));
      const out: NestedArray[] = [];
      for (let i = 0; i < n; i++) out.push(build(dim + 1, offset + i * stride));
      return out;
    };
    return build(0, 0);
  }

  /** A flat copy of the values as JS numbers. A Float64Array holds every value of every dtype
   *  exactly (f16/bf16 decoded, bool as 0/1) except i64 beyond ±(2^53 - 1): that is a RangeError naming
   *  the element, never a rounded number; read `t.data` (a BigInt64Array) for exact i64 values.
   *  `t.data` is the dtype's own typed array, without a copy. */
  toFlatArray(): Float64Array {
    if (this.symbolic) this.symbolic.onDataRead('toFlatArray');
    const out = toFloat64(this.dtype, this.storage!);
    if (this.dtype === 'i64') {
      for (let i = 0; i < out.length; i++) {
        if (!Number.isSafeInteger(out[i])) {
          throw new RangeError(`toFlatArray: i64 element ${i} is ${(this.storage as BigInt64Array)[i]}, outside ±Number.MAX_SAFE_INTEGER, where JS numbers stop being exact; read t.data (a BigInt64Array) for exact values`);
        }
      }
    }
    return out;
  }

  /** The single value of a one-element tensor (i64 exact up to ±(2^53 - 1), a RangeError beyond, as toFlatArray). */
  item(): number {
    if (this.symbolic) this.symbolic.onDataRead('item');
    if (this.size !== 1) throw new RangeError(`item: tensor has ${this.size} elements, shape ${formatShape(this.shape)}; item() needs exactly one`);
    return this.toFlatArray()[0];
  }

  /** Using a tensor as a number or string (`t > 0`, `${t}`, `if (t)`) reads its data. */
  [Symbol.toPrimitive](hint: string): number | string {
    if (this.symbolic) this.symbolic.onDataRead(`implicit conversion to ${hint}`);
    if (hint === 'string') return this.toString();
    return this.item();
  }

  toString(): string { return formatTensor(this); }
  [Symbol.for('nodejs.util.inspect.custom')](): string { return this.toString(); }

  // ---- op methods: thin sugar over src/ops/api.ts ----
  add(other: TensorLike): Tensor { return ops.add(this, other); }
  sub(other: TensorLike): Tensor { return ops.sub(this, other); }
  mul(other: TensorLike): Tensor { return ops.mul(this, other); }
  div(other: TensorLike): Tensor { return ops.div(this, other); }
  pow(other: TensorLike): Tensor { return ops.pow(this, other); }
  maximum(other: TensorLike): Tensor { return ops.maximum(this, other); }
  minimum(other: TensorLike): Tensor { return ops.minimum(this, other); }
  equal(other: TensorLike): Tensor { return ops.equal(this, other); }
  less(other: TensorLike): Tensor { return ops.less(this, other); }
  greater(other: TensorLike): Tensor { return ops.greater(this, other); }
  neg(): Tensor { return ops.neg(this); }
  abs(): Tensor { return ops.abs(this); }
  exp(): Tensor { return ops.exp(this); }
  log(): Tensor { return ops.log(this); }
  sqrt(): Tensor { return ops.sqrt(this); }
  rsqrt(): Tensor { return ops.rsqrt(this); }
  tanh(): Tensor { return ops.tanh(this); }
  sigmoid(): Tensor { return ops.sigmoid(this); }
  relu(): Tensor { return ops.relu(this); }
  silu(): Tensor { return ops.silu(this); }
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor { return ops.gelu(this, approximate); }
  erf(): Tensor { return ops.erf(this); }
  sin(): Tensor { return ops.sin(this); }
  cos(): Tensor { return ops.cos(this); }
  sum(axes?: number | number[], keepdim = false): Tensor { return ops.sum(this, axes, keepdim); }
  mean(axes?: number | number[], keepdim = false): Tensor { return ops.mean(this, axes, keepdim); }
  max(axes?: number | number[], keepdim = false): Tensor { return ops.max(this, axes, keepdim); }
  min(axes?: number | number[], keepdim = false): Tensor { return ops.min(this, axes, keepdim); }
  argmax(axis = -1, keepdim = false): Tensor { return ops.argmax(this, axis, keepdim); }
  softmax(axis = -1): Tensor { return ops.softmax(this, axis); }
  logSoftmax(axis = -1): Tensor { return ops.logSoftmax(this, axis); }
  matmul(other: Tensor): Tensor { return ops.matmul(this, other); }
  reshape(...shape: ShapeArg): Tensor { return ops.reshape(this, flattenShapeArg(shape)); }
  view(...shape: ShapeArg): Tensor { return ops.reshape(this, flattenShapeArg(shape)); }
  flatten(startAxis = 0, endAxis = -1): Tensor { return ops.flatten(this, startAxis, endAxis); }
  unsqueeze(axis: number): Tensor { return ops.unsqueeze(this, axis); }
  squeeze(axis?: number | number[]): Tensor { return ops.squeeze(this, axis); }
  permute(...perm: ShapeArg): Tensor { return ops.permute(this, flattenShapeArg(perm) as number[]); }
  transpose(axis0: number, axis1: number): Tensor { return ops.transpose(this, axis0, axis1); }
  expand(...shape: ShapeArg): Tensor { return ops.expand(this, flattenShapeArg(shape)); }
  chunk(chunks: number, axis = 0): Tensor[] { return ops.chunk(this, chunks, axis); }
  split(sizes: number | number[], axis = 0): Tensor[] { return ops.split(this, sizes, axis); }
  /** General slice, exactly ops.slice: per listed axis (default 0, 1, ...) start (inclusive), end
   *  (exclusive), step (> 0); negative indices count from the end. For one axis use sliceAxis. */
  slice(starts: readonly number[], ends: readonly number[], axes?: readonly number[], steps?: readonly number[]): Tensor {
    if (!Array.isArray(starts) || !Array.isArray(ends)) {
      throw new TypeError(`Tensor.slice(starts, ends, axes?, steps?) takes arrays, like ops.slice; got (${[starts, ends].map((v) => JSON.stringify(v)).join(', ')}, ...). For one axis use t.sliceAxis(axis, start, end, step)`);
    }
    return ops.slice(this, starts, ends, axes, steps);
  }
  /** Slice of one axis: start (inclusive) to end (exclusive, default: the end), step > 0; exactly ops.sliceAxis. */
  sliceAxis(axis: number, start: number, end?: number, step = 1): Tensor { return ops.sliceAxis(this, axis, start, end, step); }
  /** Joins tensors along `axis` (all dims but `axis` must match); exactly ops.concat. */
  static concat(tensors: readonly Tensor[], axis = 0): Tensor { return ops.concat(tensors, axis); }
  cast(dtype: DType): Tensor { return ops.cast(this, dtype); }
  to(dtype: DType): Tensor { return ops.cast(this, dtype); }
  where(condition: Tensor, other: TensorLike): Tensor { return ops.where(condition, this, other); }
}

export type NestedArray = number | NestedArray[];

export type TensorLike = Tensor | number;
type ShapeArg = (Dim | readonly Dim[])[];

function flattenShapeArg(args: ShapeArg): Dim[] {
  if (args.length === 1 && Array.isArray(args[0])) return [...(args[0] as readonly Dim[])];
  return args as Dim[];
}
