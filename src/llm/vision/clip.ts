// The LLaVA image encoder as plain model code: a CLIP ViT vision tower (patch convolution, class token
// + learned position embeddings, pre-LayerNorm, pre-LN transformer blocks with QuickGELU) read up to
// the layer LLaVA selects, and the LLaVA-1.5 projector (linear, GELU, linear) that maps its patch
// features into the decoder's embedding space. Field names are transformers' names (snake_case on
// purpose), so `stateDict()` names are exactly the keys of a llava-hf checkpoint:
//   vision_tower.vision_model.embeddings.{class_embedding, patch_embedding.weight, position_embedding.weight}
//   vision_tower.vision_model.pre_layrnorm.{weight,bias}            (sic: transformers' spelling)
//   vision_tower.vision_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2}.{weight,bias}
//   vision_tower.vision_model.post_layernorm.{weight,bias}          (held for loading; LLaVA never reads it)
//   multi_modal_projector.linear_{1,2}.{weight,bias}
// `inferenceJit(encoder, { inputSpec: [{ shape: ['batch', 3, S, S] }] })` compiles it like any model.
import '../../ops/index.js';
import * as nn from '../../nn/index.js';
import * as ops from '../../ops/index.js';
import { type Tensor } from '../../tensor/tensor.js';
import { ModelConfigError } from '../../io/errors.js';

/** CLIPVisionConfig's fields that shape the tower (transformers' defaults where a config omits them). */
export interface ClipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
}

/** The LLaVA-specific choices around the tower. */
export interface LlavaVisionOptions {
  /** hidden_states index LLaVA reads, negative from the end (-2: the penultimate layer's output). */
  featureLayer: number;
  /** 'default' drops the class token (576 patch rows at 336/14); 'full' keeps it. */
  selectStrategy: 'default' | 'full';
  /** The decoder's hidden size (the projector's output). */
  textHiddenSize: number;
  /** The projector's activation: 'gelu' (exact, LLaVA-1.5) or 'gelu_tanh'. */
  projectorAct: 'gelu' | 'gelu_tanh';
}

const CLIP_DEFAULTS: Record<string, number> = {
  hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32,
  num_channels: 3, layer_norm_eps: 1e-5,
};

