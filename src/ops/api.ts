// The public op functions. Each is a thin wrapper that turns friendly arguments (numbers,
// negative axes, optional tensors) into a dispatch call; all semantics live in the op definitions.
import { Tensor, type TensorLike } from '../tensor/tensor.js';
import { type DType, isFloatDType } from '../tensor/dtype.js';
import { type Dim, normalizeAxis, dimMul } from '../tensor/shape.js';
import { fromNumbers, readElement, unrepresentable } from '../tensor/dtype.js';
import { dispatch, dispatch1 } from './dispatch.js';
import { quantSpecOf } from '../tensor/quantized.js';

/** Turns a JS number into a rank-0 tensor for an op with `like`. The number takes `like`'s dtype
 *  when it is exactly representable there (so `halfTensor.mul(0.5)` stays f16); otherwise it widens
 *  (i64 for integers that fit, f32 for fractions, NaN, huge values or float tensors) so its value is
 *  never silently changed, and the op's result promotes accordingly (e.g. `u8.add(300)` gives i64
 *  [301, ...]). */
function asTensor(x: TensorLike, like: Tensor): Tensor {
  if (x instanceof Tensor) return x;
  if (typeof x !== 'number') throw new TypeError(`expected a Tensor or a number, got ${typeof x}`);
  let dtype: DType = 'f32';
  if (like.dtype !== 'bool' && unrepresentable(like.dtype, x) === null) {
    const exact = fromNumbers(like.dtype, [x]);
    if (Object.is(readElement(like.dtype, exact, 0), x) || (Number.isNaN(x) && isFloatDType(like.dtype))) return Tensor.fromStorage(like.dtype, [], exact);
  }
  if (!isFloatDType(like.dtype) && unrepresentable('i64', x) === null) dtype = 'i64';
  return Tensor.fromStorage(dtype, [], fromNumbers(dtype, [x]));
}
function binary(op: string, a: TensorLike, b: TensorLike): Tensor {
  if (!(a instanceof Tensor) && !(b instanceof Tensor)) throw new TypeError(`${op}: at least one argument must be a Tensor`);
  const ta = a instanceof Tensor ? a : asTensor(a, b as Tensor);
  const tb = asTensor(b, ta);
  return dispatch1(op, [ta, tb]);
}

// ---- elementwise unary (src/ops/unary.ts) ----
export const neg = (x: Tensor): Tensor => dispatch1('neg', [x]);
export const abs = (x: Tensor): Tensor => dispatch1('abs', [x]);
export const exp = (x: Tensor): Tensor => dispatch1('exp', [x]);
export const log = (x: Tensor): Tensor => dispatch1('log', [x]);
export const sqrt = (x: Tensor): Tensor => dispatch1('sqrt', [x]);
export const rsqrt = (x: Tensor): Tensor => dispatch1('rsqrt', [x]);
export const tanh = (x: Tensor): Tensor => dispatch1('tanh', [x]);
export const sigmoid = (x: Tensor): Tensor => dispatch1('sigmoid', [x]);
export const relu = (x: Tensor): Tensor => dispatch1('relu', [x]);
export const silu = (x: Tensor): Tensor => dispatch1('silu', [x]);
export const erf = (x: Tensor): Tensor => dispatch1('erf', [x]);
export const sin = (x: Tensor): Tensor => dispatch1('sin', [x]);
export const cos = (x: Tensor): Tensor => dispatch1('cos', [x]);
/** GELU; 'none' is the exact erf form, 'tanh' the tanh approximation. */
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor =>
  dispatch1(approximate === 'tanh' ? 'gelu_tanh' : 'gelu', [x]);

