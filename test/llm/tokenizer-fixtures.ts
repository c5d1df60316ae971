// Test fixtures for tokenizers: small vocabularies trained by plain BPE on a text corpus (so tests
// exercise thousands of merges without shipping a real model vocabulary), and GGUF files holding
// them with the llama.* metadata llama.cpp needs to load a vocabulary-only model.
import { writeGguf, gguf } from '../../src/io/gguf/index.js';
import { BYTE_TO_UNICODE, pretokenize, PRETOKENIZER_PATTERNS, SPM_SPACE, TokenType } from '../../src/llm/tokenizer/index.js';

export const CORPUS = `
The quick brown fox jumps over the lazy dog. It's a test, isn't it? We'll see: they're here, you've won.
Tokenizers split text into pieces; the pieces are merged by rank or by score. Numbers like 12345 and 3.14159
appear too, as do spaces   in   runs, tabs\tand newlines.
Ünïcödé text — café, naïve, coöperate, Straße, Ελληνικά, русский язык, 中文字符, 日本語のテキスト, 한국어.
Emoji: 🙂 👍🏽 🚀 and symbols © ® ™ € £ ¥ § ¶ ∑ ∞ ≠ ≤ ≥.
function add(a, b) { return a + b; } // code has brackets, operators == != <= >= && || and "strings".
the the the then there these those this that than them they their theory thermal therapy
inference inferred infer jit compile compiled compiler tensor tensors matrix matrices quantize quantized
`.repeat(3);

/** Trains `merges` BPE merges over symbol sequences (ties broken by the pair's text, so results are stable). */
function trainMerges(words: Map<string, number>, split: (w: string) => string[], merges: number): [string, string][] {
  const seqs = [...words.entries()].map(([w, n]) => ({ syms: split(w), n }));
  const out: [string, string][] = [];
  for (let k = 0; k < merges; k++) {
    const counts = new Map<string, number>();
    for (const { syms, n } of seqs) for (let i = 0; i + 1 < syms.length; i++) {
      const key = `${syms[i]}\u0000${syms[i + 1]}`;
      counts.set(key, (counts.get(key) ?? 0) + n);
    }
    let best = '', bestN = 1;
    for (const [key, n] of counts) if (n > bestN || (n === bestN && best !== '' && key < best)) { best = key; bestN = n; }
    if (best === '') break;
    const [a, b] = best.split('\u0000');
    out.push([a, b]);
    for (const s of seqs) {
      const next: string[] = [];
      for (let i = 0; i < s.syms.length; i++) {
        if (i + 1 < s.syms.length && s.syms[i] === a && s.syms[i + 1] === b) { next.push(a + b); i++; } else next.push(s.syms[i]);
      }
      s.syms = next;
    }
  }
  return out;
}

export interface SpmVocab {
  tokens: string[]; scores: Float32Array; types: Int32Array;
  /** The merges that made the merged pieces, in rank order (what a Hugging Face tokenizer.json lists). */
  merges: [string, string][];
}

/** A Llama-style SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, corpus characters, merged pieces. */
export function trainSpmVocab(corpus: string, merges: number): SpmVocab {
  const words = new Map<string, number>();
  for (const w of corpus.split(/(?= )/)) {
    const e = w.replaceAll(' ', SPM_SPACE);
    if (e) words.set(e, (words.get(e) ?? 0) + 1);
  }
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [TokenType.Unknown, TokenType.Control, TokenType.Control] as number[];
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(TokenType.Byte); scores.push(0); }
  // Leave out a few characters so byte fallback is exercised even for text from the corpus.
  const chars = [...new Set(Array.from(corpus.replaceAll(' ', SPM_SPACE)))].filter((c) => !'ü🚀中\n'.includes(c)).sort();
  for (const c of chars) { tokens.push(c); types.push(TokenType.Normal); scores.push(-1e6); }
  const seen = new Set(tokens);
  const kept: [string, string][] = [];
  trainMerges(words, (w) => Array.from(w), merges).forEach(([a, b], r) => {
    if (seen.has(a + b)) return;
    seen.add(a + b);
    kept.push([a, b]);
    tokens.push(a + b); types.push(TokenType.Normal); scores.push(-r);
  });
  return { tokens, scores: Float32Array.from(scores), types: Int32Array.from(types), merges: kept };
}

/** Appends added tokens to an SPM vocabulary: control (special) and user-defined ones. */
export function withAddedTokens(v: SpmVocab, control: string[], userDefined: string[]): SpmVocab {
  return {
    tokens: [...v.tokens, ...control, ...userDefined],
    scores: Float32Array.from([...v.scores, ...control.map(() => 0), ...userDefined.map(() => 0)]),
    types: Int32Array.from([...v.types, ...control.map(() => TokenType.Control), ...userDefined.map(() => TokenType.UserDefined)]),
    merges: v.merges,
  };
}

/**
 * The same vocabulary as a Hugging Face tokenizer.json the way Llama 2 / TinyLlama ship it: BPE with
 * byte_fallback, the Prepend/Replace "▁" normalizer (or, with `metaspace`, the newer Metaspace
 * pre-tokenizer), the Replace/ByteFallback/Fuse/Strip decoder, <s> added by the post-processor.
 * `flags` sets lstrip/rstrip on added tokens by text.
 */
