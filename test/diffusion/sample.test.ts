// Sampling end to end on a tiny DiT: the latent-to-RGB decoder and grid against explicit loops,
// generate() determinism and guidance batching, the PNG it produces, and the CLI flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randn, fromArray, type Tensor } from '../../src/index.js';
import { writePng, readPng } from '../../src/io/png.js';
import { DiT } from '../../examples/diffusion/dit.js';
import { LatentRgbDecoder, SD_LATENT_RGB_FACTORS, imagesToGrid } from '../../examples/diffusion/decoder.js';
import { generate, parseArgs } from '../../examples/diffusion/sample.js';
import { assertClose } from '../nn/util.js';

const tiny = { inputSize: 8, patchSize: 2, hiddenSize: 64, depth: 2, numHeads: 4, numClasses: 10 };

test('LatentRgbDecoder: rgb[c] = Σ_k latent[k]·F[k][c], then ×8 nearest upsampling', () => {
  const latents = randn([2, 4, 3, 2], { seed: 1 });
  const img = new LatentRgbDecoder().decode(latents);
  assert.deepEqual(img.shape, [2, 3, 24, 16]);
  const l = latents.toFlatArray(), v = img.toFlatArray();
  for (let n = 0; n < 2; n++) for (let c = 0; c < 3; c++) for (let y = 0; y < 24; y++) for (let x = 0; x < 16; x++) {
    let want = 0;
    for (let k = 0; k < 4; k++) want += l[((n * 4 + k) * 3 + (y >> 3)) * 2 + (x >> 3)] * SD_LATENT_RGB_FACTORS[k][c];
    const got = v[((n * 3 + c) * 24 + y) * 16 + x];
    assert.ok(Math.abs(got - want) < 1e-5, `n${n} c${c} (${y}, ${x}): ${got} vs ${want}`); // f32 products of O(1) values
  }
  assert.throws(() => new LatentRgbDecoder().decode(randn([1, 3, 2, 2])), /latents must be \[N, 4, h, w\], got \[1, 3, 2, 2\]/);
});

test('imagesToGrid: [-1, 1] -> 0..255 (rounded, clamped), tiled with padding like save_image', () => {
  // Two 1×2 images: values -1, 0, 0.5, 2 (clamped) across channels.
  const images = fromArray([
    -1, 0, 0.5, 2, -3, 1,
    0, 0, 0, 0, 0, 0,
  ], [2, 3, 1, 2]);
  const grid = imagesToGrid(images, { nrow: 2, padding: 1 });
  assert.deepEqual([grid.width, grid.height, grid.channels], [2 * (2 + 1) + 1, 1 + 2, 3]);
  const px = (x: number, y: number) => [...grid.data.subarray((y * grid.width + x) * 3, (y * grid.width + x) * 3 + 3)];
  assert.deepEqual(px(0, 0), [0, 0, 0]); // padding
  assert.deepEqual(px(1, 1), [0, 191, 0]); // (-1, 0.5, -3): 0, round(0.75·255) = 191, clamp -> 0
  assert.deepEqual(px(2, 1), [128, 255, 255]); // (0, 2, 1): round(127.5) = 128, clamp -> 255, 255
  assert.deepEqual(px(4, 1), [128, 128, 128]);
  assert.deepEqual(px(3, 1), [0, 0, 0]);
});

test('generate: deterministic, guided batch of [z | z] with null labels, PNG round trip', () => {
  const model = new DiT(tiny, { seed: 3 });
  const calls: { batch: number; labels: number[]; t: number }[] = [];
  const original = model.forward.bind(model);
  model.forward = (x: Tensor, t: Tensor, y: Tensor) => {
    calls.push({ batch: x.shape[0], labels: [...y.toFlatArray()], t: t.toFlatArray()[0] });
    return original(x, t, y);
  };
  const steps: number[] = [];
  const a = generate(model, { classes: [1, 7], steps: 4, cfgScale: 4, sampler: 'ddim', seed: 5, onStep: (s) => steps.push(s.timestep) });
  assert.deepEqual(a.latents.shape, [2, 4, 8, 8]);
  assert.deepEqual(a.images.shape, [2, 3, 64, 64]);
  assert.equal(a.stepMs.length, 4);
  assert.deepEqual(steps, [999, 666, 333, 0]);
  assert.deepEqual(calls.map((c) => c.batch), [4, 4, 4, 4]);
  assert.deepEqual(calls[0].labels, [1, 7, 10, 10]);
  assert.ok(a.latents.toFlatArray().every(Number.isFinite));
  const b = generate(model, { classes: [1, 7], steps: 4, cfgScale: 4, sampler: 'ddim', seed: 5 });
  assert.deepEqual(b.latents.toFlatArray(), a.latents.toFlatArray(), 'same seed, same latents');
  const c = generate(model, { classes: [1, 7], steps: 4, cfgScale: 4, sampler: 'ddim', seed: 6 });
  assert.notDeepEqual(c.latents.toFlatArray(), a.latents.toFlatArray());
  // Without guidance: the plain batch, one forward per step.
  calls.length = 0;
  const d = generate(model, { classes: [2], steps: 3, cfgScale: 1, sampler: 'ddpm', seed: 5 });
  assert.deepEqual(calls.map((x) => x.batch), [1, 1, 1]);
  assert.deepEqual(d.images.shape, [1, 3, 64, 64]);
  assert.throws(() => generate(model, { classes: [10], steps: 2, cfgScale: 4, sampler: 'ddim', seed: 0 }), /class 10 is outside \[0, 10\)/);

  const dir = mkdtempSync(join(tmpdir(), 'inferjit-dit-'));
  try {
    const path = join(dir, 'sample.png');
    const grid = imagesToGrid(a.images, { nrow: 4 });
    writePng(path, grid);
    const back = readPng(path);
    assert.deepEqual([back.width, back.height], [2 * 66 + 2, 68]);
    assert.deepEqual(back.data, grid.data);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parseArgs: the documented flags, defaults and errors', () => {
  assert.deepEqual(parseArgs([]), { model: 'DiT-S/2', steps: 10, cfg: 4, classes: [207, 360], seed: 0, out: 'out.png', sampler: 'ddim', imageSize: 256, eta: 0, compile: false });
  const o = parseArgs(['--model', 'DiT-B/4', '--steps=25', '--cfg', '1.5', '--classes', '1, 2,3', '--seed', '7', '--out', '/tmp/x.png', '--sampler', 'ddpm', '--image-size', '512', '--ckpt', 'm.safetensors', '--compile']);
  assert.deepEqual(o, { model: 'DiT-B/4', steps: 25, cfg: 1.5, classes: [1, 2, 3], seed: 7, out: '/tmp/x.png', sampler: 'ddpm', imageSize: 512, eta: 0, ckpt: 'm.safetensors', compile: true });
  assert.throws(() => parseArgs(['--model', 'DiT-Q/2']), /--model: unknown model "DiT-Q\/2"/);
  assert.throws(() => parseArgs(['--steps', 'ten']), /--steps: expected an integer, got "ten"/);
  assert.throws(() => parseArgs(['--sampler', 'euler']), /--sampler: expected ddim or ddpm/);
  assert.throws(() => parseArgs(['--image-size', '250']), /must be a multiple of 8/);
  assert.throws(() => parseArgs(['--bogus', '1']), /unknown flag "--bogus"/);
  assert.throws(() => parseArgs(['--seed']), /--seed: missing value/);
});
