// The dynamic-to-static runtime helpers (Paddle's convert_ifelse / convert_while_loop design). The
// source transform (transform.ts) rewrites tensor-dependent control flow in user code into calls
// of these; they may also be called by hand. Each decides at run time:
//  - the condition is a JS value or a concrete (eager) tensor: plain JavaScript, one branch runs;
//  - the condition is a traced tensor: both branches (or the loop's condition and body) are traced
//    into closed sub-graphs and one `cond` / `while_loop` node is recorded (src/ops/control.ts).
// Branch outputs follow torch.cond's and jax.lax.cond's rules: every value a branch produces (its
// result and the variables it assigns) must have the same structure in both branches; tensors the
// same dtype and shape; a JS number or boolean facing a tensor is promoted to a tensor of that type
// (JAX's weak types); other JS values must be identical. Loop-carried values keep their type.
// Variables are passed by two closures, get() and set(values), as the transform writes them:
// branches and loop bodies assign the user's own variables, and the helpers read and reset them.
import { Tensor } from '../../tensor/tensor.js';
import { full } from '../../tensor/creation.js';
import { formatShape } from '../../tensor/shape.js';
import * as ops from '../../ops/api.js';
import type { TensorMeta } from '../../ops/registry.js';
import { activeTraceRun, TraceRun } from '../tracer.js';
import { userSourceLine } from '../source.js';

/** Reads the variables a branch or loop may assign (in `names` order). */
export type GetVars = () => unknown[];
/** Writes them back. */
export type SetVars = (values: unknown[]) => void;

/** Thrown when traced control flow breaks a rule (branch outputs differ, a carried value changes
 *  type); the message names the variable and the source line. */
export class ControlFlowError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlFlowError';
  }
}

/** True for a symbolic tensor (one being traced), whose value exists only when the graph runs. */
export const isTraced = (x: unknown): x is Tensor => x instanceof Tensor && x.isSymbolic;

const where = (): string => { const s = userSourceLine(); return s ? ` at ${s}` : ''; };

/** The explicit tensor-to-boolean conversion `if (t)` becomes: JS truthiness for JS values; the
 *  single element of a concrete tensor (non-zero is true); a graph break naming the line for a
 *  traced tensor (branch with convertIfElse instead, which the loader hook does for you). A
 *  tensor with more than one element is ambiguous and an error, as in PyTorch. */
export function toBool(x: unknown): boolean {
  if (!(x instanceof Tensor)) return Boolean(x);
  if (x.size !== 1 && !x.isSymbolic) {
    throw new RangeError(`toBool: a tensor with ${x.size} elements (${x.dtype}${formatShape(x.shape)}) has no single truth value${where()}; reduce it first (e.g. .max(), .sum()) or compare elementwise with where()`);
  }
  return x.item() !== 0; // a traced tensor throws a GraphBreakError naming the line here
}

/** A tensor as a one-element bool of shape [] (the predicate a control-flow op takes). */
export function toPredicate(x: Tensor, what = 'the condition'): Tensor {
  if (!x.metaShape.every((d) => d === 1)) {
    throw new ControlFlowError(`${what}${where()} is a tensor of shape ${formatShape(x.metaShape)}; a branch or loop condition needs exactly one element (reduce it first, e.g. .max() or .sum())`);
  }
  let p = x.rank === 0 ? x : ops.reshape(x, []);
  if (p.dtype !== 'bool') p = logicalNotTensor(ops.equal(p, 0));
  return p;
}

const boolScalar = (v: boolean): Tensor => full([], v ? 1 : 0, 'bool');
// Logic on bool tensors is written with ops every backend has for bool (ONNX Runtime has no
// bool Where): not p = (p == false); p and q = (f32(p) * f32(q) > 0); p or q = (f32(p) + f32(q) > 0).
const logicalNotTensor = (p: Tensor): Tensor => ops.equal(p, boolScalar(false));
const asF32 = (p: Tensor): Tensor => ops.cast(p, 'f32');
const andTensor = (p: Tensor, q: Tensor): Tensor => ops.greater(ops.mul(asF32(p), asF32(q)), 0);
const orTensor = (p: Tensor, q: Tensor): Tensor => ops.greater(ops.add(asF32(p), asF32(q)), 0);

/** `!x`: a bool tensor when x is traced, else plain negation (a concrete tensor by its value). */
export function logicalNot(x: unknown): unknown {
  if (isTraced(x)) return logicalNotTensor(toPredicate(x, 'the operand of !'));
  return !toBool(x);
}

/** `a && b` (b is a thunk, so it is evaluated lazily when it can be). With a traced operand the
 *  result is a bool tensor and both sides are evaluated (a graph has no short circuit); otherwise
 *  it is JavaScript's `&&` with tensors judged by toBool. */
