// Sizes of the three Stable Diffusion 1.5 networks: the UNet, the VAE decoder and the CLIP text
// encoder. The defaults are SD 1.5's (runwayml/stable-diffusion-v1-5 config.json files); TINY_* are
// seeded toy sizes with the same structure for tests, demos and smoke benchmarks. Converters read
// a diffusers / transformers config.json (snake_case) so a downloaded model folder needs no
// hand-written config.

export type DownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

/** diffusers UNet2DConditionModel's config, in the fields SD 1.x and 2.x use. */
export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  /** Channels of each resolution level, from the finest (after conv_in) to the coarsest. */
  blockOutChannels: number[];
  /** One per level: with (CrossAttn...) or without spatial transformers. */
  downBlockTypes: DownBlockType[];
  /** One per level, coarsest first (the mirror of downBlockTypes). */
  upBlockTypes: UpBlockType[];
  /** ResNet blocks per down level (the up levels have one more, for the extra skip). */
  layersPerBlock: number;
  /** Width of the text embeddings the cross-attention reads (768 for CLIP ViT-L/14). */
  crossAttentionDim: number;
  /** Attention heads of every spatial transformer. diffusers calls this `attention_head_dim` in
   *  SD 1.x configs (a historical misnomer: the value 8 is the head count; head size = C / 8). */
  attentionHeads: number;
  normNumGroups: number;
  normEps: number;
  /** Transformer blocks per spatial transformer. */
  transformerLayersPerBlock: number;
  /** proj_in/proj_out as Linear (SD 2.x) instead of 1×1 Conv2d (SD 1.x). */
  useLinearProjection: boolean;
  /** The sinusoidal timestep features: cos first (true in SD), and the frequency shift. */
  flipSinToCos: boolean;
  freqShift: number;
  /** Latent size the model was trained at (64 for 512×512 images); informative only. */
  sampleSize: number;
}

export const SD15_UNET_CONFIG: Readonly<UNetConfig> = Object.freeze({
  inChannels: 4,
  outChannels: 4,
  blockOutChannels: [320, 640, 1280, 1280],
  downBlockTypes: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  upBlockTypes: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  layersPerBlock: 2,
  crossAttentionDim: 768,
  attentionHeads: 8,
  normNumGroups: 32,
  normEps: 1e-5,
  transformerLayersPerBlock: 1,
  useLinearProjection: false,
  flipSinToCos: true,
  freqShift: 0,
  sampleSize: 64,
}) as Readonly<UNetConfig>;

/** The SD 1.5 structure (cross-attention at the finer levels, a plain coarsest level, a mid block
 *  with attention) at toy width: 2 levels, 1 ResNet per level, 2 heads, 32-wide text embeddings. */
export const TINY_UNET_CONFIG: Readonly<UNetConfig> = Object.freeze({
  ...SD15_UNET_CONFIG,
  blockOutChannels: [32, 64],
  downBlockTypes: ['CrossAttnDownBlock2D', 'DownBlock2D'],
  upBlockTypes: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  layersPerBlock: 1,
  crossAttentionDim: 32,
  attentionHeads: 2,
  normNumGroups: 8,
  sampleSize: 8,
}) as Readonly<UNetConfig>;

/** diffusers AutoencoderKL's decoder half. */
export interface VaeConfig {
  latentChannels: number;
  outChannels: number;
  /** Channels of each level as in the encoder (finest first); the decoder walks them backwards. */
  blockOutChannels: number[];
  /** ResNet blocks per level in the encoder; the decoder has one more per level. */
  layersPerBlock: number;
  normNumGroups: number;
  /** The latents' scale: the pipeline divides latents by it before decoding. */
  scalingFactor: number;
}

export const SD15_VAE_CONFIG: Readonly<VaeConfig> = Object.freeze({
  latentChannels: 4,
  outChannels: 3,
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  normNumGroups: 32,
  scalingFactor: 0.18215,
}) as Readonly<VaeConfig>;

/** Two levels (one ×2 upsampling) at 16/32 channels. The pipeline's image is latent size × 2 here,
 *  not × 8; the structure (mid attention, GroupNorm+SiLU ResNets, upsamplers) is the real one. */
export const TINY_VAE_CONFIG: Readonly<VaeConfig> = Object.freeze({
  ...SD15_VAE_CONFIG,
  blockOutChannels: [16, 32],
  layersPerBlock: 1,
  normNumGroups: 8,
}) as Readonly<VaeConfig>;

/** transformers CLIPTextConfig. */
export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Sequence length: prompts are padded (or truncated) to it. */
  maxPositionEmbeddings: number;
  layerNormEps: number;
  hiddenAct: 'quick_gelu' | 'gelu';
}

