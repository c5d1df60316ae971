// The onnxruntime backend: compile = export + session; outputs match eager (sync and async runs);
// the exported model is reused from the cache folder by a second process and re-exported when the
// weights change; session options are honoured; bad inputs get specific errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randn, manualSeed } from '../../../src/index.js';
import type { Tensor } from '../../../src/tensor/tensor.js';
import { trace } from '../../../src/trace/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { compileOnnxRuntime, onnxCacheKey } from '../../../src/backends/onnxruntime/index.js';
import { onnxRuntimeJitBackend } from '../../../src/backends/onnxruntime/jit.js';
import { TinyTransformer } from '../../../examples/models/transformer.js';

// f32 transformer blocks vs the f64 reference: see test/onnx/export.test.ts
const TOL = 1e-4;
const maxDiff = (a: Tensor, b: Tensor): number => {
  const x = a.toFlatArray(), y = b.toFlatArray();
  assert.equal(x.length, y.length);
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
};

const cacheDir = mkdtempSync(join(tmpdir(), 'inferjit-ort-test-'));
process.on('exit', () => rmSync(cacheDir, { recursive: true, force: true }));

manualSeed(3);
const model = new TinyTransformer({ dim: 16, heads: 2, depth: 2 });
const example = randn([1, 6, 16], { seed: 1 });
const traced = trace((x: Tensor) => model.forward(x), [example], { inputSpec: [{ shape: ['batch', 'seq', 16] }], module: model });
const eager = (x: Tensor): Tensor => withEagerBackend('reference', () => model.forward(x));

test('compileOnnxRuntime runs the traced transformer like eager, sync and async, at two sizes', async () => {
  const exe = compileOnnxRuntime(traced.graph, traced.constants, { intraOpNumThreads: 1, graphOptimizationLevel: 'extended' });
  try {
    assert.equal(exe.backend, 'onnxruntime');
    assert.deepEqual(exe.inputNames, ['arg0']);
    const a = randn([2, 3, 16], { seed: 2 }), b = randn([1, 8, 16], { seed: 3 });
    assert.ok(maxDiff(exe.runSync([a])[0], eager(a)) < TOL);
    const [yb] = await exe.run([b]);
    assert.deepEqual([...yb.shape], [1, 8, 16]);
    assert.ok(maxDiff(yb, eager(b)) < TOL);
  } finally { exe.dispose(); }
});

test('the export is cached: a second process loads the .onnx file instead of exporting', () => {
  const first = compileOnnxRuntime(traced.graph, traced.constants, { cacheDir });
  assert.equal(first.exported, true);
  assert.ok(first.modelPath.startsWith(join(cacheDir, 'onnx')));
  const mtime = statSync(first.modelPath).mtimeMs;
  first.dispose();
  // a separate process with the same model, weights and cache folder
  const root = new URL('../../../', import.meta.url).href;
  const script = `
    import { randn, manualSeed } from '${root}src/index.ts';
    import { trace } from '${root}src/trace/index.ts';
    import { compileOnnxRuntime } from '${root}src/backends/onnxruntime/index.ts';
    import { TinyTransformer } from '${root}examples/models/transformer.ts';
    manualSeed(3);
    const model = new TinyTransformer({ dim: 16, heads: 2, depth: 2 });
    const t = trace((x) => model.forward(x), [randn([1, 6, 16], { seed: 1 })], { inputSpec: [{ shape: ['batch', 'seq', 16] }], module: model });
    const exe = compileOnnxRuntime(t.graph, t.constants, { cacheDir: ${JSON.stringify(cacheDir)} });
    console.log(JSON.stringify({ exported: exe.exported, path: exe.modelPath }));
    exe.dispose();`;
  const file = join(cacheDir, 'second-process.mts');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', cwd: process.cwd() });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.deepEqual(out, { exported: false, path: first.modelPath });
  assert.equal(statSync(first.modelPath).mtimeMs, mtime, 'the cached file was not rewritten');
});

test('changed weights give a new cache entry; a corrupt cached model is exported again', () => {
  const key = onnxCacheKey(traced.graph, traced.constants);
  const w = traced.constants.get('norm.bias')!;
  const saved = new Float32Array(w.data as Float32Array);
  (w.data as Float32Array)[0] += 1;
  w.markModified();
  try {
    assert.notEqual(onnxCacheKey(traced.graph, traced.constants), key);
    const exe = compileOnnxRuntime(traced.graph, traced.constants, { cacheDir });
    assert.equal(exe.exported, true);
    const x = randn([1, 2, 16], { seed: 9 });
    assert.ok(maxDiff(exe.runSync([x])[0], eager(x)) < TOL, 'the new weights are used');
    exe.dispose();
    writeFileSync(exe.modelPath, 'not a model');
    const again = compileOnnxRuntime(traced.graph, traced.constants, { cacheDir });
    assert.equal(again.exported, true);
    assert.ok(maxDiff(again.runSync([x])[0], eager(x)) < TOL);
    again.dispose();
  } finally {
    (w.data as Float32Array).set(saved);
    w.markModified();
  }
  assert.ok(readdirSync(join(cacheDir, 'onnx')).length >= 2);
});

test('inputs are checked with specific messages', () => {
  const exe = compileOnnxRuntime(traced.graph, traced.constants);
  try {
    assert.throws(() => exe.runSync([]), /onnxruntime: expected 1 inputs \(arg0\), got 0/);
    assert.throws(() => exe.runSync([randn([1, 2, 8])]), /onnxruntime: input 0 \("arg0"\) is f32\[1, 2, 8\] but the model expects f32\[batch, seq, 16\]/);
    assert.throws(() => exe.runSync([randn([1, 2, 16], { dtype: 'f16' })]), /is f16\[1, 2, 16\] but the model expects f32/);
  } finally { exe.dispose(); }
  assert.throws(() => compileOnnxRuntime(traced.graph, traced.constants, { graphOptimizationLevel: 'fastest' as never }), /graphOptimizationLevel/);
});

test('the JIT backend lowers a graph to a synchronous executable', () => {
  assert.equal(onnxRuntimeJitBackend.unavailableReason(), null);
  assert.match(onnxRuntimeJitBackend.version(), /onnx-exporter-\d+\+opset-18\+onnxruntime-node-1\./);
  const exe = onnxRuntimeJitBackend.lower(traced.graph, traced.constants, { precision: 'fp32', cacheDir } as never);
  const x = randn([2, 4, 16], { seed: 4 });
  assert.ok(maxDiff(exe.run([x])[0], eager(x)) < TOL);
  assert.throws(() => onnxRuntimeJitBackend.lower(traced.graph, traced.constants, { precision: 'fp16' }), /precision 'fp16' is not available on device 'onnxruntime'/);
});
