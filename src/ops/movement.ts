// Data-movement ops: reshape, permute, concat, split, slice, pad, expand, gather, embedding, cast
// and nearest upsampling. Except for cast, kernels copy stored elements (never via float64), so every
// dtype — i64 beyond 2^53 and NaN payloads included — moves bit-exactly.
import { defineOp, type TensorMeta } from './registry.js';
import { type DType, type Storage, allocStorage, readElement, writeElement } from '../tensor/dtype.js';
import { type Dim, type Shape, formatShape, dimMul, dimDiv, dimAdd, normalizeAxis, numel, stridesOf } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import { values, concrete, broadcastIndex, aroundAxis } from './kernel-utils.js';

interface ReshapeAttrs { shape: readonly Dim[] }
interface PermuteAttrs { perm: readonly number[] }
interface AxisAttrs { axis: number }
interface SplitAttrs { axis: number; sizes: readonly number[] }
interface SliceAttrs { starts: readonly number[]; ends: readonly number[]; axes: readonly number[]; steps: readonly number[] }
interface PadAttrs { pads: readonly number[]; mode: 'constant' | 'reflect' | 'replicate'; value: number }
interface CastAttrs { dtype: DType }
interface UpsampleAttrs { scale: readonly number[] }

// ---- kernel helpers ----

// Storage arrays are viewed as Float32Array only to satisfy the type checker: element assignment and
// `set` between arrays of the same kind copy values exactly for every kind (BigInt64Array included).
type AnyArray = Float32Array;

/** A tensor of `meta` whose element k is x's element map[k]. */
function take(x: Tensor, meta: TensorMeta, map: ArrayLike<number>): Tensor {
  const src = x.data as AnyArray;
  const out = allocStorage(meta.dtype, map.length) as AnyArray;
  for (let k = 0; k < map.length; k++) out[k] = src[map[k]];
  return Tensor.fromStorage(meta.dtype, concrete(meta.shape), out as Storage);
}

/** Flat source index of every element of `outShape` when the source is walked from `offset` with
 *  per-output-dim `strides` (a permuted, sliced or broadcast view of a contiguous array). */
function stridedIndex(outShape: readonly number[], strides: readonly number[], offset = 0): Int32Array {
  const n = numel(outShape), r = outShape.length;
  const map = new Int32Array(n);
  const idx = new Array<number>(r).fill(0);
  let src = offset;
  for (let k = 0; k < n; k++) {
    map[k] = src;
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      src += strides[d];
      if (idx[d] < outShape[d]) break;
      src -= strides[d] * idx[d];
      idx[d] = 0;
    }
  }
  return map;
}

const isInt = (d: Dim | undefined): d is number => typeof d === 'number';

// ---- reshape ----

export const reshape = defineOp<ReshapeAttrs>({
  name: 'reshape',
  kind: 'movement',
  inputs: ['x'],
  attrs: { shape: { type: 'dims' } },
  doc: 'Same elements in the same row-major order under a new shape; one dim may be -1 (inferred).',
  infer([x], { shape: target }) {
    const total = dimMul(...x!.shape);
    const mismatch = (): never => {
      throw new RangeError(`reshape: cannot reshape ${formatShape(x!.shape)} (${total} elements) into ${formatShape(target)}`);
    };
    let inferAt = -1;
    target.forEach((d, i) => {
      if (d === -1) {
        if (inferAt >= 0) throw new RangeError(`reshape: shape ${formatShape(target)} has more than one -1; at most one dim can be inferred`);
        inferAt = i;
      } else if (isInt(d) && d < 0) {
        throw new RangeError(`reshape: shape ${formatShape(target)} has invalid dim ${d}; dims must be >= 0, or -1 (inferred) once`);
      }
    });
    const known = dimMul(...target.filter((_, i) => i !== inferAt));
    if (inferAt < 0) {
      if (isInt(total) && isInt(known)) { if (total !== known) mismatch(); }
      else if (total !== known) {
        // The symbols cancel but a constant factor remains: provably different element counts.
        const q = dimDiv(total, known) ?? dimDiv(known, total);
        if (isInt(q) && q !== 1) mismatch();
        // Otherwise equality depends on run-time dim values: left to the concrete check.
      }
      return [{ dtype: x!.dtype, shape: target }];
    }
    if (known === 0) {
      if (total !== 0 && isInt(total)) mismatch();
      throw new RangeError(`reshape: cannot reshape ${formatShape(x!.shape)} (${total} elements) into ${formatShape(target)}: the -1 dim is ambiguous when the other dims multiply to 0`);
    }
    const inferred = dimDiv(total, known);
    if (inferred === undefined) {
      if (isInt(total) && isInt(known)) mismatch();
      throw new RangeError(`reshape: cannot infer the -1 dim of ${formatShape(target)} from ${formatShape(x!.shape)} (${total} elements): ${total} is not a known multiple of ${known}`);
    }
    return [{ dtype: x!.dtype, shape: target.map((d, i) => (i === inferAt ? inferred : d)) }];
  },
  reference([x], _attrs, [out]) {
    // A copy, not a shared view: in-place writes and version counters stay per tensor.
    return [Tensor.fromStorage(x!.dtype, concrete(out.shape), x!.data.slice())];
  },
});

