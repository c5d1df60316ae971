// Bad model files and bad inputs get specific errors instead of silently wrong results: a GGUF
// whose block_count or tensor names do not match its tensors, hyper-parameters that would give NaN
// logits (rope base, rms epsilon, rope scaling), coerced token ids, NaN logits at sampling, a
// config.json of null.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseGguf, encodeGgufBytes, gguf, GgufError, type GgufWriteValue } from '../../src/io/gguf/index.js';
import { ModelConfigError, SafetensorsError } from '../../src/io/errors.js';
import { StepEngine, PagedLlama, loadPagedLlama, loadLlamaGguf, loadLlamaSafetensors, llamaConfigFromGguf, llamaConfigFromHuggingFace, generate, greedyTokens, Sampler } from '../../src/llm/index.js';
import { NonFiniteLogitsError } from '../../src/llm/errors.js';
import { writeTinyLlamaGguf, writeHfFromGguf } from './llama-fixtures.js';
import { ggufLayout, withU32, withF32 } from '../io/gguf-layout.js';
import { loadSafetensors } from '../../src/io/safetensors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-validate-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'm.gguf');
writeTinyLlamaGguf(file, { seed: 3, layers: 2 });
const bytes = new Uint8Array(fs.readFileSync(file));
const layout = ggufLayout(bytes);
const is = (cls: abstract new (...a: never[]) => Error, re: RegExp) => (e: unknown) => e instanceof cls && re.test((e as Error).message);

test('a block_count smaller than the file holds is an error naming the later layers\' tensors', () => {
  const f = parseGguf(withU32(bytes, layout.values.get('llama.block_count')!.at, 1), 'm.gguf');
  assert.throws(() => loadLlamaGguf(f), is(GgufError, /llama\.block_count is 1 but the file holds tensors of later layers: "blk\.1\.attn_norm\.weight"/));
});