// ---- elementwise binary with broadcasting (src/ops/binary.ts) ----
export const add = (a: TensorLike, b: TensorLike): Tensor => binary('add', a, b);
export const sub = (a: TensorLike, b: TensorLike): Tensor => binary('sub', a, b);
export const mul = (a: TensorLike, b: TensorLike): Tensor => binary('mul', a, b);
export const div = (a: TensorLike, b: TensorLike): Tensor => binary('div', a, b);
export const pow = (a: TensorLike, b: TensorLike): Tensor => binary('pow', a, b);
export const maximum = (a: TensorLike, b: TensorLike): Tensor => binary('maximum', a, b);
export const minimum = (a: TensorLike, b: TensorLike): Tensor => binary('minimum', a, b);
export const equal = (a: TensorLike, b: TensorLike): Tensor => binary('equal', a, b);
export const less = (a: TensorLike, b: TensorLike): Tensor => binary('less', a, b);
export const greater = (a: TensorLike, b: TensorLike): Tensor => binary('greater', a, b);
/** Elementwise `condition ? a : b` with broadcasting; condition must be bool. */
export function where(condition: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const like = a instanceof Tensor ? a : b instanceof Tensor ? b : undefined;
  if (!like) throw new TypeError('where: at least one of a, b must be a Tensor');
  return dispatch1('where', [condition, asTensor(a, like), asTensor(b, like)]);
}

// ---- reductions (src/ops/reduce.ts) ----
function axesArg(axes: number | number[] | undefined): number[] {
  return axes === undefined ? [] : typeof axes === 'number' ? [axes] : axes;
}
/** Sum over `axes` (all axes when omitted). */
export const sum = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => dispatch1('sum', [x], { axes: axesArg(axes), keepdim });
export const mean = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => dispatch1('mean', [x], { axes: axesArg(axes), keepdim });
export const max = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => dispatch1('max', [x], { axes: axesArg(axes), keepdim });
export const min = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => dispatch1('min', [x], { axes: axesArg(axes), keepdim });
/** Index (i64) of the largest value along `axis`; the first one on ties. */
export const argmax = (x: Tensor, axis = -1, keepdim = false): Tensor => dispatch1('argmax', [x], { axis, keepdim });
export const softmax = (x: Tensor, axis = -1): Tensor => dispatch1('softmax', [x], { axis });
export const logSoftmax = (x: Tensor, axis = -1): Tensor => dispatch1('log_softmax', [x], { axis });

