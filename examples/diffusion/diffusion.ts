// Gaussian diffusion for sampling DiT: the ADM/DiT linear beta schedule, timestep respacing, and the
// DDPM (learned-range variance) and DDIM steps, following facebookresearch/DiT's diffusion/ package
// (itself from OpenAI's guided-diffusion). Schedules are float64; the per-step arithmetic runs as
// tensor ops on the latents.
import { ops, full, randn, Rng, type Tensor } from '../../src/index.js';

/** Ho et al.'s linear schedule, stretched to any length as in ADM: betas from 1e-4 to 0.02 at 1000
 *  steps (both scaled by 1000/numTimesteps), evenly spaced like np.linspace. */
export function linearBetaSchedule(numTimesteps = 1000): Float64Array {
  if (!Number.isInteger(numTimesteps) || numTimesteps < 1) throw new RangeError(`linearBetaSchedule: numTimesteps must be a positive integer, got ${numTimesteps}`);
  const scale = 1000 / numTimesteps;
  const start = scale * 0.0001, end = scale * 0.02;
  const betas = new Float64Array(numTimesteps);
  const step = numTimesteps > 1 ? (end - start) / (numTimesteps - 1) : 0;
  for (let i = 0; i < numTimesteps; i++) betas[i] = start + i * step;
  if (numTimesteps > 1) betas[numTimesteps - 1] = end; // np.linspace makes the endpoint exact
  return betas;
}

/** Python's round(): ties go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The timesteps (ascending) kept from a `numTimesteps`-step process, as guided-diffusion's
 * space_timesteps: `sectionCounts` "10" or [10] takes 10 evenly spaced steps (first and last
 * included); "10,15,20" splits the process into three equal sections with that many steps each;
 * "ddimN" uses the DDIM paper's fixed integer stride (0, s, 2s, ...).
 */
export function spaceTimesteps(numTimesteps: number, sectionCounts: string | number | readonly number[]): number[] {
  let counts: number[];
  if (typeof sectionCounts === 'string') {
    if (sectionCounts.startsWith('ddim')) {
      const desired = Number(sectionCounts.slice(4));
      for (let stride = 1; stride < numTimesteps; stride++) {
        if (Math.ceil(numTimesteps / stride) === desired) return Array.from({ length: desired }, (_, i) => i * stride);
      }
      throw new RangeError(`spaceTimesteps: cannot create exactly ${desired} steps from ${numTimesteps} with an integer stride`);
    }
    counts = sectionCounts.split(',').map((s) => Number(s));
  } else counts = typeof sectionCounts === 'number' ? [sectionCounts] : [...sectionCounts];
  if (counts.length === 0 || counts.some((c) => !Number.isInteger(c) || c < 1)) {
    throw new RangeError(`spaceTimesteps: section counts must be positive integers, got ${JSON.stringify(sectionCounts)}`);
  }
  const sizePer = Math.floor(numTimesteps / counts.length), extra = numTimesteps % counts.length;
  const steps = new Set<number>();
  let start = 0;
  counts.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (size < count) throw new RangeError(`spaceTimesteps: cannot divide a section of ${size} steps into ${count}`);
    const stride = count <= 1 ? 1 : (size - 1) / (count - 1);
    let cur = 0; // accumulated like the original (not i·stride), so rounding matches it exactly
    for (let k = 0; k < count; k++) { steps.add(start + roundHalfEven(cur)); cur += stride; }
    start += size;
  });
  return [...steps].sort((a, b) => a - b);
}

/**
 * A diffusion process restricted to a subset of a base process's timesteps (guided-diffusion's
 * SpacedDiffusion): index i of this process is timestep `timestepMap[i]` of the base process, and
 * its betas are chosen so that alphasCumprod[i] equals the base alphasCumprod at that timestep.
 * All tables are float64.
 */
export class SpacedDiffusion {
  readonly timestepMap: readonly number[];
  readonly betas: Float64Array;
  readonly alphasCumprod: Float64Array;
  readonly alphasCumprodPrev: Float64Array;
  readonly posteriorVariance: Float64Array;
  readonly posteriorLogVarianceClipped: Float64Array;
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;
  readonly sqrtRecipAlphasCumprod: Float64Array;
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  /** Whether the model's output carries learned variance values after its eps channels
   *  (ADM's LEARNED_RANGE); otherwise the variance is FIXED_LARGE. */
  readonly learnSigma: boolean;

