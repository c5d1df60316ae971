// PSS's model-level step. The per-site search (search.ts) minimizes each site's sampled output
// error, which is not the metric that matters — the model's next-token distribution — and errors
// compound across layers, so the site-optimal factors can lose to SmoothQuant's single α on the
// model. PSS therefore chooses, site by site, between its own factors, SmoothQuant's (the `alpha`
// option, default 0.5) and none (s = 1: a site without outliers, such as the LM head's input, loses
// to any smoothing, which moves rounding error into its weights) by the teacher-forced mean
// KL(p_f32 ‖ p_quant) on the calibration sequences (never evaluation data): it starts from the
// better of all-PSS and all-SmoothQuant, then tries each site's two other choices once (graph
// order) and keeps the one that lowers the KL most (by more than rounding noise). On the calibration set PSS is thus never worse
// than SmoothQuant in KL; the searches per site run once (cached).
//
// A trial differs from the current best in one site, so it is built and scored incrementally: the
// build takes every weight the change does not touch from the memo (working-params.ts: no refold,
// requantization or repacking), and the calibration sequences run through the incremental
// interpreter, which reuses every value computed before the changed site (the layers before it,
// and the part of its own layer before it). Both are exact: the chosen model and its KL are the
// ones full rebuilds and full runs give (tested).
import type { QuantizedDecoder } from './decoder.js';
import type { QuantizableDecoder } from './calibrate.js';
import type { PssResult } from './search.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TraceResult } from '../trace/index.js';
import { agreement, compareLogits, combineAgreements } from './metrics.js';
import { teacherForcedLogits, prefillArgs } from './step.js';
import { BuildMemo } from './working-params.js';
import { IncrementalCache, interpretIncremental } from '../backends/reference/incremental.js';

export type SiteChoice = 'pss' | 'smoothquant' | 'none';

/** A change of choice must lower the calibration KL by more than this (nats): below it the
 *  difference is f32 rounding noise (with nothing quantized every choice is exact to ~1e-10), and a
 *  choice made on noise would, for instance, leave an outlier site unsmoothed. */
const KL_NOISE = 1e-7;

/** What one PSS build reads: the factor source of each site (by index in graph order), the
 *  per-site searches already run, and (incremental selection) the memo of earlier builds. */
export interface PssBuild {
  choice: (site: number) => SiteChoice;
  cache: Map<string, { pss: PssResult; sq: Float64Array; sqError: number; baselineError: number }>;
  memo: BuildMemo | null;
}

export interface SelectOptions {
  /** Build and score trials incrementally (default true); false rebuilds and reruns every trial in
   *  full (the reference the incremental path is tested and benchmarked against). */
  incremental?: boolean;
}

export function selectPssSites(model: QuantizableDecoder, calibration: readonly (readonly number[])[],
  build: (choice: (site: number) => SiteChoice, memo: BuildMemo | null) => QuantizedDecoder, options: SelectOptions = {},
  onSite: ((done: number, total: number) => void) | null = null): QuantizedDecoder {
  const reference = calibration.map((s) => teacherForcedLogits(model, s));
  const incremental = options.incremental ?? true;
  const memo = incremental ? new BuildMemo() : null;
  const scorer = incremental ? new IncrementalScorer(reference, calibration) : null;
  const score = (q: QuantizedDecoder): number => (scorer ? scorer.kl(q) : agreement(reference, q, calibration).kl);
  // the models still in use: the best so far (and, while a site's alternatives are tried, nothing else)
  const keepOnly = (alive: QuantizedDecoder | null): void => {
    memo?.retain(new Set(alive ? alive.params.values() : []));
    scorer?.retain(alive);
  };
  // the two whole-model starting points, one alive at a time where the memo can rebuild the
  // winner (at 1B scale a build holds ~9 GB): all-PSS is scored, dropped, rebuilt if it wins
  let allPss: QuantizedDecoder | null = build(() => 'pss', memo);
  const sites = allPss.report.length;
  const klPss = score(allPss);
  if (memo) { allPss = null; keepOnly(null); }
  let allSq: QuantizedDecoder | null = build(() => 'smoothquant', memo);
  const klSq = score(allSq);
  const choices: SiteChoice[] = new Array(sites).fill(klSq < klPss ? 'smoothquant' : 'pss');
  let best: QuantizedDecoder, bestKl = Math.min(klPss, klSq);
  if (klSq < klPss) best = allSq;
  else if (allPss) best = allPss;
  else {
    allSq = null;
    keepOnly(null);
    best = build(() => 'pss', memo);
    score(best); // the same KL (deterministic); fills the incremental caches for the trials
  }
  keepOnly(best);
  onSite?.(0, sites);
  for (let i = 0; i < sites; i++) {
    let pick: SiteChoice | null = null;
    for (const alt of (['pss', 'smoothquant', 'none'] as const).filter((c) => c !== choices[i])) {
      const trial = [...choices];
      trial[i] = alt;
      const q = build((site) => trial[site], memo);
      const kl = score(q);
      if (kl < bestKl - KL_NOISE) { bestKl = kl; best = q; pick = alt; }
      keepOnly(best);
    }
    if (pick) choices[i] = pick;
    onSite?.(i + 1, sites);
  }
  return best;
}

/** Calibration KL of trial models through the incremental interpreter: one value cache per
 *  calibration sequence, holding what the models still in use computed. */
class IncrementalScorer {
  #traces = new Map<string, TraceResult>();
  #caches: IncrementalCache[];
  #keys = new Map<QuantizedDecoder, Set<number>[]>();

  constructor(private readonly reference: Float32Array[], private readonly calibration: readonly (readonly number[])[]) {
    this.#caches = calibration.map(() => new IncrementalCache());
  }

  kl(q: QuantizedDecoder): number {
    const keys: Set<number>[] = [];
    const parts = this.calibration.map((seq, i) => {
      const { step, kPools, vPools } = prefillArgs(q, seq, { allLogits: true });
      const { graph, constants, inputs } = q.lowered(step, kPools, vPools, this.#traces);
      const run = interpretIncremental(graph, inputs, constants, this.#caches[i]);
      keys.push(run.keys);
      return compareLogits(this.reference[i], logitsOf(run.outputs[0]), q.config.vocabSize);
    });
    this.#keys.set(q, keys);
    return combineAgreements(parts).kl;
  }

  retain(alive: QuantizedDecoder | null): void {
    for (const q of [...this.#keys.keys()]) if (q !== alive) this.#keys.delete(q);
    const keys = alive ? this.#keys.get(alive) : undefined;
    this.#caches.forEach((c, i) => c.retain(keys ? [keys[i]] : []));
  }
}

const logitsOf = (t: Tensor): Float32Array => Float32Array.from(t.toFlatArray());
