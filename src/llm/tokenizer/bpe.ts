// Byte-level BPE (GPT-2, Llama 3): a pre-tokenizer regex splits text into words; each word's UTF-8
// bytes are mapped to printable characters by GPT-2's byte-to-unicode table; adjacent symbols are
// merged by merge rank, lowest first (ties: leftmost first), as llama.cpp's llm_tokenizer_bpe_session.
import { Heap } from './heap.js';
import { Tokenizer, TokenType, type VocabSpec } from './vocab.js';
import { TokenizerFileError } from '../../io/errors.js';
import { unsafePatternReason } from './pattern-safety.js';

/** Pre-tokenizer patterns (JavaScript syntax; llama.cpp's LLAMA_VOCAB_PRE_TYPE_* regexes). */
export const PRETOKENIZER_PATTERNS = {
  /** GPT-2 (also llama.cpp's fallback for vocabularies without tokenizer.ggml.pre). */
  gpt2: String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`,
  /** Llama 3: case-insensitive contractions, numbers in groups of up to 3 digits. */
  llama3: String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  /** Qwen 2: as Llama 3 but single digits. */
  qwen2: String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
} as const;

/** tokenizer.ggml.pre values -> pattern and whether whole words found in the vocabulary skip merging. */
export const GGUF_PRETOKENIZERS: Record<string, { pattern: string; thenSplit?: readonly string[]; ignoreMerges: boolean; addBos?: boolean }> = {
  // llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT (no tokenizer.ggml.pre, or "default"): not GPT-2's one
  // regex but four applied in turn: punctuation runs, then GPT-2's, then digit runs, then 3 digits
  default: { pattern: String.raw`[\p{P}$+<=>^~|]+`, thenSplit: [PRETOKENIZER_PATTERNS.gpt2, String.raw`\p{N}+`, '[0-9][0-9][0-9]'], ignoreMerges: false },
  'gpt-2': { pattern: PRETOKENIZER_PATTERNS.gpt2, ignoreMerges: false },
  llama3: { pattern: PRETOKENIZER_PATTERNS.llama3, ignoreMerges: true, addBos: true },
  'llama-v3': { pattern: PRETOKENIZER_PATTERNS.llama3, ignoreMerges: true, addBos: true },
  'llama-bpe': { pattern: PRETOKENIZER_PATTERNS.llama3, ignoreMerges: true, addBos: true },
  // llama.cpp's name is "smaug-bpe" (what its converter writes; llama.cpp refuses "smaug", accepted here as an alias)
  'smaug-bpe': { pattern: PRETOKENIZER_PATTERNS.llama3, ignoreMerges: false },
  smaug: { pattern: PRETOKENIZER_PATTERNS.llama3, ignoreMerges: false },
  dbrx: { pattern: PRETOKENIZER_PATTERNS.llama3, ignoreMerges: false },
  qwen2: { pattern: PRETOKENIZER_PATTERNS.qwen2, ignoreMerges: false },
};

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards. */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  return out;
})();
export const UNICODE_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_UNICODE.map((c, b) => [c, b]));

export interface BpeSpec extends VocabSpec {
  /** Merges in rank order, each "left right" (split at the first space after the first character). */
  merges: readonly (string | readonly [string, string])[];
  /** Pre-tokenizer regex source (JavaScript syntax, compiled with the u flag). Default: GPT-2's. */
  pattern?: string;
  /** Further regexes applied in turn to each word the previous split made (llama.cpp's regex
   *  sequences: every match and the text between matches become words). */
  thenSplit?: readonly string[];
  /** A word that is itself a vocabulary token is emitted whole, without merging (Llama 3). */
  ignoreMerges?: boolean;
}

interface Sym { text: string; prev: number; next: number }
interface Bigram { left: number; right: number; text: string; rank: number }

const utf8 = new TextEncoder();

/** Splits text into pre-tokenizer words: the regex matches plus any text between them (kept, never dropped). */
export function pretokenize(text: string, pattern: RegExp): string[] {
  const words: string[] = [];
  let last = 0;
  pattern.lastIndex = 0;
  for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
    if (m[0].length === 0) { pattern.lastIndex++; continue; }
    if (m.index > last) words.push(text.slice(last, m.index));
    words.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) words.push(text.slice(last));
  return words;
}

export class BpeTokenizer extends Tokenizer {
  readonly kind = 'bpe';
  readonly addsDummyPrefix = false;
  readonly pattern: RegExp;
  /** The regexes of `thenSplit`, applied after `pattern`. */
  readonly thenSplit: readonly RegExp[];
  readonly ignoreMerges: boolean;
  private readonly ranks = new Map<string, number>();
  private readonly pieceCache = new Map<number, Uint8Array>();

  constructor(spec: BpeSpec) {
    super(spec);
    const source = spec.source ?? 'tokenizer spec';
    const compile = (pattern: string): RegExp => {
      // The pattern may come from a model file: refuse one that could backtrack for minutes (pattern-safety.ts).
      const unsafe = unsafePatternReason(pattern);
      if (unsafe) throw new TokenizerFileError(source, `the pre-tokenizer pattern ${JSON.stringify(pattern)} is refused: ${unsafe}`);
      try {
        return new RegExp(pattern, 'gu');
      } catch (e) {
        throw new TokenizerFileError(source, `the pre-tokenizer pattern ${JSON.stringify(pattern)} is not a valid JavaScript regex: ${(e as Error).message}`);
      }
    };
    this.pattern = compile(spec.pattern ?? PRETOKENIZER_PATTERNS.gpt2);
    this.thenSplit = (spec.thenSplit ?? []).map(compile);
    this.ignoreMerges = spec.ignoreMerges ?? false;
    spec.merges.forEach((m, rank) => {
      let left: string, right: string;
      if (typeof m === 'string') {
        const at = m.indexOf(' ', 1);
        if (at < 0) throw new TokenizerFileError(source, `merge #${rank} ${JSON.stringify(m)} has no space separating its two parts`);
        left = m.slice(0, at); right = m.slice(at + 1);
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
        [left, right] = m;
      } else {
        throw new TokenizerFileError(source, `merge #${rank} ${JSON.stringify(m)} is neither "left right" nor a [left, right] pair of strings`);
      }
      const key = `${left} ${right}`;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
    });
  }

  get mergeCount(): number { return this.ranks.size; }

  protected encodeFragment(fragment: string, _afterSpecial: boolean, out: number[]): void {
    let words = pretokenize(fragment, this.pattern);
    for (const re of this.thenSplit) words = words.flatMap((w) => pretokenize(w, re));
    for (const word of words) {
      let encoded = '';
      for (const b of utf8.encode(word)) encoded += BYTE_TO_UNICODE[b];
      const whole = this.ignoreMerges ? this.tokenToId.get(encoded) : undefined;
      if (whole !== undefined) { out.push(whole); continue; }
      this.mergeWord(encoded, out);
    }
  }

  private mergeWord(word: string, out: number[]): void {
    const chars = Array.from(word);
    const syms: Sym[] = chars.map((c, i) => ({ text: c, prev: i - 1, next: i + 1 < chars.length ? i + 1 : -1 }));
    const queue = new Heap<Bigram>((a, b) => a.rank < b.rank || (a.rank === b.rank && a.left < b.left));
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const rank = this.ranks.get(`${syms[left].text} ${syms[right].text}`);
      if (rank === undefined) return;
      queue.push({ left, right, text: syms[left].text + syms[right].text, rank });
    };
    for (let i = 1; i < syms.length; i++) tryAdd(i - 1, i);
    for (let bg = queue.pop(); bg; bg = queue.pop()) {
      const l = syms[bg.left], r = syms[bg.right];
      if (l.text.length === 0 || r.text.length === 0 || l.text + r.text !== bg.text) continue; // stale pair
      l.text += r.text;
      r.text = '';
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = bg.left;
      tryAdd(l.prev, bg.left);
      tryAdd(bg.left, l.next);
    }
    for (let i = syms.length > 0 ? 0 : -1; i !== -1; i = syms[i].next) {
      const id = this.tokenToId.get(syms[i].text);
      if (id !== undefined) { out.push(id); continue; }
      // A symbol without a token: emit its byte characters one by one (every byte-level vocabulary has them).
      for (const c of syms[i].text) {
        const bt = this.tokenToId.get(c);
        if (bt !== undefined) out.push(bt);
        else if (this.unkId !== null) out.push(this.unkId);
      }
    }
  }

  protected pieceBytes(id: number): Uint8Array {
    let b = this.pieceCache.get(id);
    if (b) return b;
    const text = this.tokens[id];
    const type = this.types[id];
    if (type === TokenType.Normal) {
      // Map each character back to its byte; a character outside the table is kept as its own UTF-8.
      const bytes: number[] = [];
      for (const c of text) {
        const v = UNICODE_TO_BYTE.get(c);
        if (v !== undefined) bytes.push(v); else bytes.push(...utf8.encode(c));
      }
      b = new Uint8Array(bytes);
    } else if (type === TokenType.Byte) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
      b = m ? new Uint8Array([parseInt(m[1], 16)]) : utf8.encode(text);
    } else if (type === TokenType.Control || type === TokenType.Unknown || type === TokenType.UserDefined) {
      b = utf8.encode(text);
    } else {
      b = new Uint8Array(0);
    }
    this.pieceCache.set(id, b);
    return b;
  }
}
