// DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers", 2023) written as plain user
// code on inferjit's nn modules. It follows facebookresearch/DiT models.py layer for layer, and its
// fields carry the original snake_case names so a converted checkpoint loads by name unchanged.
// `DiT` is the eager model; `CompiledDiT` (and `CompiledDiT512`) add the one line, @inferenceJit.
import { nn, ops, F, Rng, fromArray, rand, randn, zeros, inferenceJit, type Tensor, type DType, type InputSpec } from '../../src/index.js';

// ---- configuration ----

export interface DiTConfig {
  /** Latent height and width (image size / 8 for the SD VAE): 32 for 256×256 images. */
  inputSize: number;
  patchSize: number;
  /** Latent channels (4 for the SD VAE). */
  inChannels: number;
  hiddenSize: number;
  depth: number;
  numHeads: number;
  /** MLP hidden width as a multiple of hiddenSize. */
  mlpRatio: number;
  /** The training-time label dropout; at inference it only decides whether the table has the extra
   *  "null class" row used by classifier-free guidance (it does when > 0, as in the original). */
  classDropoutProb: number;
  numClasses: number;
  /** Predict the variance too: the output has 2·inChannels channels [eps | variance values]. */
  learnSigma: boolean;
}

export const DEFAULT_DIT_CONFIG: DiTConfig = {
  inputSize: 32, patchSize: 2, inChannels: 4, hiddenSize: 1152, depth: 28, numHeads: 16,
  mlpRatio: 4, classDropoutProb: 0.1, numClasses: 1000, learnSigma: true,
};

/** The paper's model sizes (Table 1) at each patch size. */
const SIZES = {
  S: { depth: 12, hiddenSize: 384, numHeads: 6 },
  B: { depth: 12, hiddenSize: 768, numHeads: 12 },
  L: { depth: 24, hiddenSize: 1024, numHeads: 16 },
  XL: { depth: 28, hiddenSize: 1152, numHeads: 16 },
} as const;
export type DiTName = `DiT-${keyof typeof SIZES}/${2 | 4 | 8}`;
export const DIT_MODEL_NAMES: DiTName[] = (Object.keys(SIZES) as (keyof typeof SIZES)[])
  .flatMap((s) => ([2, 4, 8] as const).map((p): DiTName => `DiT-${s}/${p}`));

/** The full config of a named model ('DiT-S/2', ..., 'DiT-XL/8'), with optional overrides
 *  (e.g. { inputSize: 64 } for 512×512 images). */
export function ditConfig(name: DiTName, overrides: Partial<DiTConfig> = {}): DiTConfig {
  const m = /^DiT-(S|B|L|XL)\/(2|4|8)$/.exec(name);
  if (!m) throw new RangeError(`ditConfig: unknown model ${JSON.stringify(name)}; expected one of ${DIT_MODEL_NAMES.join(', ')}`);
  return { ...DEFAULT_DIT_CONFIG, ...SIZES[m[1] as keyof typeof SIZES], patchSize: Number(m[2]), ...overrides };
}

export interface DiTInitOptions {
  /** Seed of every weight; default: the global generator (see manualSeed). */
  seed?: number;
  /**
   * 'random' (default): every layer keeps its own seeded default init (PyTorch's U(±1/√fanIn) for
   * Linear and Conv2d, N(0, 1) for the label table). The original DiT zero-initializes the adaLN
   * modulation and the final projection ('original' below), which makes an untrained model output
   * exactly zero and every block the identity; the non-zero default makes every path (attention,
   * MLP, gates, final layer) contribute O(1) values, so benchmarks and eager-vs-compiled tests
   * exercise real arithmetic.
   * 'original': DiT's initialize_weights(): Xavier-uniform Linear weights and zero biases, N(0, 0.02)
   * label table and timestep-MLP weights, zeroed adaLN and final layers.
   */
  init?: 'random' | 'original';
  dtype?: DType;
}

// ---- helpers ----

/** x · (1 + scale) + shift with per-sample scale and shift [N, D] broadcast over the tokens of x [N, T, D]. */
export function modulate(x: Tensor, shift: Tensor, scale: Tensor): Tensor {
  return x.mul(scale.unsqueeze(1).add(1)).add(shift.unsqueeze(1));
}

