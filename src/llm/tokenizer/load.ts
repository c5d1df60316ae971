// Builds tokenizers from model files: a GGUF file's tokenizer.ggml.* metadata (with llama.cpp's
// defaults for what is absent), or a Hugging Face tokenizer.json holding a byte-level BPE model or a
// SentencePiece-style BPE model (Metaspace / Prepend+Replace "▁" normalizer, byte_fallback: Llama 2,
// TinyLlama, Mistral), with its tokenizer_config.json (BOS/EOS flags, chat template) when present.
import * as fs from 'node:fs';
import * as path from 'node:path';
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
  const chatTemplate = file.metadata.has('tokenizer.chat_template') ? file.getString('tokenizer.chat_template') : undefined;

  const rstrip = phi3Rstrip(file, tokens, types);
  if (model === 'llama') {
    return new SpmTokenizer({ tokens, scores, types, special, addBos, addEos, addSpacePrefix: flag('tokenizer.ggml.add_space_prefix'), source: file.path, chatTemplate, rstrip });
  }
  if (model === 'gpt2') {
    const pre = file.getString('tokenizer.ggml.pre', 'default');
    const preset = GGUF_PRETOKENIZERS[pre];
    if (!preset) {
      throw new GgufError(file.path, `tokenizer.ggml.pre = ${JSON.stringify(pre)} is not a supported pre-tokenizer (supported: ${Object.keys(GGUF_PRETOKENIZERS).join(', ')})`);
    }
    const merges = file.getStringArray('tokenizer.ggml.merges');
    return new BpeTokenizer({
      tokens, scores, types, merges, pattern: preset.pattern, thenSplit: preset.thenSplit, ignoreMerges: preset.ignoreMerges,
      special, addBos: addBos ?? preset.addBos ?? false, addEos, source: file.path, chatTemplate, rstrip,
    });
  }
  throw new GgufError(file.path, `tokenizer.ggml.model = ${JSON.stringify(model)} is not supported (supported: llama, gpt2)`);
}

/**
 * llama.cpp keys one tokenizer rule on the model's name, not its tokenizer metadata: when
 * general.name contains "phi-3" or "phi3" (any case), every special token (control, user-defined,
 * unknown) and "</s>" swallows the whitespace after it (LLAMA_TOKEN_ATTR_RSTRIP), except "<unk>",
 * "<s>" and "<|endoftext|>". Matching llama.cpp on a Phi-3 file's chat turns needs the same rule.
 */
function phi3Rstrip(file: GgufFile, tokens: readonly string[], types: ArrayLike<number> | undefined): number[] {
  const name = file.metadata.has('general.name') ? file.getString('general.name').toLowerCase() : '';
  if (!name.includes('phi-3') && !name.includes('phi3')) return [];
  const keep = new Set(['<unk>', '<s>', '<|endoftext|>']);
  const out: number[] = [];
  tokens.forEach((t, id) => {
    const ty = types?.[id] ?? TokenType.Normal;
    const special = ty === TokenType.Control || ty === TokenType.UserDefined || ty === TokenType.Unknown;
    if ((special || t === '</s>') && !keep.has(t)) out.push(id);
  });
  return out;
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
  /** Override BOS / EOS by token text (default: tokenizer_config.json's, else the post-processor's / common names). */
  bosToken?: string;
  eosToken?: string;
  /** Override whether encode() adds BOS / EOS by default (default: tokenizer_config.json, else the post-processor template). */
  addBos?: boolean;
  addEos?: boolean;
  /**
   * tokenizer_config.json (parsed object, JSON text, or file path). Default: when `source` is a file path,
   * the tokenizer_config.json next to it, if there is one. Gives add_bos_token / add_eos_token,
   * bos_token / eos_token and chat_template (else a chat_template.jinja beside tokenizer.json).
   */
  config?: string | Json | null;
  /** Override the chat template (default: tokenizer_config.json's chat_template). */
  chatTemplate?: string;
}

function readJson(source: string | Json, where: string): Json {
  let json: unknown = source;
  if (typeof source === 'string') {
    try {
      json = JSON.parse(source.trimStart().startsWith('{') ? source : fs.readFileSync(source, 'utf8'));
    } catch (e) { throw new TokenizerFileError(where, `cannot read: ${(e as Error).message}`); }
  }
  if (!isObj(json)) throw new TokenizerFileError(where, 'is not a JSON object');
  return json;
}

/** A token named in tokenizer_config.json: a string, or an AddedToken object { content, ... }. */
function configToken(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObj(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/** chat_template is a string, or a list of { name, template } (the "default" one is used). */
function configChatTemplate(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter(isObj) as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t.name === 'default') ?? named[0];
    if (pick && typeof pick.template === 'string') return pick.template;
  }
  throw new TokenizerFileError(where, `chat_template is ${JSON.stringify(v).slice(0, 80)}, neither a string nor a list of { name, template }`);
}