export function logicalAnd(a: unknown, b: () => unknown): unknown {
  if (isTraced(a)) {
    const rhs = b();
    if (!isTraced(rhs)) return toBool(rhs) ? toPredicate(a, 'the left operand of &&') : rhs;
    return andTensor(toPredicate(a, 'the left operand of &&'), toPredicate(rhs, 'the right operand of &&'));
  }
  if (!toBool(a)) return a;
  return b();
}

/** `a || b`, by the same rules as logicalAnd. */
export function logicalOr(a: unknown, b: () => unknown): unknown {
  if (isTraced(a)) {
    const rhs = b();
    if (!isTraced(rhs)) return toBool(rhs) ? rhs : toPredicate(a, 'the left operand of ||');
    return orTensor(toPredicate(a, 'the left operand of ||'), toPredicate(rhs, 'the right operand of ||'));
  }
  if (toBool(a)) return a;
  return b();
}

function requireRun(what: string): TraceRun {
  const run = activeTraceRun();
  if (!run) throw new ControlFlowError(`${what}${where()}: the condition is a traced tensor but no trace is active (a traced tensor escaped from its trace?)`);
  return run;
}

// ---- pairing branch outputs ----

type Leaf = { kind: 'tensor'; index: number } | { kind: 'value'; value: unknown };
type Shape = Leaf | { kind: 'array'; items: Shape[] } | { kind: 'object'; entries: [string, Shape][] };

const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Tensor) && [Object.prototype, null].includes(Object.getPrototypeOf(x));

const describe = (x: unknown): string =>
  x instanceof Tensor ? `a tensor ${x.dtype}${formatShape(x.metaShape)}` : x === undefined ? 'undefined (not assigned)' : `${typeof x} ${JSON.stringify(x) ?? String(x)}`;

const isPromotable = (x: unknown): x is number | boolean => typeof x === 'number' || typeof x === 'boolean';
const promote = (x: number | boolean, like: TensorMeta): Tensor => full(like.shape as number[], Number(x), like.dtype);

/** Pairs the values two branches produce: tensors become outputs (in `outs`, one tensor per branch),
 *  JS values must agree. Returns the merged structure and the output tensors per branch. */
function pairOutputs(a: unknown, b: unknown, name: string, labels: [string, string], outs: [Tensor[], Tensor[]]): Shape {
  if (a instanceof Tensor || b instanceof Tensor) {
    let ta = a, tb = b;
    if (!(ta instanceof Tensor) && isPromotable(ta)) ta = promote(ta, tb as Tensor);
    if (!(tb instanceof Tensor) && isPromotable(tb)) tb = promote(tb, ta as Tensor);
    if (!(ta instanceof Tensor) || !(tb instanceof Tensor)) {
      throw new ControlFlowError(`${name} is ${describe(a)} in the ${labels[0]} but ${describe(b)} in the ${labels[1]}; with a tensor condition both must give it a tensor of the same shape and dtype (give it a value before the branch)`);
    }
    const ma = ta.metaShape, mb = tb.metaShape;
    if (ta.dtype !== tb.dtype || ma.length !== mb.length || ma.some((d, i) => d !== mb[i])) {
      throw new ControlFlowError(`${name} is ${describe(ta)} in the ${labels[0]} but ${describe(tb)} in the ${labels[1]}; with a tensor condition both must have the same shape and dtype (like torch.cond)`);
    }
    outs[0].push(ta);
    outs[1].push(tb);
    return { kind: 'tensor', index: outs[0].length - 1 };
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) throw new ControlFlowError(`${name} is an array of ${a.length} in the ${labels[0]} but of ${b.length} in the ${labels[1]}`);
    return { kind: 'array', items: a.map((x, i) => pairOutputs(x, b[i], `${name}[${i}]`, labels, outs)) };
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    if (ka.join() !== kb.join()) throw new ControlFlowError(`${name} has keys {${ka.join(', ')}} in the ${labels[0]} but {${kb.join(', ')}} in the ${labels[1]}`);
    return { kind: 'object', entries: ka.map((k) => [k, pairOutputs(a[k], b[k], `${name}.${k}`, labels, outs)] as [string, Shape]) };
  }
  if (!Object.is(a, b) && isPromotable(a) && isPromotable(b)) {
    // a flag or a number set differently by the branches becomes a scalar tensor (JAX's rule for
    // Python scalars): bool when both are booleans, else f32
    const dtype = typeof a === 'boolean' && typeof b === 'boolean' ? 'bool' : 'f32';
    outs[0].push(full([], Number(a), dtype));
    outs[1].push(full([], Number(b), dtype));
    return { kind: 'tensor', index: outs[0].length - 1 };
  }
  if (!Object.is(a, b)) {
    throw new ControlFlowError(`${name} is ${describe(a)} in the ${labels[0]} but ${describe(b)} in the ${labels[1]}; a JavaScript value cannot depend on a tensor condition: make it a tensor, or compute it outside the branch`);
  }
  return { kind: 'value', value: a };
}