export const SD15_CLIP_CONFIG: Readonly<ClipTextConfig> = Object.freeze({
  vocabSize: 49408,
  hiddenSize: 768,
  intermediateSize: 3072,
  numHiddenLayers: 12,
  numAttentionHeads: 12,
  maxPositionEmbeddings: 77,
  layerNormEps: 1e-5,
  hiddenAct: 'quick_gelu',
}) as Readonly<ClipTextConfig>;

/** 2 layers of width 32; vocabSize is set by whoever builds the tokenizer (the demo's is small). */
export const TINY_CLIP_CONFIG: Readonly<ClipTextConfig> = Object.freeze({
  ...SD15_CLIP_CONFIG,
  vocabSize: 1000,
  hiddenSize: 32,
  intermediateSize: 64,
  numHiddenLayers: 2,
  numAttentionHeads: 2,
}) as Readonly<ClipTextConfig>;

// ---- validation ----

const positiveInt = (where: string, key: string, v: unknown): void => {
  if (!Number.isInteger(v) || (v as number) <= 0) throw new RangeError(`${where}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
};

export function validateUNetConfig(c: UNetConfig): void {
  const where = 'UNet2DConditionModel';
  for (const k of ['inChannels', 'outChannels', 'layersPerBlock', 'crossAttentionDim', 'attentionHeads', 'normNumGroups', 'transformerLayersPerBlock'] as const) positiveInt(where, k, c[k]);
  const n = c.blockOutChannels.length;
  if (n === 0) throw new RangeError(`${where}: blockOutChannels must list at least one level`);
  c.blockOutChannels.forEach((ch, i) => positiveInt(where, `blockOutChannels[${i}]`, ch));
  if (c.downBlockTypes.length !== n || c.upBlockTypes.length !== n) {
    throw new RangeError(`${where}: downBlockTypes (${c.downBlockTypes.length}) and upBlockTypes (${c.upBlockTypes.length}) must have one entry per level of blockOutChannels (${n})`);
  }
  for (const t of c.downBlockTypes) if (t !== 'CrossAttnDownBlock2D' && t !== 'DownBlock2D') throw new RangeError(`${where}: unknown down block type ${JSON.stringify(t)}; expected CrossAttnDownBlock2D or DownBlock2D`);
  for (const t of c.upBlockTypes) if (t !== 'CrossAttnUpBlock2D' && t !== 'UpBlock2D') throw new RangeError(`${where}: unknown up block type ${JSON.stringify(t)}; expected CrossAttnUpBlock2D or UpBlock2D`);
  for (const ch of c.blockOutChannels) {
    if (ch % c.normNumGroups !== 0) throw new RangeError(`${where}: every level's channels must be divisible by normNumGroups (${c.normNumGroups}); blockOutChannels is [${c.blockOutChannels.join(', ')}]`);
    if (ch % c.attentionHeads !== 0) throw new RangeError(`${where}: every level's channels must be divisible by attentionHeads (${c.attentionHeads}); blockOutChannels is [${c.blockOutChannels.join(', ')}]`);
  }
  if (c.blockOutChannels[0] % 2 !== 0) throw new RangeError(`${where}: blockOutChannels[0] must be even (it is the sinusoidal timestep feature width), got ${c.blockOutChannels[0]}`);
}

export function validateVaeConfig(c: VaeConfig): void {
  const where = 'VaeDecoder';
  for (const k of ['latentChannels', 'outChannels', 'layersPerBlock', 'normNumGroups'] as const) positiveInt(where, k, c[k]);
  if (c.blockOutChannels.length === 0) throw new RangeError(`${where}: blockOutChannels must list at least one level`);
  c.blockOutChannels.forEach((ch, i) => {
    positiveInt(where, `blockOutChannels[${i}]`, ch);
    if (ch % c.normNumGroups !== 0) throw new RangeError(`${where}: blockOutChannels[${i}] (${ch}) must be divisible by normNumGroups (${c.normNumGroups})`);
  });
  if (!(c.scalingFactor > 0)) throw new RangeError(`${where}: scalingFactor must be positive, got ${c.scalingFactor}`);
}

