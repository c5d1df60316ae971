// Next-token sampling from logits: greedy, temperature, top-k, top-p (nucleus), min-p and a
// repetition penalty, with a seeded generator so a run can be reproduced exactly.
// Order (as in transformers' logits processors): repetition penalty -> temperature -> top-k ->
// softmax -> top-p -> min-p -> draw.
import { Rng } from '../tensor/random.js';

export interface SamplingOptions {
  /** 0 (default) picks the most likely token (greedy); higher flattens the distribution. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = off). */
  topP?: number;
  /** Drop tokens whose probability is below minP · (probability of the most likely token) (0 = off). */
  minP?: number;
  /** > 1 discourages tokens already in the context: positive logits are divided by it, negative ones multiplied (CTRL / transformers). */
  repetitionPenalty?: number;
  /** How many of the most recent tokens the repetition penalty looks at (default: all). */
  repetitionWindow?: number;
  /** Seed of the sampling generator (default: 0). */
  seed?: number;
}

function check(o: SamplingOptions): void {
  const bad = (what: string, v: unknown, rule: string) => { throw new RangeError(`sampling: ${what} ${rule}, got ${String(v)}`); };
  if (o.temperature !== undefined && !(o.temperature >= 0)) bad('temperature', o.temperature, 'must be >= 0');
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad('topK', o.topK, 'must be a non-negative integer');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad('topP', o.topP, 'must be in (0, 1]');
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) bad('minP', o.minP, 'must be in [0, 1]');
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0)) bad('repetitionPenalty', o.repetitionPenalty, 'must be > 0');
}

export class Sampler {
  private readonly rng: Rng;
  readonly options: Readonly<SamplingOptions>;

  constructor(options: SamplingOptions = {}) {
    check(options);
    this.options = { ...options };
    this.rng = new Rng(options.seed ?? 0);
  }

  /** Picks the next token id from `logits` [vocab]; `history` is the context so far (for the penalty). */
  sample(logits: Float32Array, history: readonly number[] = []): number {
    const o = this.options;
    const penalty = o.repetitionPenalty ?? 1;
    let scores: Float32Array = logits;
    if (penalty !== 1 && history.length > 0) {
      scores = Float32Array.from(logits);
      const start = o.repetitionWindow !== undefined ? Math.max(0, history.length - o.repetitionWindow) : 0;
      const seen = new Set<number>();
      for (let i = start; i < history.length; i++) seen.add(history[i]);
      for (const t of seen) {
        if (t >= 0 && t < scores.length) scores[t] = scores[t] > 0 ? scores[t] / penalty : scores[t] * penalty;
      }
    }
    const temperature = o.temperature ?? 0;
    if (temperature === 0) return argmax(scores);

    // Candidates sorted by score, descending (top-k first narrows the sort when set).
    const V = scores.length;
    const k = o.topK && o.topK > 0 ? Math.min(o.topK, V) : V;
    const ids = topIndices(scores, k);
    const probs = new Float64Array(ids.length);
    const maxScore = scores[ids[0]] / temperature;
    let sum = 0;
    for (let i = 0; i < ids.length; i++) { probs[i] = Math.exp(scores[ids[i]] / temperature - maxScore); sum += probs[i]; }
    for (let i = 0; i < ids.length; i++) probs[i] /= sum;
    let n = ids.length;
    const topP = o.topP ?? 1;
    if (topP < 1) {
      let acc = 0;
      for (let i = 0; i < n; i++) { acc += probs[i]; if (acc >= topP) { n = i + 1; break; } }
    }
    const minP = o.minP ?? 0;
    if (minP > 0) {
      const floor = minP * probs[0];
      let m = 1;
      while (m < n && probs[m] >= floor) m++;
      n = m;
    }
    let total = 0;
    for (let i = 0; i < n; i++) total += probs[i];
    let r = this.rng.uniform() * total;
    for (let i = 0; i < n; i++) { r -= probs[i]; if (r < 0) return ids[i]; }
    return ids[n - 1];
  }
}

/** Index of the largest value (the first one on ties, as llama.cpp's greedy sampler). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topIndices(x: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: x.length }, (_, i) => i);
  if (k >= x.length) return idx.sort((a, b) => x[b] - x[a] || a - b);
  // Partial selection: keep a sorted window of the best k seen so far.
  const best = idx.slice(0, k).sort((a, b) => x[b] - x[a] || a - b);
  for (let i = k; i < x.length; i++) {
    const v = x[i];
    if (v <= x[best[k - 1]]) continue;
    let j = k - 1;
    while (j > 0 && x[best[j - 1]] < v) { best[j] = best[j - 1]; j--; }
    best[j] = i;
  }
  return best;
}

/** log-softmax of logits in float64 (for KL divergence and perplexity figures). */
export function logSoftmax(x: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - m);
  const lse = m + Math.log(s);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - lse;
  return out;
}

/** KL(p ‖ q) for two logit vectors (p the reference). */
export function klDivergence(pLogits: ArrayLike<number>, qLogits: ArrayLike<number>): number {
  const lp = logSoftmax(pLogits), lq = logSoftmax(qLogits);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
  return kl;
}
