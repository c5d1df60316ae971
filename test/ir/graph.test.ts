import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops/index.js';
import { Graph, GraphVerifyError, IR_FORMAT, type GraphJSON } from '../../src/ir/index.js';

/** x[batch, 4] -> linear(x, @fc.weight, @fc.bias) -> add 1 -> relu -> split in two along the last dim. */
function smallGraph(): Graph {
  const g = new Graph();
  const x = g.addInput('x', 'f32', ['batch', 4]);
  const w = g.addConstant({ name: 'fc.weight', kind: 'param', dtype: 'f32', shape: [6, 4] });
  const b = g.addConstant({ name: 'fc.bias', kind: 'param', dtype: 'f32', shape: [6] });
  const one = g.addConstant({ name: 'lit0', kind: 'literal', dtype: 'f32', shape: [], data: [1] });
  const [h] = g.addNode('linear', [x, w, b], {}, [{ dtype: 'f32', shape: ['batch', 6] }], 'model.ts:12:7');
  const [h1] = g.addNode('add', [h, one], {}, [{ dtype: 'f32', shape: ['batch', 6] }], 'model.ts:13:7');
  const [r] = g.addNode('relu', [h1], {}, [{ dtype: 'f32', shape: ['batch', 6] }]);
  const [s0, s1] = g.addNode('split', [r], { axis: 1, sizes: [2, 4] }, [{ dtype: 'f32', shape: ['batch', 2] }, { dtype: 'f32', shape: ['batch', 4] }], 'model.ts:15:3');
  g.addOutput('out[0]', s0);
  g.addOutput('out[1]', s1);
  return g;
}

const verifyFails = (g: Graph, pattern: RegExp): void => {
  assert.throws(() => g.verify(), (e: unknown) => e instanceof GraphVerifyError && pattern.test(e.message), `expected ${pattern}`);
};

test('a well-formed graph verifies', () => {
  smallGraph().verify();
});

test('verify catches dangling values', () => {
  const g = smallGraph();
  g.nodes[1].inputs[0] = 99;
  verifyFails(g, /node 1 \(add at model\.ts:13:7\): input 0 refers to %99, which is not a value of the graph \(dangling\)/);

  const g2 = smallGraph();
  g2.outputs[0].value = 42;
  verifyFails(g2, /output "out\[0\]" refers to %42, which is not a value of the graph/);

  const g3 = smallGraph();
  g3.addValue('f32', [3]);
  verifyFails(g3, /value %\d+ is never defined \(dangling/);
});

test('verify catches a value defined twice (SSA)', () => {
  const g = smallGraph();
  g.nodes[2].outputs = [...g.nodes[1].outputs];
  verifyFails(g, /value %\d+ is defined twice: by node 1 \(add at model\.ts:13:7\) and by node 2 \(relu\)/);
  const g2 = smallGraph();
  g2.constants[0].value = g2.inputs[0].value;
  verifyFails(g2, /is defined twice: by input 0 \("x"\) and by constant @fc\.weight/);
});

test('verify catches nodes out of topological order', () => {
  const g = smallGraph();
  [g.nodes[1], g.nodes[2]] = [g.nodes[2], g.nodes[1]];
  verifyFails(g, /node 1 \(relu\): input 0 uses %\d+ before it is defined \(by node 2, add\); nodes must be in topological order/);
});

test('verify catches unknown ops, bad attributes and wrong arity', () => {
  const g = smallGraph();
  g.nodes[2].op = 'frobnicate';
  verifyFails(g, /node 2 \(frobnicate\): unknown op "frobnicate"/);
  const g2 = smallGraph();
  g2.nodes[3].attrs = { axis: 1, sizes: [2, 4], bogus: 1 };
  verifyFails(g2, /node 3 \(split at model\.ts:15:3\): bad attributes: split: unknown attribute "bogus"/);
  const g3 = smallGraph();
  g3.nodes[1].inputs = [g3.nodes[1].inputs[0]];
  verifyFails(g3, /node 1 \(add at model\.ts:13:7\): has 1 inputs but the op takes \(a, b\)/);
});

test('verify re-runs shape inference and compares dtype and shape', () => {
  const g = smallGraph();
  g.value(g.nodes[2].outputs[0]).shape = ['batch', 7];
  verifyFails(g, /node 2 \(relu\): output 0 \(%\d+\) is recorded as f32\[batch, 7\] but inference gives f32\[batch, 6\]/);
  const g2 = smallGraph();
  g2.value(g2.nodes[2].outputs[0]).dtype = 'f16';
  verifyFails(g2, /recorded as f16\[batch, 6\] but inference gives f32\[batch, 6\]/);
  const g3 = smallGraph();
  g3.nodes[3].attrs = { axis: 1, sizes: [3, 4] };
  verifyFails(g3, /node 3 \(split at model\.ts:15:3\): shape inference fails on the recorded inputs: split/);
  const g4 = smallGraph();
  g4.nodes[3].outputs.pop();
  verifyFails(g4, /node 3 \(split at model\.ts:15:3\): records 1 outputs but inference gives 2/);
});

test('verify checks constants', () => {
  const g = smallGraph();
  g.constants[2].data = [1, 2];
  verifyFails(g, /literal constant @lit0 holds 2 values but its shape \[\] needs 1/);
  const g2 = smallGraph();
  g2.constants[0].data = [0];
  verifyFails(g2, /parameter constant @fc\.weight carries data/);
  const g3 = smallGraph();
  g3.constants[1].shape = [7];
  verifyFails(g3, /constant @fc\.bias is f32\[7\] but its value %\d+ is f32\[6\]/);
});

test('the printer shows one readable line per input, constant, node and output', () => {
  const expected = [
    'graph {',
    '  input %0: f32[batch, 4]  "x"',
    '  param @fc.weight %1: f32[6, 4]',
    '  param @fc.bias %2: f32[6]',
    '  literal @lit0 %3: f32[] = 1',
    '  %4: f32[batch, 6] = linear(%0, @fc.weight, @fc.bias)  # model.ts:12:7',
    '  %5: f32[batch, 6] = add(%4, @lit0)  # model.ts:13:7',
    '  %6: f32[batch, 6] = relu(%5)',
    '  %7: f32[batch, 2], %8: f32[batch, 4] = split(%6) {axis=1, sizes=[2, 4]}  # model.ts:15:3',
    '  return %7 "out[0]", %8 "out[1]"',
    '}',
  ].join('\n');
  assert.equal(smallGraph().print(), expected);
  assert.equal(smallGraph().print({ source: false }).includes('#'), false);
});

test('the printer formats float attributes, absent inputs and long literals compactly', () => {
  const g = new Graph();
  const x = g.addInput('x', 'f32', [2, 3]);
  const w = g.addConstant({ name: 'lit0', kind: 'literal', dtype: 'f32', shape: [3], data: [1, 2, 3] });
  const big = g.addConstant({ name: 'lit1', kind: 'literal', dtype: 'f32', shape: [10], data: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] });
  const [y] = g.addNode('layer_norm', [x, w, null], { normalized_ndim: 1, eps: 1e-5 }, [{ dtype: 'f32', shape: [2, 3] }]);
  g.addOutput('out', y);
  g.addOutput('table', big);
  g.verify();
  assert.equal(g.print(), [
    'graph {',
    '  input %0: f32[2, 3]  "x"',
    '  literal @lit0 %1: f32[3] = [1, 2, 3]',
    '  literal @lit1 %2: f32[10] = [0, 1, 2, 3, 4, 5, 6, 7, …] (10 values)',
    '  %3: f32[2, 3] = layer_norm(%0, @lit0, none) {normalized_ndim=1, eps=1e-5}',
    '  return %3 "out", @lit1 "table"',
    '}',
  ].join('\n'));
});

