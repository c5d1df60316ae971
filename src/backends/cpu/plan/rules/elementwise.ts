// Elementwise rules: unary and binary ops, comparisons, where and fused elementwise programs, all
// one kernel that runs a small register program over strided (broadcast) inputs. The result
// overwrites an input buffer that dies at this node when shapes and sizes allow (in place).
import type { Node } from '../../../../ir/graph.js';
import { dtypeBytes, type DType } from '../../../../tensor/dtype.js';
import { parseElementwiseProgram } from '../../../../ops/fused.js';
import type { PlanBuilder, View } from '../builder.js';
import { BINARY_CODES, COMPARE_CODES, DTYPE_CODES, SELECT_CODES, UNARY_CODES, encodeElementwise } from '../kernel-table.gen.js';
import { broadcastTo, contiguousStrides, isContiguous, numelOf } from '../views.js';
import { definePlanRule } from './registry.js';

/** Every op a plan program can run, by name (the kernel table's one numbering). */
export const PROGRAM_CODES: Readonly<Record<string, number>> = { ...UNARY_CODES, ...BINARY_CODES, ...COMPARE_CODES, ...SELECT_CODES };

/** One instruction: [opcode, register args...] (registers: inputs first, then results). */
type Instr = number[];

/** Emits a program kernel writing `outDtype` over `outShape` into dst. */
export function emitProgram(b: PlanBuilder, name: string, ins: View[], dst: View, instrs: Instr[], outDtype: DType): void {
  const outShape = dst.shape;
  b.emit(name, encodeElementwise({
    inputs: ins, out: dst, outDtype: DTYPE_CODES[outDtype], shape: outShape,
    inDtypes: ins.map((w) => DTYPE_CODES[w.dtype]),
    inStrides: ins.flatMap((w) => broadcastTo(w.shape, w.strides, outShape)),
    opcodes: instrs.map((p) => p[0]),
    args: instrs.flatMap((p) => [p[1] ?? -1, p[2] ?? -1, p[3] ?? -1]),
  }));
}

/** A program node: written over a dying input of the output's exact shape and size, else to dest. */
function lowerProgram(b: PlanBuilder, node: Node, i: number, instrs: Instr[], outDtype: DType): void {
  const outV = node.outputs[0];
  const outShape = b.shape(outV);
  const ins = node.inputs.map((v) => b.viewOf(v!));
  let dst: View | null = null;
  if (b.slotThroughReshapes(outV) === undefined) {
    for (let j = 0; j < ins.length && !dst; j++) {
      const w = ins[j];
      if (w.store.kind !== 'arena' || w.offset !== 0 || dtypeBytes(w.dtype) !== dtypeBytes(outDtype)) continue;
      const buf = w.store.index;
      if (b.buffers[buf].bytes !== numelOf(outShape) * dtypeBytes(outDtype)) continue;
      if (w.shape.length !== outShape.length || w.shape.some((d, k) => d !== outShape[k]) || !isContiguous(w.shape, w.strides)) continue;
      if (ins.some((o, k) => k !== j && o.store.kind === 'arena' && o.store.index === buf)) continue;
      if (!b.deadAfter(buf, i)) continue;
      dst = { store: w.store, offset: 0, shape: outShape, strides: contiguousStrides(outShape), dtype: outDtype };
      b.stats.inPlace++;
    }
  }
  dst ??= b.dest(outV);
  emitProgram(b, node.op, ins, dst, instrs, outDtype);
  b.setView(outV, dst);
}

const allF32 = (b: PlanBuilder, node: Node): void => {
  if (!node.inputs.every((v) => b.isF32(v))) b.unsupported(`elementwise kernels take f32 operands, got ${node.inputs.map((v) => b.dtypeOf(v!)).join(', ')}`);
};

definePlanRule([...Object.keys(UNARY_CODES), ...Object.keys(BINARY_CODES)], (node, b, i) => {
  allF32(b, node);
  if (b.dtypeOf(node.outputs[0]) !== 'f32') b.unsupported(`output dtype ${b.dtypeOf(node.outputs[0])}`);
  const code = PROGRAM_CODES[node.op];
  lowerProgram(b, node, i, [node.inputs.length === 1 ? [code, 0] : [code, 0, 1]], 'f32');
});

definePlanRule(Object.keys(COMPARE_CODES), (node, b, i) => {
  // bool operands (a loop's carried flag, `!flag` as flag == false) are read as 0 / 1
  if (!node.inputs.every((v) => b.isF32(v) || b.dtypeOf(v!) === 'bool')) b.unsupported(`comparisons take f32 or bool operands, got ${node.inputs.map((v) => b.dtypeOf(v!)).join(', ')}`);
  lowerProgram(b, node, i, [[PROGRAM_CODES[node.op], 0, 1]], 'bool');
});

definePlanRule('where', (node, b, i) => {
  if (b.dtypeOf(node.inputs[0]!) !== 'bool' || !b.isF32(node.inputs[1]) || !b.isF32(node.inputs[2])) b.unsupported('where needs a bool condition and f32 values');
  lowerProgram(b, node, i, [[SELECT_CODES.where, 0, 1, 2]], 'f32');
});

definePlanRule('fused_elementwise', (node, b, i) => {
  if (b.dtypeOf(node.outputs[0]) !== 'f32' || !node.inputs.every((v) => b.dtypeOf(v!) === 'f32' || b.dtypeOf(v!) === 'bool')) {
    b.unsupported('fused programs run on f32 (bool conditions)');
  }
  const prog = parseElementwiseProgram(node.attrs.program as string, node.inputs.length);
  const instrs = prog.map((p) => {
    const c = PROGRAM_CODES[p.op];
    if (c === undefined) b.unsupported(`program op ${p.op} has no plan kernel`);
    return [c, ...p.args];
  });
  lowerProgram(b, node, i, instrs, 'f32');
});