function findSteps(node: unknown, listKey: string): Json[] {
  if (!isObj(node)) return [];
  if (node.type === 'Sequence' && Array.isArray(node[listKey])) return (node[listKey] as unknown[]).flatMap((n) => findSteps(n, listKey));
  return [node];
}

const SPM_SPACE = '\u2581';
const replaces = (step: Json, from: string, to: string): boolean =>
  step.type === 'Replace' && isObj(step.pattern) && step.pattern.String === from && step.content === to;

/**
 * How a tokenizer.json without a ByteLevel step puts spaces into SentencePiece form, or null when it
 * does not: a Metaspace pre-tokenizer (replacement "▁"), or the Llama 2 normalizer (Prepend "▁" then
 * Replace " " -> "▁"). Returns whether a "▁" is put in front of the text.
 */
function sentencePieceStyle(json: Json, fail: (d: string) => never): { addSpacePrefix: boolean } | null {
  const meta = findPretokenizers(json.pre_tokenizer).find((p) => p.type === 'Metaspace');
  if (meta) {
    if (meta.replacement !== undefined && meta.replacement !== SPM_SPACE) fail(`Metaspace replacement ${JSON.stringify(meta.replacement)} is not "▁"`);
    // Older files say add_prefix_space: bool; newer ones prepend_scheme: always | first | never.
    const scheme = meta.prepend_scheme ?? (meta.add_prefix_space === false ? 'never' : 'always');
    if (!['always', 'first', 'never'].includes(scheme as string)) fail(`Metaspace prepend_scheme ${JSON.stringify(scheme)} is not always, first or never`);
    return { addSpacePrefix: scheme !== 'never' };
  }
  const norms = findSteps(json.normalizer, 'normalizers');
  if (norms.some((n) => replaces(n, ' ', SPM_SPACE))) {
    return { addSpacePrefix: norms.some((n) => n.type === 'Prepend' && n.prepend === SPM_SPACE) };
  }
  return null;
}

/**
 * Tokenizer from a Hugging Face tokenizer.json (parsed object, JSON text, or file path): byte-level BPE
 * (GPT-2, Llama 3, Qwen) or SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral).
 */
