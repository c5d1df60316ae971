import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf, writeGguf, gguf, GgufError } from '../../src/io/gguf/index.js';
import {
  SpmTokenizer, BpeTokenizer, TokenType, BYTE_TO_UNICODE, PRETOKENIZER_PATTERNS, pretokenize,
  tokenizerFromGguf, tokenizerFromHuggingFace, convertHfPattern, type Tokenizer,
} from '../../src/llm/tokenizer/index.js';
import { cleanSpaces } from '../../src/llm/tokenizer/vocab.js';
import { CORPUS, SAMPLES, ADDED_TOKEN_SAMPLES, trainSpmVocab, trainByteBpeVocab, writeSpmGguf, writeBpeGguf, withAddedTokens, spmTokenizerJson, TINY_LLAMA_METADATA } from './tokenizer-fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-tok-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

// ---- a hand-checked SentencePiece vocabulary ----
// ids 0-2: <unk> <s> </s>; 3-258: <0x00>..<0xFF>; then the pieces below (score = merge priority).
const SPM_PIECES: [string, number][] = [
  ['▁', -100], ['h', -100], ['e', -100], ['l', -100], ['o', -100], ['w', -100], ['r', -100], ['d', -100],
  ['ll', -1], ['▁h', -2], ['▁he', -3], ['llo', -4], ['▁hello', -5], ['▁w', -2], ['or', -2.5], ['▁wor', -4], ['ld', -3.5], ['▁world', -6],
];
function handSpm(extra: Partial<ConstructorParameters<typeof SpmTokenizer>[0]> = {}): SpmTokenizer {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.Unknown, TokenType.Control, TokenType.Control];
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(TokenType.Byte); scores.push(0); }
  for (const [t, s] of SPM_PIECES) { tokens.push(t); types.push(TokenType.Normal); scores.push(s); }
  return new SpmTokenizer({ tokens, scores, types, ...extra });
}
const SP = (t: string) => 259 + SPM_PIECES.findIndex(([p]) => p === t);
const BYTE = (b: number) => 3 + b;

test('spm: merges by score, leftmost first on ties (hand-traced)', () => {
  const tok = handSpm();
  // "▁hello▁world": ll(-1), ▁h(-2), ▁w(-2), or(-2.5), ▁he(-3), ld(-3.5), llo(-4) before ▁wor(-4) (leftmost), ▁hello, ▁world.
  assert.deepEqual(tok.encode('hello world'), [1, SP('▁hello'), SP('▁world')]);
  // "▁hell": ll, ▁h, ▁he; "▁hell" is no token.
  assert.deepEqual(tok.encode('hell', { addBos: false }), [SP('▁he'), SP('ll')]);
  // A leading space gives "▁▁hello": the extra ▁ stays alone.
  assert.deepEqual(tok.encode(' hello', { addBos: false }), [SP('▁'), SP('▁hello')]);
  // Characters outside the vocabulary fall back to their UTF-8 bytes: é = C3 A9, ! = 21, \n = 0A.
  assert.deepEqual(tok.encode('hé!\n', { addBos: false }), [SP('▁h'), BYTE(0xc3), BYTE(0xa9), BYTE(0x21), BYTE(0x0a)]);
  assert.deepEqual(tok.encode(''), [1]);
  assert.deepEqual(tok.encode('', { addBos: false }), []);
  assert.deepEqual(tok.encode('hello', { addEos: true }), [1, SP('▁hello'), 2]);
});

test('spm: decode undoes the dummy prefix, maps ▁ to space and byte tokens to bytes', () => {
  const tok = handSpm();
  assert.equal(tok.decode([1, SP('▁hello'), SP('▁world'), 2]), 'hello world');
  assert.equal(tok.decode([SP('▁'), SP('▁hello')]), ' hello');
  assert.equal(tok.decode([SP('▁hello')], { stripDummyPrefix: false }), ' hello');
  assert.equal(tok.decode([1, SP('▁hello'), 2], { skipSpecial: false }), '<s> hello</s>'); // the first text is "<s>", as in llama.cpp
  assert.equal(tok.decode([SP('▁h'), BYTE(0xc3), BYTE(0xa9)]), 'hé');
  assert.equal(tok.decode([BYTE(0xc3)]), '\ufffd'); // a cut character decodes as U+FFFD
  assert.throws(() => tok.decode([99999]), /spm tokenizer: token id 99999 is outside the vocabulary \(size 277\)/);
});

