// CLIP's byte-level BPE tokenizer (openai/CLIP simple_tokenizer.py; transformers CLIPTokenizer),
// read from vocab.json + merges.txt in the original layout. What sets it apart from GPT-2's BPE:
// the text is cleaned (HTML entities, whitespace runs) and lowercased first; whitespace separates
// words and is dropped; the last symbol of each word carries the end-of-word suffix `</w>`; and
// prompts are framed as <|startoftext|> ... <|endoftext|> and padded with <|endoftext|> to 77.
// The byte-to-unicode table and the special-token handling are the project's (src/llm/tokenizer).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer, TokenType, BYTE_TO_UNICODE, UNICODE_TO_BYTE, type EncodeOptions } from '../../../src/llm/tokenizer/index.js';

export const START_OF_TEXT = '<|startoftext|>';
export const END_OF_TEXT = '<|endoftext|>';
export const END_OF_WORD = '</w>';

/** CLIP's word pattern after lowercasing (contractions, letter runs, single digits, symbol runs);
 *  the special tokens are split out before it by the Tokenizer base class. */
const WORD_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/gu;

export interface ClipTokenizerSpec {
  /** token -> id, as vocab.json. Ids must be 0..n-1. */
  vocab: Record<string, number>;
  /** Merges in rank order, "left right", as merges.txt without its "#version" header. */
  merges: readonly string[];
  /** Padded prompt length (77 for SD). */
  maxLength?: number;
}

const utf8 = new TextEncoder();

export class ClipTokenizer extends Tokenizer {
  readonly kind = 'clip-bpe';
  readonly addsDummyPrefix = false;
  readonly maxLength: number;
  /** The merges in rank order, as given. */
  readonly merges: readonly string[];
  private readonly ranks = new Map<string, number>();
  private readonly wordCache = new Map<string, string[]>();

  constructor(spec: ClipTokenizerSpec) {
    const tokens = tokensById(spec.vocab);
    const id = (text: string): number => {
      const i = spec.vocab[text];
      if (i === undefined) throw new TypeError(`ClipTokenizer: vocab.json has no ${JSON.stringify(text)} token; a CLIP vocabulary ends with ${START_OF_TEXT} and ${END_OF_TEXT}`);
      return i;
    };
    const bos = id(START_OF_TEXT), eos = id(END_OF_TEXT);
    const types = new Uint8Array(tokens.length).fill(TokenType.Normal);
    types[bos] = TokenType.Control;
    types[eos] = TokenType.Control;
    // transformers' CLIPTokenizer: unk and pad are <|endoftext|> too.
    super({ tokens, types, special: { bos, eos, unk: eos, pad: eos }, addBos: true, addEos: true });
    this.maxLength = spec.maxLength ?? 77;
    if (!Number.isInteger(this.maxLength) || this.maxLength < 2) throw new RangeError(`ClipTokenizer: maxLength must be an integer ≥ 2 (room for the start and end tokens), got ${spec.maxLength}`);
    this.merges = [...spec.merges];
    spec.merges.forEach((m, rank) => {
      const parts = m.split(' ');
      if (parts.length !== 2 || !parts[0] || !parts[1]) throw new TypeError(`ClipTokenizer: merge #${rank} ${JSON.stringify(m)} is not two symbols separated by one space`);
      if (!this.ranks.has(m)) this.ranks.set(m, rank);
    });
  }

  get mergeCount(): number { return this.ranks.size; }

  /** The tokenizer as the two files of the original layout (what loadClipTokenizer reads). */
  files(): { 'vocab.json': string; 'merges.txt': string } {
    const vocab: Record<string, number> = {};
    this.tokens.forEach((t, i) => { vocab[t] = i; });
    return { 'vocab.json': JSON.stringify(vocab), 'merges.txt': ['#version: 0.2', ...this.merges].join('\n') + '\n' };
  }

  /** Text -> ids with <|startoftext|> and <|endoftext|> (unless turned off), after CLIP's cleanup.
   *  Special-token text in the prompt is parsed as those tokens, as the original's regex does. */
  override encode(text: string, options: EncodeOptions = {}): number[] {
    return super.encode(clipClean(text), { parseSpecial: true, ...options });
  }

