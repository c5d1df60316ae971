// loadCausalLM: the architecture a file declares picks the model class; an unsupported one is an
// error that names it and the supported ones; a missing file or config is a ModelConfigError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCausalLM, architectureOf, supportedArchitectures, PagedLlama, ModelConfigError } from '../../src/llm/index.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-models-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

test('a llama GGUF loads as PagedLlama and generates through the engine', { skip: planAddon ? false : 'native plan executor not built' }, async () => {
  const file = path.join(dir, 'tiny.gguf');
  writeTinyLlamaGguf(file, { type: 'F32', seed: 3, layers: 1, heads: 2, kvHeads: 1, dim: 32 });
  assert.equal(architectureOf(file), 'llama');
  const { model, engine, architecture, tokenizer } = loadCausalLM(file, { maxContext: 32 });
  assert.equal(architecture, 'llama');
  assert.ok(model instanceof PagedLlama);
  assert.ok(tokenizer);
  const out = await engine.generate([1, 2, 3], { maxTokens: 3, temperature: 0 });
  assert.equal(out.tokens.length, 3);
});

test('an unsupported architecture names itself and the supported ones', () => {
  const hf = path.join(dir, 'hf-unknown');
  fs.mkdirSync(hf);
  fs.writeFileSync(path.join(hf, 'config.json'), JSON.stringify({ model_type: 'rwkv' }));
  assert.throws(() => loadCausalLM(hf), (e: unknown) => e instanceof ModelConfigError && /"rwkv" is not supported/.test(e.message) && e.message.includes(supportedArchitectures().join(', ')));
  assert.ok(supportedArchitectures().includes('llama'));
});

test('a missing source or a directory without config.json is a ModelConfigError', () => {
  assert.throws(() => loadCausalLM(path.join(dir, 'nope.gguf')), ModelConfigError);
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty);
  assert.throws(() => loadCausalLM(empty), /no config.json/);
});
