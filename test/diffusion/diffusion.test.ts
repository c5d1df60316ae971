// Diffusion schedule, respacing and the DDIM/DDPM steps: schedule values against numpy's (printed
// from guided-diffusion's formulas), respacing against space_timesteps' known outputs, and samplers
// driven by an oracle that knows x0, which must land exactly on it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops, full, fromArray, randn, type Tensor } from '../../src/index.js';
import {
  linearBetaSchedule, spaceTimesteps, createDiffusion, SpacedDiffusion, sampleLoop, ddpmStep, ddimStep,
} from '../../examples/diffusion/diffusion.js';
import { assertClose } from '../nn/util.js';

test('linear beta schedule: np.linspace(1e-4, 0.02, 1000) and its cumulative product', () => {
  const betas = linearBetaSchedule(1000);
  assert.equal(betas.length, 1000);
  assert.equal(betas[0], 0.0001);
  assert.equal(betas[999], 0.02);
  // Values printed by numpy 2.4 for the same schedule.
  assertClose([betas[1], betas[500]], [0.00011991991991991993, 0.010059959959959959], 1e-15, 'betas');
  let ac = 1;
  const acs: number[] = [];
  for (const b of betas) { ac *= 1 - b; acs.push(ac); }
  assertClose([acs[499], acs[999]], [0.07858724288177824, 4.035829765375676e-05], 1e-12, 'alphas_cumprod');
  // Stretched for other lengths: scale = 1000 / T.
  const b500 = linearBetaSchedule(500);
  assertClose([b500[0], b500[499]], [0.0002, 0.04], 1e-15, 'T=500');
});