function rebuild(s: Shape, tensors: readonly Tensor[]): unknown {
  switch (s.kind) {
    case 'tensor': return tensors[s.index];
    case 'value': return s.value;
    case 'array': return s.items.map((x) => rebuild(x, tensors));
    case 'object': return Object.fromEntries(s.entries.map(([k, x]) => [k, rebuild(x, tensors)]));
  }
}

const metaOf = (t: Tensor): TensorMeta => ({ dtype: t.dtype, shape: [...t.metaShape] });

// ---- if / else ----

/** `if (pred) then() else else()` (or `pred ? then() : else()`), returning the branch's result.
 *  `get`/`set` read and write the variables the branches assign (`names` label them in errors);
 *  after a traced branch they hold the cond node's outputs. */
export function convertIfElse<R>(pred: unknown, thenFn: () => R, elseFn: () => R, get: GetVars = () => [], set: SetVars = () => {}, names: readonly string[] = []): R {
  if (!isTraced(pred)) return toBool(pred) ? thenFn() : elseFn();
  const run = requireRun('if');
  const p = toPredicate(pred);
  const init = get();
  const traceBranch = (fn: () => R) => run.traceSubgraph([], () => {
    set(init);
    const result = fn();
    return { result, vars: get() };
  });
  const a = traceBranch(thenFn);
  const b = traceBranch(elseFn);
  set(init);
  const outs: [Tensor[], Tensor[]] = [[], []];
  const labels: [string, string] = ['then-branch', 'else-branch'];
  const varShapes = names.length === a.result.vars.length
    ? a.result.vars.map((v, i) => pairOutputs(v, b.result.vars[i], `variable "${names[i]}"`, labels, outs))
    : [pairOutputs(a.result.vars, b.result.vars, 'the assigned variables', labels, outs)];
  const resultShape = pairOutputs(a.result.result, b.result.result, 'the branch result', labels, outs);
  if (outs[0].length === 0) {
    // no tensor flows out: the branches agree on every value, so nothing needs a graph node
    setVars(set, names, varShapes, []);
    return rebuild(resultShape, []) as R;
  }
  outs[0].forEach((t, i) => a.run.output(t, `out${i}`));
  outs[1].forEach((t, i) => b.run.output(t, `out${i}`));
  const captures = TraceRun.unifyCaptures([a.run, b.run]);
  const results = run.emitControl('cond', [p, ...captures], {}, { then: a.run.graph, else: b.run.graph }, outs[0].map(metaOf));
  setVars(set, names, varShapes, results);
  return rebuild(resultShape, results) as R;
}

function setVars(set: SetVars, names: readonly string[], shapes: Shape[], tensors: Tensor[]): void {
  set(names.length === shapes.length ? shapes.map((s) => rebuild(s, tensors)) : (rebuild(shapes[0], tensors) as unknown[]));
}

// ---- while ----

/** Tries before giving up when carried JS values must be promoted to tensors (each promotion
 *  re-traces the body once). */
const PROMOTION_ROUNDS = 4;

/** `while (cond()) body()`. While the condition is a JS value or a concrete tensor the loop runs in
 *  JavaScript; once it is a traced tensor, the rest of the loop becomes one while_loop node whose
 *  carried values are the variables the body assigns (get/set, labelled by `names`). */
export function convertWhile(condFn: () => unknown, bodyFn: () => void, get: GetVars = () => [], set: SetVars = () => {}, names: readonly string[] = []): void {
  for (;;) {
    const c = condFn();
    if (isTraced(c)) return tracedWhile(condFn, bodyFn, get, set, names);
    if (!toBool(c)) return;
    bodyFn();
  }
}

