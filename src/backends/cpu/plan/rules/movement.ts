// Movement rules. reshape, permute, split, slice and expand only make new strided views of their
// input (no kernel; a reshape copies when no strides express it); concat copies each piece into
// its window of the result; cast, gather/embedding, pad and upsample_nearest2d are kernels.
import { dtypeBytes } from '../../../../tensor/dtype.js';
import { normAxis } from '../builder.js';
import { DTYPE_CODES, PAD_MODES, encodeCast, encodeGather, encodePad, encodeUpsampleNearest2d } from '../kernel-table.gen.js';
import { broadcastTo, contiguousStrides, numelOf, reshapeStrides, sliceBounds } from '../views.js';
import { definePlanRule } from './registry.js';

definePlanRule('reshape', (node, b) => {
  const outV = node.outputs[0];
  const src = b.viewOf(node.inputs[0]!);
  const outShape = b.shape(outV);
  const st = reshapeStrides(src.shape, src.strides, outShape);
  if (st) {
    b.stats.views++;
    b.setView(outV, { ...src, shape: outShape, strides: st });
    return;
  }
  const dst = b.dest(outV);
  b.emitCopy(src, { ...dst, shape: src.shape, strides: contiguousStrides(src.shape) }, 'reshape');
  b.setView(outV, dst);
});

definePlanRule('permute', (node, b) => {
  const src = b.viewOf(node.inputs[0]!);
  const perm = (node.attrs.perm as number[]).map((p) => normAxis(p, src.shape.length));
  b.stats.views++;
  b.setView(node.outputs[0], { ...src, shape: perm.map((p) => src.shape[p]), strides: perm.map((p) => src.strides[p]) });
});

definePlanRule('split', (node, b) => {
  const src = b.viewOf(node.inputs[0]!);
  const axis = normAxis(node.attrs.axis as number, src.shape.length);
  let at = 0;
  for (const v of node.outputs) {
    const s = b.shape(v);
    b.setView(v, { ...src, offset: src.offset + at * src.strides[axis], shape: s, strides: [...src.strides] });
    at += s[axis];
  }
  b.stats.views++;
});

definePlanRule('slice', (node, b) => {
  const a = node.attrs as { axes: number[]; starts: number[]; ends: number[]; steps: number[] };
  const src = b.viewOf(node.inputs[0]!);
  let offset = src.offset;
  const s = [...src.shape], st = [...src.strides];
  a.axes.forEach((ax, j) => {
    const d = normAxis(ax, s.length);
    const { start, length } = sliceBounds(src.shape[d], a.starts[j], a.ends[j], a.steps[j]);
    offset += start * src.strides[d];
    s[d] = length;
    st[d] = src.strides[d] * a.steps[j];
  });
  b.stats.views++;
  b.setView(node.outputs[0], { ...src, offset, shape: s, strides: st });
});

definePlanRule('expand', (node, b) => {
  const src = b.viewOf(node.inputs[0]!);
  const s = b.shape(node.outputs[0]);
  b.stats.views++;
  b.setView(node.outputs[0], { ...src, shape: s, strides: broadcastTo(src.shape, src.strides, s) });
});

definePlanRule('concat', (node, b) => {
  const outV = node.outputs[0];
  const dst = b.dest(outV);
  const axis = normAxis(node.attrs.axis as number, dst.shape.length);
  let at = 0;
  for (const v of node.inputs) {
    const src = b.viewOf(v!);
    if (numelOf(src.shape) > 0) b.emitCopy(src, { ...dst, offset: dst.offset + at * dst.strides[axis], shape: src.shape }, 'concat');
    at += src.shape[axis];
  }
  b.setView(outV, dst);
});

definePlanRule('cast', (node, b) => {
  const xv = node.inputs[0]!, outV = node.outputs[0];
  const narrow = b.narrow;
  if (narrow && b.dtypeOf(xv) === b.dtypeOf(outV)) {
    // f32 <-> the widened 16-bit type: both sides are f32 here. Widening is exact, so the value
    // passes through; a cast *to* the 16-bit type is a rounding the code asked for, so it is
    // kept (a round trip through a 16-bit buffer).
    if (b.storedDtype(outV) !== narrow || b.storedDtype(xv) === narrow) {
      b.stats.views++;
      b.setView(outV, b.viewOf(xv));
      return;
    }
    const x = b.contiguous(xv);
    const rounded = b.alloc(x.shape, narrow);
    b.emitCast(x, rounded, `cast (round to ${narrow})`);
    const dst = b.dest(outV);
    b.emitCast(rounded, dst, `cast (round to ${narrow})`);
    b.setView(outV, dst);
    return;
  }
  const x = b.contiguous(xv);
  const dst = b.dest(outV);
  b.emit('cast', encodeCast({ x, out: dst, from: DTYPE_CODES[x.dtype], to: DTYPE_CODES[dst.dtype], n: numelOf(x.shape) }));
  b.setView(outV, dst);
});

definePlanRule(['gather', 'embedding'], (node, b) => {
  const op = node.op, [xv, iv] = node.inputs as number[];
  const idt = b.dtypeOf(iv);
  if (idt !== 'i32' && idt !== 'i64') b.unsupported(`indices of dtype ${idt}`);
  const x = b.contiguous(xv), idx = b.contiguous(iv);
  const axis = op === 'embedding' ? 0 : normAxis(node.attrs.axis as number, x.shape.length);
  const dst = b.dest(node.outputs[0]);
  b.emit(op, encodeGather({
    x, indices: idx, out: dst, elemSize: dtypeBytes(x.dtype),
    outer: numelOf(x.shape.slice(0, axis)), size: x.shape[axis], inner: numelOf(x.shape.slice(axis + 1)),
    indexBytes: dtypeBytes(idt), count: numelOf(idx.shape), allowNegative: op === 'gather', embedding: op === 'embedding',
  }));
  b.setView(node.outputs[0], dst);
});

definePlanRule('pad', (node, b) => {
  const a = node.attrs as { pads: number[]; mode: keyof typeof PAD_MODES; value: number };
  const x = b.contiguous(node.inputs[0]!);
  const dst = b.dest(node.outputs[0]);
  b.emit('pad', encodePad({
    x, out: dst, elemSize: dtypeBytes(x.dtype), dtype: DTYPE_CODES[x.dtype], mode: PAD_MODES[a.mode], inShape: x.shape, pads: a.pads, value: a.value,
  }));
  b.setView(node.outputs[0], dst);
});

definePlanRule('upsample_nearest2d', (node, b) => {
  const [sh, sw] = node.attrs.scale as number[];
  const x = b.contiguous(node.inputs[0]!);
  const [n, c, h, w] = x.shape;
  const dst = b.dest(node.outputs[0]);
  b.emit('upsample_nearest2d', encodeUpsampleNearest2d({ x, out: dst, elemSize: dtypeBytes(x.dtype), planes: n * c, H: h, W: w, sh, sw }));
  b.setView(node.outputs[0], dst);
});