test('spm: special token text is a token only when parseSpecial is set', () => {
  const tok = handSpm();
  assert.deepEqual(tok.encode('<s>hello', { addBos: false, parseSpecial: true }), [1, SP('▁hello')]);
  const plain = tok.encode('<s>hello', { addBos: false });
  assert.deepEqual(plain.slice(0, 4), [SP('▁'), BYTE(0x3c), BYTE(0x73), BYTE(0x3e)]);
  assert.ok(!plain.includes(1));
  assert.equal(tok.decode(plain), '<s>hello');
  // After a special token the next text gets the dummy space again (llama.cpp behaviour).
  assert.deepEqual(tok.encode('hello</s>world', { parseSpecial: true }), [1, SP('▁hello'), 2, SP('▁world')]);
  assert.equal(tok.eosId, 2);
  assert.ok(tok.isEog(2));
  assert.ok(!tok.isEog(1));
});

test('spm: the dummy prefix can be switched off (tokenizer.ggml.add_space_prefix = false)', () => {
  const tok = handSpm({ addSpacePrefix: false });
  assert.deepEqual(tok.encode('hello', { addBos: false }), [SP('h'), SP('e'), SP('llo')]);
  assert.equal(tok.decode(tok.encode(' hello world')), ' hello world');
});

// ---- a hand-checked byte-level BPE vocabulary: ids 0-255 are the bytes (BYTE_TO_UNICODE order) ----
const BPE_MERGES = ['t h', 'th e', 'Ġ the', 'b c', 'a b', 'Ġ c', 'a t', 'Ġc at'];
function handBpe(extra: Partial<ConstructorParameters<typeof BpeTokenizer>[0]> = {}): BpeTokenizer {
  const tokens = [...BYTE_TO_UNICODE, 'th', 'the', 'Ġthe', 'bc', 'ab', 'Ġc', 'at', 'Ġcat', '<|begin_of_text|>', '<|end_of_text|>', 'abc'];
  const types = tokens.map((t) => (t.startsWith('<|') ? TokenType.Control : TokenType.Normal));
  return new BpeTokenizer({ tokens, types, merges: BPE_MERGES, pattern: PRETOKENIZER_PATTERNS.llama3, special: { bos: 264, eos: 265 }, addBos: true, ...extra });
}

test('bpe: GPT-2 byte-to-unicode table (hand-checked entries)', () => {
  assert.equal(BYTE_TO_UNICODE[0x41], 'A');
  assert.equal(BYTE_TO_UNICODE[0x20], 'Ġ'); // 33 non-printable bytes 0x00-0x20 come first: 0x20 -> U+0120
  assert.equal(BYTE_TO_UNICODE[0x0a], 'Ċ'); // U+010A
  assert.equal(BYTE_TO_UNICODE[0x7f], '\u0121'); // next after 0x20
  assert.equal(BYTE_TO_UNICODE[0xad], 'Ń'); // 0xAD (soft hyphen) is the 68th non-printable -> U+0143
  assert.equal(BYTE_TO_UNICODE[0xa1], '¡');
  assert.equal(new Set(BYTE_TO_UNICODE).size, 256);
});

test('bpe: merges apply lowest rank first, leftmost on ties (hand-traced)', () => {
  const tok = handBpe();
  // "the": t h -> th (rank 0), th e -> the (1). " cat": Ġ c (5) before a t (6), then Ġc at (7).
  assert.deepEqual(tok.encode('the cat', { addBos: false }), [257, 263]);
  assert.deepEqual(tok.encode(' the'), [264, 258]); // BOS, Ġthe
  // "abc": b c (rank 3) beats a b (rank 4), so the result is a + bc, not ab + c.
  assert.deepEqual(tok.encode('abc', { addBos: false }), [0x61, 259]);
  // Llama 3 ignores merges for a word that is itself a token.
  assert.deepEqual(handBpe({ ignoreMerges: true }).encode('abc', { addBos: false }), [266]);
  // Bytes without merges: é = C3 A9 -> the byte tokens 0xC3, 0xA9.
  assert.deepEqual(tok.encode('é', { addBos: false }), [0xc3, 0xa9]);
  assert.equal(tok.decode([264, 257, 263, 0xc3, 0xa9, 265]), 'the caté');
  assert.equal(tok.decode([264, 257, 265], { skipSpecial: false }), '<|begin_of_text|>the<|end_of_text|>');
  assert.deepEqual(tok.encode('the<|end_of_text|>', { addBos: false, parseSpecial: true }), [257, 265]);
  assert.ok(!tok.encode('the<|end_of_text|>', { addBos: false }).includes(265));
});

