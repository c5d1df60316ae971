// Quantized weights on the compiled LLM path: the Llama decoder (src/llm/models/llama.ts) loaded
// from Q4_0 and Q4_K_M-style (Q4_K with Q6_K attn_v / ffn_down / output) GGUF files keeps every
// linear weight as a quantized parameter (no f32 copy), lowers it to the plan's qgemm kernel, and the
// compiled step equals the eager step on prefill (many tokens: the GEMM path) and decode (the GEMV
// path). A load-time precision quantizes an F32 file's linears to int8 per channel / int4 per group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromArray, inferenceJit, type Tensor } from '../../src/index.js';
import { type StepInputs } from '../../src/llm/index.js';
import { quantSpecOf } from '../../src/tensor/quantized.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import { PagedLlama, loadPagedLlama } from '../../src/llm/models/index.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';

const skip = planAddon ? false : 'native plan executor not built';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-qstep-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

const i32 = (v: number[], shape: number[]): Tensor => fromArray(new Int32Array(v), shape, 'i32');
const pools = (m: PagedLlama, NB: number, BS: number): Tensor[] => Array.from({ length: m.config.numLayers }, () => fromArray(new Float32Array(NB * m.config.numKvHeads * BS * m.config.headDim), [NB, m.config.numKvHeads, BS, m.config.headDim], 'f32'));

/** The formats of the linear weights by parameter name (f32 for unquantized ones). */
function linearFormats(m: PagedLlama): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, t] of m.namedParameters()) {
    if (/\.(wq|wk|wv|wo|gate|up|down)$|^lmHead$/.test(name)) out.set(name, quantSpecOf(t)?.format ?? t.dtype);
  }
  return out;
}

/** No parameter of the model is an f32 copy of a linear weight: the only f32 matrices are the embedding table and the rotary tables. */
function assertNoF32Linears(m: PagedLlama): void {
  for (const [name, t] of m.namedParameters()) {
    if (t.dtype === 'f32' && t.rank === 2) assert.match(name, /^(embed|ropeCos|ropeSin)$/, `${name} is an f32 matrix [${t.shape.join(', ')}]`);
  }
}

/** Prefill of two sequences (8 tokens with the second one padded in), then a batched decode: compiled vs eager. */
function compiledEqualsEager(model: PagedLlama, tolerance: number): void {
  const BS = 4, NB = 8, MB = 4;
  const eagerK = pools(model, NB, BS), eagerV = pools(model, NB, BS), jitK = pools(model, NB, BS), jitV = pools(model, NB, BS);
  const spec = [{ shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] }, { shape: ['S', MB] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] }];
  const L = model.config.numLayers;
  const compiled = inferenceJit(model, { device: 'cpu', fallback: 'error', cache: 'memory', inputSpec: [...spec, ...new Array(2 * L).fill(null)] });
  const prefill: StepInputs = {
    ids: i32([1, 7, 9, 20, 4, 2, 30, 11], [8]), positions: i32([0, 1, 2, 3, 4, 0, 1, 2], [8]),
    slots: i32([12, 13, 14, 15, 20, 4, 5, 6], [8]), blockTables: i32([3, 5, 0, 0, 1, 0, 0, 0], [2, MB]),
    seqLens: i32([5, 3], [2]), queryStart: i32([0, 5, 8], [3]), lastIndex: i32([4, 7], [2]),
  };
  const decode: StepInputs = {
    ids: i32([17, 23], [2]), positions: i32([5, 3], [2]), slots: i32([21, 7], [2]), blockTables: i32([3, 5, 0, 0, 1, 0, 0, 0], [2, MB]),
    seqLens: i32([6, 4], [2]), queryStart: i32([0, 1, 2], [3]), lastIndex: i32([0, 1], [2]),
  };
  for (const [what, step] of [['prefill', prefill], ['decode', decode]] as const) {
    const want = model.forward(step, eagerK, eagerV);
    const got = compiled(step, jitK, jitV) as Tensor;
    assert.deepEqual(got.shape, want.shape);
    const g = got.data as Float32Array, w = want.data as Float32Array;
    let worst = 0, spread = 0;
    for (let i = 0; i < w.length; i++) { worst = Math.max(worst, Math.abs(g[i] - w[i])); spread = Math.max(spread, Math.abs(w[i])); }
    assert.ok(spread > 0.1, `${what}: the logits are degenerate (max |logit| ${spread})`);
    assert.ok(worst <= tolerance * spread, `${what}: max |compiled − eager| = ${worst} (max |logit| ${spread})`);
  }
  const exe = compiled.compiledEntries()[0].executable as unknown as { describe(): string; planStats(): { kernelNames: string[]; copies: number } | null };
  assert.match(exe.describe(), /^cpu plan/, exe.describe());
  // GQA (4 heads, 2 kv heads) q/k/v are columns of fused projections: rotary, kv_write and
  // paged_attention read them in place, so the plan copies nothing
  assert.equal(exe.planStats()!.copies, 0, exe.describe());
  assert.match(exe.describe(), /\b0 copies\b/);
  // every projection and the head run as qgemm (Q/K/V and gate/up fused where their formats agree)
  const names = exe.planStats()!.kernelNames;
  if (process.env.E15_DEBUG) console.log(names.join(' '));
  assert.ok(names.filter((n) => n === 'quant_linear').length >= 4 * L + 1, names.join(', '));
  assert.ok(!names.some((n) => n === 'linear' || n === 'matmul' || n === 'gemm'), `a dense GEMM is left: ${names.join(', ')}`);
}

