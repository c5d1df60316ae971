// Tokenizer parity with llama.cpp for every tokenizer kind we load from GGUF, beyond the vocabularies
// of tokenizer-llamacpp.test.ts: SentencePiece without the dummy space prefix (Gemma's
// tokenizer.ggml.add_space_prefix = false), byte-level BPE with no tokenizer.ggml.pre (llama.cpp's
// default), with each pre-tokenizer name we accept (llama3, llama-v3, llama-bpe, dbrx, smaug-bpe,
// gpt-2, qwen2), and the vocabularies of the family test models (Qwen2, Gemma, Phi-3, GPT-2 and
// Mixtral files as family-fixtures.ts / mixtral-fixtures.ts write them). Each file is written by our
// GGUF writer and loaded by llama.cpp (node-llama-cpp, vocabulary only); a fixed text set
// (multilingual, whitespace runs, emoji, digits, contractions, special-token text) must encode to
// identical ids (parseSpecial on and off) and the ids must decode to identical text.
// llama.cpp's detokenizer cleans spaces (clean_up_tokenization_spaces) for byte-level BPE except
// the qwen2 pre-tokenizer; ours does when asked (`cleanSpaces`, default off: it is lossy).
// Skipped, with the reason printed, when node-llama-cpp cannot run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf, writeGguf, gguf } from '../../src/io/gguf/index.js';
import { tokenizerFromGguf } from '../../src/llm/tokenizer/index.js';
import { CORPUS, SAMPLES, ADDED_TOKEN_SAMPLES, TINY_LLAMA_METADATA, trainSpmVocab, trainByteBpeVocab } from './tokenizer-fixtures.js';
import { writeFamilyGguf, type Family } from './family-fixtures.js';
import { writeTinyMixtralGguf } from './mixtral-fixtures.js';

interface VocabModel {
  tokenize(text: string, special?: boolean): number[];
  detokenize(tokens: readonly number[], special?: boolean): string;
  dispose(): Promise<void>;
}

async function vocabLoader(): Promise<((file: string) => Promise<VocabModel>) | string> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  let mod: { getLlama(o: object): Promise<{ loadModel(o: object): Promise<VocabModel> }> };
  try { mod = await import(entry); } catch (e) { return `node-llama-cpp is not installed (${(e as Error).message.split('\n')[0]})`; }
  try {
    const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    return (file) => llama.loadModel({ modelPath: file, vocabOnly: true });
  } catch (e) {
    return `node-llama-cpp could not start llama.cpp: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** The fixed text set: the shared samples, special-token text, and slices of the multilingual corpus. */
const TEXTS = [...SAMPLES, ...ADDED_TOKEN_SAMPLES, '  \t \n\n\n   ', '🙂', ' 🙂', '👍🏽👍🏽', 'Привет, мир! Γειά σου κόσμε. こんにちは世界。안녕하세요 세계', 'مرحبا بالعالم', 'नमस्ते दुनिया'];
for (let i = 0; i < CORPUS.length; i += 197) TEXTS.push(CORPUS.slice(i, i + 80));

async function assertParity(load: (file: string) => Promise<VocabModel>, file: string, clean: boolean): Promise<void> {
  const model = await load(file);
  try {
    const ours = tokenizerFromGguf(readGguf(file));
    const name = path.basename(file);
    for (const text of TEXTS) {
      for (const special of [false, true]) {
        const ref: number[] = Array.from(model.tokenize(text, special));
        const got = ours.encode(text, { addBos: false, parseSpecial: special });
        assert.deepEqual(got, ref, `${name} encode ${JSON.stringify(text.slice(0, 60))} parseSpecial=${special}`);
        assert.equal(ours.decode(got, { skipSpecial: !special, cleanSpaces: clean }), model.detokenize(ref, special),
          `${name} decode ${JSON.stringify(text.slice(0, 60))} special=${special}`);
      }
    }
  } finally {
    await model.dispose();
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-toktypes-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

test('SentencePiece without the dummy space prefix (Gemma: add_space_prefix = false) matches llama.cpp', async (t) => {
  const load = await vocabLoader();
  if (typeof load === 'string') { console.log(`skipping: ${load}`); t.skip(load); return; }
  const v = trainSpmVocab(CORPUS, 600);
  for (const prefix of [false, true]) {
    const file = path.join(dir, `spm-prefix-${prefix}.gguf`);
    writeGguf(file, {
      metadata: {
        ...TINY_LLAMA_METADATA,
        'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': v.tokens, 'tokenizer.ggml.scores': v.scores, 'tokenizer.ggml.token_type': v.types,
        'tokenizer.ggml.bos_token_id': gguf.u32(1), 'tokenizer.ggml.eos_token_id': gguf.u32(2), 'tokenizer.ggml.unknown_token_id': gguf.u32(0),
        'tokenizer.ggml.add_bos_token': true, 'tokenizer.ggml.add_space_prefix': prefix,
      },
    });
    await assertParity(load, file, false);
  }
});

test('byte-level BPE with every pre-tokenizer name we accept, and with none, matches llama.cpp', async (t) => {
  const load = await vocabLoader();
  if (typeof load === 'string') { console.log(`skipping: ${load}`); t.skip(load); return; }
  const v = trainByteBpeVocab(CORPUS, 800);
  // llama.cpp: clean_spaces off for qwen2, on for the other BPE pre-tokenizers
  for (const pre of [null, 'default', 'gpt-2', 'llama3', 'llama-v3', 'llama-bpe', 'dbrx', 'smaug-bpe', 'qwen2']) {
    const file = path.join(dir, `bpe-${pre ?? 'none'}.gguf`);
    writeGguf(file, {
      metadata: {
        ...TINY_LLAMA_METADATA,
        'tokenizer.ggml.model': 'gpt2', ...(pre ? { 'tokenizer.ggml.pre': pre } : {}),
        'tokenizer.ggml.tokens': v.tokens, 'tokenizer.ggml.token_type': v.types, 'tokenizer.ggml.merges': v.merges,
        'tokenizer.ggml.bos_token_id': gguf.u32(v.tokens.indexOf('<|begin_of_text|>')), 'tokenizer.ggml.eos_token_id': gguf.u32(v.tokens.indexOf('<|end_of_text|>')),
      },
    });
    await assertParity(load, file, pre !== 'qwen2');
  }
});

test('the vocabularies of the family model files (qwen2, gemma, phi3, gpt2, mixtral) match llama.cpp', async (t) => {
  const load = await vocabLoader();
  if (typeof load === 'string') { console.log(`skipping: ${load}`); t.skip(load); return; }
  const families: [Family, boolean][] = [['qwen2', false], ['gemma', false], ['phi3', false], ['gpt2', true]];
  for (const [family, clean] of families) {
    const file = path.join(dir, `family-${family}.gguf`);
    writeFamilyGguf(file, family, { seed: 1 });
    await assertParity(load, file, clean);
  }
  const moe = path.join(dir, 'family-mixtral.gguf');
  writeTinyMixtralGguf(moe, { seed: 1, layers: 1, heads: 4, kvHeads: 2, dim: 64, ffn: 64, experts: 4, expertsPerToken: 2 });
  await assertParity(load, moe, false);
});
