// Whole-model ONNX export: the traced two-block transformer runs in onnxruntime-node and matches
// eager execution at two dynamic sizes; names, dim_params, initializers and external data are
// checked on the decoded model; ONNX Runtime loads it without any warning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randn, manualSeed } from '../../src/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { trace } from '../../src/trace/index.js';
import { Graph } from '../../src/ir/index.js';
import { defineOp } from '../../src/ops/registry.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { exportOnnx, exportGraphToBytes, exportModel, parameterNames } from '../../src/onnx/index.js';
import { decodeModel } from '../../src/onnx/proto.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../src/backends/onnxruntime/index.js';
import { TinyTransformer } from '../../examples/models/transformer.js';

// f32 through ~40 ops (two attention blocks, LayerNorms, GELU MLPs) with values of order 1: ONNX
// Runtime's f32 arithmetic vs the f64 reference differs by well under 1e-4.
const TOL = 1e-4;

function maxDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape]);
  const x = a.toFlatArray(), y = b.toFlatArray();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

const dir = mkdtempSync(join(tmpdir(), 'inferjit-onnx-test-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

manualSeed(7);
const model = new TinyTransformer({ dim: 16, heads: 4, depth: 2, kvHeads: 2, causal: true });
const example = randn([2, 5, 16], { seed: 11 });
const traced = trace((x: Tensor) => model.forward(x), [example], { inputSpec: [{ shape: ['batch', 'seq', 16] }], module: model });
const eager = (x: Tensor): Tensor => withEagerBackend('reference', () => model.forward(x));

test('two-block transformer (GQA, causal) exported to ONNX matches eager at two dynamic sizes', () => {
  const path = join(dir, 'transformer.onnx');
  const file = exportOnnx(traced, path, { inputNames: ['x'], outputNames: ['y'] });
  assert.equal(file.path, path);
  assert.equal(file.dataPath, null);
  const { inputs, outputs } = graphIO(traced.graph, { inputNames: ['x'], outputNames: ['y'] });
  for (const level of ['disabled', 'all'] as const) {
    const session = new OrtSession(path, { graphOptimizationLevel: level }, inputs, outputs);
    for (const shape of [[2, 5, 16], [3, 9, 16]]) {
      const x = randn(shape, { seed: shape[1] });
      const [y] = session.runSync([x]);
      const d = maxDiff(y, eager(x));
      assert.ok(d < TOL, `optimization ${level}, input [${shape}]: max |onnx - eager| = ${d}`);
    }
    session.dispose();
  }
});

test('the exported model declares names, dim_params, opset 18 and parameters as initializers', () => {
  const m = decodeModel(exportGraphToBytes(traced.graph, traced.constants).bytes);
  assert.equal(m.ir_version, 8);
  assert.deepEqual(m.opset_import.map((o) => [o.domain ?? '', o.version]), [['', 18]]);
  assert.deepEqual(m.graph.input.map((i) => i.name), ['arg0']);
  assert.deepEqual(m.graph.output.map((o) => o.name), ['out']);
  assert.deepEqual(m.graph.input[0].type.tensor_type.shape.dim, [{ dim_param: 'batch' }, { dim_param: 'seq' }, { dim_value: 16 }]);
  assert.deepEqual(m.graph.output[0].type.tensor_type.shape.dim, [{ dim_param: 'batch' }, { dim_param: 'seq' }, { dim_value: 16 }]);
  const inits = new Map(m.graph.initializer.map((t) => [t.name, t]));
  for (const [name, t] of traced.constants) {
    const init = inits.get(name);
    assert.ok(init, `parameter ${name} is an initializer`);
    assert.deepEqual(init.dims, [...t.shape]);
    assert.deepEqual(new Float32Array(new Uint8Array(init.raw_data!).buffer), t.data);
  }
  // every node is a standard ONNX operator, in the default domain
  assert.ok(m.graph.node.every((n) => !n.domain), 'no custom-domain nodes');
  const opTypes = new Set(m.graph.node.map((n) => n.op_type));
  for (const op of ['LayerNormalization', 'MatMul', 'Softmax', 'Erf']) assert.ok(opTypes.has(op), `uses ${op}`);
  // node doc strings carry the user's source line
  assert.ok(m.graph.node.some((n) => /transformer\.ts:\d+/.test(n.doc_string ?? '')));
});

/** Loads a model in a child process at ONNX Runtime's info log level; returns what it printed.
 *  (ONNX Runtime logs from native code straight to stderr.) */
function loadAndLog(path: string): { loaded: boolean; text: string; warnings: string[] } {
  const script = `
    const ort = require('onnxruntime-node');
    ort.InferenceSession.create(${JSON.stringify(path)}, { logSeverityLevel: 1, graphOptimizationLevel: 'all' })
      .then(() => console.log('LOADED'), (e) => { console.log('FAILED ' + e.message); process.exitCode = 1; });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', cwd: process.cwd() });
  const text = `${r.stdout}\n${r.stderr}`;
  return { loaded: /LOADED/.test(r.stdout), text, warnings: text.split('\n').filter((l) => /\[W:|\[E:|unknown op|not a registered|Unrecognized/i.test(l)) };
}

test('onnxruntime loads the exported model without warnings (no unknown ops, clean shapes)', () => {
  const path = join(dir, 'check.onnx');
  exportOnnx(traced, path);
  const r = loadAndLog(path);
  assert.ok(r.loaded, r.text);
  assert.match(r.text, /\[I:onnxruntime/, 'info-level logging reached us (so an absence of warnings means something)');
  assert.deepEqual(r.warnings, [], 'ONNX Runtime printed warnings while loading');
  // control: a model with an unused initializer does make ONNX Runtime warn, and we see it
  const g = new Graph();
  const a = g.addInput('a', 'f32', [2]);
  g.addConstant({ name: 'unused', kind: 'literal', dtype: 'f32', shape: [2], data: [1, 2] });
  g.addOutput('b', g.addNode('neg', [a], {}, [{ dtype: 'f32', shape: [2] }])[0]);
  const control = join(dir, 'control.onnx');
  exportOnnx(g, control);
  assert.ok(loadAndLog(control).warnings.length > 0, 'the warning detector sees a real warning');
});

test('external data: a lowered threshold moves initializers to <model>.onnx.data and the model still runs', () => {
  const path = join(dir, 'external.onnx');
  const file = exportOnnx(traced, path, { externalDataThreshold: 1024 });
  assert.equal(file.dataPath, `${path}.data`);
  assert.ok(existsSync(file.dataPath!));
  const m = decodeModel(readFileSync(path));
  const external = m.graph.initializer.filter((t) => t.data_location === 1);
  assert.ok(external.length > 0);
  for (const t of external) {
    const kv = Object.fromEntries(t.external_data!.map((e) => [e.key, e.value]));
    assert.equal(kv.location, 'external.onnx.data');
    assert.equal(Number(kv.offset) % 4096, 0, 'page-aligned offsets');
    assert.equal(t.raw_data, undefined);
    const bytes = readFileSync(file.dataPath!).subarray(Number(kv.offset), Number(kv.offset) + Number(kv.length));
    assert.deepEqual(new Float32Array(new Uint8Array(bytes).buffer), traced.constants.get(t.name!)!.data);
  }
  const externalBytes = external.reduce((n, t) => n + Number(t.external_data!.find((e) => e.key === 'length')!.value), 0);
  const inlineSize = exportGraphToBytes(traced.graph, traced.constants).bytes.byteLength;
  assert.ok(statSync(path).size <= inlineSize - externalBytes + 64 * external.length, 'the .onnx file no longer holds the moved weights');
  const { inputs, outputs } = graphIO(traced.graph);
  const session = new OrtSession(path, {}, inputs, outputs);
  const x = randn([1, 4, 16], { seed: 5 });
  assert.ok(maxDiff(session.runSync([x])[0], eager(x)) < TOL);
  session.dispose();
  // externalData: false refuses nothing here (the model is small) and keeps everything inline
  assert.equal(exportOnnx(traced, join(dir, 'inline.onnx'), { externalData: false, externalDataThreshold: 1 }).dataPath, null);
});

test('exportModel names inputs after forward\'s parameters', () => {
  assert.deepEqual(parameterNames(function forward(x: unknown, mask?: unknown) { return [x, mask]; }), ['x', 'mask']);
  assert.deepEqual(parameterNames((hidden: unknown) => hidden), ['hidden']);
  assert.equal(parameterNames(({ a }: { a: unknown }) => a), null);
  const path = join(dir, 'model.onnx');
  const file = exportModel(model, [example], path, { inputSpec: [{ shape: ['batch', 'seq', 16] }] });
  assert.deepEqual(file.inputNames, ['x']);
  assert.deepEqual(decodeModel(readFileSync(path)).graph.input.map((i) => i.name), ['x']);
});

test('graph outputs that are inputs, constants or repeated values get Identity nodes', () => {
  const g = new Graph();
  const a = g.addInput('a', 'f32', ['n', 3]);
  const w = g.addConstant({ name: 'w', kind: 'param', dtype: 'f32', shape: [3] });
  const [s] = g.addNode('add', [a, w], {}, [{ dtype: 'f32', shape: ['n', 3] }]);
  g.addOutput('same_as_input', a);
  g.addOutput('sum', s);
  g.addOutput('sum_again', s);
  g.addOutput('weight', w);
  const weight = randn([3], { seed: 1 });
  const bytes = exportGraphToBytes(g, new Map([['w', weight]]));
  const m = decodeModel(bytes.bytes);
  assert.deepEqual(m.graph.output.map((o) => o.name), ['same_as_input', 'sum', 'sum_again', 'weight']);
  const { inputs, outputs } = graphIO(g);
  const session = new OrtSession(bytes.bytes, {}, inputs, outputs);
  const x = randn([2, 3], { seed: 2 });
  const [o0, o1, o2, o3] = session.runSync([x]);
  assert.deepEqual(o0.toArray(), x.toArray());
  assert.deepEqual(o1.toArray(), x.add(weight).toArray());
  assert.deepEqual(o2.toArray(), o1.toArray());
  assert.deepEqual(o3.toArray(), weight.toArray());
  session.dispose();
});

test('export errors are specific', () => {
  defineOp({
    name: 'test_only_unmapped',
    kind: 'other',
    inputs: ['x'],
    attrs: {},
    infer: ([x]) => [x!],
    reference: ([x]) => [x!],
  });
  const g = new Graph();
  const a = g.addInput('a', 'f32', [2]);
  g.addOutput('b', g.addNode('test_only_unmapped', [a], {}, [{ dtype: 'f32', shape: [2] }])[0]);
  assert.throws(() => exportGraphToBytes(g, undefined), /op "test_only_unmapped" has no ONNX mapping/);

  const p = new Graph();
  const x = p.addInput('x', 'f32', [3]);
  const w = p.addConstant({ name: 'layer.weight', kind: 'param', dtype: 'f32', shape: [3] });
  p.addOutput('y', p.addNode('mul', [x, w], {}, [{ dtype: 'f32', shape: [3] }])[0]);
  assert.throws(() => exportGraphToBytes(p, new Map()), /parameter "layer\.weight" \(f32\[3\]\) was not given/);
  assert.throws(() => exportGraphToBytes(p, new Map([['layer.weight', randn([4])]])), /parameter "layer\.weight" is f32\[4\] but the graph expects f32\[3\]/);
  assert.throws(() => exportGraphToBytes(p, new Map([['layer.weight', randn([3])]]), { inputNames: ['a', 'b'] }), /inputNames has 2 names but the graph has 1 inputs/);
});
