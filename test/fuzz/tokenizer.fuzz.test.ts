// Fuzz target: tokenizer files. Seeded mutations of a byte-level BPE tokenizer.json (values anywhere
// in the JSON tree replaced or removed, the pre-tokenizer regex replaced by generated patterns,
// evil ones included, raw bytes of the JSON text) and of GGUF tokenizer metadata (SentencePiece and
// byte-level BPE; raw header bytes). Each must give a specific error, or a tokenizer that encodes
// the samples to ids inside its vocabulary and decodes them, within the per-case time limit (a
// catastrophically backtracking regex fails here as a hang). An unmutated file tokenizes exactly
// as before. Never a crash or a hang.
import { encodeGgufBytes, parseGguf, gguf } from '../../src/io/gguf/index.js';
import { tokenizerFromHuggingFace, tokenizerFromGguf, TokenType, type Tokenizer } from '../../src/llm/tokenizer/index.js';
import { CORPUS, SAMPLES, TINY_LLAMA_METADATA, trainByteBpeVocab, trainSpmVocab } from '../llm/tokenizer-fixtures.js';
import { fuzzTarget, mutateBytes, isSpecificError, type FuzzRng, type Outcome } from '../io/fuzz-harness.js';

const TEXTS = [...SAMPLES.slice(0, 16), 'a'.repeat(200) + '!', ' '.repeat(300) + 'x', '<|begin_of_text|>hi<|eot_id|>'];

interface Fixture { json: Record<string, unknown>; bpeGguf: Uint8Array; spmGguf: Uint8Array; expected: Map<string, number[][]> }
let fixture: Fixture | null = null;

function setup(): Fixture {
  const v = trainByteBpeVocab(CORPUS, 120);
  const s = trainSpmVocab(CORPUS, 120);
  const normal = v.tokens.filter((_, i) => v.types[i] === TokenType.Normal);
  const json = {
    version: '1.0',
    added_tokens: v.tokens.map((t, i) => ({ t, i })).filter(({ i }) => v.types[i] === TokenType.Control).map(({ t, i }) => ({ id: i, content: t, special: true })),
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated' },
        { type: 'ByteLevel', add_prefix_space: false, use_regex: false },
      ],
    },
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] },
    model: { type: 'BPE', ignore_merges: true, vocab: Object.fromEntries(normal.map((t) => [t, v.tokens.indexOf(t)])), merges: v.merges.map((m) => m.split(' ')) },
  };
  const bpeGguf = encodeGgufBytes({ metadata: {
    ...TINY_LLAMA_METADATA, 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'llama-bpe', 'tokenizer.ggml.tokens': v.tokens,
    'tokenizer.ggml.token_type': v.types, 'tokenizer.ggml.merges': v.merges,
    'tokenizer.ggml.bos_token_id': gguf.u32(v.tokens.indexOf('<|begin_of_text|>')), 'tokenizer.ggml.eos_token_id': gguf.u32(v.tokens.indexOf('<|end_of_text|>')),
    'tokenizer.ggml.add_bos_token': true,
  } });
  const spmGguf = encodeGgufBytes({ metadata: {
    ...TINY_LLAMA_METADATA, 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': s.tokens, 'tokenizer.ggml.scores': s.scores,
    'tokenizer.ggml.token_type': s.types, 'tokenizer.ggml.bos_token_id': gguf.u32(1), 'tokenizer.ggml.eos_token_id': gguf.u32(2),
    'tokenizer.ggml.unknown_token_id': gguf.u32(0), 'tokenizer.ggml.add_bos_token': true,
  } });
  fixture = { json, bpeGguf, spmGguf, expected: new Map() };
  fixture.expected.set('json', encodeAll(tokenizerFromHuggingFace(json)));
  fixture.expected.set('bpe', encodeAll(tokenizerFromGguf(parseGguf(bpeGguf))));
  fixture.expected.set('spm', encodeAll(tokenizerFromGguf(parseGguf(spmGguf))));
  return fixture;
}

/** Encodes every text (special tokens parsed and not), checking ids are in range and decode works. */
function encodeAll(tok: Tokenizer): number[][] {
  const out: number[][] = [];
  for (const text of TEXTS) {
    for (const parseSpecial of [false, true]) {
      const ids = tok.encode(text, { parseSpecial });
      for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < tok.vocabSize)) throw new Error(`encode produced id ${id} (vocabulary ${tok.vocabSize})`);
      if (typeof tok.decode(ids) !== 'string') throw new Error('decode did not return a string');
      out.push(ids);
    }
  }
  return out;
}

