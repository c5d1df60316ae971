// The building blocks the SD UNet and VAE decoder share, written after diffusers (models/resnet.py,
// attention_processor.py, attention.py, transformers/transformer_2d.py, downsampling.py,
// upsampling.py, embeddings.py) with the same field names, so the checkpoints' parameter names
// ('resnets.0.norm1.weight', 'attentions.0.transformer_blocks.0.attn1.to_q.weight', ...) fall out
// of the module tree. Inference only: dropout layers are placeholders (nn.Identity) that keep the
// indices of diffusers' ModuleLists ('ff.net.2', 'to_out.0').
import { nn, F, ops, Rng, fromArray, type Tensor, type DType } from '../../../src/index.js';

export interface LayerOptions { seed?: number; dtype?: DType }

/** Hands each sublayer its own seed, drawn from `seed` (undefined: the global generator, so
 *  manualSeed(n) rebuilds the same weights). */
export function seeder(seed?: number): () => number | undefined {
  const rng = seed === undefined ? null : new Rng(seed);
  return () => rng?.nextU32();
}

/** [N, C] -> [N, C, 1, 1], to add a per-sample channel vector to a feature map. */
const asChannelMap = (v: Tensor): Tensor => v.unsqueeze(2).unsqueeze(3);

/**
 * ResnetBlock2D: GroupNorm → SiLU → 3×3 conv, plus the projected timestep embedding (UNet only),
 * GroupNorm → SiLU → 3×3 conv, added to the input (through a 1×1 conv when the width changes).
 */
export class ResnetBlock2D extends nn.Module {
  norm1: nn.GroupNorm;
  conv1: nn.Conv2d;
  /** Absent in the VAE, which has no timestep. */
  time_emb_proj: nn.Linear | null;
  norm2: nn.GroupNorm;
  conv2: nn.Conv2d;
  conv_shortcut: nn.Conv2d | null;

  constructor(readonly inChannels: number, readonly outChannels: number, o: LayerOptions & { tembChannels: number | null; groups: number; eps: number }) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype;
    this.norm1 = new nn.GroupNorm(o.groups, inChannels, { eps: o.eps, dtype });
    this.conv1 = new nn.Conv2d(inChannels, outChannels, 3, { padding: 1, seed: seedOf(), dtype });
    this.time_emb_proj = o.tembChannels === null ? null : new nn.Linear(o.tembChannels, outChannels, { seed: seedOf(), dtype });
    this.norm2 = new nn.GroupNorm(o.groups, outChannels, { eps: o.eps, dtype });
    this.conv2 = new nn.Conv2d(outChannels, outChannels, 3, { padding: 1, seed: seedOf(), dtype });
    this.conv_shortcut = inChannels === outChannels ? null : new nn.Conv2d(inChannels, outChannels, 1, { seed: seedOf(), dtype });
  }

  /** x [N, inChannels, H, W], temb [N, tembChannels] (UNet) or null (VAE). */
  forward(x: Tensor, temb: Tensor | null = null): Tensor {
    let h = this.conv1.forward(F.silu(this.norm1.forward(x)));
    if (this.time_emb_proj) {
      if (!temb) throw new RangeError('ResnetBlock2D: this block projects a timestep embedding; pass temb');
      h = h.add(asChannelMap(this.time_emb_proj.forward(F.silu(temb))));
    }
    h = this.conv2.forward(F.silu(this.norm2.forward(h)));
    const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
    return shortcut.add(h); // output_scale_factor is 1 in SD
  }

  override extraRepr(): string { return `${this.inChannels}, ${this.outChannels}`; }
}

/**
 * diffusers' Attention (AttnProcessor2_0): separate q/k/v projections (no bias in the UNet, bias in
 * the VAE), heads of size inner/heads, softmax(q·kᵀ/√d)·v, then `to_out.0`. Self-attention when no
 * context is given; cross-attention on `context` [N, T, crossDim] otherwise.
 */
export class Attention extends nn.Module {
  to_q: nn.Linear;
  to_k: nn.Linear;
  to_v: nn.Linear;
  to_out: nn.ModuleList<nn.Module>;
  readonly headDim: number;

  constructor(readonly queryDim: number, readonly heads: number, o: LayerOptions & { crossAttentionDim?: number; bias: boolean }) {
    super();
    if (queryDim % heads !== 0) throw new RangeError(`Attention: queryDim (${queryDim}) must be divisible by heads (${heads})`);
    const seedOf = seeder(o.seed), dtype = o.dtype;
    const kvDim = o.crossAttentionDim ?? queryDim;
    this.headDim = queryDim / heads;
    this.to_q = new nn.Linear(queryDim, queryDim, { bias: o.bias, seed: seedOf(), dtype });
    this.to_k = new nn.Linear(kvDim, queryDim, { bias: o.bias, seed: seedOf(), dtype });
    this.to_v = new nn.Linear(kvDim, queryDim, { bias: o.bias, seed: seedOf(), dtype });
    this.to_out = new nn.ModuleList<nn.Module>([new nn.Linear(queryDim, queryDim, { seed: seedOf(), dtype }), new nn.Identity()]);
  }