export function spmTokenizerJson(v: SpmVocab, options: { metaspace?: boolean; flags?: Record<string, { lstrip?: boolean; rstrip?: boolean }> } = {}): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  v.tokens.forEach((t, id) => {
    const type = v.types[id];
    if (type === TokenType.Control || type === TokenType.Unknown || type === TokenType.UserDefined) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type !== TokenType.UserDefined, ...options.flags?.[t] });
    }
    vocab[t] = id;
  });
  return {
    version: '1.0',
    added_tokens: added,
    normalizer: options.metaspace ? null : {
      type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }],
    },
    pre_tokenizer: options.metaspace ? { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false } : null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence', decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges: v.merges.map(([a, b]) => `${a} ${b}`) },
  };
}

export interface BpeVocab { tokens: string[]; types: Int32Array; merges: string[] }

/** A Llama-3-style byte-level BPE vocabulary: 256 byte characters, merged pieces, then special tokens. */
export function trainByteBpeVocab(corpus: string, merges: number, specials: string[] = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>']): BpeVocab {
  const words = new Map<string, number>();
  const enc = new TextEncoder();
  for (const w of pretokenize(corpus, new RegExp(PRETOKENIZER_PATTERNS.llama3, 'gu'))) {
    let e = '';
    for (const b of enc.encode(w)) e += BYTE_TO_UNICODE[b];
    words.set(e, (words.get(e) ?? 0) + 1);
  }
  const tokens = [...BYTE_TO_UNICODE];
  const types = new Array<number>(256).fill(TokenType.Normal);
  const learned = trainMerges(words, (w) => Array.from(w), merges);
  const seen = new Set(tokens);
  for (const [a, b] of learned) if (!seen.has(a + b)) { seen.add(a + b); tokens.push(a + b); types.push(TokenType.Normal); }
  for (const s of specials) { tokens.push(s); types.push(TokenType.Control); }
  return { tokens, types: Int32Array.from(types), merges: learned.map(([a, b]) => `${a} ${b}`) };
}

/** llama.* hyperparameters of a tiny model, so llama.cpp accepts the file (vocabulary-only loads read them too). */
export const TINY_LLAMA_METADATA = {
  'general.architecture': 'llama',
  'general.name': 'tokenizer-fixture',
  'llama.context_length': gguf.u32(256),
  'llama.embedding_length': gguf.u32(64),
  'llama.block_count': gguf.u32(1),
  'llama.feed_forward_length': gguf.u32(128),
  'llama.rope.dimension_count': gguf.u32(16),
  'llama.attention.head_count': gguf.u32(4),
  'llama.attention.head_count_kv': gguf.u32(4),
  'llama.attention.layer_norm_rms_epsilon': gguf.f32(1e-5),
};

export function writeSpmGguf(file: string, v: SpmVocab): void {
  writeGguf(file, {
    metadata: {
      ...TINY_LLAMA_METADATA,
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.tokens': v.tokens,
      'tokenizer.ggml.scores': v.scores,
      'tokenizer.ggml.token_type': v.types,
      'tokenizer.ggml.bos_token_id': gguf.u32(1),
      'tokenizer.ggml.eos_token_id': gguf.u32(2),
      'tokenizer.ggml.unknown_token_id': gguf.u32(0),
      'tokenizer.ggml.add_bos_token': true,
      'tokenizer.ggml.add_eos_token': false,
    },
  });
}

export function writeBpeGguf(file: string, v: BpeVocab, pre = 'llama-bpe'): void {
  writeGguf(file, {
    metadata: {
      ...TINY_LLAMA_METADATA,
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': pre,
      'tokenizer.ggml.tokens': v.tokens,
      'tokenizer.ggml.token_type': v.types,
      'tokenizer.ggml.merges': v.merges,
      'tokenizer.ggml.bos_token_id': gguf.u32(v.tokens.indexOf('<|begin_of_text|>')),
      'tokenizer.ggml.eos_token_id': gguf.u32(v.tokens.indexOf('<|end_of_text|>')),
      'tokenizer.ggml.add_bos_token': true,
    },
  });
}

/** Strings that exercise spaces, newlines, unicode, emoji, byte fallback, digits, contractions and special text. */
export const SAMPLES = [
  '', ' ', '  ', 'a', 'Hello world', ' Hello world', 'Hello  world', 'Hello   \n\n  world  ', '\n', '\t\tindent',
  'The quick brown fox jumps over the lazy dog.', "It's isn't we'll they're you've I'M HE'S",
  'Numbers: 0 12 123 1234 12345678 3.14159 -42', 'café naïve Straße coöperate über', 'Ελληνικά русский язык',
  '中文字符 日本語のテキスト 한국어', 'Emoji 🙂👍🏽🚀 mix🙂text', '© ® ™ € £ ¥ § ¶ ∑ ∞ ≠', 'function add(a, b) { return a + b; }',
  'trailing space ', ' leading and trailing ', 'multi\nline\r\ntext\n', 'zero\u200bwidth joiner\u200d', 'thermal therapy theory',
  '<s> literal </s> tags', 'chat <|eot_id|> end <|begin_of_text|>', 'x'.repeat(200), 'ab'.repeat(50) + ' ' + '🙂'.repeat(10),
];

/** Strings around added tokens (control <|im_start|> <|im_end|>, user-defined "inferjit" "<tool>"). */
export const ADDED_TOKEN_SAMPLES = [
  'use inferjit now', 'inferjitinferjit', ' inferjit', '<tool>call</tool>', ' <tool> x <tool>', '<|im_start|>user\nhi<|im_end|>\n',
  '<|im_start|> system<|im_end|><|im_start|>', 'a<|im_end|>b', '\n\n<tool>\n', 'café<tool>🙂inferjit中',
];
