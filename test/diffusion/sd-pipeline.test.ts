// The text-to-image pipeline on tiny seeded models: a valid PNG of the requested size, identical
// for the same seed and different for another; classifier-free guidance as ONE batch-2 UNet forward
// per step (batch 1 without guidance); the compiled pipeline equal to the eager one; a diffusers
// model folder (configs, safetensors, tokenizer files written here) loaded and run end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jitStats, type Tensor } from '../../src/index.js';
import { encodePng, writePng, readPng } from '../../src/io/png.js';
import { writeSafetensors } from '../../src/io/safetensors-writer.js';
import { textToImage, type TextToImageOptions } from '../../examples/diffusion/sd/pipeline.js';
import { createStableDiffusion, loadStableDiffusion, demoTokenizer, TINY_SD_CONFIGS } from '../../examples/diffusion/sd/create.js';
import { UNet2DConditionModel } from '../../examples/diffusion/sd/unet.js';
import { type StepInfo } from '../../examples/diffusion/diffusion.js';

process.env.INFERJIT_CACHE = 'memory';
const dir = mkdtempSync(join(tmpdir(), 'inferjit-sd-pipeline-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** A UNet that records the batch of every forward it runs. */
class RecordingUNet extends UNet2DConditionModel {
  batches: number[] = [];
  override forward(sample: Tensor, timestep: Tensor, context: Tensor): Tensor {
    this.batches.push(sample.shape[0]);
    return super.forward(sample, timestep, context);
  }
}

const OPTIONS: TextToImageOptions = { prompt: 'a painting of a cat sitting on a chair', height: 32, width: 24, steps: 3, guidanceScale: 7.5, seed: 11 };

test('a PNG of the requested size, deterministic for a seed; guidance is one batch-2 forward per step', () => {
  const sd = createStableDiffusion({ seed: 1 });
  const unet = new RecordingUNet(TINY_SD_CONFIGS.unet, { seed: 5 });
  const steps: StepInfo[] = [];
  const a = textToImage({ ...sd, unet }, { ...OPTIONS, onStep: (s) => steps.push(s) });
  assert.deepEqual(unet.batches, [2, 2, 2]);
  assert.deepEqual(steps.map((s) => [s.step, s.total, s.timestep]), [[0, 3, 667], [1, 3, 334], [2, 3, 1]]);
  assert.deepEqual(a.images.shape, [1, 3, 32, 24]);
  assert.deepEqual(a.latents.shape, [1, 4, 16, 12]); // the tiny VAE upscales ×2
  assert.deepEqual([a.image.width, a.image.height, a.image.channels, a.image.data.length], [24, 32, 3, 24 * 32 * 3]);
  assert.equal(a.promptIds.length, 77);
  assert.equal(a.truncated, false);

  const path = join(dir, 'a.png');
  writePng(path, a.image);
  const bytes = readFileSync(path);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const back = readPng(path);
  assert.deepEqual([back.width, back.height, back.channels], [24, 32, 3]);
  assert.deepEqual(back.data, a.image.data);
  // A picture, not a flat field: random weights draw structured noise with many distinct values.
  assert.ok(new Set(a.image.data).size > 50, `only ${new Set(a.image.data).size} distinct byte values`);

  const again = textToImage({ ...sd, unet }, OPTIONS);
  assert.deepEqual(encodePng(again.image), encodePng(a.image), 'same seed, same PNG bytes');
  const other = textToImage({ ...sd, unet }, { ...OPTIONS, seed: 12 });
  assert.notDeepEqual(other.image.data, a.image.data, 'another seed, another image');
  const otherPrompt = textToImage({ ...sd, unet }, { ...OPTIONS, prompt: 'a photo of a dog' });
  assert.notDeepEqual(otherPrompt.image.data, a.image.data, 'the prompt reaches the image');

  unet.batches = [];
  textToImage({ ...sd, unet }, { ...OPTIONS, guidanceScale: 1 });
  assert.deepEqual(unet.batches, [1, 1, 1], 'no guidance: batch 1');
});

test('the compiled pipeline (@inferenceJit models) equals the eager one', () => {
  const eager = createStableDiffusion({ seed: 2 }), compiled = createStableDiffusion({ seed: 2, compiled: true });
  const a = textToImage(eager, OPTIONS), b = textToImage(compiled, OPTIONS);
  // The UNet's compiled plan ran every step, compiled once (static shapes, batch 2).
  const s = jitStats(compiled.unet)!;
  assert.deepEqual([s.calls, s.misses, s.eagerCalls], [3, 1, 0]);
  assert.deepEqual([jitStats(compiled.textEncoder)!.calls, jitStats(compiled.vae)!.calls], [1, 1]);
  // Per-step differences of a few f32 ulps are fed back through three steps and the guidance
  // (×7.5); bound them by 1e-4 of the largest latent (measured: 0 while the graphs are interpreted).
  const want = a.latents.toFlatArray(), got = b.latents.toFlatArray();
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const diff = got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
  assert.ok(diff <= 1e-4 * (1 + scale), `latents: max |compiled - eager| = ${diff}, largest ${scale}`);
  const px = a.image.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.image.data[i])), 0);
  assert.ok(px <= 1, `pixels differ by up to ${px}/255`);
});