// ---- norms (src/ops/norm.ts) ----
/** LayerNorm over the trailing dims given by `normalizedShape` (checked against x). */
export function layerNorm(x: Tensor, normalizedShape: number | readonly number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  const tail = x.metaShape.slice(x.rank - ns.length);
  if (ns.length > x.rank || ns.some((d, i) => typeof tail[i] === 'number' && d !== tail[i])) {
    throw new RangeError(`layer_norm: normalizedShape [${ns.join(', ')}] does not match the last dims of x [${x.metaShape.join(', ')}]`);
  }
  return dispatch1('layer_norm', [x, weight ?? null, bias ?? null], { normalized_ndim: ns.length, eps });
}
/** RMSNorm over the last dim: x / sqrt(mean(x²) + eps) * weight. */
export const rmsNorm = (x: Tensor, weight?: Tensor | null, eps = 1e-6): Tensor => dispatch1('rms_norm', [x, weight ?? null], { eps });
/** GroupNorm over [N, C, *]: channels split into `numGroups` groups. */
export const groupNorm = (x: Tensor, numGroups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor =>
  dispatch1('group_norm', [x, weight ?? null, bias ?? null], { num_groups: numGroups, eps });

// ---- linear algebra (src/ops/linalg.ts) ----
/** Matrix product with NumPy semantics: 1-D operands are promoted, batch dims broadcast. */
export const matmul = (a: Tensor, b: Tensor): Tensor => dispatch1('matmul', [a, b]);
/** x · weightᵀ + bias, weight shaped [outFeatures, inFeatures]. */
export const linear = (x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor => {
  // a quantized weight (src/tensor/quantized.ts) records quant_linear with its format and shape
  const q = quantSpecOf(weight);
  if (q) return dispatch1('quant_linear', [x, weight, bias ?? null, null], { format: q.format, N: q.N, K: q.K, group: q.group });
  return dispatch1('linear', [x, weight, bias ?? null]);
};
/** The f32 [N, K] values of a quantized weight (src/tensor/quantized.ts). */
export const dequantize = (weight: Tensor): Tensor => {
  const q = quantSpecOf(weight);
  if (!q) throw new TypeError(`dequantize: the tensor (${weight.dtype}[${weight.shape.join(', ')}]) is not a quantized weight`);
  return dispatch1('dequantize', [weight], { format: q.format, N: q.N, K: q.K, group: q.group });
};
export interface Conv2dOptions { stride?: number | [number, number]; padding?: number | [number, number]; dilation?: number | [number, number]; groups?: number }
const pair = (v: number | [number, number] | undefined, d: number): [number, number] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);
/** 2-D convolution, x [N, C, H, W], weight [O, C/groups, kH, kW]. */
export const conv2d = (x: Tensor, weight: Tensor, bias?: Tensor | null, o: Conv2dOptions = {}): Tensor =>
  dispatch1('conv2d', [x, weight, bias ?? null], { stride: pair(o.stride, 1), padding: pair(o.padding, 0), dilation: pair(o.dilation, 1), groups: o.groups ?? 1 });

// ---- data movement (src/ops/movement.ts) ----
/** Reshape; one dim may be -1 (inferred). */
export const reshape = (x: Tensor, shape: readonly Dim[]): Tensor => dispatch1('reshape', [x], { shape: [...shape] });
export const permute = (x: Tensor, perm: readonly number[]): Tensor => dispatch1('permute', [x], { perm: [...perm] });
export function transpose(x: Tensor, axis0: number, axis1: number): Tensor {
  const a0 = normalizeAxis(axis0, x.rank, 'transpose'), a1 = normalizeAxis(axis1, x.rank, 'transpose');
  const perm = x.metaShape.map((_, i) => i);
  perm[a0] = a1; perm[a1] = a0;
  return permute(x, perm);
}
export function flatten(x: Tensor, startAxis = 0, endAxis = -1): Tensor {
  if (x.rank === 0) return reshape(x, [1]);
  const s = normalizeAxis(startAxis, x.rank, 'flatten', 'startAxis'), e = normalizeAxis(endAxis, x.rank, 'flatten', 'endAxis');
  const dims = x.metaShape;
  return reshape(x, [...dims.slice(0, s), dimMul(...dims.slice(s, e + 1)), ...dims.slice(e + 1)]);
}
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normalizeAxis(axis, x.rank + 1, 'unsqueeze');
  const dims = [...x.metaShape];
  dims.splice(a, 0, 1);
  return reshape(x, dims);
}
export function squeeze(x: Tensor, axis?: number | number[]): Tensor {
  const dims = x.metaShape;
  const axes = axis === undefined ? dims.flatMap((d, i) => (d === 1 ? [i] : [])) : axesArg(axis).map((a) => normalizeAxis(a, x.rank, 'squeeze'));
  for (const a of axes) if (dims[a] !== 1) throw new RangeError(`squeeze: axis ${a} has size ${dims[a]}, not 1, in shape [${dims.join(', ')}]`);
  return reshape(x, dims.filter((_, i) => !axes.includes(i)));
}
export const concat = (tensors: readonly Tensor[], axis = 0): Tensor => dispatch1('concat', tensors, { axis });
/** Splits along `axis` into pieces of the given sizes (or equal pieces of size `sizes`). */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const a = normalizeAxis(axis, x.rank, 'split');
  let list: number[];
  if (typeof sizes === 'number') {
    const n = x.metaShape[a];
    if (typeof n !== 'number') throw new RangeError(`split: axis ${a} is dynamic (${n}); equal-size splits need a static dim — pass explicit sizes or mark the dim static`);
    if (!Number.isInteger(sizes) || sizes <= 0) throw new RangeError(`split: split size must be a positive integer, got ${sizes}`);
    list = [];
    for (let s = 0; s < n; s += sizes) list.push(Math.min(sizes, n - s));
    if (list.length === 0) list.push(0); // a size-0 dim splits into one empty piece, as in PyTorch
  } else list = [...sizes];
  return dispatch('split', [x], { axis: a, sizes: list });
}
/** Splits into `chunks` nearly equal pieces along `axis` (like torch.chunk). */
export function chunk(x: Tensor, chunks: number, axis = 0): Tensor[] {
  const a = normalizeAxis(axis, x.rank, 'chunk');
  if (!Number.isInteger(chunks) || chunks <= 0) throw new RangeError(`chunk: chunks must be a positive integer, got ${chunks}`);
  const n = x.metaShape[a];
  if (typeof n !== 'number') throw new RangeError(`chunk: axis ${a} is dynamic (${n}); chunking needs a static dim`);
  return split(x, Math.max(1, Math.ceil(n / chunks)), a);
}
/** General slice: per listed axis, start (inclusive), end (exclusive), step (> 0). Negative indices count from the end. */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[], axes?: readonly number[], steps?: readonly number[]): Tensor {
  return dispatch1('slice', [x], { starts: [...starts], ends: [...ends], axes: axes ? [...axes] : starts.map((_, i) => i), steps: steps ? [...steps] : starts.map(() => 1) });
}
export const sliceAxis = (x: Tensor, axis: number, start: number, end = Number.MAX_SAFE_INTEGER, step = 1): Tensor =>
  slice(x, [start], [end], [axis], [step]);
