// Accuracy of a quantized decoder against its f32 original, teacher-forced: both models read the
// same token sequences and every position's next-token distribution is compared.
//   top1: fraction of positions where both pick the same argmax token
//   kl:   mean KL(p_f32 ‖ p_quant) in nats
import type { StepDecoder } from '../llm/step-engine.js';
import { teacherForcedLogits } from './step.js';

export interface Agreement { tokens: number; top1: number; kl: number }

/** log Σ exp(row): the max, then the shifted sum (indexed loops: this runs over every logit of
 *  every calibration trial in PSS's selection). */
function logSumExp(row: Float32Array, from: number, to: number): number {
  let m = -Infinity;
  for (let i = from; i < to; i++) if (row[i] > m) m = row[i];
  let s = 0;
  for (let i = from; i < to; i++) s += Math.exp(row[i] - m);
  return m + Math.log(s);
}

/** Compares logits [T, vocab] of a reference and a candidate. */
export function compareLogits(ref: Float32Array, cand: Float32Array, vocab: number): Agreement {
  const T = ref.length / vocab;
  let same = 0, kl = 0;
  for (let t = 0; t < T; t++) {
    const from = t * vocab, to = from + vocab;
    let br = from, bc = from;
    for (let i = from + 1; i < to; i++) { if (ref[i] > ref[br]) br = i; if (cand[i] > cand[bc]) bc = i; }
    if (br === bc) same++;
    const lseR = logSumExp(ref, from, to), lseC = logSumExp(cand, from, to);
    for (let i = from; i < to; i++) {
      const lr = ref[i] - lseR, lc = cand[i] - lseC;
      kl += Math.exp(lr) * (lr - lc);
    }
  }
  return { tokens: T, top1: same / T, kl: kl / T };
}

/** Teacher-forced agreement over sequences; `reference` logits may be passed precomputed. */
export function agreement(reference: StepDecoder | Float32Array[], candidate: StepDecoder, sequences: readonly (readonly number[])[]): Agreement {
  const vocab = candidate.config.vocabSize;
  return combineAgreements(sequences.map((seq, i) => {
    const ref = Array.isArray(reference) ? reference[i] : teacherForcedLogits(reference, seq);
    return compareLogits(ref, teacherForcedLogits(candidate, seq), vocab);
  }));
}

/** The agreement over several sequences, each weighted by its token count. */
export function combineAgreements(parts: readonly Agreement[]): Agreement {
  let tokens = 0, same = 0, kl = 0;
  for (const a of parts) { tokens += a.tokens; same += a.top1 * a.tokens; kl += a.kl * a.tokens; }
  return { tokens, top1: same / tokens, kl: kl / tokens };
}