/**
 * The fixed 2-D sin-cos position table [gridSize², embedDim] of MAE/DiT, in float64: token
 * (row i, col j) gets [sin(j·ω), cos(j·ω), sin(i·ω), cos(i·ω)] with ω_k = 10000^(-k/(embedDim/4)),
 * k < embedDim/4. (The original's meshgrid puts the column index w first, so the first half
 * encodes the column.)
 */
export function sincosPosEmbed2d(embedDim: number, gridSize: number): Float64Array {
  if (embedDim % 4 !== 0) throw new RangeError(`sincosPosEmbed2d: embedDim must be divisible by 4, got ${embedDim}`);
  const quarter = embedDim / 4;
  const out = new Float64Array(gridSize * gridSize * embedDim);
  for (let i = 0; i < gridSize; i++) {
    for (let j = 0; j < gridSize; j++) {
      const row = (i * gridSize + j) * embedDim;
      for (let k = 0; k < quarter; k++) {
        const omega = 1 / Math.pow(10000, k / quarter);
        out[row + k] = Math.sin(j * omega);
        out[row + quarter + k] = Math.cos(j * omega);
        out[row + 2 * quarter + k] = Math.sin(i * omega);
        out[row + 3 * quarter + k] = Math.cos(i * omega);
      }
    }
  }
  return out;
}

// ---- embedders ----

/** timm's PatchEmbed: a Conv2d with kernel = stride = patch, flattened to tokens [N, T, D]. */
export class PatchEmbed extends nn.Module {
  proj: nn.Conv2d;
  constructor(readonly patchSize: number, inChannels: number, hiddenSize: number, options: { seed?: number; dtype?: DType } = {}) {
    super();
    this.proj = new nn.Conv2d(inChannels, hiddenSize, patchSize, { stride: patchSize, seed: options.seed, dtype: options.dtype });
  }
  forward(x: Tensor): Tensor {
    return this.proj.forward(x).flatten(2).transpose(1, 2); // [N, D, h, w] -> [N, h·w, D]
  }
}

/** Scalar timesteps -> sinusoidal features (cos first, then sin, as in GLIDE/DiT) -> MLP. */
export class TimestepEmbedder extends nn.Module {
  mlp: nn.Sequential;
  /** The frequencies exp(-ln(maxPeriod)·k/half), k < half: recomputed from the config, so not part of
   *  the state dict (the original computes them inside forward). */
  freqs: Tensor;

  constructor(hiddenSize: number, readonly frequencyEmbeddingSize = 256, options: { seed?: number; dtype?: DType; maxPeriod?: number } = {}) {
    super();
    const rng = options.seed === undefined ? null : new Rng(options.seed);
    const seedOf = () => rng?.nextU32();
    this.mlp = new nn.Sequential(
      new nn.Linear(frequencyEmbeddingSize, hiddenSize, { seed: seedOf(), dtype: options.dtype }),
      new nn.SiLU(),
      new nn.Linear(hiddenSize, hiddenSize, { seed: seedOf(), dtype: options.dtype }),
    );
    this.freqs = nn.buffer(fromArray(timestepFrequencies(frequencyEmbeddingSize, options.maxPeriod), [Math.floor(frequencyEmbeddingSize / 2)], options.dtype ?? 'f32'), { persistent: false });
  }

  /** t [N] (any numeric dtype; fractional values allowed) -> [N, frequencyEmbeddingSize]. */
  timestepEmbedding(t: Tensor): Tensor {
    const args = t.cast(this.freqs.dtype).unsqueeze(1).mul(this.freqs.unsqueeze(0));
    const emb = ops.concat([args.cos(), args.sin()], -1);
    return this.frequencyEmbeddingSize % 2 === 1 ? F.pad(emb, [0, 1]) : emb;
  }

  forward(t: Tensor): Tensor { return this.mlp.forward(this.timestepEmbedding(t)); }
}

/** exp(-ln(maxPeriod)·k/half) for k < half = floor(dim/2), in float64. */
export function timestepFrequencies(dim: number, maxPeriod = 10000): Float64Array {
  const half = Math.floor(dim / 2);
  const f = new Float64Array(half);
  for (let k = 0; k < half; k++) f[k] = Math.exp((-Math.log(maxPeriod) * k) / half);
  return f;
}

/** Class labels -> vectors. Row `numClasses` is the "null class" that classifier-free guidance feeds
 *  for the unconditional half of the batch. Label dropout is a training-time device and is not
 *  applied here (this is an inference SDK); callers pass the null class explicitly. */
