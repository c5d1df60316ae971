// SD 1.5's DDIM scheduler against closed forms: the scaled-linear betas and their cumulative
// products, the "leading" timesteps with steps_offset 1, and the step, which must map an exactly
// noised sample x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε to √ᾱ_prev·x0 + √(1−ᾱ_prev)·ε when given the true ε.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, type Tensor } from '../../src/index.js';
import { DdimScheduler } from '../../examples/diffusion/sd/scheduler.js';

const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('scaled-linear betas and ᾱ match their closed forms', () => {
  const s = new DdimScheduler();
  close(s.betas[0], 0.00085, 1e-15, 'β_0');
  close(s.betas[999], 0.012, 1e-15, 'β_999');
  const lo = Math.sqrt(0.00085), hi = Math.sqrt(0.012);
  close(s.betas[500], (lo + (500 * (hi - lo)) / 999) ** 2, 1e-15, 'β_500');
  // ᾱ_t = Π(1 − β_i) computed another way: exp(Σ log(1 − β_i)).
  for (const t of [0, 1, 250, 999]) {
    let logSum = 0;
    for (let i = 0; i <= t; i++) logSum += Math.log1p(-s.betas[i]);
    close(s.alphasCumprod[t], Math.exp(logSum), 1e-12, `ᾱ_${t}`);
  }
  close(s.alphasCumprod[999], 0.0047, 1e-4, 'ᾱ_999 (SD 1.5: about 0.0047)');
  assert.equal(s.finalAlphaCumprod, s.alphasCumprod[0]); // set_alpha_to_one = false
  assert.equal(new DdimScheduler({ setAlphaToOne: true }).finalAlphaCumprod, 1);
});

test('"leading" timesteps with steps_offset 1', () => {
  const s = new DdimScheduler();
  assert.deepEqual(s.setTimesteps(4), [751, 501, 251, 1]);
  assert.deepEqual(s.setTimesteps(3), [667, 334, 1]); // ratio ⌊1000/3⌋ = 333
  const fifty = s.setTimesteps(50);
  assert.deepEqual([fifty.length, fifty[0], fifty[1], fifty[49]], [50, 981, 961, 1]);
  assert.deepEqual(s.alphas(981), { alphaProdT: s.alphasCumprod[981], alphaProdPrev: s.alphasCumprod[961], prevTimestep: 961 });
  assert.deepEqual(s.alphas(1), { alphaProdT: s.alphasCumprod[1], alphaProdPrev: s.finalAlphaCumprod, prevTimestep: -19 });
  assert.throws(() => s.setTimesteps(0), /steps must be an integer in \[1, 1000\], got 0/);
  assert.throws(() => new DdimScheduler().step(randn([1]), 1, randn([1])), /call setTimesteps\(steps\) before step\(\)/);
});

function maxDiff(a: Tensor, b: Tensor): number {
  const x = a.toFlatArray(), y = b.toFlatArray();
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
}

test('a deterministic step moves an exactly noised sample to the previous noise level', () => {
  const s = new DdimScheduler();
  s.setTimesteps(10);
  const x0 = randn([1, 4, 3, 5], { seed: 1 }), eps = randn([1, 4, 3, 5], { seed: 2 });
  for (const t of [901, 501, 1]) {
    const { alphaProdT: at, alphaProdPrev: ap } = s.alphas(t);
    const xt = x0.mul(Math.sqrt(at)).add(eps.mul(Math.sqrt(1 - at)));
    const { prevSample, predOriginal } = s.step(eps, t, xt);
    const want = x0.mul(Math.sqrt(ap)).add(eps.mul(Math.sqrt(1 - ap)));
    // f32 tensor arithmetic; at t = 901 dividing by √ᾱ_t ≈ 0.1 amplifies rounding ×10.
    assert.ok(maxDiff(predOriginal, x0) < 1e-5, `x̂0 at t=${t}: ${maxDiff(predOriginal, x0)}`);
    assert.ok(maxDiff(prevSample, want) < 1e-5, `x_prev at t=${t}: ${maxDiff(prevSample, want)}`);
  }
});

test('with η = 1 the step adds σ·noise and shrinks the ε direction to keep the variance', () => {
  const s = new DdimScheduler();
  s.setTimesteps(4);
  const t = 501;
  const { alphaProdT: at, alphaProdPrev: ap } = s.alphas(t);
  const x0 = randn([2, 6], { seed: 3 }), eps = randn([2, 6], { seed: 4 }), noise = randn([2, 6], { seed: 5 });
  const xt = x0.mul(Math.sqrt(at)).add(eps.mul(Math.sqrt(1 - at)));
  const sigma = Math.sqrt((1 - ap) / (1 - at)) * Math.sqrt(1 - at / ap);
  const want = x0.mul(Math.sqrt(ap)).add(eps.mul(Math.sqrt(1 - ap - sigma * sigma))).add(noise.mul(sigma));
  assert.ok(maxDiff(s.step(eps, t, xt, { eta: 1, noise }).prevSample, want) < 1e-5);
  assert.ok(sigma > 0.05, 'σ is not negligible at this step');
  assert.throws(() => s.step(eps, t, xt, { eta: 1 }), /eta > 0 needs a noise tensor/);
});
