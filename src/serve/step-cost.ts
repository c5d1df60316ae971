// The scheduler's estimate of what a step costs, learned from the steps it runs: step time is close
// to linear in the tokens a step carries (ms ≈ a + b·tokens: a fixed part, the weight reads and
// synchronizations of a decode step, and a part per token, the matmul work), fitted by least
// squares over the recent steps (exponentially forgotten, so a machine that gets busier or quieter
// is followed within a few dozen steps). The scheduler uses it to size a step's prefill chunk so a
// step that carries running streams' decodes takes at most a set factor of what the decodes alone
// would: the streams' inter-token latency stays bounded while long prompts keep arriving.
// What a step computes is not always what it carries: the compiled engine pads a step to its
// bucket (the next power of two of tokens). The line is fitted on the tokens computed, and a chunk
// is sized so that the padded step stays within the bound (a step of 56 real tokens costs what 64 do).

export class StepCostModel {
  // Decayed sums of 1, x, y, x², xy (x: tokens, y: ms).
  private n = 0; private sx = 0; private sy = 0; private sxx = 0; private sxy = 0;
  /** The last per-token cost that could be fitted: kept through runs of same-size steps (decodes only). */
  private lastB = NaN;

  /**
   * `decay` in (0, 1): the weight of a step seen k steps ago is decay^k. `computed(n)`: the tokens a
   * step carrying n tokens computes (its padded size; non-decreasing, at least n); n when not padded.
   */
  constructor(private readonly decay = 0.97, private readonly computed: (tokens: number) => number = (n) => n) {
    if (!(decay > 0 && decay < 1)) throw new RangeError(`StepCostModel: decay must lie in (0, 1), got ${decay}`);
  }

  /** A step that carried `tokens` tokens took `ms`. */
  observe(carried: number, ms: number): void {
    if (!(carried > 0) || !(ms >= 0) || !Number.isFinite(ms)) return;
    const tokens = this.computed(carried);
    const d = this.decay;
    this.n = this.n * d + 1; this.sx = this.sx * d + tokens; this.sy = this.sy * d + ms;
    this.sxx = this.sxx * d + tokens * tokens; this.sxy = this.sxy * d + tokens * ms;
    const mx = this.sx / this.n, varX = this.sxx / this.n - mx * mx;
    const b = varX > 0.25 ? (this.sxy / this.n - mx * (this.sy / this.n)) / varX : NaN;
    if (b > 0) this.lastB = b;
  }

  /** The fitted { fixed ms, ms per token }, or null until steps of different sizes were seen. */
  fit(): { a: number; b: number } | null {
    if (this.n < 1) return null;
    const mx = this.sx / this.n, my = this.sy / this.n;
    // Recent steps of (nearly) one size only (a run of decode steps): the per-token part cannot be
    // told from the fixed part; keep the per-token cost fitted last, refit the fixed part.
    if (!(this.lastB > 0)) return null;
    return { a: Math.max(0, my - this.lastB * mx), b: this.lastB };
  }

  /**
   * Most prefill tokens a step carrying `decodes` decodes may add so that it takes at most `factor`
   * times a decode step, within [floor, cap]; `cap` while the model knows nothing yet. The decode
   * step is that of `sharing` sequences (default `decodes`): the scheduler passes every sequence
   * present, so while few streams run and many prompts wait (a burst arriving) the bound is what
   * the streams will see anyway once the prompts decode beside them, not the few streams' own step,
   * which would hold every waiting prompt to the floor and stretch their time to first token.
   */
  prefillCap(decodes: number, factor: number, floor: number, cap: number, sharing = decodes): number {
    const f = this.fit();
    if (!f) return cap;
    // sharing sequences that are not in this step yet count unpadded (the bucket they would fall in is not this step's)
    const alone = f.a + f.b * Math.max(this.computed(decodes), sharing);
    // Most tokens the padded step may compute (the epsilon: 47.999… from rounding is 48) ...
    const most = Math.floor((factor * alone - f.a) / f.b + 1e-9);
    // ... and most it may carry: the largest n whose padded size fits (computed() is non-decreasing).
    let lo = decodes, hi = decodes + cap;
    if (this.computed(lo) > most) hi = lo;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (this.computed(mid) <= most) lo = mid; else hi = mid - 1;
    }
    const chosen = Math.max(Math.min(floor, cap), Math.min(cap, lo - decodes));
    // Where the floor pushed the step into a larger padded size, the padding is computed anyway:
    // fill it with prompt tokens (free; a step of 8 decodes + 16 prompt tokens computes 32).
    return Math.min(cap, this.computed(decodes + chosen) - decodes);
  }
}
