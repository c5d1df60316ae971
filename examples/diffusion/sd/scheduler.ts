// The DDIM scheduler as Stable Diffusion 1.5 ships it (diffusers DDIMScheduler with SD's
// scheduler_config.json): the "scaled_linear" beta schedule (betas evenly spaced in √β from
// √0.00085 to √0.012 over 1000 steps), "leading" timestep spacing with steps_offset 1, epsilon
// prediction, no sample clipping, and ᾱ_prev = ᾱ_0 past the last step (set_alpha_to_one false).
// Tables are float64; the update runs as tensor ops on the latents.
import { type Tensor } from '../../../src/index.js';

export interface DdimConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: 'scaled_linear' | 'linear';
  /** Added to every inference timestep ("leading" spacing starts at 0 otherwise). */
  stepsOffset: number;
  /** ᾱ used after the final step: 1 (true) or ᾱ_0 (false, SD 1.5). */
  setAlphaToOne: boolean;
}

export const SD15_DDIM_CONFIG: Readonly<DdimConfig> = Object.freeze({
  numTrainTimesteps: 1000, betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear', stepsOffset: 1, setAlphaToOne: false,
});

export class DdimScheduler {
  readonly config: Readonly<DdimConfig>;
  readonly betas: Float64Array;
  readonly alphasCumprod: Float64Array;
  readonly finalAlphaCumprod: number;
  /** The inference timesteps, descending (set by setTimesteps). */
  timesteps: number[] = [];
  #stepRatio = 0;

  constructor(config: Partial<DdimConfig> = {}) {
    const c = { ...SD15_DDIM_CONFIG, ...config };
    const n = c.numTrainTimesteps;
    if (!Number.isInteger(n) || n < 2) throw new RangeError(`DdimScheduler: numTrainTimesteps must be an integer ≥ 2, got ${n}`);
    if (!(c.betaStart > 0 && c.betaEnd < 1 && c.betaStart <= c.betaEnd)) throw new RangeError(`DdimScheduler: need 0 < betaStart ≤ betaEnd < 1, got ${c.betaStart}, ${c.betaEnd}`);
    if (c.betaSchedule !== 'scaled_linear' && c.betaSchedule !== 'linear') throw new RangeError(`DdimScheduler: betaSchedule must be 'scaled_linear' or 'linear', got ${JSON.stringify(c.betaSchedule)}`);
    this.config = Object.freeze(c);
    this.betas = new Float64Array(n);
    const [lo, hi] = c.betaSchedule === 'scaled_linear' ? [Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd)] : [c.betaStart, c.betaEnd];
    for (let i = 0; i < n; i++) {
      const v = i === n - 1 ? hi : lo + ((hi - lo) * i) / (n - 1); // np.linspace: exact endpoints
      this.betas[i] = c.betaSchedule === 'scaled_linear' ? v * v : v;
    }
    this.alphasCumprod = new Float64Array(n);
    let acc = 1;
    for (let i = 0; i < n; i++) { acc *= 1 - this.betas[i]; this.alphasCumprod[i] = acc; }
    this.finalAlphaCumprod = c.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  /** DDIM starts from unit Gaussian noise: latents are drawn as randn · initNoiseSigma. */
  get initNoiseSigma(): number { return 1; }

  /** "leading" spacing: step ratio r = ⌊T/steps⌋, timesteps (steps-1)·r, ..., r, 0, plus stepsOffset. */
  setTimesteps(steps: number): number[] {
    const T = this.config.numTrainTimesteps;
    if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new RangeError(`DdimScheduler: steps must be an integer in [1, ${T}], got ${steps}`);
    this.#stepRatio = Math.floor(T / steps);
    this.timesteps = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * this.#stepRatio + this.config.stepsOffset);
    return this.timesteps;
  }

  /** ᾱ at timestep t, and at the timestep the step lands on (t - ratio, or the final value). */
  alphas(t: number): { alphaProdT: number; alphaProdPrev: number; prevTimestep: number } {
    if (this.#stepRatio === 0) throw new Error('DdimScheduler: call setTimesteps(steps) before step()');
    if (!Number.isInteger(t) || t < 0 || t >= this.config.numTrainTimesteps) throw new RangeError(`DdimScheduler: timestep must be an integer in [0, ${this.config.numTrainTimesteps}), got ${t}`);
    const prevTimestep = t - this.#stepRatio;
    return { alphaProdT: this.alphasCumprod[t], alphaProdPrev: prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod, prevTimestep };
  }

  /**
   * One DDIM step (Song et al. eq. 12) from sample x_t with predicted noise ε:
   *   x̂0 = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t,   σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev),
   *   x_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev−σ²)·ε (+ σ·noise when η > 0).
   */
  step(eps: Tensor, t: number, sample: Tensor, options: { eta?: number; noise?: Tensor } = {}): { prevSample: Tensor; predOriginal: Tensor } {
    const eta = options.eta ?? 0;
    const { alphaProdT: at, alphaProdPrev: ap } = this.alphas(t);
    const predOriginal = sample.sub(eps.mul(Math.sqrt(1 - at))).div(Math.sqrt(at));
    const sigma = eta * Math.sqrt((1 - ap) / (1 - at)) * Math.sqrt(1 - at / ap);
    let prevSample = predOriginal.mul(Math.sqrt(ap)).add(eps.mul(Math.sqrt(1 - ap - sigma * sigma)));
    if (sigma > 0) {
      if (!options.noise) throw new RangeError('DdimScheduler.step: eta > 0 needs a noise tensor');
      prevSample = prevSample.add(options.noise.mul(sigma));
    }
    return { prevSample, predOriginal };
  }
}
