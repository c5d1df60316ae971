// Loading SD weights by name: a safetensors file written with the project's writer loads back into a
// fresh model and reproduces its outputs; a file with a wrong, a missing and a mis-shaped key is
// refused with one report naming each; the VAE loader ignores the encoder half and renames legacy
// attention names; CLIP's position_ids buffer is ignored; f16 files are converted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromArray, randn, arange, type Tensor } from '../../src/index.js';
import { writeSafetensors } from '../../src/io/safetensors-writer.js';
import { UNet2DConditionModel } from '../../examples/diffusion/sd/unet.js';
import { VaeDecoder } from '../../examples/diffusion/sd/vae.js';
import { ClipTextModel } from '../../examples/diffusion/sd/clip.js';
import { TINY_UNET_CONFIG, TINY_VAE_CONFIG, TINY_CLIP_CONFIG } from '../../examples/diffusion/sd/config.js';
import { loadSdWeights, loadSdState } from '../../examples/diffusion/sd/weights.js';

const dir = mkdtempSync(join(tmpdir(), 'inferjit-sd-weights-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const copy = (t: Tensor): Tensor => fromArray(t.toFlatArray(), [...t.shape], t.dtype);
const stateOf = (m: { stateDict(): Map<string, Tensor> }): Map<string, Tensor> => new Map([...m.stateDict()].map(([n, t]) => [n, copy(t)]));

test('UNet: a safetensors file with diffusers names loads completely and reproduces the source model', () => {
  const source = new UNet2DConditionModel(TINY_UNET_CONFIG, { seed: 1 }), target = new UNet2DConditionModel(TINY_UNET_CONFIG, { seed: 2 });
  const x = randn([1, 4, 8, 8], { seed: 3 }), t = fromArray([500], [1]), ctx = randn([1, 77, 32], { seed: 4 });
  const want = source.forward(x, t, ctx).toFlatArray();
  assert.notDeepEqual(target.forward(x, t, ctx).toFlatArray(), want);
  const path = join(dir, 'unet.safetensors');
  writeSafetensors(path, source.stateDict());
  const report = loadSdWeights(target, path);
  const total = source.stateDict().size;
  assert.deepEqual([report.missing, report.unexpected, report.mismatched, report.loaded, report.converted, report.ignored], [[], [], [], total, 0, []]);
  assert.equal(report.summary, `loadSdWeights (UNet): ${path}: loaded all ${total} tensors`);
  assert.deepEqual(target.forward(x, t, ctx).toFlatArray(), want);
});

test('UNet: a wrong, a missing and a mis-shaped key are refused in one report; non-strict loads the rest', () => {
  const source = new UNet2DConditionModel(TINY_UNET_CONFIG, { seed: 5 });
  const state = stateOf(source);
  state.delete('conv_out.bias');
  const w = state.get('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight')!;
  state.delete('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight');
  state.set('down_blocks.0.attentions.0.transformer_blocks.0.attn1.query.weight', w); // a wrong name
  state.set('mid_block.resnets.0.conv1.weight', randn([64, 64, 1, 1], { seed: 6 })); // wrong shape
  const path = join(dir, 'bad-unet.safetensors');
  writeSafetensors(path, state);
  const target = new UNet2DConditionModel(TINY_UNET_CONFIG, { seed: 7 });
  const before = target.conv_in.weight.toFlatArray();
  assert.throws(() => loadSdWeights(target, path), (e: Error) => {
    assert.match(e.message, /^loadSdWeights \(UNet\): .*bad-unet\.safetensors: refused \(strict\): 4 problems/);
    assert.match(e.message, /missing from the file \(2\): down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q\.weight, conv_out\.bias/);
    assert.match(e.message, /unexpected in the file \(1\): down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.query\.weight/);
    assert.match(e.message, /mid_block\.resnets\.0\.conv1\.weight: model f32\[64, 64, 3, 3\], file f32\[64, 64, 1, 1\]/);
    assert.match(e.message, /made for another config/);
    return true;
  });
  assert.deepEqual(target.conv_in.weight.toFlatArray(), before, 'a refused load copies nothing');
  const report = loadSdWeights(target, path, { strict: false });
  assert.equal(report.loaded, source.stateDict().size - 3);
  assert.deepEqual(report.missing.length + report.unexpected.length + report.mismatched.length, 4);
  assert.deepEqual(target.conv_in.weight.toFlatArray(), source.conv_in.weight.toFlatArray());
  assert.notDeepEqual(target.mid_block.resnets.at(0).conv1.weight.toFlatArray(), source.mid_block.resnets.at(0).conv1.weight.toFlatArray());
});

test('VAE: a full AutoencoderKL file (encoder half, legacy attention names, f16) loads into the decoder', () => {
  const source = new VaeDecoder(TINY_VAE_CONFIG, { seed: 8 });
  const legacy: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
  const state = new Map<string, Tensor>();
  for (const [name, t] of source.stateDict()) {
    const m = /^(decoder\.mid_block\.attentions\.0)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(name);
    // Old conversions: legacy names, and 1×1-conv-shaped attention matrices.
    const file = m ? `${m[1]}.${legacy[m[2]]}.${m[3]}` : name;
    const value = m && m[3] === 'weight' ? copy(t).reshape([...t.shape, 1, 1]) : copy(t);
    state.set(file, value.cast('f16'));
  }
  state.set('encoder.conv_in.weight', randn([16, 3, 3, 3], { seed: 9 }).cast('f16'));
  state.set('quant_conv.weight', randn([8, 8, 1, 1], { seed: 10 }).cast('f16'));
  const path = join(dir, 'vae.safetensors');
  writeSafetensors(path, state);
  const target = new VaeDecoder(TINY_VAE_CONFIG, { seed: 11 });
  const report = loadSdWeights(target, path);
  assert.deepEqual([report.missing, report.unexpected, report.mismatched], [[], [], []]);
  assert.deepEqual(report.ignored.sort(), ['encoder.conv_in.weight', 'quant_conv.weight']);
  assert.equal(report.renamed.length, 8);
  assert.equal(report.converted, source.stateDict().size);
  assert.match(report.summary, /loaded all \d+ tensors; \d+ converted to the model's dtype, 8 legacy names renamed, 2 not used by this model ignored/);
  // f16 keeps 11 significant bits: the decoded images agree to ~1e-3 relative.
  const z = randn([1, 4, 4, 4], { seed: 12 });
  const a = target.forward(z).toFlatArray(), b = source.forward(z).toFlatArray();
  const scale = Math.max(...b.map(Math.abs));
  assert.ok(a.every((v, i) => Math.abs(v - b[i]) <= 2e-2 * scale), 'f16-rounded weights give nearly the same image');
});

test('CLIP: position_ids in older files is ignored; a file for another width is reported, not loaded', () => {
  const source = new ClipTextModel(TINY_CLIP_CONFIG, { seed: 13 });
  const state = stateOf(source);
  state.set('text_model.embeddings.position_ids', arange(0, 77).cast('i64').reshape([1, 77]));
  const target = new ClipTextModel(TINY_CLIP_CONFIG, { seed: 14 });
  const report = loadSdState(target, state, { source: 'text_encoder/model.safetensors' });
  assert.deepEqual([report.unexpected, report.ignored], [[], ['text_model.embeddings.position_ids']]);
  const ids = fromArray(Array.from({ length: 77 }, (_, i) => i * 3), [1, 77], 'i64');
  assert.deepEqual(target.forward(ids).toFlatArray(), source.forward(ids).toFlatArray());

  const wide = new ClipTextModel({ ...TINY_CLIP_CONFIG, hiddenSize: 48 }, { seed: 15 });
  assert.throws(() => loadSdState(target, wide.stateDict()), /refused \(strict\): \d+ problems[\s\S]*text_model\.embeddings\.token_embedding\.weight: model f32\[1000, 32\], file f32\[1000, 48\]/);
  assert.throws(() => loadSdWeights(target, join(dir, 'nope.safetensors')), /nope\.safetensors/);
});

test('an original single-file (LDM) checkpoint gets a conversion hint', () => {
  const target = new UNet2DConditionModel(TINY_UNET_CONFIG, { seed: 16 });
  const state = new Map([['model.diffusion_model.input_blocks.0.0.weight', randn([32, 4, 3, 3], { seed: 17 })]]);
  assert.throws(() => loadSdState(target, state), /original \(CompVis\/LDM\) single-file checkpoint.*convert_original_stable_diffusion_to_diffusers/);
});