/** Pads with PyTorch's argument order: pairs (before, after) starting from the LAST dim. */
export function pad(x: Tensor, pads: readonly number[], mode: 'constant' | 'reflect' | 'replicate' = 'constant', value = 0): Tensor {
  if (pads.length % 2 !== 0 || pads.length / 2 > x.rank) throw new RangeError(`pad: pads must hold (before, after) pairs for at most ${x.rank} dims, got [${pads.join(', ')}]`);
  const full = new Array<number>(2 * x.rank).fill(0); // [b0, e0, b1, e1, ...] in dim order
  for (let i = 0; i < pads.length / 2; i++) {
    const d = x.rank - 1 - i;
    full[2 * d] = pads[2 * i]; full[2 * d + 1] = pads[2 * i + 1];
  }
  return dispatch1('pad', [x], { pads: full, mode, value });
}
export const expand = (x: Tensor, shape: readonly Dim[]): Tensor => dispatch1('expand', [x], { shape: [...shape] });
/** ONNX-style gather: out = x.shape[:axis] + indices.shape + x.shape[axis+1:]. */
export const gather = (x: Tensor, indices: Tensor, axis = 0): Tensor => dispatch1('gather', [x, indices], { axis });
export function indexSelect(x: Tensor, axis: number, indices: Tensor): Tensor {
  if (indices.rank !== 1) throw new RangeError(`index_select: indices must be 1-D, got shape [${indices.metaShape.join(', ')}]`);
  return gather(x, indices, axis);
}
/** Rows of `weight` [vocab, dim] selected by integer `ids` of any shape. */
export const embedding = (ids: Tensor, weight: Tensor): Tensor => dispatch1('embedding', [weight, ids]);
export const cast = (x: Tensor, dtype: DType): Tensor => (x.dtype === dtype ? x : dispatch1('cast', [x], { dtype }));
/** Nearest-neighbour upsampling of [N, C, H, W] by integer factors. */
export const upsampleNearest2d = (x: Tensor, scale: number | [number, number]): Tensor =>
  dispatch1('upsample_nearest2d', [x], { scale: pair(scale, 1) });

// ---- model ops (src/ops/model.ts) ----
/** Rotary position embedding on x [..., seq, headDim] with cos/sin [seq, rotaryDim/2]; dims past
 *  rotaryDim pass through. interleaved=true is GPT-J's pairing (2i, 2i+1); false is NeoX's halves. */
export const rotaryEmbedding = (x: Tensor, cos: Tensor, sin: Tensor, interleaved = false): Tensor =>
  dispatch1('rotary_embedding', [x, cos, sin], { interleaved });
export interface AttentionOptions { mask?: Tensor | null; causal?: boolean; scale?: number }
/** softmax(q·kᵀ·scale + mask)·v with q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv]; Hq must be a
 *  multiple of Hkv (grouped-query). A bool mask keeps `true`; a float mask is added. Causal aligns the
 *  last query with the last key. scale defaults to 1/sqrt(D). */
export const scaledDotProductAttention = (q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor =>
  dispatch1('scaled_dot_product_attention', [q, k, v, o.mask ?? null], { causal: o.causal ?? false, scale: o.scale ?? 0 });
/** The k largest (or smallest) values along `axis` and their i64 indices. */
export function topk(x: Tensor, k: number, axis = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
  const [values, indices] = dispatch('top_k', [x], { k, axis, largest, sorted });
  return { values, indices };
}