// ---- permute ----

export const permute = defineOp<PermuteAttrs>({
  name: 'permute',
  kind: 'movement',
  inputs: ['x'],
  attrs: { perm: { type: 'ints' } },
  doc: 'out.shape[i] = x.shape[perm[i]]; perm must be an exact permutation of 0..rank-1.',
  infer([x], { perm }) {
    const rank = x!.shape.length;
    if (perm.length !== rank) {
      throw new RangeError(`permute: perm [${perm.join(', ')}] has ${perm.length} entries but x has rank ${rank} (shape ${formatShape(x!.shape)})`);
    }
    const seen = new Set(perm);
    if (seen.size !== rank || perm.some((p) => p < 0 || p >= rank)) {
      throw new RangeError(`permute: perm [${perm.join(', ')}] is not a permutation of 0..${rank - 1} (x has shape ${formatShape(x!.shape)})`);
    }
    return [{ dtype: x!.dtype, shape: perm.map((p) => x!.shape[p]) }];
  },
  reference([x], { perm }, [out]) {
    const inStrides = stridesOf(x!.shape);
    return [take(x!, out, stridedIndex(concrete(out.shape), perm.map((p) => inStrides[p])))];
  },
});

// ---- concat / split ----

export const concat = defineOp<AxisAttrs>({
  name: 'concat',
  kind: 'movement',
  inputs: ['...tensors'],
  attrs: { axis: { type: 'int', default: 0 } },
  doc: 'Joins tensors along axis; all other dims and the dtype must agree.',
  infer(inputs, { axis }) {
    if (inputs.length === 0) throw new TypeError('concat: needs at least one tensor, got none');
    const first = inputs[0]!;
    const rank = first.shape.length;
    if (rank === 0) throw new RangeError('concat: cannot concatenate rank-0 tensors (unsqueeze them first)');
    const a = normalizeAxis(axis, rank, 'concat');
    const shape = [...first.shape];
    const list = () => inputs.map((t) => formatShape(t!.shape)).join(', ');
    for (let i = 1; i < inputs.length; i++) {
      const t = inputs[i]!;
      if (t.dtype !== first.dtype) throw new TypeError(`concat: tensor ${i} has dtype ${t.dtype} but tensor 0 has dtype ${first.dtype}; cast them to one dtype first`);
      if (t.shape.length !== rank) throw new RangeError(`concat: tensor ${i} has rank ${t.shape.length} but tensor 0 has rank ${rank} (shapes ${list()})`);
      for (let d = 0; d < rank; d++) {
        if (d === a) continue;
        const da = shape[d], db = t.shape[d];
        if (isInt(da) && isInt(db) && da !== db) {
          throw new RangeError(`concat: tensor ${i} differs from tensor 0 in dim ${d} (${db} vs ${da}) outside the concat axis ${a} (shapes ${list()})`);
        }
        if (!isInt(db) && isInt(da)) shape[d] = db; // keep the symbolic name where one input has it
      }
      shape[a] = dimAdd(shape[a], t.shape[a]);
    }
    return [{ dtype: first.dtype, shape }];
  },
  reference(inputs, { axis }, [out]) {
    const outShape = concrete(out.shape);
    const a = normalizeAxis(axis, outShape.length, 'concat');
    const { outer, inner } = aroundAxis(outShape, a);
    const dst = allocStorage(out.dtype, numel(outShape)) as AnyArray;
    const rowOut = outShape[a] * inner;
    let offset = 0;
    for (const t of inputs) {
      const w = t!.shape[a] * inner;
      const src = t!.data as AnyArray;
      for (let o = 0; o < outer; o++) dst.set(src.subarray(o * w, o * w + w), o * rowOut + offset);
      offset += w;
    }
    return [Tensor.fromStorage(out.dtype, outShape, dst as Storage)];
  },
});

