// The pattern matcher: op names, commutative inputs, repeated captures that must agree,
// single-use conditions, alternatives and optional inputs, attribute predicates, and the rule
// driver (declined rewrites leave no trace; rules run to a fixpoint).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/ir/graph.js';
import { P, GraphView, matchAt, applyRules, type Rule } from '../../src/passes/pattern.js';
import { ANY_TARGET } from '../../src/passes/manager.js';
import { emit1 } from '../../src/passes/rewrite.js';
import { traced, rnd, ops, run } from './helpers.js';
import { layerNorm } from '../../src/ops/api.js';

const ctx = { target: ANY_TARGET, verify: true };

test('commutative inputs match in either order; non-commutative ones do not', () => {
  const t = traced((x) => x.exp().add(x), [rnd([2, 3], 1)]);
  const view = new GraphView(t.graph);
  const root = t.graph.nodes[1].outputs[0];
  const pat = (commutative: boolean) => P.op('add', [P.any('y'), P.op('exp', [P.any('x')])], { commutative });
  assert.equal(matchAt(view, pat(false), root), null); // exp is input 0, the pattern wants it at 1
  const m = matchAt(view, pat(true), root)!;
  assert.equal(m.v('x'), t.graph.inputs[0].value);
  assert.equal(m.v('y'), t.graph.inputs[0].value);
});

test('a name captured twice must bind the same value', () => {
  const same = traced((x) => x.sub(x.mean(-1, true)), [rnd([2, 3], 2)]);
  const other = traced((x, y) => x.sub(y.mean(-1, true)), [rnd([2, 3], 3), rnd([2, 3], 4)]);
  const pat = P.op('sub', [P.any('x'), P.op('mean', [P.any('x')])]);
  const at = (g: Graph) => matchAt(new GraphView(g), pat, g.nodes[g.nodes.length - 1].outputs[0]);
  assert.ok(at(same.graph));
  assert.equal(at(other.graph), null);
});

test('singleUse rejects values with a second reader or that are graph outputs', () => {
  const shared = traced((x) => { const e = x.exp(); return e.add(1).mul(e); }, [rnd([3], 5)]);
  const single = traced((x) => x.exp().add(1), [rnd([3], 6)]);
  const pat = P.op('add', [P.op('exp', [P.any()], { singleUse: true }), P.scalar('c')]);
  const addOf = (g: Graph) => g.nodes.find((n) => n.op === 'add')!.outputs[0];
  assert.equal(matchAt(new GraphView(shared.graph), pat, addOf(shared.graph)), null);
  const m = matchAt(new GraphView(single.graph), pat, addOf(single.graph))!;
  assert.equal(m.scalar('c'), 1);
});

test('alternatives, optional inputs, attribute predicates and node captures', () => {
  const t = traced((x, w) => layerNorm(x, 3, w, null), [rnd([2, 3], 7), rnd([3], 8)]);
  const view = new GraphView(t.graph);
  const root = t.graph.nodes[0].outputs[0];
  const ln = (eps: number) => P.op('layer_norm', [P.any('x'), P.opt(P.any('w')), P.opt(P.any('b'))], { name: 'ln', attrs: (a) => a.eps === eps });
  assert.equal(matchAt(view, ln(1e-3), root), null);
  const m = matchAt(view, ln(1e-5), root)!;
  assert.equal(m.opt('w'), t.graph.inputs[1].value);
  assert.equal(m.opt('b'), null);
  assert.equal(m.node('ln').op, 'layer_norm');
  assert.ok(matchAt(view, P.op('layer_norm', [P.any(), P.alt(P.none(), P.any('w')), P.none()]), root));
});

test('the rule driver runs to a fixpoint and a declined rewrite leaves the graph untouched', () => {
  // neg(neg(neg(neg(x)))) -> x needs two firings of one rule
  const t = traced((x) => x.neg().neg().neg().neg().exp(), [rnd([4], 9)]);
  const g = t.graph.clone();
  const rules: Rule[] = [{ name: 'neg-neg', pattern: P.op('neg', [P.op('neg', [P.any('x')])]), rewrite: (m) => m.v('x') }];
  assert.equal(applyRules(g, rules, ctx), 2);
  assert.deepEqual(ops(g), ['exp']);
  // a rule that emits a node and then declines must not leave the node (or its value) behind
  const g2 = t.graph.clone();
  const valuesBefore = g2.values.size;
  const declining: Rule[] = [{ name: 'decline', pattern: P.op('exp'), rewrite: (m, rw) => { rw.emit1('relu', [m.root.inputs[0]]); return null; } }];
  assert.equal(applyRules(g2, declining, ctx), 0);
  assert.equal(g2.values.size, valuesBefore);
  g2.verify();
  assert.deepEqual(run(g2, t.inputs, t.constants)[0].toArray(), run(t.graph, t.inputs, t.constants)[0].toArray());
});

test('a replacement with another type is refused loudly (a broken rule, not a silent miscompile)', () => {
  const t = traced((x) => x.sum([1]), [rnd([2, 3], 10)]);
  const g = t.graph.clone();
  const bad: Rule[] = [{ name: 'bad', pattern: P.op('sum'), rewrite: (m) => m.root.inputs[0]! }];
  assert.throws(() => applyRules(g, bad, ctx), /rule bad: replacement %0 is f32\[2, 3\] but %\d+ is f32\[2\]/);
});

test('emit() types new nodes with the op\'s own shape inference', () => {
  const g = new Graph();
  const x = g.addInput('x', 'f32', ['b', 4]);
  const y = emit1(g, 'reshape', [x], { shape: ['b', 2, 2] });
  assert.deepEqual(g.meta(y), { dtype: 'f32', shape: ['b', 2, 2] });
  const z = g.addInput('z', 'f32', [3, 5]);
  assert.throws(() => emit1(g, 'matmul', [x, z]), /matmul: inner dims differ/);
});
