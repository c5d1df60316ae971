// Normalization rules: layer / RMS norm (plain, after a residual add, or with adaLN modulation)
// as one row-wise kernel, group norm, and softmax / log_softmax along an axis.
import { normAxis, type View } from '../builder.js';
import { ACTIVATION_CODES, encodeGroupNorm, encodeGroupNormAct, encodeNorm, encodeSoftmax } from '../kernel-table.gen.js';
import { numelOf } from '../views.js';
import { definePlanRule } from './registry.js';

definePlanRule(['layer_norm', 'rms_norm', 'add_layer_norm', 'add_rms_norm', 'layer_norm_modulate'], (node, b) => {
  b.needF32(node);
  const op = node.op, a = node.attrs;
  const rms = op === 'rms_norm' || op === 'add_rms_norm';
  const withRes = op === 'add_layer_norm' || op === 'add_rms_norm';
  const mod = op === 'layer_norm_modulate';
  const ins = node.inputs;
  const x = b.contiguous(ins[0]!);
  const residual = withRes ? b.contiguous(ins[1]!) : null;
  // inputs: x, [residual | shift, scale], weight, bias
  const wIdx = withRes ? 2 : mod ? 3 : 1;
  const weight = b.optional(ins[wIdx]);
  const bias = rms ? null : b.optional(ins[wIdx + 1]);
  const nd = op === 'layer_norm' || op === 'add_layer_norm' ? (a.normalized_ndim as number) : 1;
  const cols = numelOf(x.shape.slice(x.shape.length - nd));
  const rows = cols === 0 ? 0 : numelOf(x.shape) / cols;
  let shift: View | null = null, scale: View | null = null, shiftStride = 0, scaleStride = 0, rowsPerSample = 1;
  if (mod) {
    // shift / scale [N, cols]: read in place when their rows are contiguous
    const rowView = (v: number): { view: View; stride: number } => {
      const w = b.viewOf(v);
      if (w.shape.length === 2 && (w.shape[1] <= 1 || w.strides[1] === 1)) return { view: w, stride: w.shape[0] <= 1 ? 0 : w.strides[0] };
      return { view: b.contiguous(v), stride: w.shape[1] };
    };
    const sh = rowView(ins[1]!), sc = rowView(ins[2]!);
    shift = sh.view; shiftStride = sh.stride;
    scale = sc.view; scaleStride = sc.stride;
    rowsPerSample = rows / x.shape[0];
  }
  const out = b.dest(node.outputs[0]);
  const sum = withRes ? b.dest(node.outputs[1]) : null;
  b.emit(op, encodeNorm({ x, residual, weight, bias, shift, scale, out, sum, rms, rows, cols, rowsPerSample, shiftStride, scaleStride, eps: a.eps as number }));
  b.setView(node.outputs[0], out);
  if (sum) b.setView(node.outputs[1], sum);
});

definePlanRule(['group_norm', 'add_group_norm'], (node, b) => {
  b.needF32(node);
  // inputs: x, [residual], weight, bias; add_group_norm also writes the sum x + residual
  const withRes = node.op === 'add_group_norm';
  const [xv, ...rest] = node.inputs;
  const rv = withRes ? rest.shift()! : null;
  const x = b.contiguous(xv!), residual = b.optional(rv);
  const weight = b.optional(rest[0]), bias = b.optional(rest[1]);
  const [N, C] = x.shape;
  const out = b.dest(node.outputs[0]);
  const sum = withRes ? b.dest(node.outputs[1]) : null;
  b.emit(node.op, encodeGroupNorm({
    x, residual, weight, bias, out, sum, N, C, spatial: numelOf(x.shape.slice(2)), groups: node.attrs.num_groups as number, eps: node.attrs.eps as number,
  }));
  b.setView(node.outputs[0], out);
  if (sum) b.setView(node.outputs[1], sum);
});

// GroupNorm + activation (SD's GroupNorm -> SiLU), optionally after a residual add: one pass.
definePlanRule(['group_norm_act', 'add_group_norm_act'], (node, b) => {
  b.needF32(node);
  const withRes = node.op === 'add_group_norm_act';
  const [xv, ...rest] = node.inputs;
  const rv = withRes ? rest.shift()! : null;
  const x = b.contiguous(xv!), residual = b.optional(rv);
  const weight = b.optional(rest[0]), bias = b.optional(rest[1]);
  const [N, C] = x.shape;
  const out = b.dest(node.outputs[0]);
  const sum = withRes ? b.dest(node.outputs[1]) : null;
  b.emit(node.op, encodeGroupNormAct({
    x, residual, weight, bias, out, sum, N, C, spatial: numelOf(x.shape.slice(2)), groups: node.attrs.num_groups as number, eps: node.attrs.eps as number,
    act: ACTIVATION_CODES[node.attrs.activation as keyof typeof ACTIVATION_CODES],
  }));
  b.setView(node.outputs[0], out);
  if (sum) b.setView(node.outputs[1], sum);
});

definePlanRule(['softmax', 'log_softmax'], (node, b) => {
  b.needF32(node);
  const x = b.contiguous(node.inputs[0]!);
  const r = x.shape.length;
  const ax = r === 0 ? 0 : normAxis(node.attrs.axis as number, r);
  const out = b.dest(node.outputs[0]);
  b.emit(node.op, encodeSoftmax({
    x, out, outer: r === 0 ? 1 : numelOf(x.shape.slice(0, ax)), size: r === 0 ? 1 : x.shape[ax], inner: r === 0 ? 1 : numelOf(x.shape.slice(ax + 1)),
    log: node.op === 'log_softmax',
  }));
  b.setView(node.outputs[0], out);
});
