// Next-token sampling from logits: greedy, temperature, top-k, top-p (nucleus), min-p, a
// repetition penalty, presence / frequency penalties and a logit bias, with a seeded generator so a
// run can be reproduced exactly (a random seed when none is given, reported as `sampler.seed`).
// Order (as in transformers' logits processors): logit bias -> repetition penalty -> presence /
// frequency penalties -> temperature -> top-k -> softmax -> top-p -> min-p -> draw.
import { randomInt } from 'node:crypto';
import { Rng } from '../tensor/random.js';
import { NonFiniteLogitsError, checkOptionNames } from './errors.js';

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
  /** Subtracted once from the logit of every token that occurs in the window (OpenAI's presence_penalty; 0 = off). */
  presencePenalty?: number;
  /** Subtracted from a token's logit once per occurrence in the window (OpenAI's frequency_penalty; 0 = off). */
  frequencyPenalty?: number;
  /** Added to the logits of the given token ids before anything else (-Infinity bans a token). */
  logitBias?: Readonly<Record<number, number>> | ReadonlyMap<number, number>;
  /**
   * Seed of the sampling generator, an integer in [0, 2^32). Default: a random seed per Sampler (read it
   * back from `sampler.seed` to reproduce a run). Greedy decoding (temperature 0) never draws.
   */
  seed?: number;
}

/** Every option a Sampler accepts (unknown names are errors). */
export const SAMPLING_OPTION_NAMES: readonly (keyof SamplingOptions)[] = [
  'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'repetitionWindow', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'seed',
];

function check(o: SamplingOptions): void {
  const bad = (what: string, v: unknown, rule: string) => { throw new RangeError(`sampling: ${what} ${rule}, got ${String(v)}`); };
  if (o.temperature !== undefined && !(o.temperature >= 0)) bad('temperature', o.temperature, 'must be >= 0');
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad('topK', o.topK, 'must be a non-negative integer');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad('topP', o.topP, 'must be in (0, 1]');
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) bad('minP', o.minP, 'must be in [0, 1]');
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad('repetitionPenalty', o.repetitionPenalty, 'must be a finite number > 0');
  if (o.repetitionWindow !== undefined && !(Number.isInteger(o.repetitionWindow) && o.repetitionWindow >= 0)) bad('repetitionWindow', o.repetitionWindow, 'must be a non-negative integer');
  if (o.presencePenalty !== undefined && !Number.isFinite(o.presencePenalty)) bad('presencePenalty', o.presencePenalty, 'must be a finite number');
  if (o.frequencyPenalty !== undefined && !Number.isFinite(o.frequencyPenalty)) bad('frequencyPenalty', o.frequencyPenalty, 'must be a finite number');
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0 && o.seed <= 0xffffffff)) bad('seed', o.seed, 'must be an integer in [0, 2^32)');
  if (o.logitBias !== undefined) {
    if (typeof o.logitBias !== 'object' || o.logitBias === null) bad('logitBias', o.logitBias, 'must be an object or Map of token id -> bias');
    for (const [k, v] of biasEntries(o.logitBias!)) {
      if (!(Number.isInteger(k) && k >= 0)) bad('logitBias', k, 'keys must be token ids (non-negative integers)');
      if (Number.isNaN(v) || typeof v !== 'number' || v === Infinity) bad(`logitBias[${k}]`, v, 'must be a number (finite, or -Infinity to ban the token)');
    }
  }
}

function biasEntries(b: NonNullable<SamplingOptions['logitBias']>): [number, number][] {
  if (b instanceof Map) return [...b.entries()];
  return Object.entries(b).map(([k, v]) => [Number(k), v as number]);
}

export class Sampler {
  private readonly rng: Rng;
  readonly options: Readonly<SamplingOptions>;
  /** The generator's seed: options.seed, or the random one drawn when none was given. */
  readonly seed: number;
  private readonly bias: [number, number][];

  constructor(options: SamplingOptions = {}) {
    checkOptionNames('sampling', options, SAMPLING_OPTION_NAMES);
    check(options);
    this.options = { ...options };
    // A fixed default seed would make every "random" run identical; users who want that pass a seed.
    this.seed = options.seed ?? randomInt(0, 0xffffffff);
    this.rng = new Rng(this.seed);
    this.bias = options.logitBias ? biasEntries(options.logitBias) : [];
  }

  /** Picks the next token id from `logits` [vocab]; `history` is the context so far (for the penalties). */
  sample(logits: Float32Array, history: readonly number[] = []): number {
    const o = this.options;
    const penalty = o.repetitionPenalty ?? 1;
    const presence = o.presencePenalty ?? 0, frequency = o.frequencyPenalty ?? 0;
    const penalized = (penalty !== 1 || presence !== 0 || frequency !== 0) && history.length > 0;
    // Plain greedy reads the logits once (a decode step samples every sequence's row of [seqs, vocab]).
    if ((o.temperature ?? 0) === 0 && this.bias.length === 0 && !penalized) return greedyPick(logits);
    checkLogits(logits);
    let scores: Float32Array = logits;
    const copy = () => { if (scores === logits) scores = Float32Array.from(logits); };
    for (const [t, b] of this.bias) if (t < scores.length) { copy(); scores[t] += b; }
    if (penalized) {
      copy();
      const start = o.repetitionWindow !== undefined ? Math.max(0, history.length - o.repetitionWindow) : 0;
      const counts = new Map<number, number>();
      for (let i = start; i < history.length; i++) counts.set(history[i], (counts.get(history[i]) ?? 0) + 1);
      for (const [t, n] of counts) {
        if (!(t >= 0 && t < scores.length)) continue;
        if (penalty !== 1) scores[t] = scores[t] > 0 ? scores[t] / penalty : scores[t] * penalty;
        scores[t] -= presence + frequency * n;
      }
    }
    // A +Infinity score (a bias or the model itself) makes that token certain: choose among those.
    let inf = -1;
    for (let i = 0; i < scores.length; i++) if (scores[i] === Infinity) { inf = i; break; }
    if (inf >= 0) return inf;
    const temperature = o.temperature ?? 0;
    const best = argmax(scores);
    if (scores[best] === -Infinity) throw new NonFiniteLogitsError('every token has a score of -Infinity (after logit bias and penalties), so none can be chosen');
    if (temperature === 0) return best;

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

/** NaN logits compare false with everything, so argmax would return token 0 and sorting the last id: refuse them. */
function checkLogits(logits: ArrayLike<number>): void {
  if (logits.length === 0) throw new NonFiniteLogitsError('the logits are empty');
  for (let i = 0; i < logits.length; i++) {
    if (Number.isNaN(logits[i])) {
      let count = 0;
      for (let j = i; j < logits.length; j++) if (Number.isNaN(logits[j])) count++;
      throw new NonFiniteLogitsError(`the logits hold NaN (${count} of ${logits.length} values, the first at token id ${i})`);
    }
  }
}

/**
 * Greedy choice in one pass, what sample() picks at temperature 0 without bias or penalties: the
 * first +Infinity if any (it is the first maximum), else the argmax; NaN logits and all -Infinity
 * are refused with the same errors.
 */
function greedyPick(x: Float32Array): number {
  if (x.length === 0) checkLogits(x);
  let best = 0, top = x[0];
  if (top !== top) checkLogits(x); // NaN: throws, naming the count and the first id
  for (let i = 1; i < x.length; i++) {
    const v = x[i];
    if (v > top) { top = v; best = i; } else if (v !== v) checkLogits(x);
  }
  if (top === -Infinity) throw new NonFiniteLogitsError('every token has a score of -Infinity (after logit bias and penalties), so none can be chosen');
  return best;
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
