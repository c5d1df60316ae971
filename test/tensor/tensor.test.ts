import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, zeros, ones, full, arange, randn, rand, Tensor } from '../../src/index.js';
import { floatToF16Bits, f16BitsToFloat, floatToBf16Bits, bf16BitsToFloat } from '../../src/tensor/half.js';

test('fromArray infers shape and round-trips through toArray', () => {
  const t = fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(t.dtype, 'f32');
  assert.deepEqual(t.toArray(), [[1, 2, 3], [4, 5, 6]]);
});

test('fromArray rejects ragged arrays and wrong sizes with a specific error', () => {
  assert.throws(() => fromArray([[1, 2], [3]]), /ragged nested array: values\[1\] has length 1, expected 2/);
  assert.throws(() => fromArray([1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\]/);
});

test('creation helpers fill the right values', () => {
  assert.deepEqual(zeros([2]).toArray(), [0, 0]);
  assert.deepEqual(ones([2], 'i32').toArray(), [1, 1]);
  assert.deepEqual(full([3], 2.5).toArray(), [2.5, 2.5, 2.5]);
  assert.deepEqual(full([2], 7, 'i64').toArray(), [7, 7]);
  assert.deepEqual(arange(5).toArray(), [0, 1, 2, 3, 4]);
  assert.deepEqual(arange(1, 2, 0.25).toArray(), [1, 1.25, 1.5, 1.75]);
  assert.equal(fromArray(3).item(), 3);
});

test('item() needs exactly one element', () => {
  assert.throws(() => zeros([2]).item(), /item: tensor has 2 elements/);
});

test('f16 conversion is exact round-to-nearest-even, including subnormals and overflow', () => {
  assert.equal(floatToF16Bits(1), 0x3c00);
  assert.equal(floatToF16Bits(65504), 0x7bff);
  assert.equal(floatToF16Bits(65519.99), 0x7bff);
  assert.equal(floatToF16Bits(65520), 0x7c00); // rounds to infinity
  assert.equal(floatToF16Bits(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(floatToF16Bits(2 ** -25), 0x0000); // tie -> even (0)
  assert.equal(floatToF16Bits(3 * 2 ** -25), 0x0002); // tie between 1 and 2 -> even (2)
  assert.equal(floatToF16Bits(1 + 2 ** -11), 0x3c00); // tie -> even mantissa
  assert.equal(floatToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(floatToF16Bits(-0), 0x8000);
  assert.ok(Number.isNaN(f16BitsToFloat(floatToF16Bits(NaN))));
  // every finite f16 value round-trips exactly
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00) continue;
    assert.equal(floatToF16Bits(f16BitsToFloat(h)), h === 0x8000 ? 0x8000 : h);
  }
});

test('bf16 conversion rounds to nearest even and round-trips', () => {
  assert.equal(floatToBf16Bits(1), 0x3f80);
  assert.equal(bf16BitsToFloat(floatToBf16Bits(1 + 2 ** -8)), 1); // tie -> even
  assert.equal(bf16BitsToFloat(floatToBf16Bits(1 + 3 * 2 ** -8)), 1 + 2 ** -6);
  for (let h = 0; h < 0x10000; h += 7) {
    if ((h & 0x7f80) === 0x7f80) continue;
    assert.equal(floatToBf16Bits(bf16BitsToFloat(h)), h);
  }
  const t = fromArray([1.1, -2.5, 1e-3], 'bf16');
  assert.equal(t.dtype, 'bf16');
  assert.ok(t.data instanceof Uint16Array);
  const back = t.toFlatArray();
  for (const [i, x] of [1.1, -2.5, 1e-3].entries()) assert.ok(Math.abs(back[i] - x) <= Math.abs(x) * 2 ** -8);
});

test('i64 tensors store BigInt64 and read back as numbers', () => {
  const t = fromArray([1, -2, 2 ** 40], 'i64');
  assert.ok(t.data instanceof BigInt64Array);
  assert.deepEqual(t.toArray(), [1, -2, 2 ** 40]);
});

test('randn is reproducible for a seed and roughly standard normal', () => {
  const a = randn([10000], { seed: 42 });
  const b = randn([10000], { seed: 42 });
  assert.deepEqual(a.toFlatArray(), b.toFlatArray());
  const v = a.toFlatArray();
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  const variance = v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length;
  assert.ok(Math.abs(mean) < 0.05, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.05, `var ${variance}`);
  // pinned values: the PRNG is part of the public contract (same numbers on every machine)
  assert.deepEqual(Array.from(randn([3], { seed: 1 }).data as Float32Array).map((x) => x.toFixed(5)), PINNED_RANDN_SEED1);
  const u = rand([1000], { seed: 3, low: -1, high: 1 }).toFlatArray();
  assert.ok(u.every((x) => x >= -1 && x < 1));
});

const PINNED_RANDN_SEED1 = ['0.54218', '-1.41214', '1.66028'];

test('printing shows dtype, shape and values', () => {
  const s = fromArray([[1, 2], [3, 4]]).toString();
  assert.match(s, /^Tensor\(f32, \[2, 2\],/);
  assert.match(s, /1\.0000, 2\.0000/);
  const big = zeros([2000]).toString();
  assert.match(big, /\.\.\./);
});

test('Tensor.fromStorage checks that storage matches the shape', () => {
  assert.throws(() => Tensor.fromStorage('f32', [2, 2], new Float32Array(3)), /storage holds 3 elements but shape \[2, 2\] needs 4/);
});
