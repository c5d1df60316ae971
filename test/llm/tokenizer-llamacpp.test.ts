// Parity with llama.cpp: GGUF vocabularies written by our writer are loaded by llama.cpp (through
// node-llama-cpp, vocabulary only) and must tokenize and detokenize exactly as our tokenizers do.
// Runs when node-llama-cpp is installed (or INFERJIT_NODE_LLAMA_CPP points at its entry file);
// otherwise it is skipped with the reason printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf } from '../../src/io/gguf/index.js';
import { tokenizerFromGguf, tokenizerFromHuggingFace } from '../../src/llm/tokenizer/index.js';
import { CORPUS, SAMPLES, ADDED_TOKEN_SAMPLES, trainSpmVocab, trainByteBpeVocab, writeSpmGguf, writeBpeGguf, withAddedTokens, spmTokenizerJson } from './tokenizer-fixtures.js';

interface LlamaModelLike {
  tokenize(text: string, special?: boolean): number[];
  detokenize(tokens: readonly number[], special?: boolean): string;
  dispose(): Promise<void>;
}

async function loadLlama(): Promise<{ load(file: string): Promise<LlamaModelLike> } | string> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  let mod: { getLlama(o: object): Promise<{ loadModel(o: object): Promise<LlamaModelLike> }> };
  try { mod = await import(entry); } catch (e) { return `node-llama-cpp is not installed (${(e as Error).message.split('\n')[0]})`; }
  try {
    const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    return { load: (file) => llama.loadModel({ modelPath: file, vocabOnly: true }) };
  } catch (e) {
    return `node-llama-cpp could not start llama.cpp: ${(e as Error).message.split('\n')[0]}`;
  }
}

test('tokenization matches llama.cpp on SentencePiece and byte-level BPE vocabularies', async (t) => {
  const llama = await loadLlama();
  if (typeof llama === 'string') {
    console.log(`skipping llama.cpp tokenizer parity: ${llama}`);
    t.skip(llama);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-tokcpp-'));
  try {
    const spm = trainSpmVocab(CORPUS, 1000);
    const bpe = trainByteBpeVocab(CORPUS, 1000);
    const files: [string, boolean][] = [];
    writeSpmGguf(path.join(dir, 'spm.gguf'), spm); files.push([path.join(dir, 'spm.gguf'), false]);
    for (const pre of ['llama-bpe', 'gpt-2', 'qwen2']) {
      const f = path.join(dir, `bpe-${pre}.gguf`);
      writeBpeGguf(f, bpe, pre);
      files.push([f, pre !== 'qwen2']); // llama.cpp cleans spaces when detokenizing these BPE pre-tokenizers
    }
    const texts = [...SAMPLES, CORPUS];
    for (let i = 0; i < CORPUS.length; i += 211) texts.push(CORPUS.slice(i, i + 90));
    for (const [file, clean] of files) {
      const model: LlamaModelLike = await llama.load(file);
      const ours = tokenizerFromGguf(readGguf(file));
      for (const text of texts) {
        for (const special of [false, true]) {
          const ref: number[] = Array.from(model.tokenize(text, special));
          const got = ours.encode(text, { addBos: false, parseSpecial: special });
          assert.deepEqual(got, ref, `${path.basename(file)} encode ${JSON.stringify(text.slice(0, 50))} parseSpecial=${special}`);
          assert.equal(ours.decode(got, { skipSpecial: !special, cleanSpaces: clean }), model.detokenize(ref, special),
            `${path.basename(file)} decode ${JSON.stringify(text.slice(0, 50))}`);
        }
      }
      await model.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('SentencePiece with byte fallback and added tokens: GGUF and tokenizer.json tokenizers match llama.cpp', async (t) => {
  const llama = await loadLlama();
  if (typeof llama === 'string') {
    console.log(`skipping llama.cpp SentencePiece parity: ${llama}`);
    t.skip(llama);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-tokcpp-spm-'));
  try {
    const v = withAddedTokens(trainSpmVocab(CORPUS, 800), ['<|im_start|>', '<|im_end|>'], ['inferjit', '<tool>']);
    const file = path.join(dir, 'spm-added.gguf');
    writeSpmGguf(file, v);
    const model: LlamaModelLike = await llama.load(file);
    // The same vocabulary as Llama 2 (normalizer) and as newer (Metaspace) tokenizer.json files.
    const ours = [
      ['gguf', tokenizerFromGguf(readGguf(file))],
      ['tokenizer.json (Prepend/Replace)', tokenizerFromHuggingFace(spmTokenizerJson(v))],
      ['tokenizer.json (Metaspace)', tokenizerFromHuggingFace(spmTokenizerJson(v, { metaspace: true }))],
    ] as const;
    const texts = [...SAMPLES, ...ADDED_TOKEN_SAMPLES];
    for (let i = 0; i < CORPUS.length; i += 173) texts.push(CORPUS.slice(i, i + 70));
    for (const [name, tok] of ours) {
      for (const text of texts) {
        for (const special of [false, true]) {
          const ref: number[] = Array.from(model.tokenize(text, special));
          const got = tok.encode(text, { addBos: false, parseSpecial: special });
          assert.deepEqual(got, ref, `${name} encode ${JSON.stringify(text.slice(0, 50))} parseSpecial=${special}`);
          assert.equal(tok.decode(got, { skipSpecial: !special }), model.detokenize(ref, special), `${name} decode ${JSON.stringify(text.slice(0, 50))}`);
        }
      }
    }
    await model.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
