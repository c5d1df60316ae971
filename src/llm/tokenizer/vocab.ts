// The vocabulary and behaviour every tokenizer shares: token texts/scores/types, special token ids,
// splitting raw text around special tokens (as llama.cpp's tokenizer_st_partition does), BOS/EOS
// handling, decoding to bytes and UTF-8 text, and a streaming decoder. Subclasses (SentencePiece-style
// BPE in spm.ts, byte-level BPE in bpe.ts) supply how a plain-text fragment becomes ids and what
// bytes a token stands for.
import { TokenizerFileError } from '../../io/errors.js';

/** llama.cpp / GGUF token types (tokenizer.ggml.token_type). */
export const TokenType = {
  Undefined: 0, Normal: 1, Unknown: 2, Control: 3, UserDefined: 4, Unused: 5, Byte: 6,
} as const;
export type TokenTypeId = (typeof TokenType)[keyof typeof TokenType];

export interface SpecialTokenIds {
  bos?: number; eos?: number; unk?: number; pad?: number; sep?: number; eot?: number; eom?: number;
}

export interface VocabSpec {
  tokens: readonly string[];
  /** Per-token scores (SentencePiece log-probabilities); merge priority for spm. Default 0. */
  scores?: ArrayLike<number>;
  /** Per-token types (TokenType); default Normal. */
  types?: ArrayLike<number>;
  special?: SpecialTokenIds;
  /** Whether encode() adds BOS / EOS by default. */
  addBos?: boolean;
  addEos?: boolean;
  /** Where the vocabulary came from (a file path), for error messages. Default "tokenizer spec". */
  source?: string;
  /** The model's Jinja chat template (GGUF tokenizer.chat_template / tokenizer_config.json chat_template). */
  chatTemplate?: string;
  /**
   * Special/added tokens that swallow the whitespace on their left (lstrip) or right (rstrip) when
   * matched in text: Hugging Face's AddedToken flags, llama.cpp's LLAMA_TOKEN_ATTR_LSTRIP/RSTRIP.
   */
  lstrip?: Iterable<number>;
  rstrip?: Iterable<number>;
}

export interface EncodeOptions {
  /** Prepend BOS. Default: the model's setting (tokenizer.ggml.add_bos_token; true for Llama). */
  addBos?: boolean;
  /** Append EOS. Default: the model's setting (usually false). */
  addEos?: boolean;
  /**
   * Treat the text of control tokens (e.g. "<|eot_id|>", "</s>") as those tokens. Default false: such
   * text is tokenized as ordinary characters, so user input cannot inject control tokens.
   * User-defined tokens are always matched, as in llama.cpp.
   */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Leave out control and unknown tokens (BOS, EOS, ...). Default true. */
  skipSpecial?: boolean;
  /**
   * Drop one leading space from the first decoded text: the space SentencePiece-style tokenizers add in
   * front of the input (add_space_prefix). Default: true in decode() for such tokenizers, so
   * decode(encode(text)) === text; false in streamDecoder(), whose tokens usually continue a prompt.
   */
  stripDummyPrefix?: boolean;
  /**
   * Hugging Face's clean_up_tokenization_spaces, as llama.cpp's detokenizer applies it to BPE
   * vocabularies: drop the space before ? ! . , and before 's 'm 're 've, and around a lone '.
   * Default false (it is lossy: decode(encode(" , ")) would no longer round-trip). decode() only.
   */
  cleanSpaces?: boolean;
}

type Fragment = string | number; // raw text, or a token id already decided

export abstract class Tokenizer {
  readonly tokens: readonly string[];
  readonly scores: Float32Array;
  readonly types: Uint8Array;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly padId: number | null;
  readonly sepId: number | null;
  /** End-of-generation ids: EOS plus end-of-turn tokens found by id or by text (llama.cpp's list). */
  readonly eogIds: ReadonlySet<number>;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** The model's Jinja chat template, when the file has one (see chat.ts). */
  readonly chatTemplate: string | undefined;
  private readonly lstrip: ReadonlySet<number>;
  private readonly rstrip: ReadonlySet<number>;
  protected readonly tokenToId = new Map<string, number>();
  /** Control, user-defined and unknown tokens, longest text first (the order they are split out). */
  private readonly specialTokens: number[];
  /** Tokenizer family name, for messages. */
  abstract readonly kind: string;
  /** Whether encode() puts a space in front of the text (SentencePiece's dummy prefix). */
  abstract readonly addsDummyPrefix: boolean;

