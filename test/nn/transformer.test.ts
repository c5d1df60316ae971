// The two-block transformer of examples/models/transformer.ts, end to end (small config so the
// reference kernels finish quickly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, manualSeed, randn, fromArray, type Tensor } from '../../src/index.js';
import { TinyTransformer, TransformerBlock } from '../../examples/models/transformer.js';
import { assertClose, flat, layerNormLoop } from './util.js';

const config = { dim: 32, heads: 4, depth: 2 };
function build(seed: number): TinyTransformer {
  manualSeed(seed);
  return new TinyTransformer(config);
}

test('TinyTransformer has the expected parameter names and count', () => {
  const m = build(0);
  const names = m.namedParameters().map(([n]) => n);
  assert.equal(names.length, 2 * 12 + 2);
  assert.deepEqual(names.slice(0, 12), [
    'blocks.0.ln1.weight', 'blocks.0.ln1.bias', 'blocks.0.attn.qkv.weight', 'blocks.0.attn.qkv.bias',
    'blocks.0.attn.proj.weight', 'blocks.0.attn.proj.bias', 'blocks.0.ln2.weight', 'blocks.0.ln2.bias',
    'blocks.0.mlp.fc1.weight', 'blocks.0.mlp.fc1.bias', 'blocks.0.mlp.fc2.weight', 'blocks.0.mlp.fc2.bias',
  ]);
  assert.deepEqual(names.slice(-2), ['norm.weight', 'norm.bias']);
  const d = 32;
  const perBlock = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
  assert.equal(m.numParameters(), 2 * perBlock + 2 * d);
});

test('forward gives the right shape and finite, normalized values', () => {
  const m = build(0).eval();
  const x = randn([2, 8, 32], { seed: 1 });
  const y = m.forward(x);
  assert.deepEqual(y.shape, [2, 8, 32]);
  assert.equal(y.dtype, 'f32');
  const v = flat(y);
  assert.ok(v.every(Number.isFinite));
  // the final LayerNorm (weight 1, bias 0) leaves each row with mean 0 and variance ≈ 1
  for (let r = 0; r < 16; r++) {
    const row = v.subarray(r * 32, r * 32 + 32);
    const mean = row.reduce((a, b) => a + b, 0) / 32;
    const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / 32;
    assert.ok(Math.abs(mean) < 1e-5 && Math.abs(variance - 1) < 1e-3, `row ${r}: mean ${mean}, variance ${variance}`);
  }
});

test('two fresh builds with the same seed give bit-identical outputs; another seed differs', () => {
  const x = randn([1, 8, 32], { seed: 2 });
  const a = flat(build(7).forward(x));
  const b = flat(build(7).forward(x));
  assert.deepEqual(a, b);
  assert.notDeepEqual(flat(build(8).forward(x)), a);
});

test('loading one model\'s state dict into another makes them compute the same function', () => {
  const src = build(1), dst = build(2);
  const x = randn([1, 6, 32], { seed: 3 });
  assert.notDeepEqual(flat(dst.forward(x)), flat(src.forward(x)));
  dst.loadStateDict(src.stateDict());
  assert.deepEqual(flat(dst.forward(x)), flat(src.forward(x)));
});

test('a block is the pre-norm residual composition of its parts', () => {
  manualSeed(3);
  const block = new TransformerBlock(32, 4);
  // non-trivial norm parameters so a swapped ln1/ln2 would show
  block.ln1.weight = randn([32], { seed: 4 });
  block.ln2.bias = randn([32], { seed: 5 });
  const x = randn([1, 5, 32], { seed: 6 });
  const h = x.add(block.attn.forward(fromValues(layerNormLoop(flat(x), 32, flat(block.ln1.weight!), flat(block.ln1.bias!), 1e-5), x.shape)));
  const expected = h.add(block.mlp.forward(fromValues(layerNormLoop(flat(h), 32, flat(block.ln2.weight!), flat(block.ln2.bias!), 1e-5), x.shape)));
  // the LayerNorms above are float64 loops rounded to f32, the module's are f32 kernels: the
  // rounding differs by an ulp and is amplified by the sublayers' weights (≈ O(1) gain)
  assertClose(flat(block.forward(x)), flat(expected), 1e-5);
});

test('GQA and causal options reach the attention layers', () => {
  manualSeed(0);
  const m = new TinyTransformer({ dim: 32, heads: 4, kvHeads: 2, causal: true });
  const attn = m.blocks.at(0).attn;
  assert.ok(attn instanceof nn.SelfAttention);
  assert.equal(attn.numKVHeads, 2);
  assert.equal(attn.causal, true);
  assert.deepEqual(m.forward(randn([1, 4, 32], { seed: 1 })).shape, [1, 4, 32]);
});

const fromValues = (v: Float64Array, shape: readonly number[]): Tensor => fromArray(v, [...shape]);
