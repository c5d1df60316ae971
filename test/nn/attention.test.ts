import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, randn, fromArray } from '../../src/index.js';
import { assertClose, flat, linearLoop } from './util.js';

// f32 model vs float64 loops: a handful of ops each rounding once to f32, dot products of ≤ 16
// terms, softmax of ≤ 6 terms; 2e-5 relative covers that with room for f32-accumulating kernels.
const TOL = 2e-5;

/** Self-attention written out with loops from the layer's weights. Query head h reads key/value
 *  head floor(h / (numHeads / numKVHeads)) — consecutive query heads share a KV head. */
function attentionLoop(attn: nn.SelfAttention, x: Float64Array, batch: number, seq: number, keep?: (i: number, j: number) => boolean): Float64Array {
  const { dim, numHeads: H, numKVHeads: K, headDim: Dh } = attn;
  const width = (H + 2 * K) * Dh;
  const qkv = linearLoop(x, flat(attn.qkv.weight), flat(attn.qkv.bias!), batch * seq, dim, width);
  const heads = new Float64Array(batch * seq * dim);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / K));
      for (let i = 0; i < seq; i++) {
        const scores: number[] = [];
        for (let j = 0; j < seq; j++) {
          if (keep && !keep(i, j)) { scores.push(-Infinity); continue; }
          let s = 0;
          for (let d = 0; d < Dh; d++) s += qkv[(b * seq + i) * width + h * Dh + d] * qkv[(b * seq + j) * width + H * Dh + g * Dh + d];
          scores.push(s / Math.sqrt(Dh));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, v) => a + v, 0);
        for (let d = 0; d < Dh; d++) {
          let o = 0;
          for (let j = 0; j < seq; j++) o += (e[j] / z) * qkv[(b * seq + j) * width + (H + K) * Dh + g * Dh + d];
          heads[(b * seq + i) * dim + h * Dh + d] = o;
        }
      }
    }
  }
  return linearLoop(heads, flat(attn.proj.weight), flat(attn.proj.bias!), batch * seq, dim, dim);
}

test('SelfAttention (multi-head) matches a loop computation with the same weights', () => {
  const attn = new nn.SelfAttention(16, 4, { seed: 1 });
  assert.deepEqual(attn.namedParameters().map(([n, t]) => `${n}${JSON.stringify(t.shape)}`), ['qkv.weight[48,16]', 'qkv.bias[48]', 'proj.weight[16,16]', 'proj.bias[16]']);
  const x = randn([2, 5, 16], { seed: 2 });
  const y = attn.forward(x);
  assert.deepEqual(y.shape, [2, 5, 16]);
  assertClose(flat(y), attentionLoop(attn, flat(x), 2, 5), TOL);
});

test('SelfAttention with grouped-query heads (numKVHeads) matches the loop', () => {
  const attn = new nn.SelfAttention(24, 6, { numKVHeads: 2, seed: 3 });
  assert.deepEqual(attn.qkv.weight.shape, [(6 + 2 * 2) * 4, 24]);
  const x = randn([1, 6, 24], { seed: 4 });
  assertClose(flat(attn.forward(x)), attentionLoop(attn, flat(x), 1, 6), TOL);
  const mqa = new nn.SelfAttention(24, 6, { numKVHeads: 1, seed: 5 });
  assertClose(flat(mqa.forward(x)), attentionLoop(mqa, flat(x), 1, 6), TOL);
});

test('causal SelfAttention only looks back', () => {
  const attn = new nn.SelfAttention(8, 2, { causal: true, seed: 6 });
  const x = randn([2, 4, 8], { seed: 7 });
  assertClose(flat(attn.forward(x)), attentionLoop(attn, flat(x), 2, 4, (i, j) => j <= i), TOL);
  // the first position's output cannot depend on later tokens
  const y1 = flat(attn.forward(x)).subarray(0, 8);
  const x2 = flat(x).slice();
  for (let k = 8; k < 32; k++) x2[k] += 1;
  const y2 = flat(attn.forward(fromArray(x2, [2, 4, 8]))).subarray(0, 8);
  assert.deepEqual(Array.from(y2), Array.from(y1));
});

test('SelfAttention applies a bool mask broadcast over batch and heads', () => {
  const attn = new nn.SelfAttention(8, 2, { seed: 8 });
  const x = randn([1, 4, 8], { seed: 9 });
  const pattern = [[1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 1]];
  const mask = fromArray(pattern, 'bool');
  assertClose(flat(attn.forward(x, mask)), attentionLoop(attn, flat(x), 1, 4, (i, j) => pattern[i][j] === 1), TOL);
});

test('SelfAttention without bias has no bias parameters and checks its input shape', () => {
  const attn = new nn.SelfAttention(8, 2, { bias: false, seed: 1 });
  assert.deepEqual(attn.namedParameters().map(([n]) => n), ['qkv.weight', 'proj.weight']);
  assert.throws(() => attn.forward(randn([4, 8])), /SelfAttention: x must be \[batch, seq, 8\], got \[4, 8\]/);
  assert.throws(() => attn.forward(randn([1, 4, 6])), /SelfAttention: x must be \[batch, seq, 8\], got \[1, 4, 6\]/);
});