export class LabelEmbedder extends nn.Module {
  embedding_table: nn.Embedding;
  constructor(readonly numClasses: number, hiddenSize: number, dropoutProb: number, options: { seed?: number; dtype?: DType } = {}) {
    super();
    this.embedding_table = new nn.Embedding(numClasses + (dropoutProb > 0 ? 1 : 0), hiddenSize, options);
  }
  /** The label that selects the unconditional embedding. */
  get nullClass(): number { return this.numClasses; }
  forward(labels: Tensor): Tensor { return this.embedding_table.forward(labels); }
}

// ---- transformer ----

/** A DiT block with adaLN-Zero conditioning: the conditioning vector c [N, D] sets a shift, scale and
 *  gate for each of the attention and MLP branches. */
export class DiTBlock extends nn.Module {
  norm1: nn.LayerNorm;
  attn: nn.SelfAttention;
  norm2: nn.LayerNorm;
  mlp: nn.MLP;
  adaLN_modulation: nn.Sequential;

  constructor(hiddenSize: number, numHeads: number, mlpRatio = 4, options: { seed?: number; dtype?: DType } = {}) {
    super();
    const rng = options.seed === undefined ? null : new Rng(options.seed);
    const seedOf = () => rng?.nextU32();
    const dtype = options.dtype;
    this.norm1 = new nn.LayerNorm(hiddenSize, { elementwiseAffine: false, eps: 1e-6, dtype });
    // nn.SelfAttention's fused `qkv` ([q | k | v], heads contiguous) and `proj` are timm's Attention
    // layout and names, so checkpoints load as they are.
    this.attn = new nn.SelfAttention(hiddenSize, numHeads, { bias: true, seed: seedOf(), dtype });
    this.norm2 = new nn.LayerNorm(hiddenSize, { elementwiseAffine: false, eps: 1e-6, dtype });
    this.mlp = new nn.MLP(hiddenSize, Math.floor(hiddenSize * mlpRatio), { activation: 'gelu_tanh', seed: seedOf(), dtype });
    this.adaLN_modulation = new nn.Sequential(new nn.SiLU(), new nn.Linear(hiddenSize, 6 * hiddenSize, { seed: seedOf(), dtype }));
  }

  forward(x: Tensor, c: Tensor): Tensor {
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = (this.adaLN_modulation.forward(c) as Tensor).chunk(6, 1);
    x = x.add(gateMsa.unsqueeze(1).mul(this.attn.forward(modulate(this.norm1.forward(x), shiftMsa, scaleMsa))));
    x = x.add(gateMlp.unsqueeze(1).mul(this.mlp.forward(modulate(this.norm2.forward(x), shiftMlp, scaleMlp))));
    return x;
  }
}

/** adaLN (shift, scale) on a LayerNorm, then a projection to one patch of output channels per token. */
export class FinalLayer extends nn.Module {
  norm_final: nn.LayerNorm;
  linear: nn.Linear;
  adaLN_modulation: nn.Sequential;

  constructor(hiddenSize: number, patchSize: number, outChannels: number, options: { seed?: number; dtype?: DType } = {}) {
    super();
    const rng = options.seed === undefined ? null : new Rng(options.seed);
    const seedOf = () => rng?.nextU32();
    this.norm_final = new nn.LayerNorm(hiddenSize, { elementwiseAffine: false, eps: 1e-6, dtype: options.dtype });
    this.linear = new nn.Linear(hiddenSize, patchSize * patchSize * outChannels, { seed: seedOf(), dtype: options.dtype });
    this.adaLN_modulation = new nn.Sequential(new nn.SiLU(), new nn.Linear(hiddenSize, 2 * hiddenSize, { seed: seedOf(), dtype: options.dtype }));
  }

  forward(x: Tensor, c: Tensor): Tensor {
    const [shift, scale] = (this.adaLN_modulation.forward(c) as Tensor).chunk(2, 1);
    return this.linear.forward(modulate(this.norm_final.forward(x), shift, scale));
  }
}

/**
 * The diffusion transformer: latents x [N, C, H, W], timesteps t [N] and class labels y [N] (i64) ->
 * [N, outChannels, H, W], where outChannels = 2·C with learnSigma (eps, then the variance values).
 *
 * Fields are declared in the order PyTorch registers them, so stateDict() lists names in the
 * original checkpoint's order. forward() derives every shape from the config or from metaShape, so it
 * traces with a symbolic batch dim.
 */
