// PSS's model-level step. The per-site search (search.ts) minimizes each site's sampled output
// error, which is not the metric that matters — the model's next-token distribution — and errors
// compound across layers, so the site-optimal factors can lose to SmoothQuant's single α on the
// model. PSS therefore chooses, site by site, between its own factors, SmoothQuant's (the `alpha`
// option, default 0.5) and none (s = 1: a site without outliers, such as the LM head's input, loses
// to any smoothing, which moves rounding error into its weights) by the teacher-forced mean
// KL(p_f32 ‖ p_quant) on the calibration sequences (never evaluation data): it starts from the
// better of all-PSS and all-SmoothQuant, then tries each site's two other choices once (graph
// order) and keeps the one that lowers the KL most (by more than rounding noise). On the calibration set PSS is thus never worse
// than SmoothQuant in KL; the searches per site run once (cached), each trial only refolds and
// requantizes the weights and runs the calibration tokens.
import type { QuantizedDecoder } from './decoder.js';
import type { QuantizableDecoder } from './calibrate.js';
import type { PssResult } from './search.js';
import { agreement } from './metrics.js';
import { teacherForcedLogits } from './step.js';

export type SiteChoice = 'pss' | 'smoothquant' | 'none';

/** A change of choice must lower the calibration KL by more than this (nats): below it the
 *  difference is f32 rounding noise (with nothing quantized every choice is exact to ~1e-10), and a
 *  choice made on noise would, for instance, leave an outlier site unsmoothed. */
const KL_NOISE = 1e-7;

/** What one PSS build reads: the factor source of each site (by index in graph order), and the per-site searches already run. */
export interface PssBuild {
  choice: (site: number) => SiteChoice;
  cache: Map<string, { pss: PssResult; sq: Float64Array; sqError: number }>;
}

export function selectPssSites(model: QuantizableDecoder, calibration: readonly (readonly number[])[],
  build: (choice: (site: number) => SiteChoice) => QuantizedDecoder): QuantizedDecoder {
  const reference = calibration.map((s) => teacherForcedLogits(model, s));
  const score = (q: QuantizedDecoder): number => agreement(reference, q, calibration).kl;
  const allPss = build(() => 'pss'), allSq = build(() => 'smoothquant');
  const sites = allPss.report.length;
  const klPss = score(allPss);
  const klSq = score(allSq);
  const choices: SiteChoice[] = new Array(sites).fill(klSq < klPss ? 'smoothquant' : 'pss');
  let best = klSq < klPss ? allSq : allPss, bestKl = Math.min(klPss, klSq);
  for (let i = 0; i < sites; i++) {
    let pick: SiteChoice | null = null;
    for (const alt of (['pss', 'smoothquant', 'none'] as const).filter((c) => c !== choices[i])) {
      const trial = [...choices];
      trial[i] = alt;
      const q = build((site) => trial[site]);
      const kl = score(q);
      if (kl < bestKl - KL_NOISE) { bestKl = kl; best = q; pick = alt; }
    }
    if (pick) choices[i] = pick;
  }
  return best;
}
