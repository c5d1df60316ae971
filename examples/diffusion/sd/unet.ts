// The Stable Diffusion UNet (diffusers UNet2DConditionModel, as SD 1.x configures it) as plain user
// code: conv_in, a timestep MLP, down levels of ResNet blocks (+ spatial transformers that
// cross-attend to the text) and stride-2 convs, a mid block, up levels that concatenate the saved
// skips, and GroupNorm → SiLU → conv_out. Field names are diffusers', so a diffusers
// unet/diffusion_pytorch_model.safetensors loads by name (see weights.ts).
import { nn, F, ops, inferenceJit, type Tensor, type DType } from '../../../src/index.js';
import { SD15_UNET_CONFIG, validateUNetConfig, type UNetConfig } from './config.js';
import {
  ResnetBlock2D, Transformer2DModel, Downsample2D, Upsample2D, Timesteps, TimestepEmbedding, seeder, type LayerOptions,
} from './layers.js';

interface BlockOptions extends LayerOptions { config: UNetConfig; tembChannels: number }

/** A down level: `layersPerBlock` ResNets (each followed by a spatial transformer in the
 *  cross-attention variant), then a stride-2 conv unless it is the coarsest level. Every ResNet
 *  (or transformer) output and the downsampled map are kept as skips for the up path. */
export class DownBlock2D extends nn.Module {
  resnets: nn.ModuleList<ResnetBlock2D>;
  attentions: nn.ModuleList<Transformer2DModel> | null;
  downsamplers: nn.ModuleList<Downsample2D> | null;

  constructor(inChannels: number, outChannels: number, crossAttention: boolean, addDownsample: boolean, o: BlockOptions) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype, c = o.config;
    const resnets: ResnetBlock2D[] = [], attentions: Transformer2DModel[] = [];
    for (let i = 0; i < c.layersPerBlock; i++) {
      resnets.push(new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, { tembChannels: o.tembChannels, groups: c.normNumGroups, eps: c.normEps, seed: seedOf(), dtype }));
      if (crossAttention) attentions.push(spatialTransformer(outChannels, c, seedOf(), dtype));
    }
    this.resnets = new nn.ModuleList(resnets);
    this.attentions = crossAttention ? new nn.ModuleList(attentions) : null;
    this.downsamplers = addDownsample ? new nn.ModuleList([new Downsample2D(outChannels, { seed: seedOf(), dtype })]) : null;
  }

  /** Returns the level's output and the skips it leaves for the up path, in order. */
  forward(x: Tensor, temb: Tensor, context: Tensor): { out: Tensor; skips: Tensor[] } {
    const skips: Tensor[] = [];
    for (let i = 0; i < this.resnets.length; i++) {
      x = this.resnets.at(i).forward(x, temb);
      if (this.attentions) x = this.attentions.at(i).forward(x, context);
      skips.push(x);
    }
    if (this.downsamplers) {
      x = this.downsamplers.at(0).forward(x);
      skips.push(x);
    }
    return { out: x, skips };
  }
}

/** An up level: `layersPerBlock + 1` ResNets, each on [x | the next skip] (channels concatenated),
 *  each followed by a spatial transformer in the cross-attention variant, then ×2 nearest + conv
 *  unless it is the finest level. */
export class UpBlock2D extends nn.Module {
  resnets: nn.ModuleList<ResnetBlock2D>;
  attentions: nn.ModuleList<Transformer2DModel> | null;
  upsamplers: nn.ModuleList<Upsample2D> | null;

  constructor(inChannels: number, outChannels: number, prevOutputChannels: number, crossAttention: boolean, addUpsample: boolean, o: BlockOptions) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype, c = o.config;
    const n = c.layersPerBlock + 1;
    const resnets: ResnetBlock2D[] = [], attentions: Transformer2DModel[] = [];
    for (let i = 0; i < n; i++) {
      // diffusers' channel bookkeeping: the last skip of a level comes from the level below's
      // input width; the first ResNet reads the previous up level's output.
      const skipChannels = i === n - 1 ? inChannels : outChannels;
      const resnetIn = i === 0 ? prevOutputChannels : outChannels;
      resnets.push(new ResnetBlock2D(resnetIn + skipChannels, outChannels, { tembChannels: o.tembChannels, groups: c.normNumGroups, eps: c.normEps, seed: seedOf(), dtype }));
      if (crossAttention) attentions.push(spatialTransformer(outChannels, c, seedOf(), dtype));
    }
    this.resnets = new nn.ModuleList(resnets);
    this.attentions = crossAttention ? new nn.ModuleList(attentions) : null;
    this.upsamplers = addUpsample ? new nn.ModuleList([new Upsample2D(outChannels, { seed: seedOf(), dtype })]) : null;
  }

  /** `skips` is this level's share of the down path's skips, consumed last first. */
  forward(x: Tensor, skips: Tensor[], temb: Tensor, context: Tensor): Tensor {
    if (skips.length !== this.resnets.length) throw new RangeError(`UpBlock2D: expected ${this.resnets.length} skips, got ${skips.length}`);
    for (let i = 0; i < this.resnets.length; i++) {
      x = this.resnets.at(i).forward(ops.concat([x, skips[skips.length - 1 - i]], 1), temb);
      if (this.attentions) x = this.attentions.at(i).forward(x, context);
    }
    return this.upsamplers ? this.upsamplers.at(0).forward(x) : x;
  }
}