export class DiT extends nn.Module {
  /** The fixed sin-cos table [1, T, D]. A non-trainable Parameter in the original, saved in its
   *  checkpoints under this name; here a persistent buffer (in the state dict, not a weight). */
  pos_embed: Tensor;
  x_embedder: PatchEmbed;
  t_embedder: TimestepEmbedder;
  y_embedder: LabelEmbedder;
  blocks: nn.ModuleList<DiTBlock>;
  final_layer: FinalLayer;
  readonly config: Readonly<DiTConfig>;
  readonly outChannels: number;

  constructor(config: Partial<DiTConfig> = {}, options: DiTInitOptions = {}) {
    super();
    const cfg = { ...DEFAULT_DIT_CONFIG, ...config };
    validateConfig(cfg);
    this.config = Object.freeze(cfg);
    this.outChannels = cfg.learnSigma ? 2 * cfg.inChannels : cfg.inChannels;
    const dtype = options.dtype ?? 'f32';
    // One generator hands every submodule its own seed, so the whole model is a function of `seed`.
    const rng = options.seed === undefined ? null : new Rng(options.seed);
    const seedOf = () => rng?.nextU32();
    const grid = cfg.inputSize / cfg.patchSize;
    this.pos_embed = nn.buffer(fromArray(sincosPosEmbed2d(cfg.hiddenSize, grid), [1, grid * grid, cfg.hiddenSize], dtype));
    this.x_embedder = new PatchEmbed(cfg.patchSize, cfg.inChannels, cfg.hiddenSize, { seed: seedOf(), dtype });
    this.t_embedder = new TimestepEmbedder(cfg.hiddenSize, 256, { seed: seedOf(), dtype });
    this.y_embedder = new LabelEmbedder(cfg.numClasses, cfg.hiddenSize, cfg.classDropoutProb, { seed: seedOf(), dtype });
    const blocks: DiTBlock[] = [];
    for (let i = 0; i < cfg.depth; i++) blocks.push(new DiTBlock(cfg.hiddenSize, cfg.numHeads, cfg.mlpRatio, { seed: seedOf(), dtype }));
    this.blocks = new nn.ModuleList(blocks);
    this.final_layer = new FinalLayer(cfg.hiddenSize, cfg.patchSize, this.outChannels, { seed: seedOf(), dtype });
    if ((options.init ?? 'random') === 'original') this.initializeLikeOriginal(rng ?? new Rng(0));
    else if (options.init !== undefined && options.init !== 'random') {
      throw new RangeError(`DiT: init must be 'random' or 'original', got ${JSON.stringify(options.init)}`);
    }
    this.eval();
  }

  /** The label that selects the unconditional embedding (classifier-free guidance). */
  get nullClass(): number { return this.y_embedder.nullClass; }

  /** x [N, C, H, W], t [N] timesteps (0..999, may be fractional), y [N] class labels (i64). */
  forward(x: Tensor, t: Tensor, y: Tensor): Tensor {
    let h = this.x_embedder.forward(x).add(this.pos_embed); // [N, T, D]
    const c = this.t_embedder.forward(t).add(this.y_embedder.forward(y)); // [N, D]
    for (const block of this.blocks) h = block.forward(h, c);
    return this.unpatchify(this.final_layer.forward(h, c)); // [N, outChannels, H, W]
  }

  /** The forward pass as written, never compiled: on a CompiledDiT (whose decorator replaces
   *  `forward` on its own prototype, not on DiT's) this is the eager oracle the compiled output is
   *  checked against and the baseline of the benchmark. */
  eager(x: Tensor, t: Tensor, y: Tensor): Tensor {
    return DiT.prototype.forward.call(this, x, t, y);
  }

  /** Tokens [N, T, p·p·C] -> images [N, C, h·p, w·p]: token (i, j) holds the p×p patch at row i,
   *  column j, laid out (p_row, p_col, channel). */
  unpatchify(x: Tensor): Tensor {
    const c = this.outChannels, p = this.config.patchSize, grid = this.config.inputSize / p;
    const n = x.metaShape[0];
    return x.reshape([n, grid, grid, p, p, c]).permute(0, 5, 1, 3, 2, 4).reshape([n, c, grid * p, grid * p]);
  }

  /** The inverse of unpatchify for images [N, C, H, W] -> [N, T, p·p·C] (for tests and tooling). */
  patchify(images: Tensor): Tensor {
    const p = this.config.patchSize, grid = this.config.inputSize / p;
    const [n, c] = images.metaShape;
    return images.reshape([n, c, grid, p, grid, p]).permute(0, 2, 4, 3, 5, 1).reshape([n, grid * grid, p * p * (c as number)]);
  }