export const split = defineOp<SplitAttrs>({
  name: 'split',
  kind: 'movement',
  inputs: ['x'],
  attrs: { axis: { type: 'int', default: 0 }, sizes: { type: 'ints' } },
  doc: 'Cuts x along axis into consecutive pieces of the given sizes (which must sum to the dim).',
  infer([x], { axis, sizes }) {
    const rank = x!.shape.length;
    if (rank === 0) throw new RangeError('split: cannot split a rank-0 tensor');
    const a = normalizeAxis(axis, rank, 'split');
    if (sizes.length === 0) throw new RangeError('split: sizes must list at least one piece');
    if (sizes.some((s) => s < 0)) throw new RangeError(`split: sizes [${sizes.join(', ')}] must be non-negative`);
    const dim = x!.shape[a];
    const total = sizes.reduce((s, v) => s + v, 0);
    if (isInt(dim) && total !== dim) {
      throw new RangeError(`split: sizes [${sizes.join(', ')}] sum to ${total} but axis ${a} of x ${formatShape(x!.shape)} has size ${dim}`);
    }
    return sizes.map((s) => ({ dtype: x!.dtype, shape: x!.shape.map((d, i) => (i === a ? s : d)) }));
  },
  reference([x], { axis, sizes }, outs) {
    const a = normalizeAxis(axis, x!.rank, 'split');
    const { outer, inner } = aroundAxis(x!.shape, a);
    const src = x!.data as AnyArray;
    const rowIn = x!.shape[a] * inner;
    let offset = 0;
    return sizes.map((s, p) => {
      const w = s * inner;
      const dst = allocStorage(x!.dtype, outer * w) as AnyArray;
      for (let o = 0; o < outer; o++) dst.set(src.subarray(o * rowIn + offset, o * rowIn + offset + w), o * w);
      offset += w;
      return Tensor.fromStorage(x!.dtype, concrete(outs[p].shape), dst as Storage);
    });
  },
});

// ---- slice ----

/** Python/NumPy slice bounds (step > 0) on a concrete dim: negative indices count from the end,
 *  then both bounds are clamped into [0, dim]. */
function sliceRange(dim: number, start: number, end: number, step: number): { start: number; length: number } {
  const clamp = (i: number): number => (i < 0 ? Math.max(0, i + dim) : Math.min(i, dim));
  const s = clamp(start), e = clamp(end);
  return { start: s, length: e > s ? Math.ceil((e - s) / step) : 0 };
}

// Ends at or beyond this mean "to the end" (api.sliceAxis passes MAX_SAFE_INTEGER, ONNX INT64_MAX).
const TO_END = 2 ** 31 - 1;

/** Slice length on a symbolic dim, assuming the indices lie within the dim (the usual case such as
 *  x[:, -1] or x[:, :n]); undefined when no closed form exists (e.g. a step > 1 over an unknown length). */
function symbolicSliceLength(dim: string, start: number, end: number, step: number): Dim | undefined {
  // Each bound as (counted from the end?, offset): index = (fromEnd ? dim : 0) + offset.
  const bs = { fromEnd: start < 0, k: start };
  const be = end >= TO_END ? { fromEnd: true, k: 0 } : { fromEnd: end < 0, k: end };
  if (bs.fromEnd === be.fromEnd) return Math.max(0, Math.ceil((be.k - bs.k) / step));
  if (!bs.fromEnd && be.fromEnd && step === 1) return dimAdd(dim, be.k - bs.k);
  return undefined;
}

