// Text to image with Stable Diffusion: prompt -> CLIP tokens -> text embeddings (the prompt and the
// negative / empty prompt, one batched encoder call) -> DDIM sampling of the UNet with
// classifier-free guidance (both halves in ONE batched forward per step) -> VAE decode -> RGB image.
// The models may be eager or compiled (@inferenceJit): the pipeline calls them through call().
import { ops, fromArray, full, randn, Rng, type Tensor } from '../../../src/index.js';
import { type Image } from '../../../src/io/png.js';
import { imagesToGrid } from '../decoder.js';
import { type StepInfo } from '../diffusion.js';
import { type ClipTokenizer } from './tokenizer.js';
import { type ClipTextModel } from './clip.js';
import { type UNet2DConditionModel } from './unet.js';
import { type VaeDecoder } from './vae.js';
import { DdimScheduler } from './scheduler.js';

export interface StableDiffusion {
  tokenizer: ClipTokenizer;
  textEncoder: ClipTextModel;
  unet: UNet2DConditionModel;
  vae: VaeDecoder;
  /** Default: SD 1.5's DDIM configuration. */
  scheduler?: DdimScheduler;
}

export interface TextToImageOptions {
  prompt: string;
  /** What the unconditional half is conditioned on; default '' (plain classifier-free guidance). */
  negativePrompt?: string;
  /** Image size in pixels; multiples of the VAE's upscale × the UNet's latent multiple (64 for SD). */
  height: number;
  width: number;
  steps: number;
  /** Guidance scale; ≤ 1 turns guidance off (batch 1, no negative prompt). SD's default is 7.5. */
  guidanceScale: number;
  /** Seed of the initial latents (and of DDIM's noise when eta > 0). */
  seed: number;
  /** DDIM's η (0: deterministic). */
  eta?: number;
  onStep?: (info: StepInfo) => void;
}

export interface TextToImageResult {
  /** [1, 3, height, width], nominally in [-1, 1]. */
  images: Tensor;
  /** The same as 8-bit RGB, ready for writePng. */
  image: Image;
  /** Final latents [1, C, height/f, width/f] (the sampler's scale, before division by scalingFactor). */
  latents: Tensor;
  /** The prompt's token ids (with start, end and padding), and whether it was cut at the model's length. */
  promptIds: number[];
  truncated: boolean;
  timings: { textMs: number; stepMs: number[]; decodeMs: number };
}

/** Runs the whole text-to-image pipeline. Deterministic for a given seed and set of models. */
export function textToImage(sd: StableDiffusion, o: TextToImageOptions): TextToImageResult {
  const { tokenizer, textEncoder, unet, vae } = sd;
  const scheduler = sd.scheduler ?? new DdimScheduler();
  checkCompatible(sd);
  const factor = vae.upscale, multiple = factor * unet.latentMultiple;
  for (const [name, v] of [['height', o.height], ['width', o.width]] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % multiple !== 0) {
      throw new RangeError(`textToImage: ${name} must be a positive multiple of ${multiple} (VAE upscale ${factor} × UNet latent multiple ${unet.latentMultiple}), got ${v}`);
    }
  }
  if (!Number.isFinite(o.guidanceScale)) throw new RangeError(`textToImage: guidanceScale must be a finite number, got ${o.guidanceScale}`);
  if (!Number.isInteger(o.seed)) throw new RangeError(`textToImage: seed must be an integer, got ${o.seed}`);
  const guided = o.guidanceScale > 1;

  // 1. Text: [negative; prompt] through the encoder in one batch (diffusers' order: unconditional first).
  let t0 = performance.now();
  const cond = tokenizer.encodePrompt(o.prompt);
  const rows = guided ? [tokenizer.encodePrompt(o.negativePrompt ?? '').ids, cond.ids] : [cond.ids];
  const ids = fromArray(rows.flat(), [rows.length, tokenizer.maxLength], 'i64');
  const context = textEncoder.call(ids); // [B, 77, D]
  const textMs = performance.now() - t0;

  // 2. Sampling.
  const latentShape = [1, unet.config.inChannels, o.height / factor, o.width / factor];
  let latents = randn(latentShape, { seed: o.seed }).mul(scheduler.initNoiseSigma);
  const noiseRng = new Rng(o.seed + 1);
  const timesteps = scheduler.setTimesteps(o.steps);
  const stepMs: number[] = [];
  timesteps.forEach((t, i) => {
    const start = performance.now();
    const input = guided ? ops.concat([latents, latents], 0) : latents;
    const eps = unet.call(input, full([input.shape[0]], t, 'f32'), context);
    let guidedEps = eps;
    if (guided) {
      const [uncond, text] = eps.split([1, 1], 0);
      guidedEps = uncond.add(text.sub(uncond).mul(o.guidanceScale));
    }
    const noise = (o.eta ?? 0) > 0 ? randn(latentShape, { seed: noiseRng.nextU32() }) : undefined;
    latents = scheduler.step(guidedEps, t, latents, { eta: o.eta, noise }).prevSample;
    const ms = performance.now() - start;
    stepMs.push(ms);
    o.onStep?.({ step: i, total: timesteps.length, timestep: t, ms });
  });

  // 3. Decode.
  t0 = performance.now();
  const images = vae.decodeLatents(latents);
  const decodeMs = performance.now() - t0;
  return {
    images, image: imagesToGrid(images, { nrow: 1, padding: 0 }), latents,
    promptIds: cond.ids, truncated: cond.truncated, timings: { textMs, stepMs, decodeMs },
  };
}

/** The three models must agree on the widths they exchange. */
function checkCompatible({ tokenizer, textEncoder, unet, vae }: StableDiffusion): void {
  const problems: string[] = [];
  if (tokenizer.vocabSize > textEncoder.config.vocabSize) problems.push(`the tokenizer has ${tokenizer.vocabSize} tokens but the text encoder's table only ${textEncoder.config.vocabSize}`);
  if (tokenizer.maxLength > textEncoder.config.maxPositionEmbeddings) problems.push(`prompts are ${tokenizer.maxLength} tokens but the text encoder has ${textEncoder.config.maxPositionEmbeddings} positions`);
  if (textEncoder.config.hiddenSize !== unet.config.crossAttentionDim) problems.push(`the text encoder's width ${textEncoder.config.hiddenSize} is not the UNet's crossAttentionDim ${unet.config.crossAttentionDim}`);
  if (vae.config.latentChannels !== unet.config.outChannels || unet.config.inChannels !== unet.config.outChannels) {
    problems.push(`latent channels disagree: UNet in ${unet.config.inChannels} / out ${unet.config.outChannels}, VAE ${vae.config.latentChannels}`);
  }
  if (problems.length) throw new RangeError(`textToImage: the models do not fit together: ${problems.join('; ')}`);
}
