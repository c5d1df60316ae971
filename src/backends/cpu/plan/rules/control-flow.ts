// Control-flow rules: cond and while_loop (src/ops/control.ts) become one kernel each whose closed
// sub-graphs are lowered recursively into sub-plans (builder.subPlan); the native kernels
// (native/plan/control_flow.cc) run them with no JavaScript in between. Operands are passed as
// contiguous buffers (the sub-plans' graph inputs) and results land in fresh destinations (the
// sub-plans' output slots), so a sub-plan never writes memory it reads. while_loop double-buffers
// the carried values in the kernel's own scratch and stops with an error after
// INFERJIT_MAX_LOOP_ITERATIONS body runs (default 10,000,000): a loop whose condition never turns
// false fails loudly instead of hanging the process.
import type { Node } from '../../../../ir/graph.js';
import { dtypeBytes } from '../../../../tensor/dtype.js';
import type { PlanBuilder, View } from '../builder.js';
import { encodeCond, encodeWhileLoop } from '../kernel-table.gen.js';
import { numelOf } from '../views.js';
import { definePlanRule } from './registry.js';

/** The default cap on a native while_loop's iterations. */
export const DEFAULT_MAX_LOOP_ITERATIONS = 10_000_000;

/** The iteration cap for loops lowered now (INFERJIT_MAX_LOOP_ITERATIONS, else the default). */
export function maxLoopIterations(): number {
  const raw = process.env.INFERJIT_MAX_LOOP_ITERATIONS;
  if (raw === undefined || raw === '') return DEFAULT_MAX_LOOP_ITERATIONS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`INFERJIT_MAX_LOOP_ITERATIONS is "${raw}"; it must be a non-negative integer (the most body runs a compiled while loop may make)`);
  return n;
}

const bytesOf = (w: View): number => numelOf(w.shape) * dtypeBytes(w.dtype);
const where = (node: Node): string => `${node.op}${node.source ? ` at ${node.source}` : ''}`;

/** Operands as contiguous buffers in their stored dtype (a widened 16-bit value cannot cross into a sub-plan). */
function operandViews(b: PlanBuilder, node: Node, values: readonly number[]): View[] {
  for (const v of [...values, ...node.outputs]) {
    if (b.dtypeOf(v) !== b.storedDtype(v)) b.unsupported(`${b.storedDtype(v)} values cannot cross into control-flow sub-plans of a ${b.precision} plan`);
  }
  return values.map((v) => b.contiguous(v));
}

definePlanRule('cond', (node, b) => {
  if (node.inputs.some((v) => v === null)) b.unsupported('absent operand');
  const [predV, ...rest] = node.inputs as number[];
  if (b.dtypeOf(predV) !== 'bool' || numelOf(b.shape(predV)) !== 1) b.unsupported('the predicate must be a one-element bool');
  const operands = rest;
  const pred = b.viewOf(predV);
  const ins = operandViews(b, node, operands);
  const thenPlan = b.subPlan(node.graphs!.then, 'then');
  const elsePlan = b.subPlan(node.graphs!.else, 'else');
  const outs = node.outputs.map((v) => b.dest(v));
  b.emit(where(node), encodeCond({
    pred, operands: ins, outputs: outs, thenPlan, elsePlan, operandBytes: ins.map(bytesOf), outputBytes: outs.map(bytesOf),
  }));
  node.outputs.forEach((v, j) => b.setView(v, outs[j]));
});

definePlanRule('while_loop', (node, b) => {
  if (node.inputs.some((v) => v === null)) b.unsupported('absent operand');
  const operands = node.inputs as number[];
  const ins = operandViews(b, node, operands);
  const condPlan = b.subPlan(node.graphs!.cond, 'cond');
  const bodyPlan = b.subPlan(node.graphs!.body, 'body');
  const outs = node.outputs.map((v) => b.dest(v));
  b.emit(where(node), encodeWhileLoop({
    operands: ins, outputs: outs, condPlan, bodyPlan, maxIterations: maxLoopIterations(), operandBytes: ins.map(bytesOf),
  }));
  node.outputs.forEach((v, j) => b.setView(v, outs[j]));
});