/** A CLIPVisionConfig object (a llava config.json's `vision_config`) with transformers' defaults. */
export function clipVisionConfigFromHf(json: Record<string, unknown>, source = 'vision_config'): ClipVisionConfig {
  const num = (k: string): number => {
    const v = json[k] ?? CLIP_DEFAULTS[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ModelConfigError(source, `"${k}" must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const act = json.hidden_act ?? 'quick_gelu';
  if (act !== 'quick_gelu') throw new ModelConfigError(source, `hidden_act ${JSON.stringify(act)} is not supported by the CLIP tower (supported: quick_gelu)`);
  return checkClipConfig({
    hiddenSize: num('hidden_size'), intermediateSize: num('intermediate_size'), numLayers: num('num_hidden_layers'),
    numHeads: num('num_attention_heads'), imageSize: num('image_size'), patchSize: num('patch_size'), numChannels: num('num_channels'),
    layerNormEps: num('layer_norm_eps'),
  }, source);
}

export function checkClipConfig(c: ClipVisionConfig, source = 'ClipVisionConfig'): ClipVisionConfig {
  for (const k of ['hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'imageSize', 'patchSize', 'numChannels'] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] <= 0) throw new ModelConfigError(source, `${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.hiddenSize % c.numHeads !== 0) throw new ModelConfigError(source, `hidden size ${c.hiddenSize} is not a multiple of the head count ${c.numHeads}`);
  if (c.imageSize % c.patchSize !== 0) throw new ModelConfigError(source, `image size ${c.imageSize} is not a multiple of the patch size ${c.patchSize}`);
  return c;
}

/** Patches per side, and image rows the tower emits per image for a select strategy. */
export const clipGrid = (c: ClipVisionConfig): number => c.imageSize / c.patchSize;
export const imageFeatureRows = (c: ClipVisionConfig, strategy: 'default' | 'full'): number => clipGrid(c) ** 2 + (strategy === 'full' ? 1 : 0);

/** How many encoder layers run to produce hidden_states[featureLayer] (hidden_states[0] is the embeddings). */
export function layersToRun(numLayers: number, featureLayer: number): number {
  const n = featureLayer < 0 ? numLayers + 1 + featureLayer : featureLayer;
  if (!Number.isInteger(featureLayer) || n < 0 || n > numLayers) {
    throw new RangeError(`vision_feature_layer ${featureLayer} is outside the tower's hidden states (-${numLayers + 1}..${numLayers})`);
  }
  return n;
}

const linear = (i: number, o: number, seed: number): nn.Linear => new nn.Linear(i, o, { seed });

/** QuickGELU, CLIP's activation: x·σ(1.702·x). */
export const quickGelu = (x: Tensor): Tensor => x.mul(ops.sigmoid(x.mul(1.702)));

class ClipAttention extends nn.Module {
  q_proj: nn.Linear; k_proj: nn.Linear; v_proj: nn.Linear; out_proj: nn.Linear;
  constructor(readonly dim: number, readonly numHeads: number, seed: number) {
    super();
    this.q_proj = linear(dim, dim, seed + 1); this.k_proj = linear(dim, dim, seed + 2);
    this.v_proj = linear(dim, dim, seed + 3); this.out_proj = linear(dim, dim, seed + 4);
  }
  /** Bidirectional attention over x [B, N, D] (every patch sees every patch and the class token). */
  forward(x: Tensor): Tensor {
    const [B, N] = x.metaShape;
    const H = this.numHeads, hd = this.dim / H;
    const heads = (t: Tensor) => t.reshape([B, N, H, hd]).transpose(1, 2);
    const a = ops.scaledDotProductAttention(heads(this.q_proj.forward(x)), heads(this.k_proj.forward(x)), heads(this.v_proj.forward(x)), {});
    return this.out_proj.forward(a.transpose(1, 2).reshape([B, N, this.dim]));
  }
}

class ClipMlp extends nn.Module {
  fc1: nn.Linear; fc2: nn.Linear;
  constructor(dim: number, hidden: number, seed: number) { super(); this.fc1 = linear(dim, hidden, seed + 5); this.fc2 = linear(hidden, dim, seed + 6); }
  forward(x: Tensor): Tensor { return this.fc2.forward(quickGelu(this.fc1.forward(x))); }
}

class ClipEncoderLayer extends nn.Module {
  self_attn: ClipAttention; layer_norm1: nn.LayerNorm; mlp: ClipMlp; layer_norm2: nn.LayerNorm;
  constructor(c: ClipVisionConfig, seed: number) {
    super();
    this.self_attn = new ClipAttention(c.hiddenSize, c.numHeads, seed);
    this.layer_norm1 = new nn.LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
    this.mlp = new ClipMlp(c.hiddenSize, c.intermediateSize, seed);
    this.layer_norm2 = new nn.LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
  }
  forward(x: Tensor): Tensor {
    const h = x.add(this.self_attn.forward(this.layer_norm1.forward(x)));
    return h.add(this.mlp.forward(this.layer_norm2.forward(h)));
  }
}

class ClipEncoder extends nn.Module {
  layers: nn.ModuleList<ClipEncoderLayer>;
  constructor(c: ClipVisionConfig, seed: number) {
    super();
    this.layers = new nn.ModuleList(Array.from({ length: c.numLayers }, (_, l) => new ClipEncoderLayer(c, seed + 16 * l)));
  }
  forward(x: Tensor, count = this.layers.length): Tensor {
    let l = 0;
    for (const layer of this.layers) { if (l++ >= count) break; x = layer.forward(x); }
    return x;
  }
}

class ClipEmbeddings extends nn.Module {
  class_embedding: Tensor;
  patch_embedding: nn.Conv2d;
  position_embedding: nn.Embedding;
  constructor(readonly c: ClipVisionConfig, seed: number) {
    super();
    const conv = new nn.Conv2d(c.numChannels, c.hiddenSize, c.patchSize, { stride: c.patchSize, bias: false, seed });
    // small random class token: N(0,1) like transformers' init would dominate the tiny test towers' sums
    this.class_embedding = ops.mul(new nn.Embedding(1, c.hiddenSize, { seed: seed + 1 }).weight.reshape([c.hiddenSize]), 0.02);
    this.patch_embedding = conv;
    this.position_embedding = new nn.Embedding(clipGrid(c) ** 2 + 1, c.hiddenSize, { seed: seed + 2 });
    this.position_embedding.weight = this.position_embedding.weight.mul(0.02);
  }
  /** pixels [B, C, S, S] -> [B, 1 + patches, D]: the class token, then the patches in row-major order. */
  forward(pixels: Tensor): Tensor {
    const B = pixels.metaShape[0];
    const D = this.c.hiddenSize, P = clipGrid(this.c) ** 2;
    const patches = this.patch_embedding.forward(pixels).reshape([B, D, P]).transpose(1, 2);
    const cls = this.class_embedding.reshape([1, 1, D]).expand([B, 1, D]);
    return ops.concat([cls, patches], 1).add(this.position_embedding.weight);
  }
}

class ClipVisionTransformer extends nn.Module {
  embeddings: ClipEmbeddings;
  pre_layrnorm: nn.LayerNorm;
  encoder: ClipEncoder;
  post_layernorm: nn.LayerNorm;
  constructor(c: ClipVisionConfig, seed: number) {
    super();
    this.embeddings = new ClipEmbeddings(c, seed);
    this.pre_layrnorm = new nn.LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
    this.encoder = new ClipEncoder(c, seed + 7);
    this.post_layernorm = new nn.LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
  }
  /** hidden_states[layers] of transformers' CLIPVisionModel: the embeddings after pre_layrnorm, then `layers` blocks. */
  forward(pixels: Tensor, layers: number): Tensor {
    return this.encoder.forward(this.pre_layrnorm.forward(this.embeddings.forward(pixels)), layers);
  }
}

/** transformers' CLIPVisionModel (one field, so names carry its `vision_model.` prefix). */
export class ClipVisionModel extends nn.Module {
  vision_model: ClipVisionTransformer;
  constructor(readonly config: ClipVisionConfig, options: { seed?: number } = {}) {
    super();
    this.vision_model = new ClipVisionTransformer(checkClipConfig(config), options.seed ?? 1);
  }
  forward(pixels: Tensor, layers = this.config.numLayers): Tensor { return this.vision_model.forward(pixels, layers); }
}

/** LLaVA-1.5's projector: linear_2(GELU(linear_1(x))). */
export class LlavaProjector extends nn.Module {
  linear_1: nn.Linear; linear_2: nn.Linear;
  constructor(visionHidden: number, textHidden: number, readonly act: 'gelu' | 'gelu_tanh' = 'gelu', seed = 2) {
    super();
    this.linear_1 = linear(visionHidden, textHidden, seed); this.linear_2 = linear(textHidden, textHidden, seed + 1);
  }
  forward(x: Tensor): Tensor { return this.linear_2.forward(ops.gelu(this.linear_1.forward(x), this.act === 'gelu_tanh' ? 'tanh' : 'none')); }
}

/**
 * Pixels [B, C, S, S] (CLIP-preprocessed) -> image embeddings [B, rows, textHidden] in the decoder's
 * space: the tower up to `featureLayer`, the class token dropped ('default'), then the projector.
 * This is the unit that is compiled (and exported to ONNX): one native plan per batch size.
 */
export class LlavaImageEncoder extends nn.Module {
  vision_tower: ClipVisionModel;
  multi_modal_projector: LlavaProjector;
  readonly layers: number;
  readonly rows: number;
  constructor(readonly config: ClipVisionConfig, readonly options: LlavaVisionOptions, init: { seed?: number } = {}) {
    super();
    const seed = init.seed ?? 1;
    this.vision_tower = new ClipVisionModel(config, { seed });
    this.multi_modal_projector = new LlavaProjector(config.hiddenSize, options.textHiddenSize, options.projectorAct, seed + 100003);
    this.layers = layersToRun(config.numLayers, options.featureLayer);
    if (options.selectStrategy !== 'default' && options.selectStrategy !== 'full') {
      throw new RangeError(`vision_feature_select_strategy ${JSON.stringify(options.selectStrategy)} is not supported (supported: default, full)`);
    }
    this.rows = imageFeatureRows(config, options.selectStrategy);
  }

  /** The tower's selected hidden state [B, 1 + patches, visionHidden] (class token first). */
  visionFeatures(pixels: Tensor): Tensor { return this.vision_tower.forward(pixels, this.layers); }

  forward(pixels: Tensor): Tensor {
    const h = this.visionFeatures(pixels);
    const feats = this.options.selectStrategy === 'default' ? ops.sliceAxis(h, 1, 1) : h;
    return this.multi_modal_projector.forward(feats);
  }
}
