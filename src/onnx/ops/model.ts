// ONNX mappings of the model-level ops (src/ops/model.ts), each decomposed into standard nodes:
// rotary_embedding as slices and multiply-adds, scaled_dot_product_attention as MatMul/Softmax/MatMul
// with grouped-query heads expanded, masks applied and fully masked rows zeroed (our documented
// semantics), top_k as TopK (plus an index sort when sorted=false, which ONNX leaves unspecified).
import type { Dim } from '../../tensor/shape.js';
import { registerOnnxMapping } from '../mapping.js';
import { computeDType, dimScalar } from './util.js';

interface RotaryAttrs { interleaved: boolean }
interface AttentionAttrs { causal: boolean; scale: number }
interface TopKAttrs { k: number; axis: number; largest: boolean; sorted: boolean }

const TO_END = 2 ** 53 - 1; // slice end meaning "to the end of the axis" (ONNX clamps it)

registerOnnxMapping<RotaryAttrs>('rotary_embedding', (ctx, [x, cos, sin], { interleaved }, [out], [mx, mc, ms]) => {
  const half = mc!.shape[1];
  if (typeof half !== 'number') throw new Error(`onnx export: rotary_embedding needs a static rotary dim; cos has shape [${mc!.shape.join(', ')}]`);
  const rot = 2 * half;
  const d = out.dtype;
  const c = ctx.cast(cos!, mc!.dtype, d), s = ctx.cast(sin!, ms!.dtype, d);
  const last = ctx.i64([-1]);
  const slice = (start: number, end: number, step: number): string =>
    ctx.node1('Slice', [x!, ctx.i64([start]), ctx.i64([end]), last, ctx.i64([step])]);
  // NeoX pairs (i, i + half); GPT-J pairs (2i, 2i + 1)
  const x1 = interleaved ? slice(0, rot, 2) : slice(0, half, 1);
  const x2 = interleaved ? slice(1, rot, 2) : slice(half, rot, 1);
  const o1 = ctx.node1('Sub', [ctx.node1('Mul', [x1, c]), ctx.node1('Mul', [x2, s])]);
  const o2 = ctx.node1('Add', [ctx.node1('Mul', [x2, c]), ctx.node1('Mul', [x1, s])]);
  let rotated: string;
  if (!interleaved) rotated = ctx.node1('Concat', [o1, o2], { axis: -1 });
  else {
    // [..., half, 2] -> [..., rot]: zeros copy the leading dims, -1 merges the last two
    const pairs = ctx.node1('Concat', [ctx.node1('Unsqueeze', [o1, last]), ctx.node1('Unsqueeze', [o2, last])], { axis: -1 });
    rotated = ctx.node1('Reshape', [pairs, ctx.i64([...new Array<number>(mx!.shape.length - 1).fill(0), -1])]);
  }
  const headDim = mx!.shape[mx!.shape.length - 1];
  if (headDim === rot) return [rotated];
  return [ctx.node1('Concat', [rotated, slice(rot, TO_END, 1)], { axis: -1 })];
});

registerOnnxMapping<AttentionAttrs>('scaled_dot_product_attention', (ctx, [q, k, v, mask], { causal, scale }, [out], [mq, mk, mv, mm]) => {
  const dtype = out.dtype;
  const [, hq, lq, headDim] = mq!.shape;
  const [, hkv, lk] = mk!.shape;
  let keys = k!, vals = v!;
  if (hq !== hkv) {
    if (typeof hq !== 'number' || typeof hkv !== 'number') {
      throw new Error(`onnx export: scaled_dot_product_attention with grouped-query heads needs static head counts (q heads ${hq}, kv heads ${hkv})`);
    }
    // kv head j serves query heads j·g .. j·g+g-1: repeat each kv head g times, adjacent
    const g = hq / hkv;
    const repeat = (t: string, dims: readonly Dim[]): string => {
      const expanded = ctx.node1('Expand', [ctx.node1('Unsqueeze', [t, ctx.i64([2])]), ctx.i64([1, 1, g, 1, 1])]);
      const last = dims[3];
      const target = typeof last === 'number' ? ctx.i64([0, hq, -1, last]) : ctx.shape([dims[0], hq, dims[2], last]);
      return ctx.node1('Reshape', [expanded, target]);
    };
    keys = repeat(keys, mk!.shape);
    vals = repeat(vals, mv!.shape);
  }
  const scaleValue = scale !== 0 ? scale : typeof headDim === 'number' ? 1 / Math.sqrt(headDim) : null;
  const scaleName = scaleValue !== null
    ? ctx.scalar(scaleValue, dtype)
    : ctx.node1('Reciprocal', [ctx.node1('Sqrt', [ctx.cast(dimScalar(ctx, headDim), 'i64', dtype)])]);
  let scores = ctx.node1('Mul', [ctx.node1('MatMul', [q!, ctx.node1('Transpose', [keys], { perm: [0, 1, 3, 2] })]), scaleName]);
  const negInf = ctx.scalar(-Infinity, dtype);
  if (mask) {
    scores = mm!.dtype === 'bool'
      ? ctx.node1('Where', [mask, scores, negInf])
      : ctx.node1('Add', [scores, ctx.cast(mask, mm!.dtype, dtype)]);
  }
  if (causal) {
    // query i sees key j iff j <= i + (Lk - Lq)
    const zero = ctx.constant('i64', [], [0]), one = ctx.constant('i64', [], [1]);
    const lqS = dimScalar(ctx, lq), lkS = dimScalar(ctx, lk);
    const rows = ctx.node1('Unsqueeze', [ctx.node1('Range', [zero, lqS, one]), ctx.i64([1])]);
    const cols = ctx.node1('Unsqueeze', [ctx.node1('Range', [zero, lkS, one]), ctx.i64([0])]);
    const limit = ctx.node1('Add', [rows, ctx.node1('Sub', [lkS, lqS])]);
    scores = ctx.node1('Where', [ctx.node1('LessOrEqual', [cols, limit]), scores, negInf]);
  }
  let probs = ctx.node1('Softmax', [scores], { axis: -1 });
  if (mask || causal) {
    // a row whose every key is masked would be NaN (0/0); our op defines it as zeros
    const rowMax = ctx.node1('ReduceMax', [scores, ctx.i64([-1])], { keepdims: 1 });
    probs = ctx.node1('Where', [ctx.node1('Equal', [rowMax, negInf]), ctx.scalar(0, dtype), probs]);
  }
  return [ctx.node1('MatMul', [probs, vals])];
});

registerOnnxMapping<TopKAttrs>('top_k', (ctx, [x], { k, axis, largest, sorted }, [outValues], [mx]) => {
  const compute = computeDType(mx!.dtype, ['f32', 'i32', 'i64']);
  const xc = ctx.cast(x!, mx!.dtype, compute);
  const kTensor = ctx.i64([k]);
  let [values, indices] = ctx.node('TopK', [xc, kTensor], { axis, largest: largest ? 1 : 0, sorted: 1 }, { outputs: 2 });
  if (!sorted) {
    // our unsorted order is the original order along the axis: sort the picked indices ascending
    const [ascending, order] = ctx.node('TopK', [indices, kTensor], { axis, largest: 0, sorted: 1 }, { outputs: 2 });
    values = ctx.node1('GatherElements', [values, order], { axis });
    indices = ascending;
  }
  return [ctx.cast(values, compute, outValues.dtype), indices];
});