export const slice = defineOp<SliceAttrs>({
  name: 'slice',
  kind: 'movement',
  inputs: ['x'],
  attrs: { starts: { type: 'ints' }, ends: { type: 'ints' }, axes: { type: 'ints' }, steps: { type: 'ints' } },
  doc: 'x[start:end:step] on each listed axis (Python semantics, step > 0); other axes are kept whole.',
  infer([x], { starts, ends, axes, steps }) {
    const shape = x!.shape, rank = shape.length;
    if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length) {
      throw new RangeError(`slice: starts, ends, axes and steps must have the same length, got ${starts.length}, ${ends.length}, ${axes.length} and ${steps.length}`);
    }
    const out = [...shape];
    const seen = new Set<number>();
    axes.forEach((axis, i) => {
      const a = normalizeAxis(axis, rank, 'slice');
      if (seen.has(a)) throw new RangeError(`slice: axis ${a} is listed more than once in axes [${axes.join(', ')}] (x has shape ${formatShape(shape)})`);
      seen.add(a);
      if (steps[i] <= 0) throw new RangeError(`slice: step must be > 0, got ${steps[i]} for axis ${a}`);
      const dim = shape[a];
      if (isInt(dim)) { out[a] = sliceRange(dim, starts[i], ends[i], steps[i]).length; return; }
      const length = symbolicSliceLength(dim, starts[i], ends[i], steps[i]);
      if (length === undefined) {
        throw new RangeError(`slice: cannot infer the length of symbolic dim "${dim}" (axis ${a}) sliced with start ${starts[i]}, end ${ends[i]}, step ${steps[i]}`);
      }
      out[a] = length;
    });
    return [{ dtype: x!.dtype, shape: out }];
  },
  reference([x], { starts, ends, axes, steps }, [out]) {
    const inStrides = stridesOf(x!.shape);
    const strides = [...inStrides];
    let offset = 0;
    axes.forEach((axis, i) => {
      const a = normalizeAxis(axis, x!.rank, 'slice');
      const { start } = sliceRange(x!.shape[a], starts[i], ends[i], steps[i]);
      offset += start * inStrides[a];
      strides[a] = inStrides[a] * steps[i];
    });
    return [take(x!, out, stridedIndex(concrete(out.shape), strides, offset))];
  },
});

// ---- pad ----

export const pad = defineOp<PadAttrs>({
  name: 'pad',
  kind: 'movement',
  inputs: ['x'],
  attrs: {
    pads: { type: 'ints' },
    mode: { type: 'string', default: 'constant', oneOf: ['constant', 'reflect', 'replicate'] },
    value: { type: 'float', default: 0 },
  },
  doc: 'Pads every dim by pads [b0, e0, b1, e1, ...] (dim order) with a constant, a mirror image (edge not repeated) or the edge value.',
  infer([x], { pads, mode }) {
    const shape = x!.shape;
    if (pads.length !== 2 * shape.length) {
      throw new RangeError(`pad: pads must hold 2 entries per dim (${2 * shape.length} for x ${formatShape(shape)}), got [${pads.join(', ')}]`);
    }
    if (pads.some((p) => p < 0)) throw new RangeError(`pad: pads [${pads.join(', ')}] must be non-negative (use slice to crop)`);
    return [{
      dtype: x!.dtype,
      shape: shape.map((dim, d) => {
        const b = pads[2 * d], e = pads[2 * d + 1];
        if (isInt(dim) && (b > 0 || e > 0)) {
          if (mode === 'reflect' && (b >= dim || e >= dim)) {
            throw new RangeError(`pad: reflect padding (${b}, ${e}) on dim ${d} must be smaller than its size ${dim} (x has shape ${formatShape(shape)})`);
          }
          if (mode === 'replicate' && dim === 0) {
            throw new RangeError(`pad: replicate padding needs a non-empty dim, but dim ${d} of x ${formatShape(shape)} is empty`);
          }
        }
        return dimAdd(dim, b + e);
      }),
    }];
  },
  reference([x], { pads, mode, value }, [out]) {
    const inShape = x!.shape, rank = inShape.length;
    const outShape = concrete(out.shape);
    // Per dim: the source coordinate for each output coordinate, -1 where the constant goes.
    const tables = outShape.map((n, d) => {
      const dim = inShape[d], b = pads[2 * d];
      const t = new Int32Array(n);
      for (let o = 0; o < n; o++) {
        let i = o - b;
        if (i < 0 || i >= dim) {
          if (mode === 'constant') i = -1;
          else if (mode === 'replicate') i = i < 0 ? 0 : dim - 1;
          else i = i < 0 ? -i : 2 * (dim - 1) - i;
        }
        t[o] = i;
      }
      return t;
    });
    const inStrides = stridesOf(inShape);
    const n = numel(outShape);
    const src = x!.data as AnyArray;
    const dst = allocStorage(out.dtype, n) as AnyArray;
    const fill = allocStorage(out.dtype, 1) as AnyArray;
    writeElement(out.dtype, fill as Storage, 0, value);
    const idx = new Array<number>(rank).fill(0);
    for (let k = 0; k < n; k++) {
      let s = 0;
      for (let d = 0; d < rank; d++) {
        const i = tables[d][idx[d]];
        if (i < 0) { s = -1; break; }
        s += i * inStrides[d];
      }
      dst[k] = s < 0 ? fill[0] : src[s];
      for (let d = rank - 1; d >= 0; d--) {
        if (++idx[d] < outShape[d]) break;
        idx[d] = 0;
      }
    }
    return [Tensor.fromStorage(out.dtype, outShape, dst as Storage)];
  },
});