  constructor(spec: VocabSpec) {
    const n = spec.tokens.length;
    const fail = (detail: string): never => { throw new TokenizerFileError(spec.source ?? 'tokenizer spec', detail); };
    if (n === 0) fail('the vocabulary is empty');
    this.tokens = spec.tokens;
    this.scores = Float32Array.from({ length: n }, (_, i) => spec.scores?.[i] ?? 0);
    this.types = Uint8Array.from({ length: n }, (_, i) => spec.types?.[i] ?? TokenType.Normal);
    for (let i = 0; i < n; i++) {
      const t = spec.tokens[i];
      const prev = this.tokenToId.get(t);
      if (typeof t !== 'string') fail(`token ${i} is ${JSON.stringify(t)}, not a string`);
      if (prev !== undefined) fail(`duplicate token ${JSON.stringify(t)} has ids ${prev} and ${i}`);
      this.tokenToId.set(t, i);
    }
    const check = (name: string, id: number | undefined): number | null => {
      if (id === undefined || id === null) return null;
      if (!Number.isInteger(id) || id < 0 || id >= n) fail(`${name} token id ${id} is outside the vocabulary (size ${n})`);
      return id;
    };
    const sp = spec.special ?? {};
    this.bosId = check('BOS', sp.bos);
    this.eosId = check('EOS', sp.eos);
    this.unkId = check('unknown', sp.unk);
    this.padId = check('padding', sp.pad);
    this.sepId = check('separator', sp.sep);
    this.addBos = spec.addBos ?? false;
    this.addEos = spec.addEos ?? false;
    this.chatTemplate = spec.chatTemplate;
    this.lstrip = new Set(spec.lstrip ?? []);
    this.rstrip = new Set(spec.rstrip ?? []);
    for (const id of [...this.lstrip, ...this.rstrip]) check('lstrip/rstrip', id);
    if (this.addBos && this.bosId === null) fail('add_bos is set but there is no BOS token id');
    if (this.addEos && this.eosId === null) fail('add_eos is set but there is no EOS token id');

    const eog = new Set<number>();
    for (const id of [this.eosId, check('EOT', sp.eot), check('EOM', sp.eom)]) if (id !== null) eog.add(id);
    for (const text of ['<|eot_id|>', '<|eom_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<EOT>']) {
      const id = this.tokenToId.get(text);
      if (id !== undefined && this.types[id] === TokenType.Control) eog.add(id);
    }
    this.eogIds = eog;

    this.specialTokens = [];
    for (let i = 0; i < n; i++) {
      const t = this.types[i];
      if ((t === TokenType.Control || t === TokenType.UserDefined || t === TokenType.Unknown) && this.tokens[i].length > 0) this.specialTokens.push(i);
    }
    this.specialTokens.sort((a, b) => this.tokens[b].length - this.tokens[a].length || a - b);
  }

  get vocabSize(): number { return this.tokens.length; }
  idToToken(id: number): string { this.checkId(id); return this.tokens[id]; }
  /** The id of a token's exact text, if it is in the vocabulary. */
  getId(text: string): number | undefined { return this.tokenToId.get(text); }
  isEog(id: number): boolean { return this.eogIds.has(id); }
  isControl(id: number): boolean { return this.types[id] === TokenType.Control; }