test('bpe: Llama 3 pre-tokenizer splits as its regex says (hand-derived)', () => {
  const re = new RegExp(PRETOKENIZER_PATTERNS.llama3, 'gu');
  assert.deepEqual(pretokenize("Hello world's  123456 !!\n\n", re), ['Hello', ' world', "'s", ' ', ' ', '123', '456', ' !!\n\n']);
  assert.deepEqual(pretokenize("I'M ok", re), ['I', "'M", ' ok']);
  // GPT-2's pattern leaves a tab before a letter unmatched; it must be kept as its own word, not dropped.
  assert.deepEqual(pretokenize('\tab', new RegExp(PRETOKENIZER_PATTERNS.gpt2, 'gu')), ['\t', 'ab']);
});

test('round trips: decode(encode(text)) === text for varied text, both tokenizer kinds, read back from GGUF', () => {
  const spmFile = path.join(tmp, 'spm.gguf');
  const bpeFile = path.join(tmp, 'bpe.gguf');
  writeSpmGguf(spmFile, trainSpmVocab(CORPUS, 300));
  writeBpeGguf(bpeFile, trainByteBpeVocab(CORPUS, 300));
  const spm = tokenizerFromGguf(readGguf(spmFile));
  const bpe = tokenizerFromGguf(readGguf(bpeFile));
  assert.ok(spm instanceof SpmTokenizer && bpe instanceof BpeTokenizer);
  assert.equal(spm.bosId, 1);
  assert.equal(bpe.tokens[bpe.bosId!], '<|begin_of_text|>');
  assert.ok(bpe.addBos && spm.addBos);
  assert.ok(bpe.isEog(bpe.getId('<|eot_id|>')!));
  for (const tok of [spm, bpe] as Tokenizer[]) {
    for (const text of [...SAMPLES, CORPUS]) {
      const ids = tok.encode(text);
      assert.equal(ids[0], tok.bosId, `${tok.kind}: BOS first`);
      assert.equal(tok.decode(ids), text, `${tok.kind} round trip of ${JSON.stringify(text.slice(0, 40))}`);
      // Merged tokens make the encoding shorter than one token per byte for ordinary text.
      if (text === CORPUS) assert.ok(ids.length < new TextEncoder().encode(text).length / 2, `${tok.kind} compresses`);
    }
  }
});

test('streaming decoder emits only complete UTF-8 characters', () => {
  const tok = handSpm();
  const d = tok.streamDecoder();
  // 🙂 is F0 9F 99 82: nothing comes out until its last byte.
  const emoji = [0xf0, 0x9f, 0x99, 0x82].map(BYTE);
  assert.equal(d.push(SP('▁hello')), ' hello'); // stream decoding keeps the space (it continues a prompt)
  assert.equal(d.push(emoji[0]), '');
  assert.equal(d.push(emoji[1]), '');
  assert.equal(d.push(emoji[2]), '');
  assert.equal(d.push(emoji[3]), '🙂');
  assert.equal(d.push(1), ''); // BOS renders as nothing
  assert.equal(d.push(BYTE(0xc3)), '');
  assert.equal(d.flush(), '\ufffd'); // the stream ended inside a character
  // Byte-level BPE: a multi-byte character split across tokens.
  const bpe = handBpe();
  const s = bpe.streamDecoder();
  assert.equal(s.push(0xe2), '');
  assert.equal(s.push(0x82), '');
  assert.equal(s.push(0xac), '€');
  assert.equal(s.push(257), 'the');
  // Concatenated stream output equals decode() for a long mixed text.
  const spm = tokenizerFromGguf(readGguf(path.join(tmp, 'spm.gguf')));
  const text = SAMPLES.join('|');
  const ids = spm.encode(text, { addBos: false });
  const sd = spm.streamDecoder({ stripDummyPrefix: true });
  let out = '';
  for (const id of ids) {
    const piece = sd.push(id);
    assert.ok(!piece.includes('\ufffd'), 'no replacement characters mid-stream');
    out += piece;
  }
  assert.equal(out + sd.flush(), text);
});

