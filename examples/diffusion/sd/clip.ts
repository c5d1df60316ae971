// The CLIP ViT-L/14 text encoder as Stable Diffusion 1.x uses it (transformers CLIPTextModel):
// token + learned position embeddings, pre-norm transformer layers with causal self-attention and a
// QuickGELU MLP, and a final LayerNorm whose output (last_hidden_state [N, 77, 768]) is what the
// UNet cross-attends to. Field names are transformers', so text_encoder/model.safetensors loads by
// name ('text_model.encoder.layers.0.self_attn.q_proj.weight', ...).
import { nn, F, inferenceJit, type Tensor } from '../../../src/index.js';
import { SD15_CLIP_CONFIG, validateClipConfig, type ClipTextConfig } from './config.js';
import { seeder, type LayerOptions } from './layers.js';
import { type SdInitOptions } from './unet.js';

/** QuickGELU, CLIP's activation: x · sigmoid(1.702·x). */
export const quickGelu = (x: Tensor): Tensor => x.mul(x.mul(1.702).sigmoid());

export class ClipTextEmbeddings extends nn.Module {
  token_embedding: nn.Embedding;
  position_embedding: nn.Embedding;
  constructor(c: ClipTextConfig, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed);
    this.token_embedding = new nn.Embedding(c.vocabSize, c.hiddenSize, { seed: seedOf(), dtype: o.dtype });
    this.position_embedding = new nn.Embedding(c.maxPositionEmbeddings, c.hiddenSize, { seed: seedOf(), dtype: o.dtype });
  }
  /** ids [N, S] -> [N, S, D]: positions 0..S-1 (the first S rows of the table, no gather). */
  forward(ids: Tensor): Tensor {
    const s = ids.metaShape[1];
    if (typeof s !== 'number') throw new RangeError(`ClipTextEmbeddings: the sequence length must be concrete, got [${ids.metaShape.join(', ')}]`);
    return this.token_embedding.forward(ids).add(this.position_embedding.weight.sliceAxis(0, 0, s).unsqueeze(0));
  }
}

/** Multi-head self-attention with separate k/v/q/out projections (transformers' order and names). */
export class ClipAttention extends nn.Module {
  k_proj: nn.Linear;
  v_proj: nn.Linear;
  q_proj: nn.Linear;
  out_proj: nn.Linear;
  readonly headDim: number;
  constructor(readonly dim: number, readonly heads: number, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype;
    this.headDim = dim / heads;
    this.k_proj = new nn.Linear(dim, dim, { seed: seedOf(), dtype });
    this.v_proj = new nn.Linear(dim, dim, { seed: seedOf(), dtype });
    this.q_proj = new nn.Linear(dim, dim, { seed: seedOf(), dtype });
    this.out_proj = new nn.Linear(dim, dim, { seed: seedOf(), dtype });
  }
  /** x [N, S, D] with a causal mask (CLIP's text transformer is autoregressive-masked). */
  forward(x: Tensor): Tensor {
    const [n, s] = x.metaShape;
    const heads = (t: Tensor): Tensor => t.reshape([n, s, this.heads, this.headDim]).transpose(1, 2);
    const out = F.scaledDotProductAttention(heads(this.q_proj.forward(x)), heads(this.k_proj.forward(x)), heads(this.v_proj.forward(x)), { causal: true });
    return this.out_proj.forward(out.transpose(1, 2).reshape([n, s, this.dim]));
  }
}

export class ClipMlp extends nn.Module {
  fc1: nn.Linear;
  fc2: nn.Linear;
  constructor(dim: number, hidden: number, readonly act: ClipTextConfig['hiddenAct'], o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed);
    this.fc1 = new nn.Linear(dim, hidden, { seed: seedOf(), dtype: o.dtype });
    this.fc2 = new nn.Linear(hidden, dim, { seed: seedOf(), dtype: o.dtype });
  }
  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x);
    return this.fc2.forward(this.act === 'quick_gelu' ? quickGelu(h) : F.gelu(h));
  }
}

