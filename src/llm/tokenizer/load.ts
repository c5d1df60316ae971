// Builds tokenizers from model files: a GGUF file's tokenizer.ggml.* metadata (with llama.cpp's
// defaults for what is absent), or a Hugging Face tokenizer.json holding a byte-level BPE model.
import * as fs from 'node:fs';
import { type GgufFile } from '../../io/gguf/reader.js';
import { GgufError, TokenizerFileError } from '../../io/errors.js';
import { SpmTokenizer } from './spm.js';
import { BpeTokenizer, GGUF_PRETOKENIZERS, PRETOKENIZER_PATTERNS } from './bpe.js';
import { type Tokenizer, TokenType, type SpecialTokenIds } from './vocab.js';

/** Tokenizer for a GGUF model: "llama" -> SentencePiece-style BPE, "gpt2" -> byte-level BPE. */
export function tokenizerFromGguf(file: GgufFile): Tokenizer {
  const model = file.getString('tokenizer.ggml.model');
  const tokens = file.getStringArray('tokenizer.ggml.tokens');
  const n = tokens.length;
  const optionalArray = (key: string): ArrayLike<number> | undefined => {
    if (!file.metadata.has(key)) return undefined;
    const a = file.getNumberArray(key);
    if (a.length < n) throw new GgufError(file.path, `${key} has ${a.length} entries but there are ${n} tokens`);
    return a;
  };
  const scores = optionalArray('tokenizer.ggml.scores');
  const types = optionalArray('tokenizer.ggml.token_type');
  const id = (key: string): number | undefined => {
    if (!file.metadata.has(`tokenizer.ggml.${key}`)) return undefined;
    const v = file.getNumber(`tokenizer.ggml.${key}`);
    return v >= 0 && v < n ? v : undefined; // llama.cpp ignores out-of-range ids (keeps its default)
  };
  const special: SpecialTokenIds = {
    bos: id('bos_token_id'), eos: id('eos_token_id'), unk: id('unknown_token_id'), pad: id('padding_token_id'),
    sep: id('seperator_token_id') ?? id('separator_token_id'), eot: id('eot_token_id'), eom: id('eom_token_id'),
  };
  const flag = (key: string): boolean | undefined => file.metadata.has(key) ? file.getBool(key) : undefined;
  const addBos = flag('tokenizer.ggml.add_bos_token');
  const addEos = flag('tokenizer.ggml.add_eos_token');

  if (model === 'llama') {
    return new SpmTokenizer({ tokens, scores, types, special, addBos, addEos, addSpacePrefix: flag('tokenizer.ggml.add_space_prefix'), source: file.path });
  }
  if (model === 'gpt2') {
    const pre = file.getString('tokenizer.ggml.pre', 'default');
    const preset = GGUF_PRETOKENIZERS[pre];
    if (!preset) {
      throw new GgufError(file.path, `tokenizer.ggml.pre = ${JSON.stringify(pre)} is not a supported pre-tokenizer (supported: ${Object.keys(GGUF_PRETOKENIZERS).join(', ')})`);
    }
    const merges = file.getStringArray('tokenizer.ggml.merges');
    return new BpeTokenizer({
      tokens, scores, types, merges, pattern: preset.pattern, ignoreMerges: preset.ignoreMerges,
      special, addBos: addBos ?? preset.addBos ?? false, addEos, source: file.path,
    });
  }
  throw new GgufError(file.path, `tokenizer.ggml.model = ${JSON.stringify(model)} is not supported (supported: llama, gpt2)`);
}

/**
 * Rewrites a Hugging Face (Rust regex / Oniguruma) pattern into JavaScript: case-insensitive groups
 * `(?i:...)` become explicit character classes, possessive quantifiers become greedy ones.
 */