test('cleanSpaces follows llama.cpp detokenizer clean-up rules', () => {
  assert.equal(cleanSpaces("Hello , world ! Is it ? Yes . He 's here , I 'm in , they 're , we 've , don 't , a ' b"),
    "Hello, world! Is it? Yes. He's here, I'm in, they're, we've, don 't, a'b");
  assert.equal(handBpe().decode([0x61, 0x20, 0x2c], { cleanSpaces: true }), 'a,');
});

test('tokenizer.json: byte-level BPE with a Split regex, added tokens and a BOS template', () => {
  const v = trainByteBpeVocab(CORPUS, 300);
  const ggufFile = path.join(tmp, 'hf-ref.gguf');
  writeBpeGguf(ggufFile, v);
  const ref = tokenizerFromGguf(readGguf(ggufFile));
  const normal = v.tokens.filter((_, i) => v.types[i] === TokenType.Normal);
  const json = {
    version: '1.0',
    added_tokens: v.tokens.map((t, i) => ({ t, i })).filter(({ i }) => v.types[i] === TokenType.Control)
      .map(({ t, i }) => ({ id: i, content: t, special: true })),
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel' }, { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] }] },
    model: {
      type: 'BPE', ignore_merges: true,
      vocab: Object.fromEntries(normal.map((t) => [t, v.tokens.indexOf(t)])),
      merges: v.merges.map((m) => m.split(' ')), // the newer [left, right] form
    },
  };
  const file = path.join(tmp, 'tokenizer.json');
  fs.writeFileSync(file, JSON.stringify(json));
  const hf = tokenizerFromHuggingFace(file);
  assert.equal(hf.bosId, ref.bosId);
  assert.equal(hf.eosId, ref.eosId);
  assert.ok(hf.addBos);
  for (const text of SAMPLES) {
    assert.deepEqual(hf.encode(text, { parseSpecial: true }), ref.encode(text, { parseSpecial: true }), JSON.stringify(text));
    assert.equal(hf.decode(hf.encode(text)), text);
  }
  assert.equal(convertHfPattern("(?i:'s|'ll)|\\p{L}++|\\p{N}{1,3}+|\\p{L}+|x?+"), "(?:'[sS]|'[lL][lL])|\\p{L}+|\\p{N}{1,3}|\\p{L}+|x?");
  assert.throws(() => tokenizerFromHuggingFace({ model: { type: 'Unigram' } }), /model type "Unigram" is not supported \(supported: BPE, byte-level or SentencePiece-style\)/);
  assert.throws(() => tokenizerFromHuggingFace({ model: { type: 'BPE', vocab: {}, merges: [] }, pre_tokenizer: { type: 'Whitespace' } }), /neither a ByteLevel pre-tokenizer .* nor a Metaspace pre-tokenizer/);
});