  /** What SD feeds the text encoder: exactly maxLength ids, [BOS, the first maxLength - 2 tokens,
   *  EOS, EOS padding] (transformers: padding="max_length", truncation=True). */
  encodePrompt(text: string): { ids: number[]; truncated: boolean } {
    const body = this.encode(text, { addBos: false, addEos: false });
    const room = this.maxLength - 2;
    const ids = [this.bosId!, ...body.slice(0, room), this.eosId!];
    while (ids.length < this.maxLength) ids.push(this.padId!);
    return { ids, truncated: body.length > room };
  }

  protected encodeFragment(fragment: string, _afterSpecial: boolean, out: number[]): void {
    WORD_PATTERN.lastIndex = 0;
    for (const m of fragment.matchAll(WORD_PATTERN)) {
      let word = '';
      for (const b of utf8.encode(m[0])) word += BYTE_TO_UNICODE[b];
      for (const piece of this.bpe(word)) out.push(this.tokenToId.get(piece) ?? this.unkId!);
    }
  }

  /** simple_tokenizer.bpe: start from the word's characters with `</w>` on the last, then merge the
   *  lowest-ranked adjacent pair everywhere it occurs (left to right), until no pair has a rank. */
  bpe(word: string): string[] {
    const cached = this.wordCache.get(word);
    if (cached) return cached;
    const chars = Array.from(word);
    let symbols = [...chars.slice(0, -1), chars[chars.length - 1] + END_OF_WORD];
    while (symbols.length > 1) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
      }
      if (best < 0) break;
      const [first, second] = [symbols[best], symbols[best + 1]];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === first && symbols[i + 1] === second) { merged.push(first + second); i++; }
        else merged.push(symbols[i]);
      }
      symbols = merged;
    }
    if (this.wordCache.size < 10000) this.wordCache.set(word, symbols);
    return symbols;
  }

  /** A token's bytes: its characters mapped back through the byte table, `</w>` becoming a space
   *  (so decode() joins words with spaces and ends with one, as the original's decode does). */
  protected pieceBytes(id: number): Uint8Array {
    let text = this.tokens[id];
    const endsWord = text.endsWith(END_OF_WORD);
    if (endsWord) text = text.slice(0, -END_OF_WORD.length);
    const bytes: number[] = [];
    for (const c of text) {
      const b = UNICODE_TO_BYTE.get(c);
      if (b !== undefined) bytes.push(b); else bytes.push(...utf8.encode(c));
    }
    if (endsWord) bytes.push(0x20);
    return new Uint8Array(bytes);
  }
}

/** vocab.json's map -> the token texts in id order; ids must be exactly 0..n-1. */
function tokensById(vocab: Record<string, number>): string[] {
  const entries = Object.entries(vocab);
  const tokens: string[] = new Array(entries.length);
  for (const [text, id] of entries) {
    if (!Number.isInteger(id) || id < 0 || id >= entries.length) throw new RangeError(`ClipTokenizer: vocab.json gives ${JSON.stringify(text)} id ${id}, outside 0..${entries.length - 1} (ids must be dense)`);
    if (tokens[id] !== undefined) throw new RangeError(`ClipTokenizer: vocab.json gives id ${id} to both ${JSON.stringify(tokens[id])} and ${JSON.stringify(text)}`);
    tokens[id] = text;
  }
  return tokens;
}

// ---- text cleanup ----

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/** html.unescape for the entities prompts contain: numeric (&#39; &#x27;) and the common named
 *  ones. (Python's table has all 2,231 HTML5 names; the rest are left as text here.) */
export function htmlUnescape(text: string): string {
  return text.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z]+);/g, (whole, body: string) => {
    if (body[0] === '#') {
      const code = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return NAMED_ENTITIES[body] ?? whole;
  });
}

/**
 * CLIP's prompt normalization: basic_clean (ftfy.fix_text, html.unescape twice, strip), then
 * whitespace_clean (runs of whitespace -> one space, strip), then lower(). ftfy's mojibake repair is
 * not reproduced; its Unicode NFC normalization is (what it changes in well-formed text).
 */
export function clipClean(text: string): string {
  const unescaped = htmlUnescape(htmlUnescape(text.normalize('NFC'))).trim();
  return unescaped.replace(/\s+/g, ' ').trim().toLowerCase();
}

// ---- files ----

/** merges.txt -> merges in rank order: the "#version" header and empty lines are skipped (the
 *  original CLIP file's header is '"bpe_simple_vocab_16e6.txt#version: 0.2'). */
