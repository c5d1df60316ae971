// The model families as user code (src/llm/models/{qwen2,gemma,phi3,gpt2}.ts) without llama.cpp:
// the compiled step equals the eager step (logits and KV pools, prefill with padding then a batched
// decode) and runs as one native plan; a Hugging Face checkpoint of the same weights (transformers'
// names, GPT-2's Conv1D layout, Gemma's norm weights without llama.cpp's +1) gives the GGUF file's
// logits; the architecture a file declares picks the class, and what is not supported says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromArray, inferenceJit, type Tensor } from '../../src/index.js';
import { loadCausalLM, supportedArchitectures, ModelConfigError, type StepInputs, type StepDecoder } from '../../src/llm/index.js';
import { Qwen2, Gemma, Phi3, Gpt2 } from '../../src/llm/models/index.js';
import { writeGguf, gguf } from '../../src/io/gguf/index.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import { writeFamilyGguf, writeFamilyHf, type Family, type TinyFamilySpec } from './family-fixtures.js';

const skip = planAddon ? false : 'native plan executor not built';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-families-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

const FAMILIES: [Family, TinyFamilySpec, new (...a: never[]) => object][] = [
  ['qwen2', { seed: 11, heads: 4, kvHeads: 2 }, Qwen2],
  ['gemma', { seed: 12, heads: 4, kvHeads: 1, headDim: 24, scale: 0.3 }, Gemma],
  ['phi3', { seed: 13, heads: 4, kvHeads: 2, untied: true, ropeDim: 8 }, Phi3],
  ['gpt2', { seed: 14, scale: 0.3 }, Gpt2],
];

const i32 = (v: number[], shape: number[]): Tensor => fromArray(new Int32Array(v), shape, 'i32');
const pools = (m: StepDecoder, NB: number, BS: number): Tensor[] => Array.from({ length: m.config.numLayers },
  () => fromArray(new Float32Array(NB * m.config.numKvHeads * BS * m.config.headDim), [NB, m.config.numKvHeads, BS, m.config.headDim], 'f32'));
const BS = 4, NB = 8, MB = 4;
// sequence 0: 5 prompt tokens in blocks 3, 5; sequence 1: 3 tokens in block 1; 8 padded tokens
const PREFILL: StepInputs = {
  ids: i32([1, 7, 9, 20, 4, 2, 30, 11], [8]), positions: i32([0, 1, 2, 3, 4, 0, 1, 2], [8]),
  slots: i32([12, 13, 14, 15, 20, 4, 5, 6], [8]), blockTables: i32([3, 5, 0, 0, 1, 0, 0, 0], [2, MB]),
  seqLens: i32([5, 3], [2]), queryStart: i32([0, 5, 8], [3]), lastIndex: i32([4, 7], [2]),
};
const DECODE: StepInputs = {
  ids: i32([17, 23], [2]), positions: i32([5, 3], [2]), slots: i32([21, 7], [2]), blockTables: i32([3, 5, 0, 0, 1, 0, 0, 0], [2, MB]),
  seqLens: i32([6, 4], [2]), queryStart: i32([0, 1, 2], [3]), lastIndex: i32([0, 1], [2]),
};

function worstRelative(got: Tensor, want: Tensor): number {
  const g = got.data as Float32Array, w = want.data as Float32Array;
  assert.equal(g.length, w.length);
  let worst = 0;
  for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(g[i] - w[i]) / Math.max(1, Math.abs(w[i])));
  return worst;
}

