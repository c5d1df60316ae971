// exportOnnx accepts what inferenceJit returns (the README says so): it exports the graph traced for
// the handle's most recent call, names inputs exactly as exportModel does, and the file runs in a
// real ONNX Runtime session with the eager model's results at two dynamic sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randn, manualSeed, inferenceJit, type Tensor } from '../../src/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { exportOnnx, exportModel } from '../../src/onnx/index.js';
import { decodeModel } from '../../src/onnx/proto.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../src/backends/onnxruntime/index.js';
import { TinyTransformer } from '../../examples/models/transformer.js';

// f32 through two attention blocks in ONNX Runtime vs the float64 reference: well under 1e-4
const TOL = 1e-4;
const dir = mkdtempSync(join(tmpdir(), 'inferjit-onnx-handle-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const spec = [{ shape: ['batch', 'seq', 16] as (string | number)[] }];

function maxDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape]);
  const x = a.toFlatArray(), y = b.toFlatArray();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

test('exportOnnx(compiled module) exports the traced graph, names inputs like exportModel, and runs in ONNX Runtime', () => {
  manualSeed(3);
  const model = new TinyTransformer({ dim: 16, heads: 4, depth: 2, kvHeads: 2, causal: true });
  const fast = inferenceJit(model, { device: 'reference', cache: 'memory', inputSpec: spec });
  assert.throws(() => exportOnnx(fast, join(dir, 'early.onnx')), /has not compiled anything yet; call it once with example inputs.*exportModel/);

  const example = randn([2, 5, 16], { seed: 1 });
  fast(example);
  const path = join(dir, 'handle.onnx');
  const file = exportOnnx(fast, path);
  const viaModel = exportModel(model, [example], join(dir, 'model.onnx'), { inputSpec: spec });
  assert.deepEqual(file.inputNames, ['x']);
  assert.deepEqual(file.inputNames, viaModel.inputNames);
  assert.deepEqual(file.outputNames, viaModel.outputNames);
  assert.deepEqual(decodeModel(readFileSync(path)).graph.input.map((i) => i.name), ['x']);

  const graph = fast.compiledEntries()[0].capture.graph;
  const { inputs, outputs } = graphIO(graph, { inputNames: file.inputNames, outputNames: file.outputNames });
  const session = new OrtSession(path, {}, inputs, outputs);
  for (const shape of [[2, 5, 16], [3, 7, 16]]) {
    const x = randn(shape, { seed: shape[1] });
    const want = withEagerBackend('reference', () => model.forward(x));
    const d = maxDiff(session.runSync([x])[0], want);
    assert.ok(d < TOL, `input [${shape}]: max |onnx - eager| = ${d}`);
  }
  session.dispose();
});

test('exportOnnx(compiled function) works too; its inputs keep the tracer names unless inputNames says otherwise', () => {
  const f = inferenceJit((a: Tensor, b: Tensor) => a.mul(b).exp(), { device: 'reference', cache: 'memory' });
  const a = randn([2, 3], { seed: 4 }), b = randn([2, 3], { seed: 5 });
  const want = f(a, b);
  const file = exportOnnx(f, join(dir, 'fn.onnx'), { inputNames: ['a', 'b'] });
  assert.deepEqual(file.inputNames, ['a', 'b']);
  const { inputs, outputs } = graphIO(f.compiledEntries()[0].capture.graph, { inputNames: file.inputNames, outputNames: file.outputNames });
  const session = new OrtSession(file.path, {}, inputs, outputs);
  assert.ok(maxDiff(session.runSync([a, b])[0], want) < 1e-6);
  session.dispose();
  assert.deepEqual(exportOnnx(f, join(dir, 'fn2.onnx')).inputNames, ['arg0', 'arg1']);
});

test('exportOnnx names what it accepts when given something else', () => {
  assert.throws(() => exportOnnx({ forward: (x: Tensor) => x } as never, join(dir, 'x.onnx')), /expected a Graph, \{ graph, constants \}.*compiled handle.*exportModel\(model, args, path\)/);
});
