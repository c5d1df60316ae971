// Control-flow ops: `cond` and `while_loop`. Each carries closed sub-graphs (Node.graphs) that read
// only their own inputs, so a branch's or loop body's dependence on outer values is explicit in the
// node's operands. The rules (those of torch.cond / jax.lax.cond / jax.lax.while_loop):
//  - cond(pred, ...operands) {then, else}: pred is a one-element bool; both sub-graphs take the
//    operands' types and return the same output types, which are the node's outputs.
//  - while_loop(...carried, ...invariants) {cond, body} (attr `carried` = how many operands are
//    loop-carried): both sub-graphs take all operands' types; cond returns one one-element bool,
//    body returns the carried types unchanged (a loop cannot change a carried value's shape or
//    dtype); the node's outputs are the carried values after the last iteration.
// These ops cannot run through dispatch (a kernel has no sub-graphs): executors call `execute`
// with a way to run a sub-graph (the graph interpreter passes itself).
import { Tensor } from '../tensor/tensor.js';
import { formatShape } from '../tensor/shape.js';
import { shapesEqual } from '../ir/dims.js';
import { defineOp, type TensorMeta, type GraphSignature } from './registry.js';

const show = (m: TensorMeta): string => `${m.dtype}${formatShape(m.shape)}`;

const notDispatchable = (op: string) => (): never => {
  throw new Error(`${op}: a control-flow op runs its sub-graphs and cannot be dispatched as a kernel; it exists only in graphs (run them with interpret(), or use convertIfElse/convertWhile in eager code)`);
};

/** Checks that a one-element bool predicate is what `what` is. */
function checkPredicate(m: TensorMeta | null, what: string): void {
  if (!m) throw new TypeError(`${what} is missing`);
  if (m.dtype !== 'bool') throw new TypeError(`${what} must be bool, got ${show(m)}; compare first (e.g. x.greater(0)) or use toBool()`);
  if (!m.shape.every((d) => d === 1)) throw new RangeError(`${what} must have exactly one element, got ${show(m)}; reduce it first (e.g. .sum() or .max())`);
}

/** Checks that `got` (a sub-graph's inputs or outputs) has exactly the types `want`. */
function checkTypes(got: readonly TensorMeta[], want: readonly TensorMeta[], what: string, wantWhat: string): void {
  if (got.length !== want.length) throw new TypeError(`${what} has ${got.length} values but ${wantWhat} has ${want.length}`);
  got.forEach((g, i) => {
    const w = want[i];
    if (g.dtype !== w.dtype || !shapesEqual(g.shape, w.shape)) throw new TypeError(`${what} ${i} is ${show(g)} but ${wantWhat} ${i} is ${show(w)}`);
  });
}

const metas = (xs: readonly (TensorMeta | null)[], op: string): TensorMeta[] =>
  xs.map((m, i) => { if (!m) throw new TypeError(`${op}: operand ${i} is absent`); return m; });

function boolOf(t: Tensor, what: string): boolean {
  if (t.size !== 1) throw new RangeError(`${what}: the predicate has ${t.size} elements; it needs exactly one`);
  return t.item() !== 0;
}

export const condOp = defineOp<Record<string, never>>({
  name: 'cond',
  kind: 'other',
  inputs: ['pred', '...operands'],
  attrs: {},
  doc: 'then(operands) when pred is true, else else(operands); both branches return the same types',
  graphNames: ['then', 'else'],
  infer: notDispatchable('cond'),
  reference: notDispatchable('cond'),
  inferGraphs([pred, ...operands], _attrs, graphs: Readonly<Record<string, GraphSignature>>): TensorMeta[] {
    checkPredicate(pred, 'cond: the predicate');
    const ops = metas(operands, 'cond');
    checkTypes(graphs.then.inputs, ops, 'cond: the then-branch input', 'operand');
    checkTypes(graphs.else.inputs, ops, 'cond: the else-branch input', 'operand');
    checkTypes(graphs.else.outputs, graphs.then.outputs, 'cond: else-branch output', 'then-branch output');
    return graphs.then.outputs.map((m) => ({ dtype: m.dtype, shape: [...m.shape] }));
  },
  execute([pred, ...operands], _attrs, graphs, run): Tensor[] {
    const branch = boolOf(pred!, 'cond') ? graphs.then : graphs.else;
    return run(branch, operands as Tensor[]);
  },
});

interface WhileAttrs { carried: number }

export const whileLoopOp = defineOp<WhileAttrs>({
  name: 'while_loop',
  kind: 'other',
  inputs: ['...operands'],
  attrs: { carried: { type: 'int', required: true } },
  doc: 'while cond(carried, invariants): carried = body(carried, invariants); returns the final carried values',
  graphNames: ['cond', 'body'],
  infer: notDispatchable('while_loop'),
  reference: notDispatchable('while_loop'),
  inferGraphs(operands, { carried }, graphs): TensorMeta[] {
    const ops = metas(operands, 'while_loop');
    if (!(carried >= 1 && carried <= ops.length)) throw new RangeError(`while_loop: carried is ${carried} but there are ${ops.length} operands; at least one value must be carried`);
    checkTypes(graphs.cond.inputs, ops, 'while_loop: the condition input', 'operand');
    checkTypes(graphs.body.inputs, ops, 'while_loop: the body input', 'operand');
    if (graphs.cond.outputs.length !== 1) throw new TypeError(`while_loop: the condition returns ${graphs.cond.outputs.length} values; it must return one bool`);
    checkPredicate(graphs.cond.outputs[0], 'while_loop: the condition result');
    const carriedTypes = ops.slice(0, carried);
    checkTypes(graphs.body.outputs, carriedTypes, 'while_loop: body output', 'loop-carried value (types must not change across iterations)');
    return carriedTypes.map((m) => ({ dtype: m.dtype, shape: [...m.shape] }));
  },
  execute(operands, { carried }, graphs, run): Tensor[] {
    let state = operands.slice(0, carried) as Tensor[];
    const invariants = operands.slice(carried) as Tensor[];
    for (;;) {
      const [c] = run(graphs.cond, [...state, ...invariants]);
      if (!boolOf(c, 'while_loop')) return state;
      state = run(graphs.body, [...state, ...invariants]);
    }
  },
});
