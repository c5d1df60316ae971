// The control-flow ops in the IR: verifier rules for cond / while_loop sub-graphs, printing,
// JSON round trips and canonical hashing with sub-graphs, the interpreter running them, and the
// passes (DCE, CSE, constant folding, the full pipeline) inside and around sub-graphs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops/index.js';
import { Graph, GraphVerifyError } from '../../src/ir/index.js';
import { fromArray, full } from '../../src/index.js';
import { interpret } from '../../src/backends/reference/index.js';
import { runPasses, optimize } from '../../src/passes/index.js';
import { dcePass } from '../../src/passes/dce.js';
import { csePass } from '../../src/passes/cse.js';
import { constantFoldPass } from '../../src/passes/constant-fold.js';
import type { DType } from '../../src/tensor/dtype.js';

const F = (shape: number[]): { dtype: DType; shape: number[] } => ({ dtype: 'f32', shape });

/** (x: f32[3]) -> x * 2 (or x + 1 when `plusOne`), as a closed branch graph. */
function branch(kind: 'mul2' | 'neg' | 'plus1', extra = false): Graph {
  const g = new Graph();
  const x = g.addInput('x', 'f32', [3]);
  let y: number;
  if (kind === 'neg') [y] = g.addNode('neg', [x], {}, [F([3])]);
  else {
    const c = g.addConstant({ name: 'lit0', kind: 'literal', dtype: 'f32', shape: [], data: [kind === 'mul2' ? 2 : 1] });
    [y] = g.addNode(kind === 'mul2' ? 'mul' : 'add', [x, c], {}, [F([3])]);
  }
  if (extra) g.addNode('exp', [x], {}, [F([3])]); // dead
  g.addOutput('out0', y);
  return g;
}

/** y = sum(x) > 0 ? x * 2 : -x */
function condGraph(thenG = branch('mul2'), elseG = branch('neg')): Graph {
  const g = new Graph();
  const x = g.addInput('x', 'f32', [3]);
  const [s] = g.addNode('sum', [x], { axes: [], keepdim: false }, [F([])]);
  const zero = g.addConstant({ name: 'zero', kind: 'literal', dtype: 'f32', shape: [], data: [0] });
  const [p] = g.addNode('greater', [s, zero], {}, [{ dtype: 'bool', shape: [] }]);
  const [y] = g.addNode('cond', [p, x], {}, [F([3])], 'model.ts:7:5');
  g.nodes[g.nodes.length - 1].graphs = { then: thenG, else: elseG };
  g.addOutput('y', y);
  return g;
}

/** while (sum(x*x) > tol) x = x * 0.5, with tol an invariant operand. */
function whileGraph(): Graph {
  const cond = new Graph();
  {
    const x = cond.addInput('x', 'f32', [3]);
    const tol = cond.addInput('tol', 'f32', []);
    const [sq] = cond.addNode('mul', [x, x], {}, [F([3])]);
    const [s] = cond.addNode('sum', [sq], { axes: [], keepdim: false }, [F([])]);
    const [p] = cond.addNode('greater', [s, tol], {}, [{ dtype: 'bool', shape: [] }]);
    cond.addOutput('cond', p);
  }
  const body = new Graph();
  {
    const x = body.addInput('x', 'f32', [3]);
    body.addInput('tol', 'f32', []);
    const half = body.addConstant({ name: 'lit0', kind: 'literal', dtype: 'f32', shape: [], data: [0.5] });
    const [y] = body.addNode('mul', [x, half], {}, [F([3])]);
    body.addOutput('x', y);
  }
  const g = new Graph();
  const x = g.addInput('x', 'f32', [3]);
  const tol = g.addInput('tol', 'f32', []);
  const [y] = g.addNode('while_loop', [x, tol], { carried: 1 }, [F([3])]);
  g.nodes[0].graphs = { cond, body };
  g.addOutput('y', y);
  return g;
}