function tracedWhile(condFn: () => unknown, bodyFn: () => void, get: GetVars, set: SetVars, names: readonly string[]): void {
  const run = requireRun('while');
  const label = (i: number): string => (names[i] !== undefined ? `loop variable "${names[i]}"` : `loop value ${i}`);
  let init = get();
  for (let round = 0; round < PROMOTION_ROUNDS; round++) {
    // the carried tensors: every tensor among the variables (nested in arrays/objects too)
    const carried: Tensor[] = [];
    const shapes = init.map((v, i) => flattenInto(v, carried, label(i)));
    const metas = carried.map(metaOf);
    const condTrace = run.traceSubgraph(metas, (args) => {
      set(shapes.map((s) => rebuild(s, args)));
      const c = condFn();
      return c instanceof Tensor ? toPredicate(c, 'the loop condition') : boolScalar(toBool(c));
    });
    const bodyTrace = run.traceSubgraph(metas, (args) => {
      set(shapes.map((s) => rebuild(s, args)));
      bodyFn();
      return get();
    });
    set(init);
    // the body must give every carried value back with the same type; JS values must not change
    let promoted = false;
    const after: Tensor[] = [];
    const next = init.map((v, i) => {
      const r = matchCarried(v, bodyTrace.result[i], label(i), after);
      if (r.promoted) promoted = true;
      return r.value;
    });
    if (promoted) { init = next; continue; }
    if (carried.length === 0) {
      throw new ControlFlowError(`while${where()}: the condition is a traced tensor but the loop assigns no tensor variable, so it would never change; a tensor-dependent loop must update a tensor the condition reads`);
    }
    condTrace.run.output(condTrace.result, 'cond');
    after.forEach((t, i) => bodyTrace.run.output(t, `out${i}`));
    const captures = TraceRun.unifyCaptures([condTrace.run, bodyTrace.run]);
    const outs = run.emitControl('while_loop', [...carried, ...captures], { carried: carried.length }, { cond: condTrace.run.graph, body: bodyTrace.run.graph }, metas);
    set(shapes.map((s) => rebuild(s, outs)));
    return;
  }
  throw new ControlFlowError(`while${where()}: the loop variables kept changing type while being promoted to tensors; give them tensor values before the loop`);
}

function flattenInto(v: unknown, carried: Tensor[], name: string): Shape {
  if (v instanceof Tensor) { carried.push(v); return { kind: 'tensor', index: carried.length - 1 }; }
  if (Array.isArray(v)) return { kind: 'array', items: v.map((x, i) => flattenInto(x, carried, `${name}[${i}]`)) };
  if (isPlainObject(v)) return { kind: 'object', entries: Object.keys(v).map((k) => [k, flattenInto(v[k], carried, `${name}.${k}`)] as [string, Shape]) };
  return { kind: 'value', value: v };
}

/** Checks a carried value after one traced body run against its value before (collecting the
 *  body's tensors in `after`); a JS number/boolean that became a tensor is promoted (value
 *  returned, promoted: true) so the loop can be traced again with it carried as a tensor. */
function matchCarried(before: unknown, after: unknown, name: string, out: Tensor[]): { value: unknown; promoted: boolean } {
  if (before instanceof Tensor) {
    if (!(after instanceof Tensor)) throw new ControlFlowError(`${name} is ${describe(before)} before the loop body but ${describe(after)} after it; a loop-carried value must stay a tensor`);
    const mb = before.metaShape, ma = after.metaShape;
    if (before.dtype !== after.dtype || mb.length !== ma.length || mb.some((d, i) => d !== ma[i])) {
      throw new ControlFlowError(`${name} is ${describe(before)} before the loop body but ${describe(after)} after it; a loop-carried tensor must keep its shape and dtype (pad or preallocate it)`);
    }
    out.push(after);
    return { value: before, promoted: false };
  }
  if (after instanceof Tensor) {
    if (isPromotable(before)) return { value: promote(before, metaOf(after)), promoted: true };
    throw new ControlFlowError(`${name} is ${describe(before)} before the loop body but ${describe(after)} after it; give it a tensor value before the loop`);
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length === after.length) {
    let promoted = false;
    const value = before.map((x, i) => { const r = matchCarried(x, after[i], `${name}[${i}]`, out); promoted ||= r.promoted; return r.value; });
    return { value, promoted };
  }
  if (isPlainObject(before) && isPlainObject(after) && Object.keys(before).join() === Object.keys(after).join()) {
    let promoted = false;
    const value = Object.fromEntries(Object.keys(before).map((k) => { const r = matchCarried(before[k], after[k], `${name}.${k}`, out); promoted ||= r.promoted; return [k, r.value]; }));
    return { value, promoted };
  }
  if (!Object.is(before, after)) {
    throw new ControlFlowError(`${name} is ${describe(before)} before the loop body but ${describe(after)} after it; inside a tensor-dependent loop a changing value must be a tensor (e.g. a counter: tensor(0) instead of 0)`);
  }
  return { value: before, promoted: false };
}

// ---- the names the source transform calls ----
export {
  convertIfElse as ifElse, convertWhile as whileLoop, logicalAnd as and, logicalOr as or, logicalNot as not, toBool as truth,
};