export function tokenizerFromHuggingFace(source: string | Json, options: HfTokenizerOptions = {}): Tokenizer {
  const isPath = typeof source === 'string' && !source.trimStart().startsWith('{');
  const where = isPath ? source as string : 'tokenizer.json';
  const fail = (detail: string): never => { throw new TokenizerFileError(where, detail); };
  const json = readJson(source, where);
  if (!isObj(json.model)) return fail('no "model" object');
  const model = json.model;
  if (model.type !== 'BPE') fail(`model type ${JSON.stringify(model.type)} is not supported (supported: BPE, byte-level or SentencePiece-style)`);
  const pres = findPretokenizers(json.pre_tokenizer);
  const byteLevel = pres.find((p) => p.type === 'ByteLevel');
  const spmStyle = byteLevel ? null : sentencePieceStyle(json, fail);
  if (!byteLevel && !spmStyle) {
    fail('neither a ByteLevel pre-tokenizer (byte-level BPE) nor a Metaspace pre-tokenizer / "▁" normalizer (SentencePiece-style BPE): this tokenizer kind is not supported');
  }
  if (!isObj(model.vocab)) return fail('model.vocab is not an object');

  let config: Json | null = null;
  const configSource = options.config !== undefined ? options.config
    : isPath && fs.existsSync(path.join(path.dirname(where), 'tokenizer_config.json')) ? path.join(path.dirname(where), 'tokenizer_config.json') : null;
  if (configSource !== null) config = readJson(configSource, typeof configSource === 'string' && !configSource.trimStart().startsWith('{') ? configSource : 'tokenizer_config.json');

  // Vocabulary: model.vocab plus added_tokens (Llama 3 keeps its 256 special tokens only there).
  const byId = new Map<number, { text: string; type: number }>();
  for (const [text, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) fail(`model.vocab[${JSON.stringify(text)}] = ${String(id)} is not a token id`);
    byId.set(id as number, { text, type: TokenType.Normal });
  }
  const lstrip: number[] = [], rstrip: number[] = [];
  for (const t of Array.isArray(json.added_tokens) ? json.added_tokens : []) {
    if (!isObj(t) || !Number.isInteger(t.id) || (t.id as number) < 0 || typeof t.content !== 'string') fail(`added_tokens entry ${JSON.stringify(t)} is malformed`);
    const at = t as { id: number; content: string; special?: boolean; lstrip?: boolean; rstrip?: boolean };
    // Special added tokens are control tokens (matched in text only with parseSpecial); others are
    // user-defined (always matched), as llama.cpp's converter types them.
    byId.set(at.id, { text: at.content, type: at.special ? TokenType.Control : TokenType.UserDefined });
    if (at.lstrip) lstrip.push(at.id);
    if (at.rstrip) rstrip.push(at.id);
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
  const tokenId = (text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const i = tokens.indexOf(text);
    if (i < 0) fail(`token ${JSON.stringify(text)} is not in the vocabulary`);
    return i;
  };

  // BOS: named by the options, else tokenizer_config.json, else the special token the post-processor's
  // single-sequence template starts with. Whether encode() adds it: options, config, template.
  let bos = tokenId(options.bosToken ?? configToken(config?.bos_token));
  let templateBos = false, templateEos = false;
  for (const pp of findPostProcessors(json.post_processor)) {
    const single = Array.isArray(pp.single) ? pp.single : [];
    const first = single[0], last = single[single.length - 1];
    if (isObj(first) && isObj(first.SpecialToken) && typeof first.SpecialToken.id === 'string') {
      templateBos = true;
      bos ??= tokenId(first.SpecialToken.id);
    }
    if (single.length > 1 && isObj(last) && isObj(last.SpecialToken)) templateEos = true;
  }
  const eosNames = ['<|end_of_text|>', '<|endoftext|>', '</s>', '<|im_end|>', '<eos>'];
  const eos = tokenId(options.eosToken ?? configToken(config?.eos_token)) ?? eosNames.map((t) => tokens.indexOf(t)).find((i) => i >= 0);
  const unkText = typeof model.unk_token === 'string' ? model.unk_token : undefined;
  const unk = unkText !== undefined && tokens.includes(unkText) ? tokens.indexOf(unkText) : undefined;
  const configFlag = (key: string): boolean | undefined => (typeof config?.[key] === 'boolean' ? config[key] as boolean : undefined);
  const addBos = options.addBos ?? configFlag('add_bos_token') ?? (templateBos && bos !== undefined);
  const addEos = options.addEos ?? configFlag('add_eos_token') ?? (templateEos && eos !== undefined);
  // Newer Hugging Face repositories keep the template in chat_template.jinja beside tokenizer.json.
  const jinjaFile = isPath ? path.join(path.dirname(where), 'chat_template.jinja') : null;
  const chatTemplate = options.chatTemplate ?? configChatTemplate(config?.chat_template, 'tokenizer_config.json')
    ?? (jinjaFile !== null && fs.existsSync(jinjaFile) ? fs.readFileSync(jinjaFile, 'utf8') : undefined);

  if (spmStyle) {
    if (model.byte_fallback !== true && unk === undefined) fail('SentencePiece-style BPE without byte_fallback needs an unk_token');
    // Merge priority: a token's score is minus the rank of the first merge that makes it, so the
    // SentencePiece merge loop (highest score first) replays the merges in rank order. Pieces no merge
    // makes (single characters, bytes) never compete.
    const scores = new Float32Array(size).fill(-1e9);
    const idOf = new Map(tokens.map((t, i) => [t, i]));
    merges.forEach((m, rank) => {
      const [a, b] = typeof m === 'string' ? [m.slice(0, m.indexOf(' ', 1)), m.slice(m.indexOf(' ', 1) + 1)] : m;
      const id = idOf.get(a + b) ?? -1;
      if (id >= 0 && scores[id] === -1e9) scores[id] = -rank;
    });
    for (let i = 0; i < size; i++) {
      if (types[i] === TokenType.Normal && /^<0x[0-9A-F]{2}>$/.test(tokens[i])) types[i] = TokenType.Byte;
    }
    if (unk !== undefined && types[unk] === TokenType.Normal) types[unk] = TokenType.Unknown;
    for (const id of [bos, eos]) if (id !== undefined && types[id] === TokenType.Normal) types[id] = TokenType.Control;
    return new SpmTokenizer({
      source: where, tokens, scores, types, addSpacePrefix: spmStyle.addSpacePrefix,
      special: { bos, eos, unk }, addBos, addEos, chatTemplate, lstrip, rstrip,
    });
  }

  // Pre-tokenizer pattern: a Split step's regex, else GPT-2's (ByteLevel with use_regex).
  const split = pres.find((p) => p.type === 'Split' && isObj(p.pattern) && typeof (p.pattern as Json).Regex === 'string');
  let pattern = PRETOKENIZER_PATTERNS.gpt2 as string;
  if (split) {
    try { pattern = convertHfPattern((split.pattern as Json).Regex as string); } catch (e) { fail((e as Error).message); }
  }
  return new BpeTokenizer({
    source: where, tokens, types, merges, pattern, ignoreMerges: model.ignore_merges === true,
    special: { bos, eos, unk }, addBos, addEos, chatTemplate, lstrip, rstrip,
  });
}

function findPostProcessors(pp: unknown): Json[] {
  if (!isObj(pp)) return [];
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) return pp.processors.flatMap(findPostProcessors);
  return pp.type === 'TemplateProcessing' ? [pp] : [];
}
