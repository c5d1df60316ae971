// Reduction rules: sum / mean / max / min over one contiguous block of axes, argmax and top_k along
// one axis; all view the input as [outer, size, inner].
import { normAxis } from '../builder.js';
import { REDUCE_CODES, encodeArgmax, encodeReduce, encodeTopK } from '../kernel-table.gen.js';
import { numelOf } from '../views.js';
import { definePlanRule } from './registry.js';

/** x's shape around axis (a scalar is one element). */
const around = (shape: number[], axis: number): { outer: number; size: number; inner: number } =>
  shape.length === 0 ? { outer: 1, size: 1, inner: 1 }
    : { outer: numelOf(shape.slice(0, axis)), size: shape[axis], inner: numelOf(shape.slice(axis + 1)) };

definePlanRule(Object.keys(REDUCE_CODES), (node, b) => {
  b.needF32(node);
  const x = b.contiguous(node.inputs[0]!);
  const r = x.shape.length, axesAttr = node.attrs.axes as number[];
  const axes = axesAttr.length === 0 ? x.shape.map((_, k) => k) : [...new Set(axesAttr.map((ax) => normAxis(ax, r)))].sort((p, q) => p - q);
  for (let k = 1; k < axes.length; k++) if (axes[k] !== axes[k - 1] + 1) b.unsupported(`reduced axes [${axes.join(', ')}] are not one contiguous block`);
  const a0 = r === 0 ? 0 : axes[0], a1 = r === 0 ? -1 : axes[axes.length - 1];
  const out = b.dest(node.outputs[0]);
  b.emit(node.op, encodeReduce({
    x, out, op: REDUCE_CODES[node.op as keyof typeof REDUCE_CODES],
    outer: numelOf(x.shape.slice(0, a0)), size: numelOf(x.shape.slice(a0, a1 + 1)), inner: numelOf(x.shape.slice(a1 + 1)),
  }));
  b.setView(node.outputs[0], out);
});

definePlanRule('argmax', (node, b) => {
  if (!b.isF32(node.inputs[0])) b.unsupported(`argmax runs on f32, got ${b.dtypeOf(node.inputs[0]!)}`);
  const x = b.contiguous(node.inputs[0]!);
  const out = b.dest(node.outputs[0]);
  b.emit('argmax', encodeArgmax({ x, out, ...around(x.shape, normAxis(node.attrs.axis as number, x.shape.length)) }));
  b.setView(node.outputs[0], out);
});

definePlanRule('top_k', (node, b) => {
  if (!b.isF32(node.inputs[0])) b.unsupported(`top_k runs on f32, got ${b.dtypeOf(node.inputs[0]!)}`);
  const a = node.attrs as { k: number; axis: number; largest: boolean; sorted: boolean };
  const x = b.contiguous(node.inputs[0]!);
  const values = b.dest(node.outputs[0]), indices = b.dest(node.outputs[1]);
  b.emit('top_k', encodeTopK({ x, values, indices, ...around(x.shape, normAxis(a.axis, x.shape.length)), k: a.k, largest: a.largest, sorted: a.sorted }));
  b.setView(node.outputs[0], values);
  b.setView(node.outputs[1], indices);
});