  /**
   * Classifier-free guidance in one batched forward, like the original forward_with_cfg: the batch is
   * [conditional half | unconditional half] (labels y, then null labels); the first half of x is
   * used for both, and the guided eps = uncond + scale·(cond − uncond) is returned for both halves.
   *
   * `guidedChannels` defaults to 3, as in the original: DiT's released samples apply guidance to only
   * the first three of the four latent channels ("for exact reproducibility reasons"); the standard
   * approach, guidance on all inChannels, is `guidedChannels: this.config.inChannels`. The variance
   * channels (learnSigma) are passed through unguided either way.
   */
  forwardWithCfg(x: Tensor, t: Tensor, y: Tensor, cfgScale: number, options: { guidedChannels?: number } = {}): Tensor {
    const n = x.shape[0];
    if (n % 2 !== 0) throw new RangeError(`DiT.forwardWithCfg: the batch must hold a conditional and an unconditional half, got batch ${n}`);
    const guided = options.guidedChannels ?? 3;
    if (!Number.isInteger(guided) || guided < 1 || guided > this.outChannels) {
      throw new RangeError(`DiT.forwardWithCfg: guidedChannels must be an integer in [1, ${this.outChannels}], got ${guided}`);
    }
    const half = x.sliceAxis(0, 0, n / 2);
    const modelOut = (this as DiT).call(ops.concat([half, half], 0), t, y);
    return applyCfg(modelOut, cfgScale, guided);
  }

  /** DiT's initialize_weights(), seeded: see DiTInitOptions.init. */
  private initializeLikeOriginal(rng: Rng): void {
    const set = (dst: Tensor, src: Tensor): void => { dst.copyFrom(src.cast(dst.dtype)); };
    const xavier = (w: Tensor, fanIn: number, fanOut: number): void => {
      const bound = Math.sqrt(6 / (fanIn + fanOut));
      set(w, rand(w.shape, { seed: rng.nextU32(), low: -bound, high: bound }));
    };
    for (const [, m] of this.namedModules()) {
      if (m instanceof nn.Linear) {
        xavier(m.weight, m.inFeatures, m.outFeatures);
        if (m.bias) set(m.bias, zeros(m.bias.shape));
      }
    }
    const w = this.x_embedder.proj.weight; // xavier on the [out, in·k·k] view, like a Linear; the conv bias keeps its default
    xavier(w, w.size / w.shape[0], w.shape[0]);
    const normal002 = (t: Tensor): void => set(t, randn(t.shape, { seed: rng.nextU32() }).mul(0.02));
    normal002(this.y_embedder.embedding_table.weight);
    normal002((this.t_embedder.mlp.at(0) as nn.Linear).weight);
    normal002((this.t_embedder.mlp.at(2) as nn.Linear).weight);
    const zero = (l: nn.Linear): void => { set(l.weight, zeros(l.weight.shape)); if (l.bias) set(l.bias, zeros(l.bias.shape)); };
    for (const block of this.blocks) zero(block.adaLN_modulation.at(1) as nn.Linear);
    zero(this.final_layer.adaLN_modulation.at(1) as nn.Linear);
    zero(this.final_layer.linear);
  }

  override extraRepr(): string {
    const c = this.config;
    return `inputSize=${c.inputSize}, patchSize=${c.patchSize}, hiddenSize=${c.hiddenSize}, depth=${c.depth}, numHeads=${c.numHeads}, learnSigma=${c.learnSigma}`;
  }
}

/**
 * The guidance arithmetic of forward_with_cfg on a model output [2B, C', H, W] whose first half is
 * conditional and second half unconditional: channels < guidedChannels become
 * uncond + scale·(cond − uncond) in both halves; the rest are returned unchanged.
 */
export function applyCfg(modelOut: Tensor, cfgScale: number, guidedChannels: number): Tensor {
  const n = modelOut.shape[0], channels = modelOut.shape[1];
  const eps = modelOut.sliceAxis(1, 0, guidedChannels);
  const [condEps, uncondEps] = eps.split([n / 2, n / 2], 0);
  const halfEps = uncondEps.add(condEps.sub(uncondEps).mul(cfgScale));
  const guidedEps = ops.concat([halfEps, halfEps], 0);
  return guidedChannels === channels ? guidedEps : ops.concat([guidedEps, modelOut.sliceAxis(1, guidedChannels)], 1);
}