const fails = (g: Graph, pattern: RegExp): void => {
  assert.throws(() => g.verify(), (e: unknown) => e instanceof GraphVerifyError && pattern.test(e.message), `expected ${pattern}`);
};

test('cond and while_loop graphs verify', () => {
  condGraph().verify();
  whileGraph().verify();
});

test('verify: branch outputs must match, sub-graphs must take the operands, the predicate is a one-element bool', () => {
  const wide = new Graph();
  const x = wide.addInput('x', 'f32', [3]);
  const [c] = wide.addNode('concat', [x, x], { axis: 0 }, [F([6])]);
  wide.addOutput('out0', c);
  fails(condGraph(branch('mul2'), wide), /node 2 \(cond at model\.ts:7:5\).*else-branch output 0 is f32\[6\] but then-branch output 0 is f32\[3\]/);

  const g = condGraph();
  g.nodes[2].graphs = { then: branch('mul2') };
  fails(g, /has sub-graphs \[then\] but the op takes \[then, else\]/);

  const noArg = new Graph();
  const k = noArg.addConstant({ name: 'k', kind: 'literal', dtype: 'f32', shape: [3], data: [1, 2, 3] });
  noArg.addOutput('out0', k);
  fails(condGraph(branch('mul2'), noArg), /else-branch input has 0 values but operand has 1/);

  const g2 = condGraph();
  g2.nodes[2].inputs[0] = g2.nodes[0].outputs[0]; // f32 sum instead of the bool
  fails(g2, /the predicate must be bool, got f32\[\]/);

  const bad = branch('mul2');
  bad.nodes[0].inputs[0] = 77;
  fails(condGraph(bad), /sub-graph "then": node 0 \(mul\): input 0 refers to %77/);
});

test('verify: loop-carried types are invariant and the condition returns one bool', () => {
  const g = whileGraph();
  const body = g.nodes[0].graphs!.body;
  const [wide] = body.addNode('concat', [body.outputs[0].value, body.outputs[0].value], { axis: 0 }, [F([6])]);
  body.outputs[0].value = wide;
  fails(g, /body output 0 is f32\[6\] but loop-carried value \(types must not change across iterations\) 0 is f32\[3\]/);

  const g2 = whileGraph();
  const cond = g2.nodes[0].graphs!.cond;
  cond.outputs[0].value = cond.inputs[0].value;
  fails(g2, /the condition result must be bool, got f32\[3\]/);

  const g3 = whileGraph();
  g3.nodes[0].attrs = { carried: 3 };
  fails(g3, /carried is 3 but there are 2 operands/);
});

