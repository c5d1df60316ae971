// The Stable Diffusion VAE decoder (the decoding half of diffusers AutoencoderKL): post_quant_conv,
// then conv_in, a mid block (ResNet, single-head self-attention over all pixels, ResNet), up levels
// of ResNets with ×2 nearest upsampling, and GroupNorm → SiLU → conv_out to RGB. Field names are
// diffusers', so the decoder's tensors of vae/diffusion_pytorch_model.safetensors load by name.
import { nn, F, inferenceJit, type Tensor } from '../../../src/index.js';
import { SD15_VAE_CONFIG, validateVaeConfig, type VaeConfig } from './config.js';
import { ResnetBlock2D, Attention, Upsample2D, seeder, type LayerOptions } from './layers.js';
import { type SdInitOptions } from './unet.js';

/** The VAE's attention block: GroupNorm, every pixel a token, one head over all channels (with
 *  biases), projected back and added to the input. diffusers builds it from the same Attention
 *  class as the UNet (group_norm, to_q, to_k, to_v, to_out.0). */
export class VaeAttention extends Attention {
  group_norm: nn.GroupNorm;

  constructor(channels: number, o: LayerOptions & { groups: number }) {
    super(channels, 1, { bias: true, seed: o.seed, dtype: o.dtype });
    this.group_norm = new nn.GroupNorm(o.groups, channels, { eps: 1e-6, dtype: o.dtype });
  }

  /** x [N, C, H, W] -> [N, C, H, W]. */
  override forward(x: Tensor): Tensor {
    const [n, c, h, w] = x.metaShape;
    if (typeof h !== 'number' || typeof w !== 'number') throw new RangeError(`VaeAttention: spatial dims must be concrete, got [${x.metaShape.join(', ')}]`);
    const tokens = this.group_norm.forward(x).reshape([n, c, h * w]).transpose(1, 2); // [N, H·W, C]
    const out = super.forward(tokens);
    return out.transpose(1, 2).reshape([n, c, h, w]).add(x);
  }
}

/** UNetMidBlock2D (no timestep): ResNet, attention, ResNet. */
export class VaeMidBlock extends nn.Module {
  attentions: nn.ModuleList<VaeAttention>;
  resnets: nn.ModuleList<ResnetBlock2D>;
  constructor(channels: number, o: LayerOptions & { groups: number }) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype;
    const resnet = (): ResnetBlock2D => new ResnetBlock2D(channels, channels, { tembChannels: null, groups: o.groups, eps: 1e-6, seed: seedOf(), dtype });
    const first = resnet();
    this.attentions = new nn.ModuleList([new VaeAttention(channels, { groups: o.groups, seed: seedOf(), dtype })]);
    this.resnets = new nn.ModuleList([first, resnet()]);
  }
  forward(x: Tensor): Tensor {
    return this.resnets.at(1).forward(this.attentions.at(0).forward(this.resnets.at(0).forward(x)));
  }
}

/** UpDecoderBlock2D: `layers` ResNets, then ×2 nearest + conv unless it is the last level. */
export class UpDecoderBlock2D extends nn.Module {
  resnets: nn.ModuleList<ResnetBlock2D>;
  upsamplers: nn.ModuleList<Upsample2D> | null;
  constructor(inChannels: number, outChannels: number, layers: number, addUpsample: boolean, o: LayerOptions & { groups: number }) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype;
    this.resnets = new nn.ModuleList(Array.from({ length: layers }, (_, i) =>
      new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, { tembChannels: null, groups: o.groups, eps: 1e-6, seed: seedOf(), dtype })));
    this.upsamplers = addUpsample ? new nn.ModuleList([new Upsample2D(outChannels, { seed: seedOf(), dtype })]) : null;
  }
  forward(x: Tensor): Tensor {
    for (const r of this.resnets) x = r.forward(x);
    return this.upsamplers ? this.upsamplers.at(0).forward(x) : x;
  }
}

