// Sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty and seeding, checked
// against hand-computed distributions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, argmax, topIndices, klDivergence, logSoftmax } from '../../src/llm/sampling.js';

const logits = Float32Array.from([1, 3, 2, 0.5, 3]);

test('greedy picks the first maximum', () => {
  assert.equal(new Sampler().sample(logits), 1);
  assert.equal(argmax([0, 5, 5]), 1);
});

test('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
  // token 1 (3 -> 1.5) and 4 (3 -> 1.5) penalized: token 2 (2) wins.
  assert.equal(new Sampler({ repetitionPenalty: 2 }).sample(logits, [1, 4]), 2);
  // a negative logit gets more negative: [-1, -2] with token 0 seen at penalty 3 -> [-3, -2]
  assert.equal(new Sampler({ repetitionPenalty: 3 }).sample(Float32Array.from([-1, -2]), [0]), 1);
  // the window only looks at the last token: token 4 penalized, token 1 still ties first
  assert.equal(new Sampler({ repetitionPenalty: 2, repetitionWindow: 1 }).sample(logits, [1, 4]), 1);
});

test('top-k, top-p and min-p restrict the candidates', () => {
  const draw = (o: object, n = 400) => {
    const s = new Sampler({ temperature: 1, seed: 7, ...o });
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) seen.add(s.sample(logits));
    return [...seen].sort();
  };
  assert.deepEqual(draw({ topK: 2 }), [1, 4]);
  // probabilities: e^3 each for 1,4 (0.357 each), e^2 (0.131), e^1 (0.048), e^0.5 (0.029): top-p 0.7 keeps {1,4}
  assert.deepEqual(draw({ topP: 0.7 }), [1, 4]);
  assert.deepEqual(draw({ topP: 0.8 }), [1, 2, 4]);
  // min-p 0.3: floor 0.3·0.357 = 0.107 keeps token 2 (0.131), drops 0 (0.048)
  assert.deepEqual(draw({ minP: 0.3 }), [1, 2, 4]);
  assert.deepEqual(draw({}), [0, 1, 2, 3, 4]);
});

test('temperature sampling follows softmax(logits / T) and is reproducible by seed', () => {
  const T = 0.5, n = 20000;
  const s = new Sampler({ temperature: T, seed: 42 });
  const counts = new Array(5).fill(0);
  const seq: number[] = [];
  for (let i = 0; i < n; i++) { const t = s.sample(logits); counts[t]++; if (i < 50) seq.push(t); }
  const p = logSoftmax(Array.from(logits, (x) => x / T)).map(Math.exp);
  // binomial standard error at n = 20000 is <= 0.0036; allow 5 sigma
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(counts[i] / n - p[i]) < 0.018, `token ${i}: ${counts[i] / n} vs ${p[i]}`);
  const again = new Sampler({ temperature: T, seed: 42 });
  assert.deepEqual(Array.from({ length: 50 }, () => again.sample(logits)), seq);
});

test('helpers and option validation', () => {
  assert.deepEqual(topIndices([1, 3, 2, 3, 0], 3), [1, 3, 2]);
  assert.deepEqual(topIndices([1, 3, 2], 5), [1, 2, 0]);
  assert.ok(Math.abs(klDivergence([1, 2, 3], [1, 2, 3])) < 1e-12);
  // KL([ln 0.5, ln 0.5] || [ln 0.75, ln 0.25]) = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25)
  assert.ok(Math.abs(klDivergence([Math.log(0.5), Math.log(0.5)], [Math.log(0.75), Math.log(0.25)]) - (0.5 * Math.log(2 / 3) + 0.5 * Math.log(2))) < 1e-12);
  assert.throws(() => new Sampler({ topP: 0 }), /topP must be in \(0, 1\], got 0/);
  assert.throws(() => new Sampler({ temperature: -1 }), /temperature must be >= 0/);
});

test('one-pass greedy == the full sampling path (ties, ±Infinity, NaN, sizes 1..70)', () => {
  // A zero logit bias changes no score but routes sample() through the general path (copy, NaN
  // check, +Infinity scan, argmax); plain greedy reads the logits once. Both must agree exactly.
  const full = new Sampler({ temperature: 0, logitBias: { 0: 0 } }), fast = new Sampler({ temperature: 0 });
  let seed = 12345;
  const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32; };
  const outcome = (s: Sampler, x: Float32Array) => { try { return s.sample(x); } catch (e) { return `${(e as Error).name}: ${(e as Error).message}`; } };
  for (let trial = 0; trial < 400; trial++) {
    const n = 1 + (trial % 70);
    // few distinct values, so ties are common
    const x = Float32Array.from({ length: n }, () => Math.floor(rnd() * 6) - 3);
    const special = trial % 5;
    if (special === 1) x[Math.floor(rnd() * n)] = Infinity;
    if (special === 2) x[Math.floor(rnd() * n)] = NaN;
    if (special === 3) x.fill(-Infinity);
    if (special === 4) { x[Math.floor(rnd() * n)] = Infinity; x[Math.floor(rnd() * n)] = NaN; }
    assert.deepEqual(outcome(fast, x), outcome(full, x), `trial ${trial}: [${[...x].join(', ')}]`);
  }
  assert.match(String(outcome(fast, new Float32Array(0))), /the logits are empty/);
});
