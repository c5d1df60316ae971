// Pre-tokenizer regexes from tokenizer files: patterns that make JavaScript's backtracking engine run
// for exponential (or high polynomial) time are refused quickly with the reason; the patterns real
// tokenizers use (GPT-2, Llama 3, Qwen 2, GPT-4o's o200k, DeepSeek) are accepted and tokenize as before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tokenizerFromHuggingFace, convertHfPattern, PRETOKENIZER_PATTERNS, BYTE_TO_UNICODE } from '../../src/llm/tokenizer/index.js';
import { unsafePatternReason } from '../../src/llm/tokenizer/pattern-safety.js';
import { TokenizerFileError } from '../../src/io/errors.js';

/** A minimal byte-level tokenizer.json with the given Split regex. */
const tokenizerJson = (regex: string) => ({
  pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex } }, { type: 'ByteLevel' }] },
  model: { type: 'BPE', vocab: Object.fromEntries(BYTE_TO_UNICODE.map((c, i) => [c, i])), merges: [] },
});

test('an evil pattern from a tokenizer file is refused at load, quickly, naming the pattern and why', () => {
  for (const [regex, why] of [
    ['(a+)+$', /a group repeated \+ contains a repetition \+ \(ambiguous repetition\): backtracking can take exponential time/],
    ['(a|aa)*b', /a group repeated \* contains an alternation/],
    ['(?:\\s?x){1,40}y', /a group repeated \{1,40\} contains a repetition \{0,1\}/],
    ['\\s*\\s*x', /one alternative has 2 unbounded repetitions followed by elements that must still match/],
    ['(\\w)\\1+', /back-reference/],
    ['a?'.repeat(30) + 'a'.repeat(30), /its optional parts and alternatives combine into 1073741824 paths \(at most 10000 allowed\)/],
    ['(?:a|a)'.repeat(40) + 'b', /combine into more than 10\^12 paths/],
  ] as const) {
    const t0 = performance.now();
    assert.throws(() => tokenizerFromHuggingFace(tokenizerJson(regex)), (e: unknown) => e instanceof TokenizerFileError &&
      e.message.includes(`the pre-tokenizer pattern ${JSON.stringify(regex)} is refused`) && why.test(e.message), regex);
    assert.ok(performance.now() - t0 < 2000, `${regex}: refused in ${performance.now() - t0} ms`);
  }
});

test('without the check, the evil pattern does backtrack catastrophically (why the check exists)', () => {
  // 20 characters already take a measurable time; the 29 took 22 s. Each extra 'a' doubles it.
  const re = /(a+)+$/u;
  const time = (n: number) => { const t0 = performance.now(); re.test('a'.repeat(n) + '!'); return performance.now() - t0; };
  const small = time(12), big = time(20);
  assert.ok(big > small * 4, `12 chars: ${small} ms, 20 chars: ${big} ms`);
});

test('real pre-tokenizer patterns pass the check', () => {
  const real = {
    ...PRETOKENIZER_PATTERNS,
    hfLlama3: convertHfPattern("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
    o200k: convertHfPattern("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
    deepseekDigits: '\\p{N}{1,3}|[一-龥぀-ゟ゠-ヿ]+|\\s?[A-Za-zµÀ-ÖØ-öø-ƺ]+|\\s?[!-/:-~！-／：-～‘-‟　-。]+|\\s+$|[\\r\\n]',
    starcoder: '\\p{N}|\'s|\'t|\'re|\'ve|\'m|\'ll|\'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)',
  };
  for (const [name, p] of Object.entries(real)) assert.equal(unsafePatternReason(p), null, name);
});

test('real patterns stay fast on long adversarial runs (whitespace, punctuation, newlines)', () => {
  for (const [name, p] of Object.entries(PRETOKENIZER_PATTERNS)) {
    const tok = tokenizerFromHuggingFace({ ...tokenizerJson(p), model: { type: 'BPE', vocab: Object.fromEntries(BYTE_TO_UNICODE.map((c, i) => [c, i])), merges: [] } });
    for (const text of [' '.repeat(20000) + 'x', '\n '.repeat(10000) + 'x', '!'.repeat(20000) + '\r\r']) {
      const t0 = performance.now();
      tok.encode(text);
      assert.ok(performance.now() - t0 < 3000, `${name} on ${JSON.stringify(text.slice(0, 4))}...: ${performance.now() - t0} ms`);
    }
  }
});