export function convertHfPattern(pattern: string): string {
  // Possessive x?+ x*+ x++ x{n,m}+ -> greedy (JS has no possessive quantifiers; "\p{L}+" must stay).
  let out = pattern.replace(/([?*]|(?<!\\)\+|\{\d+(?:,\d*)?\})\+/g, '$1');
  for (;;) {
    const at = out.indexOf('(?i:');
    if (at < 0) break;
    let depth = 0, end = -1;
    for (let i = at; i < out.length; i++) {
      if (out[i] === '\\') { i++; continue; }
      if (out[i] === '(') depth++;
      else if (out[i] === ')' && --depth === 0) { end = i; break; }
    }
    if (end < 0) throw new TokenizerFileError('tokenizer.json', `unbalanced (?i: group in pre-tokenizer pattern ${JSON.stringify(pattern)}`);
    const body = out.slice(at + 4, end).replace(/\\.|[a-zA-Z]/g, (c) => (c.length === 1 ? `[${c.toLowerCase()}${c.toUpperCase()}]` : c));
    out = `${out.slice(0, at)}(?:${body})${out.slice(end + 1)}`;
  }
  return out;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function findPretokenizers(pt: unknown): Json[] {
  if (!isObj(pt)) return [];
  if (pt.type === 'Sequence' && Array.isArray(pt.pretokenizers)) return pt.pretokenizers.flatMap(findPretokenizers);
  return [pt];
}

export interface HfTokenizerOptions {
  /** Override BOS / EOS by token text (tokenizer.json itself does not name them outside the post-processor). */
  bosToken?: string;
  eosToken?: string;
  /** Override whether encode() adds BOS by default (default: read from the post-processor template). */
  addBos?: boolean;
}

/** Tokenizer from a Hugging Face tokenizer.json (parsed object, JSON text, or file path); byte-level BPE only. */
export function tokenizerFromHuggingFace(source: string | Json, options: HfTokenizerOptions = {}): Tokenizer {
  let json: unknown = source;
  const where = typeof source === 'string' && !source.trimStart().startsWith('{') ? source : 'tokenizer.json';
  const fail = (detail: string): never => { throw new TokenizerFileError(where, detail); };
  if (typeof source === 'string') {
    try {
      json = JSON.parse(source.trimStart().startsWith('{') ? source : fs.readFileSync(source, 'utf8'));
    } catch (e) { fail(`cannot read: ${(e as Error).message}`); }
  }
  if (!isObj(json) || !isObj(json.model)) return fail('no "model" object');
  const model = json.model;
  if (model.type !== 'BPE') fail(`model type ${JSON.stringify(model.type)} is not supported (only byte-level BPE)`);
  const pres = findPretokenizers(json.pre_tokenizer);
  const byteLevel = pres.find((p) => p.type === 'ByteLevel');
  if (!byteLevel) fail('pre_tokenizer has no ByteLevel step: only byte-level BPE tokenizers are supported');
  if (!isObj(model.vocab)) return fail('model.vocab is not an object');

  // Vocabulary: model.vocab plus added_tokens (Llama 3 keeps its 256 special tokens only there).
  const byId = new Map<number, { text: string; type: number }>();
  for (const [text, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) fail(`model.vocab[${JSON.stringify(text)}] = ${String(id)} is not a token id`);
    byId.set(id as number, { text, type: TokenType.Normal });
  }
  for (const t of Array.isArray(json.added_tokens) ? json.added_tokens : []) {
    if (!isObj(t) || !Number.isInteger(t.id) || (t.id as number) < 0 || typeof t.content !== 'string') fail(`added_tokens entry ${JSON.stringify(t)} is malformed`);
    const at = t as { id: number; content: string; special?: boolean };
    byId.set(at.id, { text: at.content, type: at.special ? TokenType.Control : TokenType.UserDefined });
  }
  let maxId = -1;
  for (const id of byId.keys()) if (id > maxId) maxId = id;
  if (maxId < 0) fail('the vocabulary is empty');
  // Ids index an array: a stray huge id would allocate gigabytes of placeholders. Vocabularies are dense.
  if (maxId >= 4 * byId.size + 1024) fail(`token id ${maxId} is far beyond the ${byId.size} tokens defined (ids must be dense)`);
  const size = maxId + 1;
  const tokens: string[] = new Array(size);
  const types = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    const e = byId.get(i);
    tokens[i] = e ? e.text : `[UNUSED_${i}]`; // holes in the id space: unique placeholder, never produced
    types[i] = e ? e.type : TokenType.Unused;
  }
  const merges = Array.isArray(model.merges) ? model.merges as (string | [string, string])[] : fail('model.merges is not an array');

  // Pre-tokenizer pattern: a Split step's regex, else GPT-2's (ByteLevel with use_regex).
  const split = pres.find((p) => p.type === 'Split' && isObj(p.pattern) && typeof (p.pattern as Json).Regex === 'string');
  let pattern = PRETOKENIZER_PATTERNS.gpt2 as string;
  if (split) {
    try { pattern = convertHfPattern((split.pattern as Json).Regex as string); } catch (e) { fail((e as Error).message); }
  }

  // BOS: the special token the post-processor's single-sequence template starts with.
  const tokenId = (text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const i = tokens.indexOf(text);
    if (i < 0) fail(`token ${JSON.stringify(text)} is not in the vocabulary`);
    return i;
  };
  let bos = tokenId(options.bosToken);
  let templateBos = false;
  for (const pp of findPostProcessors(json.post_processor)) {
    const first = Array.isArray(pp.single) ? pp.single[0] : undefined;
    if (isObj(first) && isObj(first.SpecialToken) && typeof first.SpecialToken.id === 'string') {
      templateBos = true;
      bos ??= tokenId(first.SpecialToken.id);
    }
  }
  const eos = tokenId(options.eosToken) ?? ['<|end_of_text|>', '<|endoftext|>', '</s>', '<|im_end|>'].map((t) => tokens.indexOf(t)).find((i) => i >= 0);
  const unkText = typeof model.unk_token === 'string' ? model.unk_token : undefined;
  return new BpeTokenizer({
    source: where, tokens, types, merges, pattern, ignoreMerges: model.ignore_merges === true,
    special: { bos, eos, unk: unkText !== undefined && tokens.includes(unkText) ? tokens.indexOf(unkText) : undefined },
    addBos: options.addBos ?? (templateBos && bos !== undefined),
  });
}

function findPostProcessors(pp: unknown): Json[] {
  if (!isObj(pp)) return [];
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) return pp.processors.flatMap(findPostProcessors);
  return pp.type === 'TemplateProcessing' ? [pp] : [];
}
