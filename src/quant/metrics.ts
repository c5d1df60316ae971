// Accuracy of a quantized decoder against its f32 original, teacher-forced: both models read the
// same token sequences and every position's next-token distribution is compared.
//   top1: fraction of positions where both pick the same argmax token
//   kl:   mean KL(p_f32 ‖ p_quant) in nats
import type { StepDecoder } from '../llm/step-engine.js';
import { teacherForcedLogits } from './step.js';

export interface Agreement { tokens: number; top1: number; kl: number }

function logSoftmax(row: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return Float64Array.from(row, (v) => v - lse);
}

const argmax = (row: ArrayLike<number>): number => { let b = 0; for (let i = 1; i < row.length; i++) if (row[i] > row[b]) b = i; return b; };

/** Compares logits [T, vocab] of a reference and a candidate. */
export function compareLogits(ref: Float32Array, cand: Float32Array, vocab: number): Agreement {
  const T = ref.length / vocab;
  let same = 0, kl = 0;
  for (let t = 0; t < T; t++) {
    const r = ref.subarray(t * vocab, (t + 1) * vocab), c = cand.subarray(t * vocab, (t + 1) * vocab);
    if (argmax(r) === argmax(c)) same++;
    const lr = logSoftmax(r), lc = logSoftmax(c);
    for (let i = 0; i < vocab; i++) kl += Math.exp(lr[i]) * (lr[i] - lc[i]);
  }
  return { tokens: T, top1: same / T, kl: kl / T };
}

/** Teacher-forced agreement over sequences; `reference` logits may be passed precomputed. */
export function agreement(reference: StepDecoder | Float32Array[], candidate: StepDecoder, sequences: readonly (readonly number[])[]): Agreement {
  const vocab = candidate.config.vocabSize;
  let tokens = 0, same = 0, kl = 0;
  sequences.forEach((seq, i) => {
    const ref = Array.isArray(reference) ? reference[i] : teacherForcedLogits(reference, seq);
    const a = compareLogits(ref, teacherForcedLogits(candidate, seq), vocab);
    tokens += a.tokens; same += a.top1 * a.tokens; kl += a.kl * a.tokens;
  });
  return { tokens, top1: same / tokens, kl: kl / tokens };
}