for (const [family, spec, cls] of FAMILIES) {
  test(`${family}: compiled step == eager step (prefill with padding, batched decode), one native plan`, { skip }, () => {
    const file = path.join(dir, `${family}-step.gguf`);
    writeFamilyGguf(file, family, spec);
    const { model, architecture } = loadCausalLM(file, { maxContext: 64, compile: false });
    assert.equal(architecture, family);
    assert.ok(model instanceof cls, `${family} loads as ${cls.name}`);
    const eagerK = pools(model, NB, BS), eagerV = pools(model, NB, BS), jitK = pools(model, NB, BS), jitV = pools(model, NB, BS);
    const specs = [{ shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] }, { shape: ['S', MB] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] }];
    const compiled = inferenceJit(model as unknown as { forward: StepDecoder['forward'] }, { device: 'cpu', fallback: 'error', cache: 'memory',
      inputSpec: [...specs, ...new Array(2 * model.config.numLayers).fill(null)] });
    for (const [what, step] of [['prefill', PREFILL], ['decode', DECODE]] as const) {
      const want = model.forward(step, eagerK, eagerV);
      const got = compiled(step, jitK, jitV) as Tensor;
      assert.deepEqual(got.shape, [2, model.config.vocabSize]);
      const worst = worstRelative(got, want);
      assert.ok(worst < 1e-4, `${family} ${what}: max relative |compiled − eager| = ${worst}`);
      for (let l = 0; l < model.config.numLayers; l++) {
        assert.ok(worstRelative(jitK[l], eagerK[l]) < 1e-5, `${family} ${what}: layer ${l} K pool differs`);
        assert.ok(worstRelative(jitV[l], eagerV[l]) < 1e-5, `${family} ${what}: layer ${l} V pool differs`);
      }
    }
    const exe = compiled.compiledEntries()[0].executable;
    assert.match(exe.describe!(), /^cpu plan/, exe.describe!());
    assert.equal(compiled.compiledEntries().length, 1, 'one graph serves both (T, S) buckets');
  });

  test(`${family}: a Hugging Face checkpoint of the same weights gives the GGUF file's logits`, () => {
    const file = path.join(dir, `${family}-hf.gguf`), hf = path.join(dir, `${family}-hf`);
    writeFamilyGguf(file, family, spec);
    writeFamilyHf(hf, family, spec);
    const a = loadCausalLM(file, { maxContext: 64, compile: false }), b = loadCausalLM(hf, { maxContext: 64, compile: false });
    assert.equal(b.architecture, family);
    // GGUF stores the epsilon as f32
    assert.deepEqual({ ...b.model.config, normEps: Math.fround((b.model.config as unknown as { normEps: number }).normEps) }, a.model.config);
    const la = a.model.forward(PREFILL, pools(a.model, NB, BS), pools(a.model, NB, BS));
    const lb = b.model.forward(PREFILL, pools(b.model, NB, BS), pools(b.model, NB, BS));
    const worst = worstRelative(lb, la);
    assert.ok(worst < 1e-5, `${family}: HF vs GGUF logits differ by ${worst}`);
    // and the tokenizer.json encodes as the GGUF vocabulary does
    assert.deepEqual(b.tokenizer!.encode('the quick brown fox'), a.tokenizer!.encode('the quick brown fox'));
  });
}

test('an unsupported architecture in a GGUF file names itself and every supported one', () => {
  const file = path.join(dir, 'rwkv.gguf');
  writeGguf(file, { metadata: { 'general.architecture': 'rwkv6', 'rwkv6.block_count': gguf.u32(1) }, tensors: [] });
  for (const arch of ['llama', 'mistral', 'mixtral', 'qwen2', 'gemma', 'phi3', 'gpt2']) assert.ok(supportedArchitectures().includes(arch), arch);
  assert.throws(() => loadCausalLM(file), (e: unknown) => e instanceof ModelConfigError && /"rwkv6" is not supported/.test(e.message)
    && e.message.includes(`supported: ${supportedArchitectures().join(', ')}`)
    && /gemma, gpt2, llama, mistral, mixtral, phi3, qwen2/.test(e.message));
});

test('what a family does not cover is an error that says so', () => {
  const hf = path.join(dir, 'phi3-longrope');
  writeFamilyHf(hf, 'phi3', { seed: 1 });
  const cfg = JSON.parse(fs.readFileSync(path.join(hf, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(hf, 'config.json'), JSON.stringify({ ...cfg, rope_scaling: { type: 'longrope', long_factor: [1], short_factor: [1] } }));
  assert.throws(() => loadCausalLM(hf), (e: unknown) => e instanceof ModelConfigError && /LongRoPE/.test(e.message));
  // GPT-2's learned position table bounds the context
  const g = path.join(dir, 'gpt2-ctx.gguf');
  writeFamilyGguf(g, 'gpt2', { seed: 1, contextLength: 32 });
  assert.throws(() => loadCausalLM(g, { maxContext: 64 }), /maxPositions 64 exceeds the 32 positions/);
  // a layer more in the file than block_count says is refused, naming the tensors
  const hfq = path.join(dir, 'qwen2-extra-hf');
  writeFamilyHf(hfq, 'qwen2', { seed: 1, layers: 2 });
  const c2 = JSON.parse(fs.readFileSync(path.join(hfq, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(hfq, 'config.json'), JSON.stringify({ ...c2, num_hidden_layers: 1 }));
  assert.throws(() => loadCausalLM(hfq), /tensors this model does not use: "model\.layers\.1\./);
});