  constructor(useTimesteps: Iterable<number>, baseBetas: Float64Array, options: { learnSigma?: boolean } = {}) {
    this.learnSigma = options.learnSigma ?? true;
    const keep = new Set(useTimesteps);
    const map: number[] = [];
    const betas: number[] = [];
    let base = 1, last = 1;
    for (let i = 0; i < baseBetas.length; i++) {
      base *= 1 - baseBetas[i];
      if (keep.has(i)) { betas.push(1 - base / last); last = base; map.push(i); }
    }
    if (map.length === 0) throw new RangeError('SpacedDiffusion: no timesteps kept');
    this.timestepMap = map;
    const n = betas.length;
    this.betas = Float64Array.from(betas);
    this.alphasCumprod = new Float64Array(n);
    this.alphasCumprodPrev = new Float64Array(n);
    let acc = 1;
    for (let i = 0; i < n; i++) { this.alphasCumprodPrev[i] = acc; acc *= 1 - this.betas[i]; this.alphasCumprod[i] = acc; }
    this.posteriorVariance = new Float64Array(n);
    this.posteriorMeanCoef1 = new Float64Array(n);
    this.posteriorMeanCoef2 = new Float64Array(n);
    this.sqrtRecipAlphasCumprod = new Float64Array(n);
    this.sqrtRecipm1AlphasCumprod = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const b = this.betas[i], ac = this.alphasCumprod[i], prev = this.alphasCumprodPrev[i];
      this.posteriorVariance[i] = (b * (1 - prev)) / (1 - ac);
      this.posteriorMeanCoef1[i] = (b * Math.sqrt(prev)) / (1 - ac);
      this.posteriorMeanCoef2[i] = ((1 - prev) * Math.sqrt(1 - b)) / (1 - ac);
      this.sqrtRecipAlphasCumprod[i] = Math.sqrt(1 / ac);
      this.sqrtRecipm1AlphasCumprod[i] = Math.sqrt(1 / ac - 1);
    }
    // The posterior variance is 0 at the first step; its log is clipped to the second step's value.
    this.posteriorLogVarianceClipped = this.posteriorVariance.map((v, i) => Math.log(i === 0 && n > 1 ? this.posteriorVariance[1] : v));
  }

  get numTimesteps(): number { return this.betas.length; }
}

/** DiT's create_diffusion: the 1000-step linear schedule respaced to `respacing` ("250", "ddim50",
 *  or a step count). */
export function createDiffusion(respacing: string | number, options: { diffusionSteps?: number; learnSigma?: boolean } = {}): SpacedDiffusion {
  const steps = options.diffusionSteps ?? 1000;
  return new SpacedDiffusion(spaceTimesteps(steps, respacing), linearBetaSchedule(steps), { learnSigma: options.learnSigma });
}

/** The denoiser as the sampler sees it: latents x [B, C, H, W] and the base process's timesteps
 *  [B] (f32) -> the model output [B, C or 2C, H, W] (eps, then variance values with learnSigma). */
export type DenoiseFn = (x: Tensor, t: Tensor) => Tensor;

export interface StepInfo {
  /** 0-based step number and the total. */
  step: number;
  total: number;
  /** The base-process timestep the model was called with. */
  timestep: number;
  /** Wall time of this step (model + update), milliseconds. */
  ms: number;
}

export interface SampleOptions {
  sampler: 'ddim' | 'ddpm';
  /** DDIM's η (0: deterministic). Default 0. */
  eta?: number;
  /** Clamp the x0 prediction to [-1, 1]; default false, as DiT's sample.py. */
  clipDenoised?: boolean;
  /** Seed of the per-step noise (DDPM, or DDIM with η > 0). Default 0. */
  seed?: number;
  onStep?: (info: StepInfo) => void;
}

/** The x0 prediction and the (log-)variance of p(x_{t-1} | x_t) from one model output. */
function pMeanVariance(d: SpacedDiffusion, modelOut: Tensor, x: Tensor, i: number, clip: boolean): { predX0: Tensor; eps: Tensor; varValues: Tensor | null } {
  const c = x.shape[1];
  const expected = d.learnSigma ? 2 * c : c;
  if (modelOut.rank !== 4 || modelOut.shape[1] !== expected || modelOut.shape[0] !== x.shape[0]) {
    throw new RangeError(`sample: the model output [${modelOut.shape.join(', ')}] must be [${x.shape[0]}, ${expected}, ...] for latents [${x.shape.join(', ')}]${d.learnSigma ? ' (learnSigma: eps then variance values)' : ''}`);
  }
  const [eps, varValues] = d.learnSigma ? modelOut.split([c, c], 1) : [modelOut, null];
  let predX0 = x.mul(d.sqrtRecipAlphasCumprod[i]).sub(eps.mul(d.sqrtRecipm1AlphasCumprod[i]));
  if (clip) predX0 = ops.minimum(ops.maximum(predX0, -1), 1);
  return { predX0, eps, varValues };
}