  protected checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.tokens.length) {
      throw new RangeError(`${this.kind} tokenizer: token id ${id} is outside the vocabulary (size ${this.tokens.length})`);
    }
  }

  /** Appends the ids of one plain-text fragment. `afterSpecial` is true at the start and after a special token. */
  protected abstract encodeFragment(text: string, afterSpecial: boolean, out: number[]): void;
  /** The bytes a token stands for when decoded (control/unknown tokens: their text). */
  protected abstract pieceBytes(id: number): Uint8Array;

  /** Text -> token ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (options.addBos ?? this.addBos) {
      if (this.bosId === null) throw new TypeError(`${this.kind} tokenizer: addBos requested but the vocabulary has no BOS token`);
      out.push(this.bosId);
    }
    let afterSpecial = true;
    for (const frag of this.splitSpecial(text, options.parseSpecial ?? false)) {
      if (typeof frag === 'number') { out.push(frag); afterSpecial = true; continue; }
      this.encodeFragment(frag, afterSpecial, out);
      afterSpecial = false;
    }
    if (options.addEos ?? this.addEos) {
      if (this.eosId === null) throw new TypeError(`${this.kind} tokenizer: addEos requested but the vocabulary has no EOS token`);
      out.push(this.eosId);
    }
    return out;
  }

  /** Splits text around the texts of special tokens, longest first (llama.cpp's tokenizer_st_partition). */
  private splitSpecial(text: string, parseSpecial: boolean): Fragment[] {
    let frags: Fragment[] = text.length > 0 ? [text] : [];
    for (const id of this.specialTokens) {
      const t = this.types[id];
      if (!parseSpecial && (t === TokenType.Control || t === TokenType.Unknown)) continue;
      const needle = this.tokens[id];
      const next: Fragment[] = [];
      for (const f of frags) {
        if (typeof f === 'number' || !f.includes(needle)) { next.push(f); continue; }
        let start = 0;
        const lstrip = this.lstrip.has(id), rstrip = this.rstrip.has(id);
        for (let at = f.indexOf(needle); at !== -1; at = f.indexOf(needle, start)) {
          let before = f.slice(start, at);
          if (lstrip) before = before.replace(WHITESPACE_END, ''); // the token swallows the spaces on its left
          if (before.length > 0) next.push(before);
          next.push(id);
          start = at + needle.length;
          if (rstrip) while (start < f.length && WHITESPACE_CHAR.test(f[start])) start++;
        }
        if (start < f.length) next.push(f.slice(start));
      }
      frags = next;
    }
    return frags;
  }

  /** The bytes a token decodes to ('' for special tokens unless `skipSpecial` is false). */
  tokenBytes(id: number, options: DecodeOptions = {}): Uint8Array {
    this.checkId(id);
    const t = this.types[id];
    if ((t === TokenType.Control || t === TokenType.Unknown) && (options.skipSpecial ?? true)) return EMPTY;
    return this.pieceBytes(id);
  }

  /** Token ids -> text. Invalid UTF-8 (e.g. a sequence cut inside a character) becomes U+FFFD. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const d = this.streamDecoder({ ...options, stripDummyPrefix: options.stripDummyPrefix ?? this.addsDummyPrefix });
    let s = '';
    for (const id of ids) s += d.push(id);
    s += d.flush();
    return options.cleanSpaces ? cleanSpaces(s) : s;
  }

  /** A decoder for generated tokens: push ids one at a time, get back only complete UTF-8 text. */
  streamDecoder(options: DecodeOptions = {}): TokenStreamDecoder {
    return new TokenStreamDecoder(this, options);
  }
}

const EMPTY = new Uint8Array(0);
const WHITESPACE_END = /\s+$/u;
const WHITESPACE_CHAR = /\s/u;

/** llama.cpp's clean_spaces passes (llama_vocab::impl::detokenize), applied to characters instead of bytes. */
export function cleanSpaces(text: string): string {
  return text
    .replace(/ ([?!.,])/g, '$1')
    .replace(/ ' /g, "'")
    .replace(/ '(s|m|re|ve)/g, "'$1");
}
const SPACE = 0x20;

/**
 * Incremental detokenizer. A character split across tokens (byte-fallback tokens, or byte-level BPE
 * pieces) is held back until its last byte arrives, so every returned string is complete text.
 */
export class TokenStreamDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false });
  private atStart: boolean;

  constructor(private readonly tokenizer: Tokenizer, private readonly options: DecodeOptions = {}) {
    this.atStart = options.stripDummyPrefix ?? false;
  }

  /** Adds one token; returns the text completed by it (possibly ''). */
  push(id: number): string {
    let bytes = this.tokenizer.tokenBytes(id, this.options);
    if (bytes.length === 0) return '';
    if (this.atStart) {
      // SentencePiece's dummy prefix: the first text of a sequence lost its added leading space.
      this.atStart = false;
      if (bytes[0] === SPACE) bytes = bytes.subarray(1);
    }
    return this.utf8.decode(bytes, { stream: true });
  }

  /** Ends the stream: returns any held-back bytes (an incomplete character decodes as U+FFFD). */
  flush(): string {
    return this.utf8.decode();
  }
}
