// CLIP's BPE tokenizer on a small vocab.json + merges.txt written here in the original layout. Every
// expected id below was worked out by hand from CLIP's rules: the vocabulary is the 256 byte
// characters in bytes_to_unicode order ('!' = 0, ..., 'h' = 71, ...), the same 256 with '</w>'
// (256..511), one token per merge (512..), then <|startoftext|> and <|endoftext|>.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ClipTokenizer, loadClipTokenizer, clipVocabFromMerges, clipClean, learnClipMerges, parseMerges, CLIP_BYTE_ORDER,
} from '../../examples/diffusion/sd/tokenizer.js';

const dir = mkdtempSync(join(tmpdir(), 'inferjit-clip-tok-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const MERGES = ['h e', 'l l', 'he ll', 'hell o</w>', 'a t</w>', 'c at</w>'];
// he 512, ll 513, hell 514, hello</w> 515, at</w> 516, cat</w> 517, <|startoftext|> 518, <|endoftext|> 519
const SOT = 518, EOT = 519;

function writeTokenizer(folder: string, merges: string[], header = '#version: 0.2'): void {
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'vocab.json'), JSON.stringify(clipVocabFromMerges(merges)));
  writeFileSync(join(folder, 'merges.txt'), [header, ...merges].join('\n') + '\n');
}

writeTokenizer(join(dir, 'tok'), MERGES);
const tok = loadClipTokenizer(join(dir, 'tok'), { maxLength: 8 });

test('the vocabulary follows CLIP\'s layout (the ids the released vocab.json has for bytes)', () => {
  const vocab = clipVocabFromMerges(MERGES);
  assert.equal(Object.keys(vocab).length, 520);
  // Released CLIP vocab.json: "!": 0, "a": 64, "a</w>": 320 (the id of "a" in every SD prompt).
  assert.deepEqual([vocab['!'], vocab['"'], vocab.a, vocab['a</w>'], vocab['!</w>'], vocab['Ā']], [0, 1, 64, 320, 256, 188]);
  assert.deepEqual([vocab.he, vocab['hello</w>'], vocab['<|startoftext|>'], vocab['<|endoftext|>']], [512, 515, SOT, EOT]);
  assert.equal(new Set(CLIP_BYTE_ORDER).size, 256);
  assert.deepEqual([tok.vocabSize, tok.mergeCount, tok.bosId, tok.eosId, tok.padId], [520, 6, SOT, EOT, EOT]);
});

test('known encodings, worked out by hand', () => {
  // lowercased, whitespace runs dropped; "hello" merges h+e, l+l, he+ll, hell+o</w>; "!" is "!</w>" (256)
  assert.deepEqual(tok.encode('Hello  CAT!'), [SOT, 515, 517, 256, EOT]);
  // letters without merges, digits one by one: h 71, i</w> 328, 1</w> 272, 2</w> 273
  assert.deepEqual(tok.encode('hi 12'), [SOT, 71, 328, 272, 273, EOT]);
  // é is UTF-8 C3 A9 -> byte characters Ã (127) and ©</w> (102 + 256)
  assert.deepEqual(tok.encode('é'), [SOT, 127, 358, EOT]);
  // contractions split off: it's -> "it" (i 72, t</w> 339), "'s" (' 6, s</w> 338)
  assert.deepEqual(tok.encode("it's"), [SOT, 72, 339, 6, 338, EOT]);
  // one word, merges applied everywhere at each rank: hell o hello</w>
  assert.deepEqual(tok.encode('hellohello'), [SOT, 514, 78, 515, EOT]);
  // HTML entities unescaped twice (&amp;lt; -> &lt; -> <), so "<</w>" = 27 + 256
  assert.deepEqual(tok.encode('&amp;lt;'), [SOT, 283, EOT]);
  // special-token text is the token, as the original's regex matches it
  assert.deepEqual(tok.encode('cat<|endoftext|>CAT'), [SOT, 517, EOT, 517, EOT]);
  assert.deepEqual(tok.encode(' \n\t '), [SOT, EOT]);
  assert.deepEqual(tok.encode('hello', { addBos: false, addEos: false }), [515]);
  assert.deepEqual(tok.bpe('hello'), ['hello</w>']);
  assert.deepEqual(tok.bpe('cats'), ['c', 'a', 't', 's</w>']);
});

