// Building a whole Stable Diffusion (tokenizer, text encoder, UNet, VAE decoder): seeded at any size
// (the tiny one for tests, demos and smoke benchmarks), or from a diffusers model folder
// (runwayml/stable-diffusion-v1-5 layout: unet/, vae/, text_encoder/, tokenizer/).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type StableDiffusion } from './pipeline.js';
import { ClipTokenizer, clipVocabFromMerges, learnClipMerges, loadClipTokenizer } from './tokenizer.js';
import { UNet2DConditionModel, CompiledUNet } from './unet.js';
import { VaeDecoder, CompiledVaeDecoder } from './vae.js';
import { ClipTextModel, CompiledClipTextModel } from './clip.js';
import {
  TINY_UNET_CONFIG, TINY_VAE_CONFIG, TINY_CLIP_CONFIG, unetConfigFromDiffusers, vaeConfigFromDiffusers, clipConfigFromTransformers,
  type UNetConfig, type VaeConfig, type ClipTextConfig,
} from './config.js';
import { loadSdWeights, type SdLoadReport } from './weights.js';

export interface SdConfigs { unet?: Partial<UNetConfig>; vae?: Partial<VaeConfig>; text?: Partial<ClipTextConfig> }

/** The tiny configs of config.ts, together. */
export const TINY_SD_CONFIGS: Readonly<Required<SdConfigs>> = Object.freeze({ unet: TINY_UNET_CONFIG, vae: TINY_VAE_CONFIG, text: TINY_CLIP_CONFIG });

/** A few prompts' worth of English for demoTokenizer's merges. */
const DEMO_CORPUS = `a photograph of an astronaut riding a horse on the moon. a painting of a cat sitting on a
chair in the style of van gogh. a watercolor of a lighthouse at sunset, highly detailed. a photo of a dog
in a field of flowers. portrait of a woman with red hair, digital art. a castle on a mountain above the
clouds. a bowl of fruit on a wooden table, still life. a city street at night in the rain, neon lights.`;

/** A small CLIP tokenizer (200 merges learned from a few prompts) for seeded demos and tests: the
 *  real algorithm and file layout, a toy vocabulary (712 tokens). */
export function demoTokenizer(maxLength = 77): ClipTokenizer {
  const merges = learnClipMerges(DEMO_CORPUS, 200);
  return new ClipTokenizer({ vocab: clipVocabFromMerges(merges), merges, maxLength });
}

/**
 * A seeded Stable Diffusion: every model gets its own seed derived from `seed`; `compiled` builds the
 * @inferenceJit classes (same weights as the eager ones for the same seed). Configs default to the
 * tiny ones; pass SD 1.5's (SD15_*_CONFIG) for the real sizes (random weights, ~1 GB per f32 copy).
 */
export function createStableDiffusion(options: { configs?: SdConfigs; seed?: number; compiled?: boolean; tokenizer?: ClipTokenizer } = {}): StableDiffusion {
  const c = options.configs ?? TINY_SD_CONFIGS, seed = options.seed ?? 0, compiled = options.compiled ?? false;
  const tokenizer = options.tokenizer ?? demoTokenizer(c.text?.maxPositionEmbeddings);
  // The embedding table must cover the tokenizer (the demo tokenizer is smaller than CLIP's).
  const text = { ...c.text, vocabSize: Math.max(c.text?.vocabSize ?? 0, tokenizer.vocabSize) };
  const seeds = { text: seed * 3 + 1, unet: seed * 3 + 2, vae: seed * 3 + 3 };
  return compiled
    ? { tokenizer, textEncoder: new CompiledClipTextModel(text, { seed: seeds.text }), unet: new CompiledUNet(c.unet, { seed: seeds.unet }), vae: new CompiledVaeDecoder(c.vae, { seed: seeds.vae }) }
    : { tokenizer, textEncoder: new ClipTextModel(text, { seed: seeds.text }), unet: new UNet2DConditionModel(c.unet, { seed: seeds.unet }), vae: new VaeDecoder(c.vae, { seed: seeds.vae }) };
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`loadStableDiffusion: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); expected a diffusers model folder with unet/, vae/, text_encoder/ and tokenizer/`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`loadStableDiffusion: ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The weights file of a component folder: the fp32 file, else the fp16 variant. */
function weightsFile(folder: string, base: string): string {
  for (const name of [`${base}.safetensors`, `${base}.fp16.safetensors`]) if (existsSync(join(folder, name))) return join(folder, name);
  throw new Error(`loadStableDiffusion: no ${base}.safetensors (or .fp16.safetensors) in ${folder}; only safetensors weights are read (convert .bin files with diffusers' save_pretrained(safe_serialization=True))`);
}

/**
 * Loads a diffusers Stable Diffusion folder: configs from the config.json files, weights by name
 * (strict: any missing, unexpected or mis-shaped tensor throws with the full report), the tokenizer
 * from tokenizer/vocab.json + merges.txt. Returns the models and the three load reports.
 */
export function loadStableDiffusion(dir: string, options: { compiled?: boolean } = {}): { sd: StableDiffusion; reports: SdLoadReport[] } {
  const compiled = options.compiled ?? false;
  const unetConfig = unetConfigFromDiffusers(readJson(join(dir, 'unet', 'config.json')));
  const vaeConfig = vaeConfigFromDiffusers(readJson(join(dir, 'vae', 'config.json')));
  const textConfig = clipConfigFromTransformers(readJson(join(dir, 'text_encoder', 'config.json')));
  const unet = compiled ? new CompiledUNet(unetConfig) : new UNet2DConditionModel(unetConfig);
  const vae = compiled ? new CompiledVaeDecoder(vaeConfig) : new VaeDecoder(vaeConfig);
  const textEncoder = compiled ? new CompiledClipTextModel(textConfig) : new ClipTextModel(textConfig);
  const reports = [
    loadSdWeights(unet, weightsFile(join(dir, 'unet'), 'diffusion_pytorch_model')),
    loadSdWeights(vae, weightsFile(join(dir, 'vae'), 'diffusion_pytorch_model')),
    loadSdWeights(textEncoder, weightsFile(join(dir, 'text_encoder'), 'model')),
  ];
  const tokenizer = loadClipTokenizer(join(dir, 'tokenizer'), { maxLength: textConfig.maxPositionEmbeddings });
  return { sd: { tokenizer, textEncoder, unet, vae }, reports };
}
