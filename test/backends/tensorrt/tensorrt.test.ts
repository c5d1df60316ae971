// The tensorrt backend on a machine without the TensorRT execution provider (as on CI): a clear
// error naming the missing provider libraries and how to install them; with a fallback allowed,
// the model runs on the next provider (CPU here) and matches eager; provider options and
// optimization profiles are built from precision and the dynamic dims.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randn, manualSeed } from '../../../src/index.js';
import type { Tensor } from '../../../src/tensor/tensor.js';
import { trace } from '../../../src/trace/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import {
  compileTensorRt, providerStatus, tensorRtUnavailableReason, profileShapes, tensorRtProvider, ortBinaryDir, TensorRtUnavailableError,
} from '../../../src/backends/tensorrt/index.js';
import { tensorRtJitBackend } from '../../../src/backends/tensorrt/jit.js';
import { TinyTransformer } from '../../../examples/models/transformer.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'inferjit-trt-test-'));
process.on('exit', () => rmSync(cacheDir, { recursive: true, force: true }));

manualSeed(5);
const model = new TinyTransformer({ dim: 16, heads: 2, depth: 2 });
const traced = trace((x: Tensor) => model.forward(x), [randn([1, 4, 16], { seed: 1 })], { inputSpec: [{ shape: ['batch', 'seq', 16] }], module: model });
const trtInstalled = providerStatus('tensorrt').installed;

test('without the TensorRT provider, compile fails naming the missing libraries and the install steps', { skip: trtInstalled && 'the TensorRT provider is installed here' }, () => {
  const reason = tensorRtUnavailableReason();
  assert.ok(reason);
  assert.match(reason, /TensorRT execution provider of onnxruntime-node 1\.\d+\.\d+ is not installed/);
  assert.ok(reason.includes(join(ortBinaryDir(), process.platform === 'win32' ? 'onnxruntime_providers_tensorrt.dll' : 'libonnxruntime_providers_tensorrt.so')));
  assert.match(reason, /ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install/);
  assert.match(reason, /TensorRT 10\.x/);
  assert.throws(() => compileTensorRt(traced.graph, traced.constants, { cacheDir }), (e: unknown) => {
    assert.ok(e instanceof TensorRtUnavailableError);
    assert.ok(e.missing.some((m) => m.endsWith(process.platform === 'win32' ? 'onnxruntime_providers_tensorrt.dll' : 'libonnxruntime_providers_tensorrt.so')));
    assert.equal(e.message, reason);
    return true;
  });
  // the JIT backend surfaces the same error
  assert.throws(() => tensorRtJitBackend.lower(traced.graph, traced.constants, { precision: 'fp32', cacheDir } as never), TensorRtUnavailableError);
});

test('fallback: true runs on the providers that exist (CPU here), warns once, and matches eager', { skip: trtInstalled && 'the TensorRT provider is installed here' }, () => {
  const warnings: string[] = [];
  const exe = compileTensorRt(traced.graph, traced.constants, { cacheDir, fallback: true, warn: (m) => warnings.push(m) });
  try {
    assert.equal(exe.backend, 'tensorrt');
    assert.deepEqual(exe.providers, providerStatus('cuda').installed ? ['cuda', 'cpu'] : ['cpu']);
    assert.equal(exe.engineDir, null);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /TensorRT execution provider is not installed .*running on cpu as allowed by fallback/);
    for (const shape of [[1, 3, 16], [2, 7, 16]]) {
      const x = randn(shape, { seed: shape[1] });
      const want = withEagerBackend('reference', () => model.forward(x));
      const got = exe.runSync([x])[0].toFlatArray(), w = want.toFlatArray();
      // f32 vs the f64 reference through two transformer blocks (see test/onnx/export.test.ts)
      assert.ok(got.every((v, i) => Math.abs(v - w[i]) < 1e-4));
    }
  } finally { exe.dispose(); }
  // the JIT path takes the fallback from its context
  const jitExe = tensorRtJitBackend.lower(traced.graph, traced.constants, { precision: 'fp32', cacheDir, tensorrt: { fallback: ['cpu'], warn: () => {} } } as never);
  assert.equal(jitExe.run([randn([1, 2, 16])])[0].shape.join(','), '1,2,16');
});

test('a fallback that is not installed either is an error naming both', { skip: (trtInstalled || providerStatus('cuda').installed) && 'GPU providers are installed here' }, () => {
  assert.throws(() => compileTensorRt(traced.graph, traced.constants, { fallback: ['cuda'], warn: () => {} }),
    (e: unknown) => e instanceof TensorRtUnavailableError && /libonnxruntime_providers_cuda\.so/.test(e.message) && /The allowed fallback \(cuda\) is not installed either/.test(e.message));
  assert.throws(() => compileTensorRt(traced.graph, traced.constants, { fallback: ['gpu' as never] }), /fallback providers must be 'cuda' or 'cpu'/);
  assert.throws(() => compileTensorRt(traced.graph, traced.constants, { precision: 'int4' as never }), /precision must be 'fp32', 'fp16' or 'int8'/);
});

test('optimization profiles come from the dynamic dims; provider options from precision', () => {
  const inputs = [{ name: 'x', shape: ['batch', 'seq', 16] }, { name: 'mask', shape: ['batch', 1, 'seq'] }, { name: 'static', shape: [4] }];
  const p = profileShapes(inputs, { batch: { min: 1, opt: 4, max: 8 }, seq: { min: 16, opt: 128, max: 512 } });
  assert.deepEqual(p, {
    min: 'x:1x16x16,mask:1x1x16',
    opt: 'x:4x128x16,mask:4x1x128',
    max: 'x:8x512x16,mask:8x1x512',
  });
  assert.equal(profileShapes([{ name: 'x', shape: [2, 3] }], {}), null);
  assert.throws(() => profileShapes(inputs, { batch: { min: 1, opt: 2, max: 4 } }), /profiles give no range for dynamic dim "seq"/);
  assert.throws(() => profileShapes(inputs, { batch: { min: 4, opt: 2, max: 8 }, seq: { min: 1, opt: 1, max: 1 } }), /profile for "batch" must satisfy 1 <= min <= opt <= max/);

  const fp16 = tensorRtProvider({ deviceId: 1, precision: 'fp16', engineDir: '/c/e', profile: p });
  assert.deepEqual(fp16, {
    name: 'tensorrt', deviceId: 1,
    trt_engine_cache_enable: true, trt_engine_cache_path: '/c/e', trt_timing_cache_enable: true, trt_timing_cache_path: '/c/e',
    trt_fp16_enable: true, trt_int8_enable: false,
    trt_profile_min_shapes: p!.min, trt_profile_opt_shapes: p!.opt, trt_profile_max_shapes: p!.max,
  });
  const int8 = tensorRtProvider({ deviceId: 0, precision: 'int8', engineDir: '/c/e', profile: null, int8CalibrationTable: 'calib.flatbuffers' });
  assert.equal(int8.trt_int8_enable, true);
  assert.equal(int8.trt_fp16_enable, true, 'int8 engines keep fp16 for layers without int8 kernels');
  assert.equal(int8.trt_int8_calibration_table_name, 'calib.flatbuffers');
  assert.equal(tensorRtProvider({ deviceId: 0, precision: 'fp32', engineDir: '/c/e', profile: null }).trt_fp16_enable, false);
});