function validateConfig(c: DiTConfig): void {
  for (const key of ['inputSize', 'patchSize', 'inChannels', 'hiddenSize', 'depth', 'numHeads', 'numClasses'] as const) {
    if (!Number.isInteger(c[key]) || c[key] <= 0) throw new RangeError(`DiT: ${key} must be a positive integer, got ${c[key]}`);
  }
  if (c.inputSize % c.patchSize !== 0) throw new RangeError(`DiT: inputSize (${c.inputSize}) must be divisible by patchSize (${c.patchSize})`);
  if (c.hiddenSize % 4 !== 0) throw new RangeError(`DiT: hiddenSize (${c.hiddenSize}) must be divisible by 4 (the 2-D sin-cos position table)`);
  if (c.hiddenSize % c.numHeads !== 0) throw new RangeError(`DiT: hiddenSize (${c.hiddenSize}) must be divisible by numHeads (${c.numHeads})`);
  if (!(c.mlpRatio > 0)) throw new RangeError(`DiT: mlpRatio must be positive, got ${c.mlpRatio}`);
}

// ---- compiled ----

/** The inferenceJit input spec of forward(x, t, y): the batch is dynamic, so one compiled graph
 *  serves plain batches and the doubled classifier-free-guidance batch alike; the latent size is
 *  static (the position table fixes the token count). */
export function ditInputSpec(config: Pick<DiTConfig, 'inChannels' | 'inputSize'>): InputSpec[] {
  return [
    { shape: ['batch', config.inChannels, config.inputSize, config.inputSize] },
    { shape: ['batch'] },
    { shape: ['batch'] },
  ];
}

/**
 * DiT for 256×256 images (latents [batch, 4, 32, 32]: every named config at its default size) with
 * the one line that compiles it. The first call traces forward, optimizes the graph and lowers it to
 * the device (native CPU plans by default; INFERJIT_DEVICE or configure() moves it without touching
 * this line); later calls with any batch size reuse it, and the disk cache makes later processes
 * skip tracing. Everything else (checkpoints, forwardWithCfg, eager()) is DiT's.
 */
@inferenceJit({ inputSpec: ditInputSpec({ inChannels: 4, inputSize: 32 }) })
export class CompiledDiT extends DiT {
  constructor(config: Partial<DiTConfig> = {}, options: DiTInitOptions = {}) {
    super(config, options);
    checkCompiledSize(this, 'CompiledDiT', 32);
  }
}

/** The same for 512×512 images (latents [batch, 4, 64, 64]), DiT's other released resolution. */
@inferenceJit({ inputSpec: ditInputSpec({ inChannels: 4, inputSize: 64 }) })
export class CompiledDiT512 extends DiT {
  constructor(config: Partial<DiTConfig> = {}, options: DiTInitOptions = {}) {
    super({ inputSize: 64, ...config }, options);
    checkCompiledSize(this, 'CompiledDiT512', 64);
  }
}

// The decorators' input specs fix the latent size, so a mismatched config fails here, not at the
// first call.
function checkCompiledSize(model: DiT, name: string, inputSize: number): void {
  const c = model.config;
  if (c.inputSize !== inputSize || c.inChannels !== 4) {
    throw new RangeError(
      `${name}: compiled for latents [batch, 4, ${inputSize}, ${inputSize}] (${inputSize * 8}×${inputSize * 8} images), ` +
      `got inChannels ${c.inChannels}, inputSize ${c.inputSize}; for other sizes declare your own: ` +
      '@inferenceJit({ inputSpec: ditInputSpec(config) }) class MyDiT extends DiT {}',
    );
  }
}

/** A DiT by name ('DiT-S/2', ...) with config overrides and init options; `compiled: true` gives a
 *  CompiledDiT (256×256) or CompiledDiT512 (512×512) with the same weights as the eager one. */
export function createDiT(name: DiTName, overrides: Partial<DiTConfig> = {}, options: DiTInitOptions & { compiled?: boolean } = {}): DiT {
  const { compiled = false, ...init } = options;
  const config = ditConfig(name, overrides);
  if (!compiled) return new DiT(config, init);
  if (config.inputSize === 64) return new CompiledDiT512(config, init);
  return new CompiledDiT(config, init); // any other size is rejected by its constructor, with the way out
}