/** One DDPM step x_t -> x_{t-1} at index i (ancestral sampling; learned-range or fixed-large variance). */
export function ddpmStep(d: SpacedDiffusion, modelOut: Tensor, x: Tensor, i: number, noise: Tensor, clip = false): Tensor {
  const { predX0, varValues } = pMeanVariance(d, modelOut, x, i, clip);
  const mean = predX0.mul(d.posteriorMeanCoef1[i]).add(x.mul(d.posteriorMeanCoef2[i]));
  if (i === 0) return mean; // no noise at the last step
  let std: Tensor | number;
  if (varValues) {
    // The model's values in [-1, 1] interpolate the log variance between the posterior variance
    // (clipped) and beta_t.
    const minLog = d.posteriorLogVarianceClipped[i], maxLog = Math.log(d.betas[i]);
    const frac = varValues.add(1).mul(0.5);
    std = frac.mul(maxLog - minLog).add(minLog).mul(0.5).exp();
  } else {
    std = Math.sqrt(d.betas[i]); // FIXED_LARGE (its special value at index 0 is never used: no noise there)
  }
  return mean.add(noise.mul(std));
}

/** One DDIM step x_t -> x_{t-1} at index i (Song et al. eq. 12); η = 0 is deterministic. */
export function ddimStep(d: SpacedDiffusion, modelOut: Tensor, x: Tensor, i: number, noise: Tensor | null, options: { eta?: number; clip?: boolean } = {}): Tensor {
  const eta = options.eta ?? 0;
  const { predX0 } = pMeanVariance(d, modelOut, x, i, options.clip ?? false);
  // eps re-derived from the x0 prediction, so a clipped x0 stays consistent (as the original does).
  const eps = x.mul(d.sqrtRecipAlphasCumprod[i]).sub(predX0).div(d.sqrtRecipm1AlphasCumprod[i]);
  const ab = d.alphasCumprod[i], abPrev = d.alphasCumprodPrev[i];
  const sigma = eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(1 - ab / abPrev);
  const mean = predX0.mul(Math.sqrt(abPrev)).add(eps.mul(Math.sqrt(1 - abPrev - sigma * sigma)));
  if (i === 0 || sigma === 0) return mean;
  if (!noise) throw new RangeError('ddimStep: eta > 0 needs a noise tensor');
  return mean.add(noise.mul(sigma));
}

/**
 * Runs the reverse process from `noise` (x_T) to x_0 with `model` at each kept timestep, from the
 * last to the first. Deterministic given `noise` and `options.seed`.
 */
export function sampleLoop(d: SpacedDiffusion, model: DenoiseFn, noise: Tensor, options: SampleOptions): Tensor {
  if (options.sampler !== 'ddim' && options.sampler !== 'ddpm') throw new RangeError(`sample: sampler must be 'ddim' or 'ddpm', got ${JSON.stringify(options.sampler)}`);
  const rng = new Rng(options.seed ?? 0);
  const batch = noise.shape[0];
  let x = noise;
  const total = d.numTimesteps;
  for (let i = total - 1; i >= 0; i--) {
    const start = performance.now();
    const timestep = d.timestepMap[i];
    const t = full([batch], timestep, 'f32');
    const out = model(x, t);
    const needsNoise = i > 0 && (options.sampler === 'ddpm' || (options.eta ?? 0) > 0);
    const stepNoise = needsNoise ? randn(x.shape, { seed: rng.nextU32(), dtype: x.dtype }) : null;
    x = options.sampler === 'ddpm'
      ? ddpmStep(d, out, x, i, stepNoise ?? x, options.clipDenoised)
      : ddimStep(d, out, x, i, stepNoise, { eta: options.eta, clip: options.clipDenoised });
    options.onStep?.({ step: total - 1 - i, total, timestep, ms: performance.now() - start });
  }
  return x;
}