/** UNetMidBlock2DCrossAttn: ResNet, spatial transformer, ResNet at the coarsest resolution. */
export class UNetMidBlock2DCrossAttn extends nn.Module {
  attentions: nn.ModuleList<Transformer2DModel>;
  resnets: nn.ModuleList<ResnetBlock2D>;

  constructor(channels: number, o: BlockOptions) {
    super();
    const seedOf = seeder(o.seed), dtype = o.dtype, c = o.config;
    const resnet = (): ResnetBlock2D => new ResnetBlock2D(channels, channels, { tembChannels: o.tembChannels, groups: c.normNumGroups, eps: c.normEps, seed: seedOf(), dtype });
    const first = resnet();
    this.attentions = new nn.ModuleList([spatialTransformer(channels, c, seedOf(), dtype)]);
    this.resnets = new nn.ModuleList([first, resnet()]);
  }

  forward(x: Tensor, temb: Tensor, context: Tensor): Tensor {
    x = this.resnets.at(0).forward(x, temb);
    x = this.attentions.at(0).forward(x, context);
    return this.resnets.at(1).forward(x, temb);
  }
}

function spatialTransformer(channels: number, c: UNetConfig, seed: number | undefined, dtype: DType | undefined): Transformer2DModel {
  return new Transformer2DModel(channels, c.attentionHeads, c.crossAttentionDim, {
    groups: c.normNumGroups, layers: c.transformerLayersPerBlock, useLinearProjection: c.useLinearProjection, seed, dtype,
  });
}

export interface SdInitOptions {
  /** Seed of every weight; default: the global generator (see manualSeed). */
  seed?: number;
  dtype?: DType;
}

/**
 * The denoiser: noisy latents [N, inChannels, h, w], timesteps [N] (0..999, f32) and text
 * embeddings [N, T, crossAttentionDim] -> predicted noise [N, outChannels, h, w]. h and w must be
 * multiples of 2^(levels - 1) (8 for SD: 64×64 latents for 512×512 images).
 */
export class UNet2DConditionModel extends nn.Module {
  conv_in: nn.Conv2d;
  time_proj: Timesteps;
  time_embedding: TimestepEmbedding;
  down_blocks: nn.ModuleList<DownBlock2D>;
  up_blocks: nn.ModuleList<UpBlock2D>;
  mid_block: UNetMidBlock2DCrossAttn;
  conv_norm_out: nn.GroupNorm;
  conv_out: nn.Conv2d;
  readonly config: Readonly<UNetConfig>;