// ---- expand ----

export const expand = defineOp<ReshapeAttrs>({
  name: 'expand',
  kind: 'movement',
  inputs: ['x'],
  attrs: { shape: { type: 'dims' } },
  doc: 'Broadcasts x to shape (like torch.expand): -1 keeps a dim, size-1 dims repeat, new dims may lead.',
  infer([x], { shape: target }) {
    const shape = x!.shape;
    const fail = (why: string): never => {
      throw new RangeError(`expand: cannot expand x of shape ${formatShape(shape)} to ${formatShape(target)}: ${why}`);
    };
    if (target.length < shape.length) fail(`the target has fewer dims than x`);
    const lead = target.length - shape.length;
    const out = target.map((d, i): Dim => {
      if (isInt(d) && d < 0 && (d !== -1 || i < lead)) {
        fail(i < lead ? `new leading dim ${i} must be given explicitly, got ${d}` : `dim ${i} is ${d}; use -1 to keep a dim`);
      }
      if (i < lead) return d;
      const xd = shape[i - lead];
      if (d === -1 || d === xd) return xd;
      if (xd === 1) return d;
      if (isInt(xd)) {
        if (isInt(d)) fail(`dim ${i} has size ${xd}, which is neither 1 nor ${d}`);
        return xd; // a valid expand keeps a concrete non-1 dim
      }
      return d; // symbolic x dim: either equal to d or 1 at run time
    });
    return [{ dtype: x!.dtype, shape: out }];
  },
  reference([x], _attrs, [out]) {
    return [take(x!, out, broadcastIndex(concrete(out.shape), x!.shape))];
  },
});

// ---- gather / embedding ----

function checkIndexDType(op: string, name: string, t: TensorMeta): void {
  if (t.dtype !== 'i32' && t.dtype !== 'i64') throw new TypeError(`${op}: ${name} must be i32 or i64, got ${t.dtype} (cast it first)`);
}

export const gather = defineOp<AxisAttrs>({
  name: 'gather',
  kind: 'movement',
  inputs: ['x', 'indices'],
  attrs: { axis: { type: 'int', default: 0 } },
  doc: 'ONNX Gather: out = x.shape[:axis] + indices.shape + x.shape[axis+1:]; negative indices count from the end.',
  infer([x, indices], { axis }) {
    checkIndexDType('gather', 'indices', indices!);
    const shape = x!.shape;
    if (shape.length === 0) throw new RangeError('gather: x must have at least one dim, got a rank-0 tensor');
    const a = normalizeAxis(axis, shape.length, 'gather');
    return [{ dtype: x!.dtype, shape: [...shape.slice(0, a), ...indices!.shape, ...shape.slice(a + 1)] }];
  },
  reference([x, indices], { axis }, [out]) {
    const a = normalizeAxis(axis, x!.rank, 'gather');
    const { outer, size, inner } = aroundAxis(x!.shape, a);
    const idx = values(indices!);
    const map = new Int32Array(outer * idx.length * inner);
    let k = 0;
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < idx.length; j++) {
        let i = idx[j];
        if (i < -size || i >= size) throw new RangeError(`gather: index ${i} is out of range for axis ${a} of size ${size} (x has shape ${formatShape(x!.shape)})`);
        if (i < 0) i += size;
        const base = (o * size + i) * inner;
        for (let q = 0; q < inner; q++) map[k++] = base + q;
      }
    }
    return [take(x!, out, map)];
  },
});

