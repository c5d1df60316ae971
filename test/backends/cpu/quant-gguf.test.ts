// A Q4_K_M-style GGUF file (Q4_K attention and gate/up, Q6_K down and output head, f32 norms and
// embeddings), written with the project's GGUF writer (K-quant quantizers in src/io/gguf/quants.ts),
// loads as quantized parameters (ggufParameter: the blocks as stored) and a small decoder over them
// gives logits close to the same decoder on the dequantized fp32 weights, eagerly and as a
// compiled native plan, for a prefill chunk and a single decode-sized row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, fromArray, ops, type Tensor } from '../../../src/index.js';
import { encodeGgufBytes, parseGguf, type GgmlTypeName } from '../../../src/io/gguf/index.js';
import { trace } from '../../../src/trace/index.js';
import { optimize } from '../../../src/passes/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { ggufParameter, quantSpecOf, quantizeValues, dequantizeValues } from '../../../src/tensor/quantized.js';
import { assertClose } from './helpers.js';

const D = 256, F = 512, H = 4, Hkv = 2, V = 48, hd = D / H;
let seed = 9500;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

function writeModel(): Uint8Array {
  const mat = (name: string, type: GgmlTypeName, n: number, k: number) => ({ name, type, shape: [n, k], data: rnd([n, k], 1 / Math.sqrt(k)) });
  return encodeGgufBytes({
    metadata: { 'general.architecture': 'tiny' },
    tensors: [
      { name: 'token_embd.weight', type: 'F32', data: rnd([V, D]) },
      { name: 'attn_norm.weight', type: 'F32', data: rnd([D], 0.1).add(1) },
      mat('attn_q.weight', 'Q4_K', D, D), mat('attn_k.weight', 'Q4_K', Hkv * hd, D), mat('attn_v.weight', 'Q4_K', Hkv * hd, D),
      mat('attn_output.weight', 'Q4_K', D, D),
      { name: 'ffn_norm.weight', type: 'F32', data: rnd([D], 0.1).add(1) },
      mat('ffn_gate.weight', 'Q4_K', F, D), mat('ffn_up.weight', 'Q4_K', F, D), mat('ffn_down.weight', 'Q6_K', D, F),
      { name: 'output_norm.weight', type: 'F32', data: rnd([D], 0.1).add(1) },
      mat('output.weight', 'Q6_K', V, D),
    ],
  });
}

type Params = Record<string, Tensor>;
function decoder(p: Params) {
  return (ids: Tensor): Tensor => {
    const T = ids.shape[0];
    const x = ops.embedding(ids, p['token_embd.weight']).reshape(1, T, D);
    const h = ops.rmsNorm(x, p['attn_norm.weight']);
    const heads = (t: Tensor, n: number): Tensor => t.reshape(1, T, n, hd).permute(0, 2, 1, 3);
    const att = ops.scaledDotProductAttention(
      heads(ops.linear(h, p['attn_q.weight']), H), heads(ops.linear(h, p['attn_k.weight']), Hkv), heads(ops.linear(h, p['attn_v.weight']), Hkv), { causal: true });
    const x1 = ops.linear(att.permute(0, 2, 1, 3).reshape(1, T, D), p['attn_output.weight']).add(x);
    const h2 = ops.rmsNorm(x1, p['ffn_norm.weight']);
    const x2 = ops.linear(ops.silu(ops.linear(h2, p['ffn_gate.weight'])).mul(ops.linear(h2, p['ffn_up.weight'])), p['ffn_down.weight']).add(x1);
    return ops.linear(ops.rmsNorm(x2, p['output_norm.weight']), p['output.weight']);
  };
}

// The K-quant kernels quantize each linear's input to int8 per 256 values (error ≤ amax/254 of the
// block per input, as llama.cpp's Q8_K): through five chained linears, attention and the head that is
// a few percent of the logits' scale (the other quantized formats' tests allow 1e-1 too).
const close = (_i: number, e: number): number => 1e-1 * Math.max(1, Math.abs(e));

test('the K-quant quantizers write blocks the GGUF reader decodes to the values they encode', () => {
  for (const [format, type] of [['q4_k', 'Q4_K'], ['q5_k', 'Q5_K'], ['q6_k', 'Q6_K']] as const) {
    const w = rnd([3, 512]);
    const file = parseGguf(encodeGgufBytes({ tensors: [{ name: 'w', type, data: w }] }));
    assert.equal(file.tensorInfo('w').type, type);
    const spec = { format, N: 3, K: 512, group: 32 };
    assert.deepEqual(file.tensorData('w'), quantizeValues(w.toFlatArray(), spec), `${type}: file bytes are the quantizer's`);
    assert.deepEqual(file.toTensor('w').data, dequantizeValues(file.tensorData('w'), spec), `${type}: reader and quantized.ts decode alike`);
  }
});

test('mixed Q4_K/Q6_K GGUF: quantized parameters, logits == dequantized fp32 model (eager and compiled plan)', { skip: planAddon ? false : 'native plan executor not built' }, () => {
  const file = parseGguf(writeModel());
  const quant: Params = {}, dense: Params = {};
  for (const t of file.tensors) {
    quant[t.name] = ggufParameter(file, t.name);
    dense[t.name] = quantSpecOf(quant[t.name]) ? ops.dequantize(quant[t.name]) : quant[t.name];
  }
  assert.equal(quantSpecOf(quant['attn_q.weight'])?.format, 'q4_k');
  assert.equal(quantSpecOf(quant['ffn_down.weight'])?.format, 'q6_k');
  assert.equal(quantSpecOf(quant['output.weight'])?.format, 'q6_k');
  assert.equal(quantSpecOf(quant['token_embd.weight']), undefined);
  const qfn = decoder(quant), dfn = decoder(dense);
  const prefill = fromArray([3, 17, 40, 2, 9, 33, 1], [7], 'i64');
  const t = trace(qfn, [prefill], { module: { namedParameters: () => Object.entries(quant) }, inputSpec: [{ shape: ['seq'] }] });
  const exe = new PlanExecutable(optimize(t.graph), t.constants);
  for (const ids of [prefill, fromArray([11], [1], 'i64')]) {
    const want = withEagerBackend('cpu', () => dfn(ids));
    assertClose(withEagerBackend('cpu', () => qfn(ids)), want, close, `eager quantized, ${ids.size} tokens`);
    assertClose(exe.run([ids])[0], want, close, `compiled plan, ${ids.size} tokens`);
    assert.equal(exe.path, 'plan', exe.describe());
  }
  assert.ok(exe.planStats()!.kernelNames.filter((n) => n === 'quant_linear').length >= 4);
});
