// Post-training quantization of paged decoders: quantize() (calibration, smoothing / PSS / shift,
// GPTQ / AWQ / absmax weights, INT8 / FP8 activations and KV cache, all as rewrites of the traced
// step graph), the QuantizedDecoder it returns, artifacts, and the accuracy metrics.
export { quantize } from './quantize.js';
export type { SelectOptions } from './pss-select.js';
export { QuantizedDecoder, type SiteReport } from './decoder.js';
export { type QuantizeOptions, type QuantizeProgress, QUANTIZE_OPTION_NAMES } from './options.js';
export { agreement, compareLogits, type Agreement } from './metrics.js';
export { teacherForcedLogits, prefillArgs } from './step.js';
export { outlierModel, randomSequences } from './outlier-model.js';
export { roundE4M3 } from './numerics.js';
export { saveQuantized, loadQuantized, QuantArtifactError } from './artifact.js';