  /** x [N, S, queryDim], context [N, T, crossDim] or null -> [N, S, queryDim]. */
  forward(x: Tensor, context: Tensor | null = null): Tensor {
    const [n, s] = x.metaShape;
    const kv = context ?? x;
    const t = kv.metaShape[1];
    const heads = (v: Tensor, len: typeof s): Tensor => v.reshape([n, len, this.heads, this.headDim]).transpose(1, 2);
    const q = heads(this.to_q.forward(x), s), k = heads(this.to_k.forward(kv), t), v = heads(this.to_v.forward(kv), t);
    const out = F.scaledDotProductAttention(q, k, v).transpose(1, 2).reshape([n, s, this.queryDim]);
    return (this.to_out.at(0) as nn.Linear).forward(out);
  }

  override extraRepr(): string { return `queryDim=${this.queryDim}, heads=${this.heads}`; }
}

/** GEGLU: one projection to 2·inner features, split into [hidden | gate]; hidden · gelu(gate).
 *  (Note the order: diffusers gates with the second half, unlike F.geglu, which gates the first.) */
export class GEGLU extends nn.Module {
  proj: nn.Linear;
  constructor(dim: number, readonly inner: number, o: LayerOptions = {}) {
    super();
    this.proj = new nn.Linear(dim, 2 * inner, { seed: o.seed, dtype: o.dtype });
  }
  forward(x: Tensor): Tensor {
    const [hidden, gate] = this.proj.forward(x).chunk(2, -1);
    return hidden.mul(F.gelu(gate));
  }
}

/** The transformer feed-forward: GEGLU to 4·dim, then back to dim ('net.0', dropout 'net.1', 'net.2'). */
export class FeedForward extends nn.Module {
  net: nn.ModuleList<nn.Module>;
  constructor(dim: number, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed);
    this.net = new nn.ModuleList<nn.Module>([
      new GEGLU(dim, 4 * dim, { seed: seedOf(), dtype: o.dtype }),
      new nn.Identity(),
      new nn.Linear(4 * dim, dim, { seed: seedOf(), dtype: o.dtype }),
    ]);
  }
  forward(x: Tensor): Tensor {
    return this.net.at(2).forward(this.net.at(0).forward(x));
  }
}

/** Pre-norm self-attention, cross-attention on the text and GEGLU feed-forward, each residual. */
export class BasicTransformerBlock extends nn.Module {
  norm1: nn.LayerNorm;
  attn1: Attention;
  norm2: nn.LayerNorm;
  attn2: Attention;
  norm3: nn.LayerNorm;
  ff: FeedForward;

  constructor(dim: number, heads: number, crossAttentionDim: number, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype;
    this.norm1 = new nn.LayerNorm(dim, { dtype });
    this.attn1 = new Attention(dim, heads, { bias: false, seed: seedOf(), dtype });
    this.norm2 = new nn.LayerNorm(dim, { dtype });
    this.attn2 = new Attention(dim, heads, { crossAttentionDim, bias: false, seed: seedOf(), dtype });
    this.norm3 = new nn.LayerNorm(dim, { dtype });
    this.ff = new FeedForward(dim, { seed: seedOf(), dtype });
  }

  forward(x: Tensor, context: Tensor): Tensor {
    x = this.attn1.forward(this.norm1.forward(x)).add(x);
    x = this.attn2.forward(this.norm2.forward(x), context).add(x);
    return this.ff.forward(this.norm3.forward(x)).add(x);
  }
}

/**
 * Transformer2DModel (the "spatial transformer"): GroupNorm, proj_in, the feature map as H·W tokens
 * through the transformer blocks, proj_out, plus the input. proj_in/proj_out are 1×1 convs in SD 1.x
 * and Linear layers in SD 2.x (useLinearProjection); both are the same per-pixel matrix.
 */
export class Transformer2DModel extends nn.Module {
  norm: nn.GroupNorm;
  proj_in: nn.Conv2d | nn.Linear;
  transformer_blocks: nn.ModuleList<BasicTransformerBlock>;
  proj_out: nn.Conv2d | nn.Linear;