const REGEX_PIECES = ['a', '\\s', '\\p{L}', '[^\\s\\p{L}]', '(?:x|y)', '(a+)', '(a|a)', '\\S', "'s", '.', '(?!\\S)', '$', '\\1', '[', '(?i:ab)'];
const QUANTS = ['', '', '+', '*', '?', '{1,3}', '{2,}', '++'];

function randomRegex(rng: FuzzRng): string {
  if (rng.chance(0.3)) return rng.pick(['(a+)+$', '(a|aa)*b', '(\\s*)*x', '(?:\\p{L}+\\s?)+$', '\\s*\\s*\\s*x', '(.*){1,20}z', '([^x]|a)+y']);
  let re = '';
  const n = 1 + rng.int(5);
  for (let i = 0; i < n; i++) {
    let piece = rng.pick(REGEX_PIECES) + rng.pick(QUANTS);
    if (rng.chance(0.25)) piece = `(?:${piece}${rng.pick(REGEX_PIECES)}${rng.pick(QUANTS)})${rng.pick(QUANTS)}`;
    re += (i > 0 && rng.chance(0.3) ? '|' : '') + piece;
  }
  return re;
}

const JSON_VALUES: unknown[] = [null, 0, -1, 1, 1e9, 2 ** 40, 1.5, '', 'x', ' ', true, [], {}, ['a b'], [['a', 'b']], [1, 2], { a: 1 }];

/** All paths into a JSON tree (objects and arrays), for picking one to change. */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = [], rng?: FuzzRng): (string | number)[][] {
  if (v && typeof v === 'object') {
    const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
    // Large arrays and vocabularies: a sample of their entries, so paths stay cheap to list.
    const sample = entries.length > 20 && rng ? Array.from({ length: 8 }, () => entries[rng.int(entries.length)]) : entries;
    for (const [k, x] of sample) { out.push([...prefix, k]); paths(x, [...prefix, k], out, rng); }
  }
  return out;
}

function mutateJson(rng: FuzzRng, json: Record<string, unknown>): { source: string | Record<string, unknown>; what: string } {
  const copy = structuredClone(json) as Record<string, unknown>;
  const kind = rng.int(4);
  if (kind === 0) { // the Split regex
    const re = randomRegex(rng);
    ((copy.pre_tokenizer as { pretokenizers: { pattern?: { Regex: string } }[] }).pretokenizers[0].pattern = { Regex: re });
    return { source: copy, what: `regex ${JSON.stringify(re)}` };
  }
  if (kind === 1) { // raw bytes of the JSON text
    const text = new TextEncoder().encode(JSON.stringify(json));
    const m = mutateBytes(rng, text);
    return { source: new TextDecoder().decode(m.bytes), what: `json text: ${m.what}` };
  }
  const all = paths(copy, [], [], rng);
  const p = rng.pick(all);
  let parent: Record<string | number, unknown> = copy;
  for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const key = p[p.length - 1];
  if (kind === 2 && !Array.isArray(parent)) { delete parent[key]; return { source: copy, what: `delete ${p.join('.')}` }; }
  const value = rng.pick(JSON_VALUES);
  parent[key] = structuredClone(value);
  return { source: copy, what: `${p.join('.')} = ${JSON.stringify(value)}` };
}

fuzzTarget(import.meta.url, {
  name: 'tokenizer',
  defaultCases: 300,
  caseTimeoutMs: 5000,
  run(rng): Outcome {
    const fx = fixture ?? setup();
    const which = rng.pick(['json', 'json', 'bpe', 'spm'] as const);
    let what: string;
    let build: () => Tokenizer;
    if (which === 'json') {
      const m = mutateJson(rng, fx.json);
      what = m.what;
      build = () => tokenizerFromHuggingFace(m.source);
    } else {
      const bytes = which === 'bpe' ? fx.bpeGguf : fx.spmGguf;
      const m = mutateBytes(rng, bytes);
      what = `${which} gguf: ${m.what}`;
      build = () => tokenizerFromGguf(parseGguf(m.bytes, 'fuzz.gguf'));
    }
    let ids: number[][];
    try {
      ids = encodeAll(build());
    } catch (e) {
      if (isSpecificError(e)) return 'refused';
      throw new Error(`${what}: ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
    }
    return JSON.stringify(ids) === JSON.stringify(fx.expected.get(which)) ? 'same' : 'changed';
  },
});
