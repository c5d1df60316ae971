// The runtime helpers by hand (what the transform emits): plain JavaScript on JS values and eager
// tensors, cond / while_loop on traced ones; the branch-output and loop-carried rules with their
// errors; logical ops; nested control flow capturing outer values; interpreted == eager.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, full, ops, GraphBreakError, type Tensor } from '../../src/index.js';
import { trace } from '../../src/trace/index.js';
import { interpret } from '../../src/backends/reference/index.js';
import { Graph, subgraphsOf } from '../../src/ir/index.js';
import {
  convertIfElse, convertWhile, toBool, logicalAnd, logicalOr, logicalNot, ControlFlowError,
} from '../../src/trace/transform/index.js';

const run = (fn: (...xs: Tensor[]) => unknown, example: Tensor[]) => {
  const r = trace(fn, example);
  return { graph: r.graph, call: (xs: Tensor[]) => interpret(r.graph, xs, r.constants) };
};

test('eager: JS values and concrete tensors run plain JavaScript', () => {
  let calls = '';
  assert.equal(convertIfElse(true, () => 'a', () => 'b'), 'a');
  assert.equal(convertIfElse(fromArray([0]), () => 'a', () => 'b'), 'b');
  assert.equal(convertIfElse(0, () => { calls += 't'; return 1; }, () => { calls += 'e'; return 2; }), 2);
  assert.equal(calls, 'e', 'only the taken branch runs');
  let i = 0;
  convertWhile(() => i < 3, () => { i++; });
  assert.equal(i, 3);
  let t = fromArray([5]);
  convertWhile(() => t.greater(1), () => { t = t.sub(1); }, () => [t], (v) => { [t] = v as [Tensor]; });
  assert.deepEqual(t.toArray(), [1]);
  assert.equal(toBool(fromArray([2])), true);
  assert.throws(() => toBool(fromArray([1, 2])), /toBool: a tensor with 2 elements .* has no single truth value/);
  assert.equal(logicalAnd(fromArray([1]), () => 'rhs'), 'rhs');
  assert.equal(logicalOr(0, () => 7), 7);
  assert.equal(logicalNot(fromArray([0])), true);
});