/** diffusers' Decoder (the `decoder.` prefix of AutoencoderKL). */
export class Decoder extends nn.Module {
  conv_in: nn.Conv2d;
  up_blocks: nn.ModuleList<UpDecoderBlock2D>;
  mid_block: VaeMidBlock;
  conv_norm_out: nn.GroupNorm;
  conv_out: nn.Conv2d;

  constructor(c: VaeConfig, o: LayerOptions = {}) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype, groups = c.normNumGroups;
    const reversed = [...c.blockOutChannels].reverse();
    this.conv_in = new nn.Conv2d(c.latentChannels, reversed[0], 3, { padding: 1, seed: seedOf(), dtype });
    this.mid_block = new VaeMidBlock(reversed[0], { groups, seed: seedOf(), dtype });
    let outChannels = reversed[0];
    const up: UpDecoderBlock2D[] = [];
    for (let i = 0; i < reversed.length; i++) {
      const prev = outChannels;
      outChannels = reversed[i];
      up.push(new UpDecoderBlock2D(prev, outChannels, c.layersPerBlock + 1, i < reversed.length - 1, { groups, seed: seedOf(), dtype }));
    }
    this.up_blocks = new nn.ModuleList(up);
    const last = c.blockOutChannels[0];
    this.conv_norm_out = new nn.GroupNorm(groups, last, { eps: 1e-6, dtype });
    this.conv_out = new nn.Conv2d(last, c.outChannels, 3, { padding: 1, seed: seedOf(), dtype });
  }

  forward(z: Tensor): Tensor {
    let x = this.mid_block.forward(this.conv_in.forward(z));
    for (const block of this.up_blocks) x = block.forward(x);
    return this.conv_out.forward(F.silu(this.conv_norm_out.forward(x)));
  }
}

/**
 * The decoding half of AutoencoderKL: latents z [N, latentChannels, h, w] (already divided by
 * scalingFactor, as diffusers' pipelines do before vae.decode) -> images [N, outChannels,
 * h·2^(levels-1), w·2^(levels-1)] with values nominally in [-1, 1]. decodeLatents() takes the
 * sampler's latents and does the division.
 */
export class VaeDecoder extends nn.Module {
  post_quant_conv: nn.Conv2d;
  decoder: Decoder;
  readonly config: Readonly<VaeConfig>;

  constructor(config: Partial<VaeConfig> = {}, options: SdInitOptions = {}) {
    super();
    const c: VaeConfig = { ...SD15_VAE_CONFIG, ...config };
    validateVaeConfig(c);
    this.config = Object.freeze(c);
    const seedOf = seeder(options.seed), dtype = options.dtype ?? 'f32';
    this.post_quant_conv = new nn.Conv2d(c.latentChannels, c.latentChannels, 1, { seed: seedOf(), dtype });
    this.decoder = new Decoder(c, { seed: seedOf(), dtype });
    this.eval();
  }

  /** How many pixels one latent pixel becomes (8 for SD). */
  get upscale(): number { return 2 ** (this.config.blockOutChannels.length - 1); }

  forward(z: Tensor): Tensor {
    if (z.rank !== 4 || z.metaShape[1] !== this.config.latentChannels) {
      throw new RangeError(`VaeDecoder: latents must be [N, ${this.config.latentChannels}, h, w], got [${z.metaShape.join(', ')}]`);
    }
    return this.decoder.forward(this.post_quant_conv.forward(z));
  }

  /** The forward pass as written, never compiled (the oracle of CompiledVaeDecoder). */
  eager(z: Tensor): Tensor { return VaeDecoder.prototype.forward.call(this, z); }

  /** Sampler latents -> images: divides by scalingFactor, then runs forward (compiled when the
   *  instance is a CompiledVaeDecoder). */
  decodeLatents(latents: Tensor): Tensor { return (this as VaeDecoder).call(latents.div(this.config.scalingFactor)); }

  override extraRepr(): string { return `blockOutChannels=[${this.config.blockOutChannels}], layersPerBlock=${this.config.layersPerBlock}`; }
}

/** The VAE decoder with the one line that compiles it (static shapes: one plan per latent size). */
@inferenceJit()
export class CompiledVaeDecoder extends VaeDecoder {}