test('JSON round trip is exact, including NaN, infinities, -0 and symbolic dims', () => {
  const g = smallGraph();
  const x2 = g.addInput('mask', 'f32', [6]);
  const special = g.addConstant({ name: 'lit1', kind: 'literal', dtype: 'f32', shape: [4], data: [NaN, Infinity, -Infinity, -0] });
  const [m] = g.addNode('add', [x2, g.constants[2].value], {}, [{ dtype: 'f32', shape: [6] }]);
  const [p] = g.addNode('pad', [special], { pads: [1, 1], mode: 'constant', value: -Infinity }, [{ dtype: 'f32', shape: [6] }]);
  const [r] = g.addNode('reshape', [g.nodes[2].outputs[0]], { shape: ['batch', 2, 3] }, [{ dtype: 'f32', shape: ['batch', 2, 3] }]);
  g.addOutput('m', m); g.addOutput('p', p); g.addOutput('r', r);
  g.verify();

  const json = g.toJSON();
  const text = JSON.stringify(json);
  const back = Graph.fromJSON(JSON.parse(text));
  back.verify();
  assert.deepEqual(back.toJSON(), json);
  assert.equal(JSON.stringify(back.toJSON()), text);
  assert.equal(back.print(), g.print());
  assert.equal(back.hash(), g.hash());
  const data = back.constants.find((c) => c.name === 'lit1')!.data!;
  assert.ok(Number.isNaN(data[0]));
  assert.equal(data[1], Infinity);
  assert.equal(data[2], -Infinity);
  assert.ok(Object.is(data[3], -0));
  assert.equal(back.nodes.find((n) => n.op === 'pad')!.attrs.value, -Infinity);
  // new values get fresh ids after a round trip
  const id = back.addValue('f32', [1]);
  assert.ok(!g.values.has(id) || id > Math.max(...g.values.keys()));
});