test('traced: cond and while_loop recorded, interpreted == eager on every path', () => {
  const f = (x: Tensor): Tensor => {
    let y = x;
    let n = full([], 0);
    convertIfElse(ops.sum(x).greater(0), () => { y = x.mul(3); }, () => { y = x.neg(); }, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
    convertWhile(() => ops.max(y).greater(1), () => { y = y.mul(0.5); n = n.add(1); }, () => [y, n], (v) => { [y, n] = v as [Tensor, Tensor]; }, ['y', 'n']);
    return y.add(n);
  };
  // a JS counter cannot be carried by a traced loop (`n + 1` on a tensor would read its value)
  const counter = (x: Tensor): Tensor => {
    let y = x, n = 0;
    convertWhile(() => ops.max(y).greater(1), () => { y = y.mul(0.5); n = n + 1; }, () => [y, n], (v) => { [y, n] = v as [Tensor, number]; }, ['y', 'n']);
    return y.add(n);
  };
  assert.throws(() => trace(counter, [fromArray([4])]), /loop variable "n" is number 0 before the loop body but number 1 after it; .*must be a tensor/);
  const { graph, call } = run(f, [fromArray([1, 2])]);
  assert.deepEqual(graph.nodes.map((n) => n.op).filter((op) => op === 'cond' || op === 'while_loop'), ['cond', 'while_loop']);
  for (const x of [[1, 2], [-1, -0.5], [0.1, 0.2], [-8, 1]]) {
    const input = fromArray(x);
    assert.deepEqual(call([input])[0].toArray(), f(input).toArray(), `x = [${x}]`);
  }
  // JSON round trip and a second trace hash the same
  assert.equal(Graph.fromJSON(graph.toJSON()).hash(), graph.hash());
  assert.equal(run(f, [fromArray([5, 6])]).graph.hash(), graph.hash());
});

test('traced: nested control flow captures outer values, flags set in branches become bool tensors', () => {
  const f = (x: Tensor, w: Tensor): Tensor => {
    let done = false;
    let y = x;
    for (let k = 0; k < 3; k++) {
      convertIfElse(logicalNot(done), () => {
        y = y.mul(w); // w is captured from the outermost graph
        convertIfElse(logicalOr(ops.sum(y).greater(10), () => ops.sum(y).less(-10)), () => { done = true; }, () => {},
          () => [done], (v) => { [done] = v as [boolean]; }, ['done']);
      }, () => {}, () => [y, done], (v) => { [y, done] = v as [Tensor, boolean]; }, ['y', 'done']);
    }
    return y;
  };
  const w = fromArray([2, 3]);
  const { graph, call } = run(f, [fromArray([1, 1]), w]);
  const nested = subgraphsOf(graph);
  assert.ok(nested.length >= 4, `sub-graphs: ${nested.map((s) => s.path).join('; ')}`);
  for (const x of [[1, 1], [3, 4], [-5, -6], [0.1, 0]]) {
    assert.deepEqual(call([fromArray(x), w])[0].toArray(), f(fromArray(x), w).toArray(), `x = [${x}]`);
  }
});

test('rules: branch outputs must agree; loop-carried values keep their type; reading a traced value breaks the graph', () => {
  const shape = (x: Tensor) => {
    let y: Tensor = x;
    convertIfElse(ops.sum(x).greater(0), () => { y = ops.concat([x, x], 0); }, () => {}, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
    return y;
  };
  assert.throws(() => trace(shape, [fromArray([1])]), (e: unknown) => e instanceof ControlFlowError &&
    /variable "y" is a tensor f32\[2\] in the then-branch but a tensor f32\[1\] in the else-branch; .*same shape and dtype/.test((e as Error).message));
  const oneSided = (x: Tensor) => {
    let y: Tensor | undefined;
    convertIfElse(ops.sum(x).greater(0), () => { y = x; }, () => {}, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
    return y!;
  };
  assert.throws(() => trace(oneSided, [fromArray([1])]), /variable "y" is a tensor f32\[1\] in the then-branch but undefined \(not assigned\) in the else-branch; .*give it a value before the branch/);
  const label = (x: Tensor) => {
    let s = 'none';
    convertIfElse(ops.sum(x).greater(0), () => { s = 'pos'; }, () => { s = 'neg'; }, () => [s], (v) => { [s] = v as [string]; }, ['s']);
    return x;
  };
  assert.throws(() => trace(label, [fromArray([1])]), /variable "s" is string "pos" in the then-branch but string "neg" in the else-branch; a JavaScript value cannot depend on a tensor condition/);
  const grow = (x: Tensor) => {
    let y = x;
    convertWhile(() => ops.sum(y).less(100), () => { y = ops.concat([y, y], 0); }, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
    return y;
  };
  assert.throws(() => trace(grow, [fromArray([1])]), /loop variable "y" is a tensor f32\[1\] before the loop body but a tensor f32\[2\] after it; a loop-carried tensor must keep its shape and dtype/);
  const read = (x: Tensor) => (toBool(ops.sum(x).greater(0)) ? x : x.neg());
  assert.throws(() => trace(read, [fromArray([1])]), (e: unknown) => e instanceof GraphBreakError && /runtime\.test\.ts:\d+/.test((e as Error).message));
  const wide = (x: Tensor) => convertIfElse(x.greater(0), () => x, () => x.neg());
  assert.throws(() => trace(wide, [fromArray([1, 2])]), /the condition .* is a tensor of shape \[2\]; a branch or loop condition needs exactly one element/);
});

test('ternary form: the branch result is the output; && / || / ! on traced tensors give bool tensors', () => {
  const f = (x: Tensor): Tensor => {
    const s = ops.sum(x);
    const p = logicalAnd(s.greater(-5), () => logicalNot(s.greater(5))) as Tensor;
    return convertIfElse(p, () => x.mul(10), () => full([2], 7));
  };
  const { call } = run(f, [fromArray([1, 2])]);
  for (const x of [[1, 2], [10, 1], [-10, 1], [-2, -2]]) assert.deepEqual(call([fromArray(x)])[0].toArray(), f(fromArray(x)).toArray(), `x = [${x}]`);
});

test('dynamic dims: branches and loop bodies become symbolic too; one graph serves every size', () => {
  const f = (x: Tensor): Tensor => {
    let y = x;
    convertIfElse(ops.sum(x).greater(0), () => { y = x.mul(3).reshape([-1, 1]).reshape([x.shape[0]]); }, () => { y = x.neg(); }, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
    convertWhile(() => ops.max(y).greater(1), () => { y = y.mul(0.5); }, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
    return y;
  };
  const r = trace(f, [fromArray([1, 2, 3])], { inputSpec: [{ shape: ['n'] }] });
  const text = r.graph.print();
  assert.match(text, /then: graph \{\n\s+input %0: f32\[n\]/);
  assert.match(text, /reshape\(%\d+\) \{shape=\[n\]\}/, 'a reshape to x.shape[0] inside the branch is symbolic');
  for (const x of [[1, 2], [-1, -2, -3, -4, -5], [0.5], [9, -1, 3, 3, 3, 3, 3]]) {
    assert.deepEqual(interpret(r.graph, [fromArray(x)], r.constants)[0].toArray(), f(fromArray(x)).toArray(), `x = [${x}]`);
  }
});