  constructor(config: Partial<UNetConfig> = {}, options: SdInitOptions = {}) {
    super();
    const c: UNetConfig = { ...SD15_UNET_CONFIG, ...config };
    validateUNetConfig(c);
    this.config = Object.freeze(c);
    const seedOf = seeder(options.seed), dtype = options.dtype ?? 'f32';
    const ch = c.blockOutChannels, levels = ch.length;
    const tembChannels = ch[0] * 4;
    const block = { config: c, tembChannels, dtype };

    this.conv_in = new nn.Conv2d(c.inChannels, ch[0], 3, { padding: 1, seed: seedOf(), dtype });
    this.time_proj = new Timesteps(ch[0], c.flipSinToCos, c.freqShift, dtype);
    this.time_embedding = new TimestepEmbedding(ch[0], tembChannels, { seed: seedOf(), dtype });

    const down: DownBlock2D[] = [];
    let outChannels = ch[0];
    for (let i = 0; i < levels; i++) {
      const inChannels = outChannels;
      outChannels = ch[i];
      down.push(new DownBlock2D(inChannels, outChannels, c.downBlockTypes[i] === 'CrossAttnDownBlock2D', i < levels - 1, { ...block, seed: seedOf() }));
    }
    this.down_blocks = new nn.ModuleList(down);
    this.mid_block = new UNetMidBlock2DCrossAttn(ch[levels - 1], { ...block, seed: seedOf() });

    const reversed = [...ch].reverse();
    const up: UpBlock2D[] = [];
    outChannels = reversed[0];
    for (let i = 0; i < levels; i++) {
      const prevOutput = outChannels;
      outChannels = reversed[i];
      const inChannels = reversed[Math.min(i + 1, levels - 1)];
      up.push(new UpBlock2D(inChannels, outChannels, prevOutput, c.upBlockTypes[i] === 'CrossAttnUpBlock2D', i < levels - 1, { ...block, seed: seedOf() }));
    }
    this.up_blocks = new nn.ModuleList(up);
    this.conv_norm_out = new nn.GroupNorm(c.normNumGroups, ch[0], { eps: c.normEps, dtype });
    this.conv_out = new nn.Conv2d(ch[0], c.outChannels, 3, { padding: 1, seed: seedOf(), dtype });
    this.eval();
  }

  /** The latent side must survive levels - 1 halvings exactly, so the up path's skips line up. */
  get latentMultiple(): number { return 2 ** (this.config.blockOutChannels.length - 1); }

  forward(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor): Tensor {
    this.checkInputs(sample, timestep, encoderHiddenStates);
    const temb = this.time_embedding.forward(this.time_proj.forward(timestep).cast(this.conv_in.weight.dtype));
    let x = this.conv_in.forward(sample);
    const skips: Tensor[] = [x];
    for (const block of this.down_blocks) {
      const r = block.forward(x, temb, encoderHiddenStates);
      x = r.out;
      skips.push(...r.skips);
    }
    x = this.mid_block.forward(x, temb, encoderHiddenStates);
    for (const block of this.up_blocks) {
      const n = block.resnets.length;
      x = block.forward(x, skips.splice(skips.length - n, n), temb, encoderHiddenStates);
    }
    return this.conv_out.forward(F.silu(this.conv_norm_out.forward(x)));
  }

  /** The forward pass as written, never compiled: on a CompiledUNet (whose decorator wraps
   *  `forward` on its own prototype) this is the eager oracle. */
  eager(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor): Tensor {
    return UNet2DConditionModel.prototype.forward.call(this, sample, timestep, encoderHiddenStates);
  }

  private checkInputs(sample: Tensor, timestep: Tensor, context: Tensor): void {
    const c = this.config, m = this.latentMultiple;
    const [n, ch, h, w] = sample.metaShape;
    if (sample.rank !== 4 || ch !== c.inChannels) throw new RangeError(`UNet2DConditionModel: sample must be [N, ${c.inChannels}, h, w], got [${sample.metaShape.join(', ')}]`);
    if ((typeof h === 'number' && h % m !== 0) || (typeof w === 'number' && w % m !== 0)) {
      throw new RangeError(`UNet2DConditionModel: latent height and width must be multiples of ${m} (${c.blockOutChannels.length} levels), got ${h}×${w}; for images that is a multiple of ${8 * m} pixels`);
    }
    if (timestep.rank !== 1 || timestep.metaShape[0] !== n) throw new RangeError(`UNet2DConditionModel: timestep must be [${n}] (one per sample), got [${timestep.metaShape.join(', ')}]`);
    if (context.rank !== 3 || context.metaShape[0] !== n || context.metaShape[2] !== c.crossAttentionDim) {
      throw new RangeError(`UNet2DConditionModel: encoderHiddenStates must be [${n}, T, ${c.crossAttentionDim}], got [${context.metaShape.join(', ')}]`);
    }
  }

  override extraRepr(): string {
    const c = this.config;
    return `blockOutChannels=[${c.blockOutChannels}], layersPerBlock=${c.layersPerBlock}, heads=${c.attentionHeads}, crossAttentionDim=${c.crossAttentionDim}`;
  }
}

/**
 * The UNet with the one line that compiles it. No input spec: every input shape is static, so each
 * latent size and batch (2 with classifier-free guidance) gets its own plan, compiled on its first
 * call and kept in the memory and disk caches. (Convolution output sizes depend on the spatial
 * dims, and a concrete size lets the plan fix every buffer.)
 */
@inferenceJit()
export class CompiledUNet extends UNet2DConditionModel {}