test('fromJSON rejects other formats and malformed fields with a specific message', () => {
  assert.throws(() => Graph.fromJSON({ format: 'onnx' }), /Graph\.fromJSON: not an inferjit graph \(format is "onnx"/);
  const json = smallGraph().toJSON();
  assert.throws(() => Graph.fromJSON({ ...json, version: 99 }), /graph format version 99 is not supported/);
  const bad = JSON.parse(JSON.stringify(json)) as GraphJSON;
  (bad.nodes[1] as { op: unknown }).op = 5;
  assert.throws(() => Graph.fromJSON(bad), /Graph\.fromJSON: nodes\[1\]\.op must be a string, got 5/);
  const bad2 = JSON.parse(JSON.stringify(json)) as GraphJSON;
  (bad2.values[0] as { shape: unknown }).shape = [2.5];
  assert.throws(() => Graph.fromJSON(bad2), /values\[0\]\.shape\[0\] must be an integer or a dim name, got 2\.5/);
  assert.equal(json.format, IR_FORMAT);
});

/** The same computation as smallGraph() built in a different order, with different value ids. */
function renumberedGraph(): Graph {
  const g = new Graph();
  for (let i = 0; i < 5; i++) g.addValue('f32', [1]); // burn ids 0..4
  g.values.clear();
  const one = g.addConstant({ name: 'lit7', kind: 'literal', dtype: 'f32', shape: [], data: [1] });
  const b = g.addConstant({ name: 'fc.bias', kind: 'param', dtype: 'f32', shape: [6] });
  const x = g.addInput('x', 'f32', ['batch', 4]);
  const w = g.addConstant({ name: 'fc.weight', kind: 'param', dtype: 'f32', shape: [6, 4] });
  const [h] = g.addNode('linear', [x, w, b], {}, [{ dtype: 'f32', shape: ['batch', 6] }], 'elsewhere.ts:1:1');
  const [h1] = g.addNode('add', [h, one], {}, [{ dtype: 'f32', shape: ['batch', 6] }]);
  const [r] = g.addNode('relu', [h1], {}, [{ dtype: 'f32', shape: ['batch', 6] }]);
  const [s0, s1] = g.addNode('split', [r], { sizes: [2, 4], axis: 1 }, [{ dtype: 'f32', shape: ['batch', 2] }, { dtype: 'f32', shape: ['batch', 4] }]);
  g.addOutput('out[0]', s0);
  g.addOutput('out[1]', s1);
  return g;
}

test('hash ignores value ids, constant order, literal names, attribute key order and sources', () => {
  const a = smallGraph(), b = renumberedGraph();
  b.verify();
  assert.notEqual(a.print(), b.print());
  assert.equal(a.hash(), b.hash());
  assert.match(a.hash(), /^[0-9a-f]{64}$/);
});

test('hash ignores the order of independent nodes', () => {
  const build = (swap: boolean): Graph => {
    const g = new Graph();
    const x = g.addInput('x', 'f32', [3]);
    const make = [() => g.addNode('exp', [x], {}, [{ dtype: 'f32', shape: [3] }])[0], () => g.addNode('relu', [x], {}, [{ dtype: 'f32', shape: [3] }])[0]];
    const [p, q] = swap ? [make[1](), make[0]()].reverse() : [make[0](), make[1]()];
    g.addOutput('out', g.addNode('add', [p, q], {}, [{ dtype: 'f32', shape: [3] }])[0]);
    return g;
  };
  assert.equal(build(false).hash(), build(true).hash());
});

test('hash changes with attributes, parameter names and shapes, literal values, dims and wiring', () => {
  const base = smallGraph().hash();
  const attr = smallGraph(); attr.nodes[3].attrs = { axis: 1, sizes: [4, 2] };
  attr.value(attr.nodes[3].outputs[0]).shape = ['batch', 4]; attr.value(attr.nodes[3].outputs[1]).shape = ['batch', 2];
  attr.verify();
  assert.notEqual(attr.hash(), base);
  const name = smallGraph(); name.constants[0].name = 'other.weight';
  assert.notEqual(name.hash(), base);
  const lit = smallGraph(); lit.constants[2].data = [2];
  assert.notEqual(lit.hash(), base);
  const dim = smallGraph(); dim.value(dim.inputs[0].value).shape = ['n', 4];
  assert.notEqual(dim.hash(), base);
  const outs = smallGraph(); outs.outputs.reverse();
  assert.notEqual(outs.hash(), base);
  // equal dims spelled differently hash alike: batch*2 is 2*batch
  const g1 = new Graph(), g2 = new Graph();
  for (const [g, d] of [[g1, '2*batch'], [g2, 'batch*2']] as const) {
    const x = g.addInput('x', 'f32', [d]);
    g.addOutput('out', g.addNode('relu', [x], {}, [{ dtype: 'f32', shape: [d] }])[0]);
  }
  assert.equal(g1.hash(), g2.hash());
});

test('replaceAllUsesWith rewires node inputs and outputs; users() and producers() index the graph', () => {
  const g = smallGraph();
  const [h] = g.nodes[0].outputs;
  const relu = g.nodes[2];
  assert.deepEqual(g.users().get(h)!.map((n) => n.op), ['add']);
  assert.equal(g.producers().get(relu.outputs[0]), relu);
  const n = g.replaceAllUsesWith(g.nodes[1].outputs[0], h); // skip the add
  assert.equal(n, 1);
  assert.deepEqual(relu.inputs, [h]);
  g.nodes.splice(1, 1);
  g.values.delete(g.nodes[0].outputs[0] + 1); // the add's output
  g.constants.splice(2, 1);
  g.values.delete(3); // the literal
  g.verify();
});