export function validateClipConfig(c: ClipTextConfig): void {
  const where = 'ClipTextModel';
  for (const k of ['vocabSize', 'hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'maxPositionEmbeddings'] as const) positiveInt(where, k, c[k]);
  if (c.hiddenSize % c.numAttentionHeads !== 0) throw new RangeError(`${where}: hiddenSize (${c.hiddenSize}) must be divisible by numAttentionHeads (${c.numAttentionHeads})`);
  if (c.hiddenAct !== 'quick_gelu' && c.hiddenAct !== 'gelu') throw new RangeError(`${where}: hiddenAct must be 'quick_gelu' or 'gelu', got ${JSON.stringify(c.hiddenAct)}`);
}

// ---- diffusers / transformers config.json ----

type Json = Record<string, unknown>;
const pick = <T>(json: Json, key: string, fallback: T): T => (json[key] === undefined || json[key] === null ? fallback : json[key] as T);

/** A diffusers unet/config.json -> UNetConfig (missing keys: SD 1.5's values). */
export function unetConfigFromDiffusers(json: Json): UNetConfig {
  const d = SD15_UNET_CONFIG;
  // num_attention_heads, when set, is the head count; SD 1.x leaves it null and puts the head
  // count in attention_head_dim (see UNetConfig.attentionHeads).
  const heads = pick<number | number[] | null>(json, 'num_attention_heads', null) ?? pick<number | number[]>(json, 'attention_head_dim', d.attentionHeads);
  if (Array.isArray(heads) && heads.some((h) => h !== heads[0])) {
    throw new RangeError(`unetConfigFromDiffusers: per-level head counts ${JSON.stringify(heads)} are not supported (SD 1.x uses one count); SD 2.x's per-level head sizes need a per-level config`);
  }
  const layers = pick<number | number[]>(json, 'transformer_layers_per_block', 1);
  const c: UNetConfig = {
    inChannels: pick(json, 'in_channels', d.inChannels),
    outChannels: pick(json, 'out_channels', d.outChannels),
    blockOutChannels: [...pick<number[]>(json, 'block_out_channels', d.blockOutChannels)],
    downBlockTypes: [...pick<DownBlockType[]>(json, 'down_block_types', d.downBlockTypes)],
    upBlockTypes: [...pick<UpBlockType[]>(json, 'up_block_types', d.upBlockTypes)],
    layersPerBlock: pick(json, 'layers_per_block', d.layersPerBlock),
    crossAttentionDim: pick(json, 'cross_attention_dim', d.crossAttentionDim),
    attentionHeads: Array.isArray(heads) ? heads[0] : heads,
    normNumGroups: pick(json, 'norm_num_groups', d.normNumGroups),
    normEps: pick(json, 'norm_eps', d.normEps),
    transformerLayersPerBlock: Array.isArray(layers) ? layers[0] : layers,
    useLinearProjection: pick(json, 'use_linear_projection', d.useLinearProjection),
    flipSinToCos: pick(json, 'flip_sin_to_cos', d.flipSinToCos),
    freqShift: pick(json, 'freq_shift', d.freqShift),
    sampleSize: pick(json, 'sample_size', d.sampleSize),
  };
  validateUNetConfig(c);
  return c;
}

/** A diffusers vae/config.json -> VaeConfig. */
export function vaeConfigFromDiffusers(json: Json): VaeConfig {
  const d = SD15_VAE_CONFIG;
  const c: VaeConfig = {
    latentChannels: pick(json, 'latent_channels', d.latentChannels),
    outChannels: pick(json, 'out_channels', d.outChannels),
    blockOutChannels: [...pick<number[]>(json, 'block_out_channels', d.blockOutChannels)],
    layersPerBlock: pick(json, 'layers_per_block', d.layersPerBlock),
    normNumGroups: pick(json, 'norm_num_groups', d.normNumGroups),
    scalingFactor: pick(json, 'scaling_factor', d.scalingFactor),
  };
  validateVaeConfig(c);
  return c;
}

/** A transformers text_encoder/config.json -> ClipTextConfig. */
export function clipConfigFromTransformers(json: Json): ClipTextConfig {
  const d = SD15_CLIP_CONFIG;
  const c: ClipTextConfig = {
    vocabSize: pick(json, 'vocab_size', d.vocabSize),
    hiddenSize: pick(json, 'hidden_size', d.hiddenSize),
    intermediateSize: pick(json, 'intermediate_size', d.intermediateSize),
    numHiddenLayers: pick(json, 'num_hidden_layers', d.numHiddenLayers),
    numAttentionHeads: pick(json, 'num_attention_heads', d.numAttentionHeads),
    maxPositionEmbeddings: pick(json, 'max_position_embeddings', d.maxPositionEmbeddings),
    layerNormEps: pick(json, 'layer_norm_eps', d.layerNormEps),
    hiddenAct: pick(json, 'hidden_act', d.hiddenAct),
  };
  validateClipConfig(c);
  return c;
}