test('print shows sub-graphs under their node; JSON round trip keeps them; hash covers them', () => {
  const g = condGraph();
  const text = g.print();
  assert.match(text, /%\d+: f32\[3\] = cond\(%\d+, %0\)  # model\.ts:7:5\n    then: graph \{\n      input %0: f32\[3\]  "x"/);
  assert.match(text, /    else: graph \{[\s\S]*= neg\(%0\)/);
  const back = Graph.fromJSON(JSON.parse(JSON.stringify(g.toJSON())));
  back.verify();
  assert.equal(back.print(), text);
  assert.equal(back.hash(), g.hash());
  assert.equal(g.clone().hash(), g.hash());
  // a different branch body changes the hash; swapping the branches too
  assert.notEqual(condGraph(branch('plus1')).hash(), g.hash());
  assert.notEqual(condGraph(branch('neg'), branch('mul2')).hash(), g.hash());
  const w = whileGraph();
  assert.equal(Graph.fromJSON(w.toJSON()).hash(), w.hash());
  assert.throws(() => Graph.fromJSON({ ...g.toJSON(), nodes: g.toJSON().nodes.map((n) => (n.graphs ? { ...n, graphs: { then: { format: 'x' } } } : n)) }),
    /nodes\[2\]\.graphs\.then: not an inferjit graph/);
});

test('the interpreter runs cond (both paths) and while_loop', () => {
  const g = condGraph();
  assert.deepEqual(interpret(g, [fromArray([1, 2, 3])], new Map())[0].toArray(), [2, 4, 6]);
  assert.deepEqual(interpret(g, [fromArray([1, -5, 3])], new Map())[0].toArray(), [-1, 5, -3]);
  const w = whileGraph();
  assert.deepEqual(interpret(w, [fromArray([4, 0, 0]), full([], 1)], new Map())[0].toArray(), [1, 0, 0]);
  assert.deepEqual(interpret(w, [fromArray([0.5, 0, 0]), full([], 1)], new Map())[0].toArray(), [0.5, 0, 0]); // zero iterations
});

test('DCE and CSE work inside sub-graphs; CSE merges equal control nodes only', () => {
  const dup = branch('mul2', true);
  const [a] = dup.addNode('neg', [dup.inputs[0].value], {}, [F([3])]);
  const [b] = dup.addNode('neg', [dup.inputs[0].value], {}, [F([3])]);
  const [s] = dup.addNode('add', [a, b], {}, [F([3])]);
  dup.outputs[0].value = s;
  const g = condGraph(dup);
  const out = runPasses(g, [csePass, dcePass], { verify: true }).graph;
  const then = out.nodes.find((n) => n.op === 'cond')!.graphs!.then;
  assert.equal(then.nodes.filter((n) => n.op === 'neg').length, 1, then.print());
  assert.equal(then.nodes.some((n) => n.op === 'exp' || n.op === 'mul'), false, 'dead nodes in the branch are removed');
  assert.deepEqual(interpret(out, [fromArray([1, 2, 3])], new Map())[0].toArray(), [-2, -4, -6]);

  // two conds: identical ones merge, different ones stay
  const two = (second: Graph): Graph => {
    const h = condGraph();
    const c = h.nodes[2];
    const [y2] = h.addNode('cond', [...c.inputs], {}, [F([3])]);
    h.nodes[h.nodes.length - 1].graphs = { then: second, else: branch('neg') };
    const [sum] = h.addNode('add', [c.outputs[0], y2], {}, [F([3])]);
    h.outputs[0].value = sum;
    return h;
  };
  const same = runPasses(two(branch('mul2')), [csePass, dcePass], { verify: true }).graph;
  assert.equal(same.nodes.filter((n) => n.op === 'cond').length, 1);
  const differ = runPasses(two(branch('plus1')), [csePass, dcePass], { verify: true }).graph;
  assert.equal(differ.nodes.filter((n) => n.op === 'cond').length, 2);
  assert.deepEqual(interpret(differ, [fromArray([1, 2, 3])], new Map())[0].toArray(), [4, 7, 10]);
});

test('constant folding skips control nodes with literal operands; the full pipeline keeps results', () => {
  const g = new Graph();
  const t = g.addConstant({ name: 't', kind: 'literal', dtype: 'bool', shape: [], data: [1] });
  const x = g.addConstant({ name: 'x', kind: 'literal', dtype: 'f32', shape: [3], data: [1, 2, 3] });
  const [y] = g.addNode('cond', [t, x], {}, [F([3])]);
  g.nodes[0].graphs = { then: branch('mul2'), else: branch('neg') };
  g.addOutput('y', y);
  const folded = runPasses(g, [constantFoldPass], { verify: true }).graph;
  assert.equal(folded.nodes[0].op, 'cond');
  assert.deepEqual(interpret(folded, [], new Map())[0].toArray(), [2, 4, 6]);
  for (const graph of [condGraph(), whileGraph()]) {
    const o = optimize(graph, { verify: true });
    const inputs = graph.inputs.length === 1 ? [fromArray([3, -1, 2])] : [fromArray([3, -1, 2]), full([], 0.1)];
    assert.deepEqual(interpret(o, inputs, new Map())[0].toArray(), interpret(graph, inputs, new Map())[0].toArray());
  }
});