  constructor(readonly channels: number, heads: number, crossAttentionDim: number, o: LayerOptions & { groups: number; layers: number; useLinearProjection: boolean }) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype;
    const proj = (): nn.Conv2d | nn.Linear => o.useLinearProjection
      ? new nn.Linear(channels, channels, { seed: seedOf(), dtype })
      : new nn.Conv2d(channels, channels, 1, { seed: seedOf(), dtype });
    this.norm = new nn.GroupNorm(o.groups, channels, { eps: 1e-6, dtype });
    this.proj_in = proj();
    this.transformer_blocks = new nn.ModuleList(Array.from({ length: o.layers }, () => new BasicTransformerBlock(channels, heads, crossAttentionDim, { seed: seedOf(), dtype })));
    this.proj_out = proj();
  }

  /** x [N, C, H, W], context [N, T, crossDim] -> [N, C, H, W]. */
  forward(x: Tensor, context: Tensor): Tensor {
    const [n, c, h, w] = x.metaShape;
    const linear = this.proj_in instanceof nn.Linear;
    let t = this.norm.forward(x);
    if (!linear) t = this.proj_in.forward(t);
    t = t.permute(0, 2, 3, 1).reshape([n, numeric(h) * numeric(w), c]); // [N, H·W, C]
    if (linear) t = this.proj_in.forward(t);
    for (const block of this.transformer_blocks) t = block.forward(t, context);
    if (linear) t = this.proj_out.forward(t);
    t = t.reshape([n, h, w, c]).permute(0, 3, 1, 2);
    if (!linear) t = this.proj_out.forward(t);
    return t.add(x);
  }
}

/** A spatial dim as a number: the SD models are traced with concrete spatial sizes. */
function numeric(d: unknown): number {
  if (typeof d !== 'number') throw new RangeError(`spatial dims must be concrete to flatten the feature map into tokens, got ${String(d)}; compile with a static latent size`);
  return d;
}

/** Downsample2D: a 3×3 conv with stride 2 and padding 1 ('conv'). */
export class Downsample2D extends nn.Module {
  conv: nn.Conv2d;
  constructor(channels: number, o: LayerOptions = {}) {
    super();
    this.conv = new nn.Conv2d(channels, channels, 3, { stride: 2, padding: 1, seed: o.seed, dtype: o.dtype });
  }
  forward(x: Tensor): Tensor { return this.conv.forward(x); }
}

/** Upsample2D: nearest-neighbour ×2, then a 3×3 conv ('conv'). */
export class Upsample2D extends nn.Module {
  conv: nn.Conv2d;
  constructor(channels: number, o: LayerOptions = {}) {
    super();
    this.conv = new nn.Conv2d(channels, channels, 3, { padding: 1, seed: o.seed, dtype: o.dtype });
  }
  forward(x: Tensor): Tensor { return this.conv.forward(F.upsampleNearest2d(x, 2)); }
}

/**
 * diffusers' get_timestep_embedding: t [N] -> [N, dim] sinusoidal features with frequencies
 * exp(-ln(10000)·k/(half - freqShift)), k < half; [cos | sin] when flipSinToCos (SD), else [sin | cos].
 * The frequencies are a non-persistent buffer (the original computes them in forward).
 */
export class Timesteps extends nn.Module {
  freqs: Tensor;
  constructor(readonly dim: number, readonly flipSinToCos: boolean, readonly freqShift: number, dtype: DType = 'f32') {
    super();
    const half = Math.floor(dim / 2);
    const f = new Float64Array(half);
    for (let k = 0; k < half; k++) f[k] = Math.exp((-Math.log(10000) * k) / (half - freqShift));
    this.freqs = nn.buffer(fromArray(f, [half], dtype), { persistent: false });
  }
  forward(t: Tensor): Tensor {
    const args = t.cast(this.freqs.dtype).unsqueeze(1).mul(this.freqs.unsqueeze(0)); // [N, half]
    const emb = this.flipSinToCos ? ops.concat([args.cos(), args.sin()], -1) : ops.concat([args.sin(), args.cos()], -1);
    return this.dim % 2 === 1 ? F.pad(emb, [0, 1]) : emb;
  }
}

/** TimestepEmbedding: linear_1 → SiLU → linear_2. */
export class TimestepEmbedding extends nn.Module {
  linear_1: nn.Linear;
  linear_2: nn.Linear;
  constructor(inChannels: number, dim: number, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed);
    this.linear_1 = new nn.Linear(inChannels, dim, { seed: seedOf(), dtype: o.dtype });
    this.linear_2 = new nn.Linear(dim, dim, { seed: seedOf(), dtype: o.dtype });
  }
  forward(x: Tensor): Tensor { return this.linear_2.forward(F.silu(this.linear_1.forward(x))); }
}
