// ONNX export of the three SD networks (exportModel: trace forward, name the inputs after its
// parameters, write the .onnx file), each run in an onnxruntime-node session with graph optimization
// 'all' (ORT's own fusions on), against our eager forward.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromArray, randn, type Tensor } from '../../src/index.js';
import { exportModel, decodeModel } from '../../src/onnx/index.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { UNet2DConditionModel } from '../../examples/diffusion/sd/unet.js';
import { VaeDecoder } from '../../examples/diffusion/sd/vae.js';
import { ClipTextModel } from '../../examples/diffusion/sd/clip.js';
import { TINY_UNET_CONFIG, TINY_VAE_CONFIG, TINY_CLIP_CONFIG } from '../../examples/diffusion/sd/config.js';

const dir = mkdtempSync(join(tmpdir(), 'inferjit-sd-onnx-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

// ORT runs the same f32 math with its own kernels and fusions (GroupNorm decomposed into reductions,
// fused attention, GEMM with other blocking): a few ulps per op, through ~60 ops of width ≤ 600.
// 1e-4 relative to (1 + |eager|); measured ~1e-6.
const TOL = 1e-4;

function runExported(model: { forward(...a: Tensor[]): Tensor }, inputs: Tensor[], outShape: number[], file: string): { out: Tensor; inputNames: string[] } {
  const path = join(dir, file);
  const exported = exportModel(model, inputs, path, { outputNames: ['out'] });
  const session = new OrtSession(path, { graphOptimizationLevel: 'all', intraOpNumThreads: 1, logSeverityLevel: 3 },
    inputs.map((t, i) => ({ name: exported.inputNames[i], dtype: t.dtype, shape: [...t.shape] })),
    [{ name: 'out', dtype: 'f32', shape: outShape }]);
  try {
    return { out: session.runSync(inputs)[0], inputNames: exported.inputNames };
  } finally {
    session.dispose();
  }
}

function assertClose(got: Tensor, want: Tensor, what: string): void {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const g = got.toFlatArray(), w = want.toFlatArray();
  const worst = w.reduce((m, v, i) => Math.max(m, Math.abs(g[i] - v) / (1 + Math.abs(v))), 0);
  assert.ok(worst <= TOL, `${what}: max relative difference ${worst} > ${TOL}`);
  assert.ok(w.some((v) => Math.abs(v) > 0.1), `${what}: the output carries signal`);
}

test('UNet: onnxruntime on our export agrees with eager', () => {
  const unet = new UNet2DConditionModel(TINY_UNET_CONFIG, { seed: 1 });
  const inputs = [randn([2, 4, 8, 6], { seed: 2 }), fromArray([801, 801], [2]), randn([2, 77, 32], { seed: 3 })];
  const { out, inputNames } = runExported(unet, inputs, [2, 4, 8, 6], 'unet.onnx');
  assert.deepEqual(inputNames, ['sample', 'timestep', 'encoderHiddenStates']);
  assertClose(out, unet.forward(...(inputs as [Tensor, Tensor, Tensor])), 'UNet');
  // The exported graph holds the weights under their diffusers names.
  const initializers = decodeModel(readFileSync(join(dir, 'unet.onnx'))).graph.initializer.map((t) => t.name);
  assert.ok(initializers.includes('down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'), initializers.slice(0, 5).join(', '));
});

test('VAE decoder: onnxruntime on our export agrees with eager', () => {
  const vae = new VaeDecoder(TINY_VAE_CONFIG, { seed: 4 });
  const z = randn([1, 4, 6, 5], { seed: 5 });
  assertClose(runExported(vae, [z], [1, 3, 12, 10], 'vae.onnx').out, vae.forward(z), 'VAE decoder');
});

test('CLIP text encoder: onnxruntime on our export agrees with eager (i64 ids, causal mask)', () => {
  const clip = new ClipTextModel(TINY_CLIP_CONFIG, { seed: 6 });
  const ids = fromArray(Array.from({ length: 2 * 77 }, (_, i) => (i * 53) % 1000), [2, 77], 'i64');
  const { out, inputNames } = runExported(clip, [ids], [2, 77, 32], 'clip.onnx');
  assert.deepEqual(inputNames, ['inputIds']);
  assertClose(out, clip.forward(ids), 'CLIP');
});