test('Q4_0 GGUF: linears stay Q4_0 blocks, compiled prefill + decode == eager', { skip }, () => {
  const file = path.join(dir, 'q4_0.gguf');
  writeTinyLlamaGguf(file, { type: 'Q4_0', seed: 7, dim: 64, ffn: 128 });
  const model = PagedLlama.load(file, { maxPositions: 64 });
  const formats = linearFormats(model);
  assert.equal(formats.size, 2 * 7 + 1);
  for (const [name, f] of formats) assert.equal(f, 'q4_0', name);
  assertNoF32Linears(model);
  compiledEqualsEager(model, 1e-4);
});

test('Q4_K_M-style GGUF (Q4_K, Q6_K attn_v / ffn_down / output, Q4_K embeddings): quantized params, compiled prefill + decode == eager', { skip }, () => {
  const file = path.join(dir, 'q4_k_m.gguf');
  writeTinyLlamaGguf(file, {
    type: 'Q4_K', embedType: 'Q4_K', types: { attn_v: 'Q6_K', ffn_down: 'Q6_K', output: 'Q6_K' },
    seed: 8, dim: 256, heads: 4, kvHeads: 2, ffn: 512, scale: 0.06,
  });
  const model = PagedLlama.load(file, { maxPositions: 64 });
  for (const [name, f] of linearFormats(model)) assert.equal(f, /\.(wv|down)$|^lmHead$/.test(name) ? 'q6_k' : 'q4_k', name);
  assertNoF32Linears(model);
  // the embedding table is the one expanded matrix: Q4_K in the file, f32 here
  assert.equal(model.embed.dtype, 'f32');
  // The K-quant kernels quantize activations to int8 per 256 values (as Q4_0's do per 32). Compiled
  // and eager differ by ~1e-6 before the first linear (other attention / norm kernels), which can move
  // an activation across a rounding boundary: one int8 step (amax/127 of a 256-block) times |w| per
  // flip, measured 5e-3 of the logit spread on this model; without activation quantization it was 1e-6.
  compiledEqualsEager(model, 2e-2);
});

test('tied Q8_0 embeddings: the head reads the file blocks, the lookup an f32 table', { skip }, () => {
  const file = path.join(dir, 'tied-q8.gguf');
  writeTinyLlamaGguf(file, { type: 'Q8_0', embedType: 'Q8_0', tied: true, seed: 9 });
  const model = PagedLlama.load(file, { maxPositions: 64 });
  assert.equal(quantSpecOf(model.lmHead)?.format, 'q8_0');
  assert.equal(model.embed.dtype, 'f32');
  assertNoF32Linears(model);
  compiledEqualsEager(model, 1e-4);
});

for (const precision of ['int8', 'int4'] as const) test(`precision ${precision}: an F32 file's linears are quantized at load; compiled == eager; close to f32`, { skip }, async () => {
  const file = path.join(dir, 'f32.gguf');
  if (!fs.existsSync(file)) writeTinyLlamaGguf(file, { type: 'F32', seed: 10, dim: 64, ffn: 128 });
  const { model, engine } = loadPagedLlama(file, { precision, groupSize: 32, maxContext: 64 });
  const m = model as PagedLlama;
  for (const [name, f] of linearFormats(m)) assert.equal(f, precision, name);
  assertNoF32Linears(m);
  compiledEqualsEager(m, 1e-4);
  // against the f32 model: the quantization error is small (greedy tokens mostly agree)
  const ref = loadPagedLlama(file, { maxContext: 64 });
  const prompt = [1, 40, 41, 42, 43, 44];
  const a = (await engine.generate(prompt, { maxTokens: 8, temperature: 0 })).tokens;
  const b = (await ref.engine.generate(prompt, { maxTokens: 8, temperature: 0 })).tokens;
  assert.equal(a.length, 8);
  if (precision === 'int8') assert.equal(a[0], b[0], `first greedy token: int8 ${a[0]}, f32 ${b[0]}`);
  assert.match(engine.describe(), /^cpu plan/);
});

test('precision fp32 dequantizes a quantized file; bad precision options are errors naming the value', () => {
  const file = path.join(dir, 'q8.gguf');
  writeTinyLlamaGguf(file, { type: 'Q8_0', seed: 11 });
  const m = PagedLlama.load(file, { maxPositions: 32, precision: 'fp32' });
  for (const [name, f] of linearFormats(m)) assert.equal(f, 'f32', name);
  assert.throws(() => PagedLlama.load(file, { maxPositions: 32, precision: 'int3' as never }), /precision must be one of auto, fp32, int8, int4, got "int3"/);
  assert.throws(() => PagedLlama.load(file, { maxPositions: 32, precision: 'int4', groupSize: 48 }), /groupSize must be 32, 64 or 128, got 48/);
});