test('spaceTimesteps matches guided-diffusion space_timesteps', () => {
  assert.deepEqual(spaceTimesteps(1000, '10'), [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]);
  // stride 166.5: Python's round() sends 166.5 to 166 and 832.5 to 832 (ties to even).
  assert.deepEqual(spaceTimesteps(1000, 7), [0, 166, 333, 500, 666, 832, 999]);
  const s250 = spaceTimesteps(1000, '250'); // numpy run: 250 steps, first 0 4 8 ..., last ... 995 999, sum 124875
  assert.equal(s250.length, 250);
  assert.deepEqual(s250.slice(0, 8), [0, 4, 8, 12, 16, 20, 24, 28]);
  assert.deepEqual(s250.slice(-5), [983, 987, 991, 995, 999]);
  assert.equal(s250.reduce((a, b) => a + b, 0), 124875);
  const sections = spaceTimesteps(1000, '10,15,20');
  assert.equal(sections.length, 45);
  assert.deepEqual(sections.slice(0, 12), [0, 37, 74, 111, 148, 185, 222, 259, 296, 333, 334, 358]);
  assert.deepEqual(spaceTimesteps(1000, 'ddim10'), [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
  assert.deepEqual(spaceTimesteps(1000, 1000).length, 1000);
  assert.throws(() => spaceTimesteps(10, '11'), /cannot divide a section of 10 steps into 11/);
  assert.throws(() => spaceTimesteps(1000, 'ddim600'), /cannot create exactly 600 steps/);
});

test('respacing keeps alphas_cumprod at the kept timesteps (the new betas telescope)', () => {
  const d = createDiffusion(10);
  assert.deepEqual(d.timestepMap, [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]);
  // numpy: SpacedDiffusion(space_timesteps(1000, "10"), linear betas).betas
  const npBetas = [9.999999999998899e-05, 0.12630763785293664, 0.316843617791814, 0.4661190638395779, 0.5830054944265768,
    0.674480639045262, 0.7460297669786917, 0.8019625916556974, 0.845663378408531, 0.8797882303918187];
  assertClose(d.betas, npBetas, 1e-12, 'spaced betas');
  const full = createDiffusion(1000);
  d.timestepMap.forEach((t, i) => assert.ok(Math.abs(d.alphasCumprod[i] - full.alphasCumprod[t]) < 1e-15 * (1 + full.alphasCumprod[t]) * 1000));
  // Posterior tables follow their definitions.
  const i = 4, b = d.betas[i], ac = d.alphasCumprod[i], prev = d.alphasCumprod[i - 1];
  assertClose([d.posteriorVariance[i], d.posteriorMeanCoef1[i], d.posteriorMeanCoef2[i]],
    [b * (1 - prev) / (1 - ac), b * Math.sqrt(prev) / (1 - ac), (1 - prev) * Math.sqrt(1 - b) / (1 - ac)], 1e-14, 'posterior');
  assert.equal(d.posteriorLogVarianceClipped[0], Math.log(d.posteriorVariance[1]));
});

/** A denoiser that knows x0: it returns the exact noise that makes x_t from x0 at each timestep
 *  (and, with learnSigma, variance values v). */
function oracle(x0: Tensor, base: SpacedDiffusion, v: number | null) {
  const calls: number[] = [];
  const fn = (x: Tensor, t: Tensor): Tensor => {
    const timestep = t.toFlatArray()[0];
    calls.push(timestep);
    const ab = base.alphasCumprod[timestep];
    const eps = x.sub(x0.mul(Math.sqrt(ab))).div(Math.sqrt(1 - ab));
    return v === null ? eps : ops.concat([eps, full(eps.shape, v)], 1);
  };
  return { fn, calls };
}

test('DDIM (η = 0) with an oracle denoiser recovers x0, with 1000 and with 10 steps', () => {
  const base = createDiffusion(1000, { learnSigma: false });
  const x0 = randn([1, 2, 3, 3], { seed: 1 }).mul(0.5);
  const noise = randn([1, 2, 3, 3], { seed: 2 });
  for (const steps of [1000, 10]) {
    const d = createDiffusion(steps, { learnSigma: false });
    const { fn, calls } = oracle(x0, base, null);
    const out = sampleLoop(d, fn, noise, { sampler: 'ddim' });
    assert.equal(calls.length, steps);
    assert.equal(calls[0], 999);
    assert.equal(calls[calls.length - 1], 0);
    // f32 latents: x0 = (x_t − √(1−ᾱ)·eps)/√ᾱ cancels large terms at t≈999 (ᾱ ≈ 4e-5: 1/√ᾱ ≈ 160),
    // so errors of ~160·6e-8 per step are expected.
    assertClose(out.toFlatArray(), x0.toFlatArray(), 1e-4, `DDIM ${steps} steps`);
    // Deterministic: the same call gives the same bits.
    assert.deepEqual(sampleLoop(d, oracle(x0, base, null).fn, noise, { sampler: 'ddim' }).toFlatArray(), out.toFlatArray());
  }
});

test('DDPM with an oracle (learned-range variance) also ends on x0; one step matches the posterior', () => {
  const base = createDiffusion(1000);
  const d = createDiffusion(25);
  const x0 = randn([2, 4, 2, 2], { seed: 3 }).mul(0.5);
  const noise = randn([2, 4, 2, 2], { seed: 4 });
  const out = sampleLoop(d, oracle(x0, base, 0.3).fn, noise, { sampler: 'ddpm', seed: 5 });
  // The last step returns the posterior mean at index 0, whose x_t coefficient is 0 and x0
  // coefficient 1, so the added noise of earlier steps is gone.
  assertClose(out.toFlatArray(), x0.toFlatArray(), 1e-4, 'DDPM');
  // A single step at index i: mean = c1·x0 + c2·x_t, std = exp(½(frac·log β + (1−frac)·log σ²_post)).
  const i = 12, ab = d.alphasCumprod[i];
  const xt = x0.mul(Math.sqrt(ab)).add(noise.mul(Math.sqrt(1 - ab)));
  const stepNoise = randn([2, 4, 2, 2], { seed: 6 });
  const v = 0.3, frac = (v + 1) / 2;
  const modelOut = oracle(x0, base, v).fn(xt, fromArray([d.timestepMap[i], d.timestepMap[i]], [2]));
  const got = ddpmStep(d, modelOut, xt, i, stepNoise).toFlatArray();
  const std = Math.exp(0.5 * (frac * Math.log(d.betas[i]) + (1 - frac) * d.posteriorLogVarianceClipped[i]));
  const [a0, at, z] = [x0.toFlatArray(), xt.toFlatArray(), stepNoise.toFlatArray()];
  const want = a0.map((x, k) => d.posteriorMeanCoef1[i] * x + d.posteriorMeanCoef2[i] * at[k] + std * z[k]);
  assertClose(got, want, 1e-5, 'DDPM step');
  // DDIM with η = 1 adds σ = √((1−ᾱ_prev)/(1−ᾱ))·√(1−ᾱ/ᾱ_prev) times the noise.
  const prev = d.alphasCumprodPrev[i];
  const sigma = Math.sqrt((1 - prev) / (1 - ab)) * Math.sqrt(1 - ab / prev);
  const e = noise.toFlatArray();
  const wantDdim = a0.map((x, k) => x * Math.sqrt(prev) + Math.sqrt(1 - prev - sigma * sigma) * e[k] + sigma * z[k]);
  assertClose(ddimStep(d, modelOut, xt, i, stepNoise, { eta: 1 }).toFlatArray(), wantDdim, 1e-4, 'DDIM η=1 step');
  assert.throws(() => ddpmStep(d, randn([2, 4, 2, 2]), xt, i, stepNoise), /model output \[2, 4, 2, 2\] must be \[2, 8, \.\.\.\]/);
});
