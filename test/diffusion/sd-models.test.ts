// The SD 1.5 networks at tiny seeded sizes: the compiled forward (@inferenceJit, device 'cpu')
// against the eager one and against float64 reference kernels, for the UNet, the VAE decoder and the
// CLIP text encoder; the disk cache across instances; the parameter names and counts of the full
// SD 1.5 structure (diffusers' 686 UNet tensors, 140 VAE-decoder tensors, transformers' 196
// text-encoder tensors); and config errors.
import { test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { fromArray, randn, jitStats, type Tensor } from '../../src/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { jitRunner } from '../../src/jit/index.js';
import { CompiledUNet, UNet2DConditionModel } from '../../examples/diffusion/sd/unet.js';
import { CompiledVaeDecoder, VaeDecoder } from '../../examples/diffusion/sd/vae.js';
import { CompiledClipTextModel, ClipTextModel, quickGelu } from '../../examples/diffusion/sd/clip.js';
import {
  TINY_UNET_CONFIG, TINY_VAE_CONFIG, TINY_CLIP_CONFIG, SD15_UNET_CONFIG, unetConfigFromDiffusers, vaeConfigFromDiffusers, clipConfigFromTransformers,
} from '../../examples/diffusion/sd/config.js';
import { Timesteps } from '../../examples/diffusion/sd/layers.js';

process.env.INFERJIT_CACHE = 'memory';

// Tolerances, relative to (1 + |eager|). The compiled plan may run fused f32 kernels (GEMM
// epilogues, fused norms and attention) whose summation order differs from the eager op chain: a
// few f32 ulps per op through ~60 ops (the UNet) of reduction width ≤ 600, so 1e-4. Measured: 0 for
// all three (the UNet and VAE graphs run on the graph interpreter until group_norm, upsample and pad
// get plan kernels; the CLIP plan's kernels are the eager ones). Against the float64 reference
// kernels (rounded to f32 after each op) the eager f32 chain differs by a few ulps per op; allow
// 1e-3 for the UNet's depth (measured 2e-7 .. 1.1e-6).
const TOL_COMPILED = 1e-4;
const TOL_REFERENCE = 1e-3;

function assertClose(got: Tensor, want: Tensor, tol: number, what: string): void {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const g = got.toFlatArray(), w = want.toFlatArray();
  let worst = 0;
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(g[i])) assert.fail(`${what}[${i}]: ${g[i]}`);
    worst = Math.max(worst, Math.abs(g[i] - w[i]) / (1 + Math.abs(w[i])));
  }
  assert.ok(worst <= tol, `${what}: max relative difference ${worst} > ${tol}`);
}

/** Outputs must carry signal, or a comparison proves nothing. */
function assertLive(t: Tensor, what: string): void {
  const v = t.toFlatArray();
  const rms = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
  assert.ok(rms > 0.05 && rms < 100, `${what}: output rms ${rms}`);
}

test('UNet: compiled == eager == reference kernels (batch 2, guided layout), one compile per shape', () => {
  const unet = new CompiledUNet(TINY_UNET_CONFIG, { seed: 1 });
  const x = randn([2, 4, 8, 8], { seed: 2 }), t = fromArray([981, 981], [2]), ctx = randn([2, 77, 32], { seed: 3 });
  const eager = unet.eager(x, t, ctx);
  assertLive(eager, 'UNet');
  assertClose(unet.forward(x, t, ctx), eager, TOL_COMPILED, 'UNet compiled vs eager');
  assertClose(withEagerBackend('reference', () => unet.eager(x, t, ctx)), eager, TOL_REFERENCE, 'UNet reference vs eager');
  // Another timestep and context: same shapes, same plan.
  const t2 = fromArray([1, 501], [2]), ctx2 = randn([2, 77, 32], { seed: 4 });
  assertClose(unet.forward(x, t2, ctx2), unet.eager(x, t2, ctx2), TOL_COMPILED, 'UNet compiled vs eager, second call');
  // Odd latent size that is still a multiple of 2 (the tiny UNet halves once): 6×10.
  const y = randn([1, 4, 6, 10], { seed: 5 }), ty = fromArray([500], [1]), cy = randn([1, 77, 32], { seed: 6 });
  assertClose(unet.forward(y, ty, cy), unet.eager(y, ty, cy), TOL_COMPILED, 'UNet 6×10');
  const s = jitStats(unet)!;
  assert.deepEqual([s.calls, s.misses, s.captures, s.eagerCalls], [3, 2, 2, 0], JSON.stringify(s));
  // Compiled for device 'cpu' (the default; INFERJIT_DEVICE could move it without touching the decorator).
  assert.deepEqual(jitRunner(unet)!.compiledEntries().map((e) => e.executable.backend), ['cpu', 'cpu']);
  // The timestep and the text change the output (both conditionings reach it).
  assert.notDeepEqual(unet.eager(x, t2, ctx).toFlatArray(), eager.toFlatArray());
  assert.notDeepEqual(unet.eager(x, t, ctx2).toFlatArray(), eager.toFlatArray());
});