test('a block_count larger than the file holds names the missing layer tensor', () => {
  const f = parseGguf(withU32(bytes, layout.values.get('llama.block_count')!.at, 3), 'm.gguf');
  assert.throws(() => loadLlamaGguf(f), is(GgufError, /tensor "blk\.2\.attn_norm\.weight" of layer 2 is missing \(block_count \/ num_hidden_layers says 3 layers/));
});

test('a tensor the model does not use is named (here: a renamed output head)', () => {
  const t = layout.tensors.get('output.weight')!;
  const b = bytes.slice();
  b[t.nameAt + 5] = 'x'.charCodeAt(0); // "output.weight" -> "outpux.weight": the head would silently become tied
  assert.throws(() => loadLlamaGguf(parseGguf(b, 'm.gguf')), is(GgufError, /the file holds tensors a Llama model does not use: "outpux\.weight"/));
});

test('the unmodified file loads and every tensor is used', () => {
  const m = loadLlamaGguf(parseGguf(bytes, 'm.gguf'));
  assert.equal(m.weights.layers.length, 2);
});

test('GGUF hyper-parameters that give NaN logits are refused naming the key', () => {
  const base = layout.values.get('llama.rope.freq_base')!.at;
  for (const v of [0, -1, NaN, Infinity]) {
    assert.throws(() => llamaConfigFromGguf(parseGguf(withF32(bytes, base, v), 'm.gguf')),
      is(ModelConfigError, new RegExp(`m\\.gguf: llama\\.rope\\.freq_base must be a finite number > 0, got ${v}`)), `freq_base ${v}`);
  }
  const eps = layout.values.get('llama.attention.layer_norm_rms_epsilon')!.at;
  for (const v of [NaN, -1, 0]) {
    assert.throws(() => llamaConfigFromGguf(parseGguf(withF32(bytes, eps, v), 'm.gguf')),
      is(ModelConfigError, /llama\.attention\.layer_norm_rms_epsilon must be a finite number > 0/), `eps ${v}`);
  }
  // Linear rope scaling with a zero factor (a file written with those keys).
  const meta = (extra: Record<string, GgufWriteValue>) => parseGguf(encodeGgufBytes({
    metadata: {
      'general.architecture': 'llama', 'llama.embedding_length': gguf.u32(64), 'llama.block_count': gguf.u32(1),
      'llama.feed_forward_length': gguf.u32(128), 'llama.attention.head_count': gguf.u32(4), ...extra,
    },
    tensors: [{ name: 'token_embd.weight', type: 'F32', shape: [10, 64], data: new Float32Array(640) }],
  }), 's.gguf');
  assert.doesNotThrow(() => llamaConfigFromGguf(meta({ 'llama.rope.scaling.type': 'linear', 'llama.rope.scaling.factor': gguf.f32(2) })));
  assert.throws(() => llamaConfigFromGguf(meta({ 'llama.rope.scaling.type': 'linear', 'llama.rope.scaling.factor': gguf.f32(0) })),
    is(ModelConfigError, /s\.gguf: llama\.rope\.scaling\.factor must be a finite number > 0, got 0/));
});

const hfBase = {
  model_type: 'llama', vocab_size: 100, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4,
};

test('HF config hyper-parameters: rope_theta 0, incomplete or degenerate llama3 scaling, a zero factor', () => {
  assert.doesNotThrow(() => llamaConfigFromHuggingFace(hfBase, 'c.json'));
  assert.throws(() => llamaConfigFromHuggingFace({ ...hfBase, rope_theta: 0 }, 'c.json'), is(ModelConfigError, /c\.json: rope_theta must be a finite number > 0, got 0/));
  assert.throws(() => llamaConfigFromHuggingFace({ ...hfBase, rms_norm_eps: -1 }, 'c.json'), is(ModelConfigError, /rms_norm_eps must be a finite number > 0, got -1/));
  assert.throws(() => llamaConfigFromHuggingFace({ ...hfBase, rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'c.json'),
    is(ModelConfigError, /c\.json: rope_scaling\.low_freq_factor is missing \(rope_type "llama3" needs it\)/));
  assert.throws(() => llamaConfigFromHuggingFace({
    ...hfBase, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  }, 'c.json'), is(ModelConfigError, /low_freq_factor \(4\) must be smaller than high_freq_factor \(4\)/));
  assert.throws(() => llamaConfigFromHuggingFace({ ...hfBase, rope_scaling: { type: 'linear', factor: 0 } }, 'c.json'),
    is(ModelConfigError, /rope_scaling\.factor must be a finite number > 0, got 0/));
  assert.throws(() => llamaConfigFromHuggingFace({ ...hfBase, rope_scaling: { type: 'linear' } }, 'c.json'), is(ModelConfigError, /rope_scaling\.factor is missing/));
});

test('a config.json of null (or an array) gets a specific error, not a TypeError from inside', () => {
  const hf = path.join(dir, 'hf-null');
  writeHfFromGguf(hf, new Map(), {});
  for (const [text, what] of [['null', 'null'], ['[1]', 'an array'], ['3', 'number']]) {
    fs.writeFileSync(path.join(hf, 'config.json'), text);
    assert.throws(() => loadLlamaSafetensors(hf), is(ModelConfigError, new RegExp(`config\\.json: the model config must be a JSON object, got ${what}`)));
  }
});

test('an HF checkpoint with more layers than num_hidden_layers names them', () => {
  const hf = path.join(dir, 'hf-extra');
  const tensors = loadSafetensorsFromGguf();
  writeHfFromGguf(hf, tensors, { ...hfBase, vocab_size: tensors.get('model.embed_tokens.weight')!.shape[0], num_key_value_heads: 2, num_hidden_layers: 1 });
  assert.throws(() => loadLlamaSafetensors(hf), is(SafetensorsError, /num_hidden_layers is 1 but the file holds tensors of later layers: "model\.layers\.1\./));
  writeHfFromGguf(hf, tensors, { ...hfBase, vocab_size: tensors.get('model.embed_tokens.weight')!.shape[0], num_key_value_heads: 2, num_hidden_layers: 2 });
  assert.equal(loadLlamaSafetensors(hf).weights.layers.length, 2);
  // A saved lm_head under tie_word_embeddings, and transformers' rotary buffers, are not "unused weights".
  tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', tensors.get('model.norm.weight')!);
  writeHfFromGguf(hf, tensors, { ...hfBase, vocab_size: tensors.get('model.embed_tokens.weight')!.shape[0], num_key_value_heads: 2, num_hidden_layers: 2, tie_word_embeddings: true });
  assert.equal(loadLlamaSafetensors(hf).config.tieWordEmbeddings, true);
  // No lm_head and no tie_word_embeddings: true would silently run the embeddings as the head.
  const noHead = new Map(tensors);
  noHead.delete('lm_head.weight');
  writeHfFromGguf(hf, noHead, { ...hfBase, vocab_size: tensors.get('model.embed_tokens.weight')!.shape[0], num_key_value_heads: 2, num_hidden_layers: 2 });
  assert.throws(() => loadLlamaSafetensors(hf), is(SafetensorsError, /tensor "lm_head\.weight" is missing and .*config\.json does not set "tie_word_embeddings": true/));
  tensors.set('model.layers.0.self_attn.q_proj.bias', tensors.get('model.norm.weight')!);
  writeHfFromGguf(hf, tensors, { ...hfBase, vocab_size: tensors.get('model.embed_tokens.weight')!.shape[0], num_key_value_heads: 2, num_hidden_layers: 2 });
  assert.throws(() => loadLlamaSafetensors(hf), is(SafetensorsError, /the file holds tensors a Llama model does not use: "model\.layers\.0\.self_attn\.q_proj\.bias"/));
  assert.ok(loadSafetensors(path.join(hf, 'model.safetensors')).size > 0);
});

/** HF-named tensors for the same tiny model (layout only matters here, not rotary order). */
function loadSafetensorsFromGguf() {
  const m = loadLlamaGguf(parseGguf(bytes, 'm.gguf'));
  const f = parseGguf(bytes, 'm.gguf');
  const t = (n: string) => f.toTensor(n);
  const out = new Map([['model.embed_tokens.weight', t('token_embd.weight')], ['model.norm.weight', t('output_norm.weight')], ['lm_head.weight', t('output.weight')]]);
  const names: [string, string][] = [['attn_norm', 'input_layernorm'], ['attn_q', 'self_attn.q_proj'], ['attn_k', 'self_attn.k_proj'], ['attn_v', 'self_attn.v_proj'],
    ['attn_output', 'self_attn.o_proj'], ['ffn_norm', 'post_attention_layernorm'], ['ffn_gate', 'mlp.gate_proj'], ['ffn_up', 'mlp.up_proj'], ['ffn_down', 'mlp.down_proj']];
  for (let l = 0; l < m.weights.layers.length; l++) for (const [g, h] of names) out.set(`model.layers.${l}.${h}.weight`, t(`blk.${l}.${g}.weight`));
  return out;
}

test('token ids are integers in [0, vocab): no silent coercion', async () => {
  const { engine } = loadPagedLlama(file, { maxContext: 16, blockSize: 4 });
  const V = engine.model.config.vocabSize;
  for (const bad of [2 ** 32 + 5, 1.7, NaN, -1, V, '5' as unknown as number]) {
    assert.throws(() => engine.generate([1, bad]), /StepEngine\.generate: prompt token 1 is .*, outside the vocabulary \[0, \d+\)/, String(bad));
    assert.equal(engine.freeBlocks, engine.numBlocks, 'nothing was cached');
  }
  assert.equal((await engine.generate([1, 5], { maxTokens: 1, temperature: 0 })).tokens.length, 1);
});

test('NaN logits raise at sampling, greedy or not; generate() rejects instead of returning ""', async () => {
  const nan = new Float32Array([0.5, NaN, 2]);
  assert.throws(() => new Sampler({ temperature: 0 }).sample(nan), is(NonFiniteLogitsError, /the logits hold NaN \(1 of 3 values, the first at token id 1\)/));
  assert.throws(() => new Sampler({ temperature: 0.8, seed: 1 }).sample(new Float32Array(4).fill(NaN)), is(NonFiniteLogitsError, /4 of 4 values/));
  assert.throws(() => new Sampler({ logitBias: { 0: -Infinity, 1: -Infinity } }).sample(new Float32Array([1, 2])), is(NonFiniteLogitsError, /every token has a score of -Infinity/));
  // A model whose weights produce NaN (a NaN in the final norm reaches every logit).
  const m = loadLlamaGguf(parseGguf(bytes, 'm.gguf'));
  m.weights.outNorm = Float32Array.from(m.weights.outNorm);
  m.weights.outNorm[0] = NaN;
  const engine = new StepEngine(new PagedLlama(m.config, m.weights, { maxPositions: 32 }), { maxContext: 32 });
  await assert.rejects(generate(engine, null, [1, 5, 9], { maxTokens: 4 }).complete(), NonFiniteLogitsError);
  await assert.rejects(greedyTokens(engine, [1, 5, 9], 2), NonFiniteLogitsError);
});

test('a rope_freqs tensor with a zero, negative or NaN factor is refused (it divides the frequencies)', () => {
  const f = path.join(dir, 'freqs.gguf');
  const good = [1, 1, 2, 4, 8, 8, 8, 8];
  writeTinyLlamaGguf(f, { seed: 3, ropeFreqs: good });
  assert.equal(loadLlamaGguf(f).weights.ropeFreqFactors?.length, 8);
  for (const bad of [0, -2, NaN]) {
    writeTinyLlamaGguf(f, { seed: 3, ropeFreqs: [...good.slice(0, 5), bad, 8, 8] });
    assert.throws(() => loadLlamaGguf(f), is(ModelConfigError, new RegExp(`tensor "rope_freqs\\.weight" has factor ${bad} at index 5; every rope frequency factor must be a finite number > 0`)), String(bad));
  }
});
