import { test } from 'node:test';
import assert from 'node:assert/strict';
import { F, fromArray, randn } from '../../src/index.js';
import { assertClose, flat } from './util.js';

test('F re-exports the op functions models call', () => {
  for (const name of ['linear', 'matmul', 'conv2d', 'layerNorm', 'rmsNorm', 'groupNorm', 'relu', 'gelu', 'silu', 'sigmoid', 'tanh',
    'softmax', 'logSoftmax', 'scaledDotProductAttention', 'rotaryEmbedding', 'embedding', 'pad', 'upsampleNearest2d', 'cast']) {
    assert.equal(typeof (F as Record<string, unknown>)[name], 'function', name);
  }
});

test('rotaryCosSin holds cos/sin of (offset + p)·base^(-2i/dim)', () => {
  const { cos, sin } = F.rotaryCosSin(3, 4, { base: 100, offset: 2 });
  assert.deepEqual(cos.shape, [3, 2]);
  assert.deepEqual(sin.shape, [3, 2]);
  // frequencies for dim 4, base 100: 1 and 100^(-1/2) = 0.1; positions 2, 3, 4
  const angles = [2, 2 * 0.1, 3, 3 * 0.1, 4, 4 * 0.1];
  // f32 storage: relative rounding 6e-8
  assertClose(flat(cos), angles.map(Math.cos), 1e-7);
  assertClose(flat(sin), angles.map(Math.sin), 1e-7);
  assert.throws(() => F.rotaryCosSin(4, 3), /rotaryCosSin: rotaryDim must be a positive even integer, got 3/);
});

test('rotaryCosSin tables rotate pairs through F.rotaryEmbedding (NeoX halves)', () => {
  const { cos, sin } = F.rotaryCosSin(2, 4);
  const x = fromArray([[1, 2, 3, 4], [1, 2, 3, 4]]);
  const y = flat(F.rotaryEmbedding(x, cos, sin));
  // position 0 is the identity; position 1 rotates (x0, x2) by 1 rad and (x1, x3) by 0.01 rad
  const c1 = Math.cos(1), s1 = Math.sin(1), c2 = Math.cos(0.01), s2 = Math.sin(0.01);
  const expected = [1, 2, 3, 4, 1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2];
  assertClose(y, expected, 1e-6); // f32 tables and output, a 2-term sum each
});

test('swiglu and geglu gate the second half by the activated first half', () => {
  const x = randn([2, 6], { seed: 1 });
  const v = flat(x);
  const silu = (a: number): number => a / (1 + Math.exp(-a));
  const expected: number[] = [];
  for (let r = 0; r < 2; r++) for (let i = 0; i < 3; i++) expected.push(silu(v[r * 6 + i]) * v[r * 6 + 3 + i]);
  const y = F.swiglu(x);
  assert.deepEqual(y.shape, [2, 3]);
  assertClose(flat(y), expected, 1e-6); // two f32 roundings
  const tanhGelu = (a: number): number => 0.5 * a * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (a + 0.044715 * a ** 3)));
  const expectedGe: number[] = [];
  for (let r = 0; r < 2; r++) for (let i = 0; i < 3; i++) expectedGe.push(tanhGelu(v[r * 6 + i]) * v[r * 6 + 3 + i]);
  assertClose(flat(F.geglu(x, 'tanh')), expectedGe, 1e-6);
  assert.throws(() => F.swiglu(randn([2, 5])), /swiglu: the last dim of x \[2, 5\] must be even/);
});