test('tokenizer.json: SentencePiece-style BPE (Llama 2 normalizer, Metaspace) encodes and decodes as the GGUF SPM tokenizer', () => {
  const v = withAddedTokens(trainSpmVocab(CORPUS, 400), ['<|im_start|>', '<|im_end|>'], ['inferjit', '<tool>']);
  const ggufFile = path.join(tmp, 'hf-spm-ref.gguf');
  writeSpmGguf(ggufFile, v);
  const ref = tokenizerFromGguf(readGguf(ggufFile));
  for (const metaspace of [false, true]) {
    const hf = tokenizerFromHuggingFace(spmTokenizerJson(v, { metaspace }));
    assert.equal(hf.kind, 'spm');
    assert.equal(hf.bosId, 1);
    assert.equal(hf.eosId, 2);
    assert.equal(hf.unkId, 0);
    assert.ok(hf.addBos && !hf.addEos, 'BOS from the post-processor template, no EOS');
    for (const text of [...SAMPLES, ...ADDED_TOKEN_SAMPLES]) {
      for (const parseSpecial of [false, true]) {
        const ids = hf.encode(text, { parseSpecial });
        assert.deepEqual(ids, ref.encode(text, { parseSpecial }), `metaspace=${metaspace} ${JSON.stringify(text)} parseSpecial=${parseSpecial}`);
        assert.equal(hf.decode(ids, { skipSpecial: !parseSpecial }), ref.decode(ids, { skipSpecial: !parseSpecial }));
      }
    }
    // Byte fallback: "ü" and "中" are not pieces, so they become their UTF-8 bytes, and decode back.
    const ids = hf.encode('ü中', { addBos: false });
    assert.deepEqual(ids.slice(1).map((id) => hf.tokens[id]), ['<0xC3>', '<0xBC>', '<0xE4>', '<0xB8>', '<0xAD>']);
    assert.equal(hf.decode(ids), 'ü中');
  }
  const never = tokenizerFromHuggingFace({ ...spmTokenizerJson(v, { metaspace: true }), pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never' } });
  assert.equal(never.addsDummyPrefix, false);
  assert.ok(!never.tokens[never.encode('the', { addBos: false })[0]].startsWith('▁'));
  assert.notDeepEqual(never.encode('the', { addBos: false }), ref.encode('the', { addBos: false }), 'no "▁" in front without the prefix');
});

test('added tokens: lstrip / rstrip swallow the whitespace beside them; user-defined tokens always match', () => {
  const v = withAddedTokens(trainSpmVocab(CORPUS, 200), ['<mask>'], ['<tool>']);
  const tok = tokenizerFromHuggingFace(spmTokenizerJson(v, { flags: { '<mask>': { lstrip: true }, '<tool>': { rstrip: true } } }));
  const plain = tokenizerFromHuggingFace(spmTokenizerJson(v));
  const mask = tok.getId('<mask>')!, tool = tok.getId('<tool>')!;
  const o = { addBos: false, parseSpecial: true };
  // lstrip: "a  <mask>" is "a" then <mask>; the spaces are gone.
  assert.deepEqual(tok.encode('a  <mask>b', o), [...plain.encode('a', o), mask, ...plain.encode('b', { addBos: false })]);
  assert.notDeepEqual(plain.encode('a  <mask>b', o), tok.encode('a  <mask>b', o));
  // rstrip: "<tool>  \n x" is <tool> then "x" (text after a special token gets the dummy prefix again).
  assert.deepEqual(tok.encode('<tool>  \n x', o), [tool, ...plain.encode('x', { addBos: false })]);
  // A user-defined token is a token even without parseSpecial; a control token is not.
  assert.ok(tok.encode('x<tool>', { addBos: false }).includes(tool));
  assert.ok(!tok.encode('x<mask>', { addBos: false }).includes(mask));
});

test('GGUF tokenizer metadata errors are specific', () => {
  const file = path.join(tmp, 'bad-tok.gguf');
  writeGguf(file, { metadata: { ...TINY_LLAMA_METADATA, 'tokenizer.ggml.model': 'rwkv', 'tokenizer.ggml.tokens': ['a'] } });
  assert.throws(() => tokenizerFromGguf(readGguf(file)), (e: unknown) => e instanceof GgufError && /tokenizer\.ggml\.model = "rwkv" is not supported \(supported: llama, gpt2\)/.test(e.message));
  writeGguf(file, { metadata: { 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'klingon', 'tokenizer.ggml.tokens': ['a'], 'tokenizer.ggml.merges': [] as string[] } });
  assert.throws(() => tokenizerFromGguf(readGguf(file)), /tokenizer\.ggml\.pre = "klingon" is not a supported pre-tokenizer/);
  writeGguf(file, { metadata: { 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': ['a', 'b', 'c'], 'tokenizer.ggml.scores': new Float32Array([0]) } });
  assert.throws(() => tokenizerFromGguf(readGguf(file)), /tokenizer\.ggml\.scores has 1 entries but there are 3 tokens/);
  writeGguf(file, { metadata: { 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': gguf.array('u32', new Uint32Array([1])) } });
  assert.throws(() => tokenizerFromGguf(readGguf(file)), /"tokenizer\.ggml\.tokens" has type array<u32>, expected array<string>/);
  assert.throws(() => new SpmTokenizer({ tokens: ['a', 'b', 'a'] }), /duplicate token "a" has ids 0 and 2/);
});