export class ClipEncoderLayer extends nn.Module {
  self_attn: ClipAttention;
  layer_norm1: nn.LayerNorm;
  mlp: ClipMlp;
  layer_norm2: nn.LayerNorm;
  constructor(c: ClipTextConfig, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype;
    this.self_attn = new ClipAttention(c.hiddenSize, c.numAttentionHeads, { seed: seedOf(), dtype });
    this.layer_norm1 = new nn.LayerNorm(c.hiddenSize, { eps: c.layerNormEps, dtype });
    this.mlp = new ClipMlp(c.hiddenSize, c.intermediateSize, c.hiddenAct, { seed: seedOf(), dtype });
    this.layer_norm2 = new nn.LayerNorm(c.hiddenSize, { eps: c.layerNormEps, dtype });
  }
  forward(x: Tensor): Tensor {
    x = x.add(this.self_attn.forward(this.layer_norm1.forward(x)));
    return x.add(this.mlp.forward(this.layer_norm2.forward(x)));
  }
}

export class ClipEncoder extends nn.Module {
  layers: nn.ModuleList<ClipEncoderLayer>;
  constructor(c: ClipTextConfig, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed);
    this.layers = new nn.ModuleList(Array.from({ length: c.numHiddenLayers }, () => new ClipEncoderLayer(c, { seed: seedOf(), dtype: o.dtype })));
  }
  forward(x: Tensor): Tensor {
    for (const layer of this.layers) x = layer.forward(x);
    return x;
  }
}

/** transformers' CLIPTextTransformer (the `text_model.` prefix). */
export class ClipTextTransformer extends nn.Module {
  embeddings: ClipTextEmbeddings;
  encoder: ClipEncoder;
  final_layer_norm: nn.LayerNorm;
  constructor(c: ClipTextConfig, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed);
    this.embeddings = new ClipTextEmbeddings(c, { seed: seedOf(), dtype: o.dtype });
    this.encoder = new ClipEncoder(c, { seed: seedOf(), dtype: o.dtype });
    this.final_layer_norm = new nn.LayerNorm(c.hiddenSize, { eps: c.layerNormEps, dtype: o.dtype });
  }
  forward(ids: Tensor): Tensor {
    return this.final_layer_norm.forward(this.encoder.forward(this.embeddings.forward(ids)));
  }
}

/**
 * Token ids [N, S] (i64, S ≤ maxPositionEmbeddings; the tokenizer pads prompts to 77) -> the last
 * hidden state [N, S, hiddenSize] after the final LayerNorm, which SD feeds the UNet. (The pooled
 * output, the hidden state at the end-of-text token, is CLIP's image-text matching head; SD does not
 * use it, so it is not computed.)
 */
export class ClipTextModel extends nn.Module {
  text_model: ClipTextTransformer;
  readonly config: Readonly<ClipTextConfig>;

  constructor(config: Partial<ClipTextConfig> = {}, options: SdInitOptions = {}) {
    super();
    const c: ClipTextConfig = { ...SD15_CLIP_CONFIG, ...config };
    validateClipConfig(c);
    this.config = Object.freeze(c);
    this.text_model = new ClipTextTransformer(c, { seed: options.seed, dtype: options.dtype ?? 'f32' });
    this.eval();
  }

  forward(inputIds: Tensor): Tensor {
    const s = inputIds.metaShape[1];
    if (inputIds.rank !== 2 || (typeof s === 'number' && s > this.config.maxPositionEmbeddings)) {
      throw new RangeError(`ClipTextModel: inputIds must be [N, S] with S ≤ ${this.config.maxPositionEmbeddings}, got [${inputIds.metaShape.join(', ')}]`);
    }
    return this.text_model.forward(inputIds);
  }

  /** The forward pass as written, never compiled (the oracle of CompiledClipTextModel). */
  eager(inputIds: Tensor): Tensor { return ClipTextModel.prototype.forward.call(this, inputIds); }

  override extraRepr(): string {
    const c = this.config;
    return `vocabSize=${c.vocabSize}, hiddenSize=${c.hiddenSize}, layers=${c.numHiddenLayers}, heads=${c.numAttentionHeads}`;
  }
}

/** The text encoder with the one line that compiles it (static shapes: [N, 77] ids). */
@inferenceJit()
export class CompiledClipTextModel extends ClipTextModel {}