test('prompts are framed, padded with <|endoftext|> and truncated to maxLength', () => {
  assert.deepEqual(tok.encodePrompt(''), { ids: [SOT, EOT, EOT, EOT, EOT, EOT, EOT, EOT], truncated: false });
  assert.deepEqual(tok.encodePrompt('hello cat'), { ids: [SOT, 515, 517, EOT, EOT, EOT, EOT, EOT], truncated: false });
  // 8 slots: start, 6 tokens, end
  assert.deepEqual(tok.encodePrompt('hello cat hello cat hello cat hello'), { ids: [SOT, 515, 517, 515, 517, 515, 517, EOT], truncated: true });
  assert.equal(new ClipTokenizer({ vocab: clipVocabFromMerges(MERGES), merges: MERGES }).encodePrompt('cat').ids.length, 77);
});

test('decode joins words with spaces, as the original', () => {
  assert.equal(tok.decode(tok.encode('Hello  CAT!')), 'hello cat ! ');
  assert.equal(tok.decode(tok.encode('é hellohello')), 'é hellohello ');
  assert.equal(tok.decode([SOT, 515, EOT], { skipSpecial: false }), '<|startoftext|>hello <|endoftext|>');
});

test('text cleanup: NFC, entities, whitespace, lowercase', () => {
  assert.equal(clipClean('  A\u0301  Photo\n\tof &quot;X&quot; &#39;Y&#x27; &amp;amp; '), 'á photo of "x" \'y\' &'.normalize('NFC')); // unescaped twice: &amp;amp; -> &amp; -> &
  assert.equal(clipClean('&unknownentity; ok'), '&unknownentity; ok');
});

test('the original merges file header and CRLF files are read; bad files get specific errors', () => {
  writeTokenizer(join(dir, 'orig'), MERGES, '"bpe_simple_vocab_16e6.txt#version: 0.2');
  assert.deepEqual(loadClipTokenizer(join(dir, 'orig')).encode('hello'), [SOT, 515, EOT]);
  assert.deepEqual(parseMerges('#version: 0.2\r\nh e\r\nl l\r\n'), ['h e', 'l l']);
  // files() writes the same two files back.
  const files = tok.files();
  assert.deepEqual(JSON.parse(files['vocab.json']), clipVocabFromMerges(MERGES));
  assert.deepEqual(parseMerges(files['merges.txt']), MERGES);
  assert.throws(() => loadClipTokenizer(join(dir, 'missing')), /cannot read .*missing\/vocab\.json \(ENOENT\); a CLIP tokenizer folder holds vocab\.json and merges\.txt/);
  mkdirSync(join(dir, 'bad'));
  writeFileSync(join(dir, 'bad', 'vocab.json'), '{"a": 0, "b": 5}');
  writeFileSync(join(dir, 'bad', 'merges.txt'), '');
  assert.throws(() => loadClipTokenizer(join(dir, 'bad')), /"b" id 5, outside 0\.\.1/);
  writeFileSync(join(dir, 'bad', 'vocab.json'), '{"a": 0, "b": 1}');
  assert.throws(() => loadClipTokenizer(join(dir, 'bad')), /no "<\|startoftext\|>" token/);
  writeFileSync(join(dir, 'bad', 'vocab.json'), '{"a": 0,');
  assert.throws(() => loadClipTokenizer(join(dir, 'bad')), /vocab\.json is not valid JSON/);
  assert.throws(() => new ClipTokenizer({ vocab: clipVocabFromMerges(MERGES), merges: ['h  e'] }), /merge #0 "h  e" is not two symbols/);
});

test('learnClipMerges learns the most frequent pairs first and its vocabulary encodes the corpus compactly', () => {
  const merges = learnClipMerges('the cat. the cat. the hat.', 10);
  assert.deepEqual(merges.slice(0, 3), ['t h', 'th e</w>', 'a t</w>']); // "th" x3, "the</w>" x3, "at</w>" x3 (first seen wins ties)
  const t = new ClipTokenizer({ vocab: clipVocabFromMerges(merges), merges });
  const ids = t.encode('The cat', { addBos: false, addEos: false });
  assert.deepEqual(ids.map((i) => t.idToToken(i)), ['the</w>', 'cat</w>']);
});