export const embedding = defineOp({
  name: 'embedding',
  kind: 'movement',
  inputs: ['weight', 'ids'],
  attrs: {},
  doc: 'Rows of weight [vocab, dim] picked by integer ids of any shape: out = ids.shape + [dim].',
  infer([weight, ids]) {
    if (weight!.shape.length !== 2) throw new RangeError(`embedding: weight must be 2-D [vocab, dim], got shape ${formatShape(weight!.shape)}`);
    checkIndexDType('embedding', 'ids', ids!);
    return [{ dtype: weight!.dtype, shape: [...ids!.shape, weight!.shape[1]] }];
  },
  reference([weight, ids], _attrs, [out]) {
    const [vocab, dim] = weight!.shape;
    const v = values(ids!);
    const src = weight!.data as AnyArray;
    const dst = allocStorage(out.dtype, v.length * dim) as AnyArray;
    for (let j = 0; j < v.length; j++) {
      const id = v[j];
      if (id < 0 || id >= vocab) throw new RangeError(`embedding: id ${id} is out of range for a vocabulary of ${vocab} rows`);
      dst.set(src.subarray(id * dim, id * dim + dim), j * dim);
    }
    return [Tensor.fromStorage(out.dtype, concrete(out.shape), dst as Storage)];
  },
});

// ---- cast ----

export const cast = defineOp<CastAttrs>({
  name: 'cast',
  kind: 'movement',
  inputs: ['x'],
  attrs: { dtype: { type: 'dtype' } },
  doc: 'Converts to dtype: to a float rounds to nearest even; float -> int truncates toward zero and saturates at the range (NaN -> 0); int -> int wraps (two\'s complement); -> bool is x != 0 (NaN -> true).',
  infer([x], { dtype }) {
    return [{ dtype, shape: x!.shape }];
  },
  reference([x], { dtype: to }, [out]) {
    const from = x!.dtype, src = x!.data, n = src.length;
    const dst = allocStorage(to, n);
    const integral = (d: DType): boolean => d === 'bool' || d === 'i8' || d === 'u8' || d === 'i32' || d === 'i64';
    if (from === to) (dst as AnyArray).set(src as AnyArray);
    else if (integral(from) && integral(to)) {
      // integer -> integer straight from the integer, wrapping like a C cast (i64 beyond 2^53 included)
      const d = dst as unknown as { [i: number]: number | bigint };
      const s = src as unknown as { [i: number]: number | bigint };
      for (let i = 0; i < n; i++) {
        const v = s[i];
        if (to === 'bool') d[i] = v != 0 ? 1 : 0; // eslint-disable-line eqeqeq -- 0n and 0 alike
        else if (to === 'i64') d[i] = BigInt(v); // the BigInt64Array store is exact
        else if (from === 'i64') d[i] = Number(BigInt.asIntN(32, v as bigint)); // low 32 bits; the store wraps further
        else d[i] = v; // the typed array store wraps
      }
    } else {
      // a float on either side: writeElement rounds (to floats) or truncates and saturates (to ints)
      for (let i = 0; i < n; i++) writeElement(to, dst, i, readElement(from, src, i));
    }
    return [Tensor.fromStorage(to, concrete(out.shape), dst)];
  },
});

// ---- upsample_nearest2d ----

export const upsampleNearest2d = defineOp<UpsampleAttrs>({
  name: 'upsample_nearest2d',
  kind: 'movement',
  inputs: ['x'],
  attrs: { scale: { type: 'ints' } },
  doc: 'Nearest-neighbour upsampling of [N, C, H, W] by integer factors: out[n, c, y, x] = x[n, c, y / sh, x / sw].',
  infer([x], { scale }) {
    const shape = x!.shape;
    if (shape.length !== 4) throw new RangeError(`upsample_nearest2d: x must be 4-D [N, C, H, W], got shape ${formatShape(shape)}`);
    if (scale.length !== 2 || scale.some((s) => s < 1)) {
      throw new RangeError(`upsample_nearest2d: scale must be two positive integers [sh, sw], got [${scale.join(', ')}]`);
    }
    return [{ dtype: x!.dtype, shape: [shape[0], shape[1], dimMul(shape[2], scale[0]), dimMul(shape[3], scale[1])] }];
  },
  reference([x], { scale: [sh, sw] }, [out]) {
    const [n, c, h, w] = x!.shape;
    const oh = h * sh, ow = w * sw;
    const map = new Int32Array(n * c * oh * ow);
    let k = 0;
    for (let p = 0; p < n * c; p++) {
      for (let y = 0; y < oh; y++) {
        const row = (p * h + Math.floor(y / sh)) * w;
        for (let q = 0; q < ow; q++) map[k++] = row + Math.floor(q / sw);
      }
    }
    return [take(x!, out, map)];
  },
});
