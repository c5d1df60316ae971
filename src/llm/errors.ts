// Errors of the LLM runtime's inputs (as opposed to its files, which raise ModelFileError
// subclasses from src/io/errors.ts). Each subclasses the built-in error a caller would otherwise
// expect (RangeError for a bad value, TypeError for a bad option), so existing `instanceof` checks hold.

/** Logits hold NaN (or offer no token at all): the model produced invalid output, so no token can be sampled. */
export class NonFiniteLogitsError extends Error {
  constructor(detail: string) {
    super(`sampling: ${detail}; the model produced invalid output (check its hyper-parameters and weights)`);
    this.name = 'NonFiniteLogitsError';
  }
}

/** A token id is not an integer in [0, vocab). */
export class InvalidTokenIdError extends RangeError {
  constructor(where: string, readonly token: unknown, readonly index: number, readonly vocabSize: number) {
    super(`${where}: token id ${describe(token)} at index ${index} is not an integer in [0, ${vocabSize}) (the vocabulary size)`);
    this.name = 'InvalidTokenIdError';
  }
}

/** An options object names an option that does not exist (a typo would otherwise be ignored silently). */
export class UnknownOptionError extends TypeError {
  constructor(where: string, readonly option: string, valid: readonly string[]) {
    super(`${where}: unknown option ${JSON.stringify(option)}${suggest(option, valid)}; valid options: ${valid.join(', ')}`);
    this.name = 'UnknownOptionError';
  }
}

const describe = (v: unknown): string => typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : String(v);

function suggest(option: string, valid: readonly string[]): string {
  const lower = option.toLowerCase().replace(/[_-]/g, '');
  const hit = valid.find((v) => v.toLowerCase() === lower) ?? valid.find((v) => distance(v.toLowerCase(), lower) <= 2);
  return hit ? ` (did you mean ${JSON.stringify(hit)}?)` : '';
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = t;
    }
  }
  return d[b.length];
}

/** Throws UnknownOptionError for the first own key of `options` not in `valid`. */
export function checkOptionNames(where: string, options: object | undefined, valid: readonly string[]): void {
  if (options === undefined || options === null) return;
  if (typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${typeof options}`);
  for (const k of Object.keys(options)) if (!valid.includes(k)) throw new UnknownOptionError(where, k, valid);
}