export function parseMerges(text: string): string[] {
  return text.split(/\r?\n/).filter((line, i) => line.length > 0 && !(i === 0 && line.includes('#version')));
}

/** Reads a tokenizer folder (diffusers' tokenizer/: vocab.json and merges.txt). */
export function loadClipTokenizer(dir: string, options: { maxLength?: number } = {}): ClipTokenizer {
  const read = (name: string): string => {
    try {
      return readFileSync(join(dir, name), 'utf8');
    } catch (e) {
      throw new Error(`loadClipTokenizer: cannot read ${join(dir, name)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); a CLIP tokenizer folder holds vocab.json and merges.txt`);
    }
  };
  let vocab: Record<string, number>;
  try {
    vocab = JSON.parse(read('vocab.json'));
  } catch (e) {
    if ((e as Error).message.startsWith('loadClipTokenizer')) throw e;
    throw new Error(`loadClipTokenizer: ${join(dir, 'vocab.json')} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) throw new TypeError(`loadClipTokenizer: ${join(dir, 'vocab.json')} must be an object mapping token to id`);
  return new ClipTokenizer({ vocab, merges: parseMerges(read('merges.txt')), maxLength: options.maxLength });
}

/** The order of bytes_to_unicode().values(), which CLIP's vocabulary starts with: the printable
 *  bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') first, then the other 68 bytes, each group ascending. */
export const CLIP_BYTE_ORDER: readonly number[] = (() => {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const all = Array.from({ length: 256 }, (_, b) => b);
  return [...all.filter(printable), ...all.filter((b) => !printable(b))];
})();

/**
 * The vocabulary CLIP builds from its merges (simple_tokenizer.py): the 256 byte characters, the
 * same with `</w>`, one token per merge (its two parts joined), then <|startoftext|> and
 * <|endoftext|>. The released vocab.json is exactly this for the released merges.
 */
export function clipVocabFromMerges(merges: readonly string[]): Record<string, number> {
  const bytes = CLIP_BYTE_ORDER.map((b) => BYTE_TO_UNICODE[b]);
  const tokens = [...bytes, ...bytes.map((c) => c + END_OF_WORD), ...merges.map((m) => m.replace(' ', '')), START_OF_TEXT, END_OF_TEXT];
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => { if (!(t in vocab)) vocab[t] = i; });
  if (Object.keys(vocab).length !== tokens.length) throw new RangeError('clipVocabFromMerges: two merges produce the same token; merges must be unique');
  return vocab;
}

/**
 * Learns `count` BPE merges from a small corpus the way CLIP's vocabulary was built (words cleaned
 * and split as the tokenizer does, `</w>` on each word's last symbol, the most frequent adjacent
 * pair merged first; ties by first occurrence). For seeded demos and tests without the released
 * 49,152-token files; a real model needs the real files.
 */
export function learnClipMerges(corpus: string, count: number): string[] {
  const freq = new Map<string, number>();
  for (const m of clipClean(corpus).matchAll(WORD_PATTERN)) {
    let w = '';
    for (const b of utf8.encode(m[0])) w += BYTE_TO_UNICODE[b];
    freq.set(w, (freq.get(w) ?? 0) + 1);
  }
  const words = [...freq].map(([w, n]) => {
    const chars = Array.from(w);
    return { symbols: [...chars.slice(0, -1), chars[chars.length - 1] + END_OF_WORD], n };
  });
  const merges: string[] = [];
  const made = new Set<string>(); // tokens already made: a pair that would make one again is skipped
  while (merges.length < count) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) for (let i = 0; i + 1 < symbols.length; i++) {
      const p = `${symbols[i]} ${symbols[i + 1]}`;
      pairs.set(p, (pairs.get(p) ?? 0) + n);
    }
    let best = '', bestN = 0;
    for (const [p, n] of pairs) if (n > bestN && !made.has(p.replace(' ', ''))) { best = p; bestN = n; }
    if (!best) break; // every word is one symbol
    const joined = best.replace(' ', '');
    made.add(joined);
    merges.push(best);
    const [a, b] = best.split(' ');
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) { out.push(joined); i++; } else out.push(w.symbols[i]);
      }
      w.symbols = out;
    }
  }
  return merges;
}