test('a second CompiledUNet compiles from the disk cache the first one filled', () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-sd-disk-'));
  const saved = { cache: process.env.INFERJIT_CACHE, dir: process.env.INFERJIT_CACHE_DIR };
  process.env.INFERJIT_CACHE = 'disk';
  process.env.INFERJIT_CACHE_DIR = dir;
  try {
    const x = randn([2, 4, 4, 4], { seed: 1 }), t = fromArray([501, 501], [2]), ctx = randn([2, 77, 32], { seed: 2 });
    const first = new CompiledUNet(TINY_UNET_CONFIG, { seed: 3 });
    const out = first.forward(x, t, ctx);
    assert.ok(jitStats(first)!.diskWrites >= 1);
    const second = new CompiledUNet(TINY_UNET_CONFIG, { seed: 3 });
    assertClose(second.forward(x, t, ctx), out, 0, 'second instance');
    const s = jitStats(second)!;
    assert.deepEqual([s.captures, s.diskHits], [0, 1], JSON.stringify(s));
  } finally {
    process.env.INFERJIT_CACHE = saved.cache;
    if (saved.dir === undefined) delete process.env.INFERJIT_CACHE_DIR; else process.env.INFERJIT_CACHE_DIR = saved.dir;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('VAE decoder: compiled == eager == reference kernels; output is upscale × the latents', () => {
  const vae = new CompiledVaeDecoder(TINY_VAE_CONFIG, { seed: 7 });
  const z = randn([1, 4, 6, 8], { seed: 8 });
  const eager = vae.eager(z);
  assert.deepEqual(eager.shape, [1, 3, 12, 16]);
  assertLive(eager, 'VAE');
  assertClose(vae.forward(z), eager, TOL_COMPILED, 'VAE compiled vs eager');
  assertClose(withEagerBackend('reference', () => vae.eager(z)), eager, TOL_REFERENCE, 'VAE reference vs eager');
  // decodeLatents divides by the scaling factor, then calls the compiled forward.
  assertClose(vae.decodeLatents(z.mul(TINY_VAE_CONFIG.scalingFactor)), eager, TOL_COMPILED, 'decodeLatents');
  assert.deepEqual([jitStats(vae)!.calls, jitStats(vae)!.misses], [2, 1]);
});

test('CLIP text encoder: compiled == eager == reference kernels; causal (later tokens never change earlier outputs)', () => {
  const clip = new CompiledClipTextModel(TINY_CLIP_CONFIG, { seed: 9 });
  const row = (k: number): number[] => Array.from({ length: 77 }, (_, i) => (i * 37 + k * 101) % 1000);
  const ids = fromArray([...row(0), ...row(1)], [2, 77], 'i64');
  const eager = clip.eager(ids);
  assert.deepEqual(eager.shape, [2, 77, 32]);
  assertLive(eager, 'CLIP');
  assertClose(clip.forward(ids), eager, TOL_COMPILED, 'CLIP compiled vs eager');
  assertClose(withEagerBackend('reference', () => clip.eager(ids)), eager, TOL_REFERENCE, 'CLIP reference vs eager');
  // Change the last 30 tokens of the first prompt: positions < 47 must not move (causal mask); later ones must.
  const changed = row(0).map((v, i) => (i >= 47 ? (v + 1) % 1000 : v));
  const out = clip.eager(fromArray([...changed, ...row(1)], [2, 77], 'i64')).toFlatArray();
  const before = eager.toFlatArray();
  for (let i = 0; i < 47 * 32; i++) assert.equal(out[i], before[i], `position ${Math.floor(i / 32)} moved`);
  assert.notEqual(out[50 * 32], before[50 * 32]);
  // Each row of the last hidden state went through the final LayerNorm (unit weight, zero bias):
  // mean 0, variance 1 within ~1e-5 (eps).
  const r = before.slice(5 * 32, 6 * 32);
  const mean = r.reduce((a, b) => a + b, 0) / 32, variance = r.reduce((a, b) => a + (b - mean) ** 2, 0) / 32;
  assert.ok(Math.abs(mean) < 1e-5 && Math.abs(variance - 1) < 1e-3, `mean ${mean}, variance ${variance}`);
});

test('QuickGELU and the sinusoidal timestep features match their formulas', () => {
  const x = fromArray([-3, -0.5, 0, 0.7, 2], [5]);
  quickGelu(x).toFlatArray().forEach((v, i) => {
    const xi = x.toFlatArray()[i];
    assert.ok(Math.abs(v - xi / (1 + Math.exp(-1.702 * xi))) < 1e-6);
  });
  // diffusers get_timestep_embedding(t, 8, flip_sin_to_cos=True, downscale_freq_shift=0): [cos | sin]
  // of t·exp(-ln(10000)·k/4), k < 4.
  const emb = new Timesteps(8, true, 0).forward(fromArray([0, 10], [2])).toFlatArray();
  for (let k = 0; k < 4; k++) {
    const f = Math.exp((-Math.log(10000) * k) / 4);
    assert.ok(Math.abs(emb[k] - 1) < 1e-7 && Math.abs(emb[4 + k]) < 1e-7);
    assert.ok(Math.abs(emb[8 + k] - Math.cos(10 * f)) < 1e-6 && Math.abs(emb[12 + k] - Math.sin(10 * f)) < 1e-6);
  }
});

test('the SD 1.5 structure has diffusers\' and transformers\' tensor names and counts', () => {
  // Full SD 1.5 depth (4 levels, 2 ResNets each, cross-attention at the three finer levels) at
  // narrow widths: the names are the real model's, only the shapes are smaller.
  const unet = new UNet2DConditionModel({ blockOutChannels: [32, 64, 96, 96], normNumGroups: 8, crossAttentionDim: 16 }, { seed: 1 });
  const names = [...unet.stateDict().keys()];
  assert.equal(names.length, 686); // the tensors of unet/diffusion_pytorch_model.safetensors
  for (const n of [
    'conv_in.weight', 'time_embedding.linear_1.weight', 'time_embedding.linear_2.bias',
    'down_blocks.0.resnets.0.norm1.weight', 'down_blocks.0.resnets.1.time_emb_proj.weight',
    'down_blocks.0.attentions.0.norm.weight', 'down_blocks.0.attentions.0.proj_in.weight',
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight', 'down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight',
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias', 'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight',
    'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight', 'down_blocks.0.attentions.0.transformer_blocks.0.norm3.bias',
    'down_blocks.0.downsamplers.0.conv.weight', 'down_blocks.1.resnets.0.conv_shortcut.weight', 'down_blocks.3.resnets.1.conv2.bias',
    'mid_block.resnets.1.norm2.weight', 'mid_block.attentions.0.proj_out.bias',
    'up_blocks.0.resnets.2.conv_shortcut.weight', 'up_blocks.0.upsamplers.0.conv.weight',
    'up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v.weight', 'conv_norm_out.weight', 'conv_out.bias',
  ]) assert.ok(names.includes(n), `missing ${n}`);
  assert.ok(!names.some((n) => /to_[qkv]\.bias|down_blocks\.3\.(attentions|downsamplers)|up_blocks\.3\.upsamplers|time_proj/.test(n)), 'no q/k/v biases, no attention or downsampler at the coarsest level, no upsampler at the finest, no time_proj weights');
  // Shapes where SD 1.5's bookkeeping is subtle: the up path's concatenated skips.
  const shape = (n: string): number[] => [...unet.stateDict().get(n)!.shape];
  assert.deepEqual(shape('up_blocks.0.resnets.0.conv1.weight'), [96, 192, 3, 3]); // 1280 + 1280 in SD 1.5
  assert.deepEqual(shape('up_blocks.1.resnets.2.conv1.weight'), [96, 160, 3, 3]); // 1280 + 640
  assert.deepEqual(shape('up_blocks.3.resnets.0.conv1.weight'), [32, 96, 3, 3]); // 640 + 320
  assert.deepEqual(shape('down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'), [32, 16]);
  assert.deepEqual(shape('down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight'), [256, 32]); // GEGLU: 2 × 4 × dim
  assert.deepEqual(shape('time_embedding.linear_1.weight'), [128, 32]);

  const vae = new VaeDecoder({ blockOutChannels: [8, 16, 24, 24], normNumGroups: 8 }, { seed: 1 });
  const vaeNames = [...vae.stateDict().keys()];
  assert.equal(vaeNames.length, 140); // AutoencoderKL's 248 tensors minus the encoder's 106 and quant_conv's 2
  for (const n of ['post_quant_conv.weight', 'decoder.conv_in.weight', 'decoder.mid_block.attentions.0.group_norm.weight', 'decoder.mid_block.attentions.0.to_out.0.weight',
    'decoder.mid_block.attentions.0.to_q.bias', 'decoder.up_blocks.2.resnets.0.conv_shortcut.weight', 'decoder.up_blocks.2.upsamplers.0.conv.bias', 'decoder.conv_norm_out.bias', 'decoder.conv_out.weight']) {
    assert.ok(vaeNames.includes(n), `missing ${n}`);
  }
  assert.ok(!vaeNames.includes('decoder.up_blocks.3.upsamplers.0.conv.weight'));

  const clip = new ClipTextModel({ vocabSize: 100, hiddenSize: 24, intermediateSize: 48, numAttentionHeads: 12 }, { seed: 1 });
  const clipNames = [...clip.stateDict().keys()];
  assert.equal(clipNames.length, 196); // text_encoder/model.safetensors, without the position_ids buffer
  for (const n of ['text_model.embeddings.token_embedding.weight', 'text_model.embeddings.position_embedding.weight', 'text_model.encoder.layers.11.self_attn.q_proj.weight',
    'text_model.encoder.layers.0.self_attn.out_proj.bias', 'text_model.encoder.layers.0.layer_norm1.weight', 'text_model.encoder.layers.5.mlp.fc2.weight', 'text_model.final_layer_norm.bias']) {
    assert.ok(clipNames.includes(n), `missing ${n}`);
  }
});

test('diffusers / transformers config.json files convert; bad configs are refused with the reason', () => {
  // runwayml/stable-diffusion-v1-5 unet/config.json (the fields that matter).
  const unet = unetConfigFromDiffusers({
    act_fn: 'silu', attention_head_dim: 8, block_out_channels: [320, 640, 1280, 1280], cross_attention_dim: 768,
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'], in_channels: 4, layers_per_block: 2,
    norm_eps: 1e-5, norm_num_groups: 32, out_channels: 4, sample_size: 64, up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  });
  assert.deepEqual(unet, { ...SD15_UNET_CONFIG });
  assert.equal(vaeConfigFromDiffusers({ block_out_channels: [128, 256, 512, 512], latent_channels: 4, scaling_factor: 0.18215 }).blockOutChannels.length, 4);
  assert.equal(clipConfigFromTransformers({ hidden_act: 'quick_gelu', hidden_size: 768, num_hidden_layers: 12 }).hiddenAct, 'quick_gelu');
  assert.throws(() => new UNet2DConditionModel({ ...TINY_UNET_CONFIG, normNumGroups: 5 }), /divisible by normNumGroups \(5\)/);
  assert.throws(() => new UNet2DConditionModel({ ...TINY_UNET_CONFIG, upBlockTypes: ['UpBlock2D'] }), /one entry per level/);
  assert.throws(() => unetConfigFromDiffusers({ attention_head_dim: [5, 10, 20, 20] }), /per-level head counts/);
  const unetModel = new UNet2DConditionModel(TINY_UNET_CONFIG, { seed: 1 });
  assert.throws(() => unetModel.forward(randn([1, 4, 7, 8]), fromArray([1], [1]), randn([1, 77, 32])), /multiples of 2 .* got 7×8/);
  assert.throws(() => unetModel.forward(randn([1, 4, 8, 8]), fromArray([1], [1]), randn([1, 77, 16])), /encoderHiddenStates must be \[1, T, 32\]/);
  assert.throws(() => new ClipTextModel(TINY_CLIP_CONFIG).forward(fromArray(new Array(78).fill(1), [1, 78], 'i64')), /S ≤ 77/);
});