test('a diffusers model folder loads by name and generates; bad sizes and mismatched parts are refused', () => {
  const src = createStableDiffusion({ seed: 3 });
  const folder = join(dir, 'model');
  const write = (sub: string, file: string, content: string | Map<string, Tensor>): void => {
    mkdirSync(join(folder, sub), { recursive: true });
    if (typeof content === 'string') writeFileSync(join(folder, sub, file), content);
    else writeSafetensors(join(folder, sub, file), content);
  };
  const u = src.unet.config, v = src.vae.config, t = src.textEncoder.config;
  write('unet', 'config.json', JSON.stringify({
    _class_name: 'UNet2DConditionModel', block_out_channels: u.blockOutChannels, down_block_types: u.downBlockTypes, up_block_types: u.upBlockTypes,
    layers_per_block: u.layersPerBlock, cross_attention_dim: u.crossAttentionDim, attention_head_dim: u.attentionHeads, norm_num_groups: u.normNumGroups,
  }));
  write('unet', 'diffusion_pytorch_model.fp16.safetensors', new Map([...src.unet.stateDict()].map(([n, w]) => [n, w.cast('f16')])));
  write('vae', 'config.json', JSON.stringify({ block_out_channels: v.blockOutChannels, layers_per_block: v.layersPerBlock, norm_num_groups: v.normNumGroups, scaling_factor: v.scalingFactor }));
  write('vae', 'diffusion_pytorch_model.safetensors', src.vae.stateDict());
  write('text_encoder', 'config.json', JSON.stringify({ vocab_size: t.vocabSize, hidden_size: t.hiddenSize, intermediate_size: t.intermediateSize, num_hidden_layers: t.numHiddenLayers, num_attention_heads: t.numAttentionHeads }));
  write('text_encoder', 'model.safetensors', src.textEncoder.stateDict());
  const files = demoTokenizer().files();
  write('tokenizer', 'vocab.json', files['vocab.json']);
  write('tokenizer', 'merges.txt', files['merges.txt']);

  const { sd, reports } = loadStableDiffusion(folder);
  assert.deepEqual(reports.map((r) => r.missing.length + r.unexpected.length + r.mismatched.length), [0, 0, 0]);
  assert.equal(reports[0].converted, src.unet.stateDict().size); // the fp16 variant was read and converted
  const options = { ...OPTIONS, steps: 2 };
  const a = textToImage(sd, options), b = textToImage(src, options);
  // The loaded UNet has f16-rounded weights: close to the source's image, not equal.
  const px = a.image.data.reduce((m, x, i) => Math.max(m, Math.abs(x - b.image.data[i])), 0);
  assert.ok(px <= 8, `pixels differ by up to ${px}/255`);
  assert.deepEqual(a.promptIds, b.promptIds);

  assert.throws(() => textToImage(sd, { ...options, height: 30 }), /height must be a positive multiple of 4 \(VAE upscale 2 × UNet latent multiple 2\), got 30/);
  const wrongText = createStableDiffusion({ seed: 4, configs: { ...TINY_SD_CONFIGS, text: { ...TINY_SD_CONFIGS.text, hiddenSize: 16 } } });
  assert.throws(() => textToImage({ ...sd, textEncoder: wrongText.textEncoder }, options), /the text encoder's width 16 is not the UNet's crossAttentionDim 32/);
  assert.throws(() => loadStableDiffusion(join(dir, 'nowhere')), /cannot read .*nowhere\/unet\/config\.json \(ENOENT\); expected a diffusers model folder/);
});
