// PSS's model-level step. The per-site search (search.ts) minimizes each site's sampled output
// error, which is not the metric that matters — the model's next-token distribution — and errors
// compound across layers, so the site-optimal factors can lose to SmoothQuant's single α on the
// model. PSS therefore chooses, site by site, between its own factors and SmoothQuant's (the
// `alpha` option, default 0.5) by the teacher-forced mean KL(p_f32 ‖ p_quant) on the calibration
// sequences (never evaluation data): it starts from the better of all-PSS and all-SmoothQuant,
// then tries flipping each site once (graph order) and keeps a flip that lowers the KL. On the
// calibration set PSS is thus never worse than SmoothQuant in KL; the searches per site run once
// (cached), each trial only refolds and requantizes the weights and runs the calibration tokens.
import type { QuantizedDecoder } from './decoder.js';
import type { QuantizableDecoder } from './calibrate.js';
import type { PssResult } from './search.js';
import { agreement } from './metrics.js';
import { teacherForcedLogits } from './step.js';

export type SiteChoice = 'pss' | 'smoothquant';

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
    const trial = [...choices];
    trial[i] = trial[i] === 'pss' ? 'smoothquant' : 'pss';
    const q = build((site) => trial[site]);
    const kl = score(q);
    if (kl < bestKl) { bestKl = kl; best = q; choices[i] = trial[i]; }
  }
  return best;
}
