// Quantized weights as parameter tensors (src/tensor/quantized.ts): the TS quantizers round-trip
// within their formats' resolution, and eager quant_linear on the native weight-only kernels
// (native/quant/qmatmul.cc, kquants.cc) matches the reference (TypeScript dequantize + f32 linear)
// for every format on edge shapes: one row, odd rows, N not a multiple of 16, K the formats' minimum.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, ops, type Tensor } from '../../../src/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import {
  type QuantFormat, QUANT_FORMATS, quantizeWeight, quantParts, quantizeValues, dequantizeValues, quantBlockValues, isQuantized,
} from '../../../src/tensor/quantized.js';
import { nativeSkip } from './helpers.js';

let seed = 9100;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

test('quantizers round-trip within each format\'s step (K-quants included)', () => {
  const steps: Record<QuantFormat, number> = { q8_0: 1 / 127, q4_0: 1 / 7, int8: 1 / 127, int4: 1 / 7, q4_k: 2 / 15, q5_k: 2 / 31, q6_k: 1 / 31 };
  for (const format of QUANT_FORMATS) {
    const K = quantBlockValues(format) * 2, N = 3;
    const w = rnd([N, K]);
    const spec = { format, N, K, group: 32 };
    const back = dequantizeValues(quantizeValues(w.toFlatArray(), spec), spec);
    const src = w.toFlatArray();
    const amax = src.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    let worst = 0;
    for (let i = 0; i < src.length; i++) worst = Math.max(worst, Math.abs(back[i] - src[i]));
    // within one quantization step of the widest block (plus f16 scale rounding)
    assert.ok(worst <= steps[format] * amax * 1.1, `${format}: worst error ${worst} vs step ${steps[format] * amax}`);
    assert.ok(worst > 0, `${format}: quantization changed nothing (is it a no-op?)`);
  }
});

test('a quantized weight is a parameter-shaped u8 tensor that only linear and dequantize read', () => {
  const w = quantizeWeight(rnd([5, 64]), 'int4', { group: 64 });
  assert.ok(isQuantized(w));
  assert.equal(w.dtype, 'u8');
  const { spec, data, scales } = quantParts(w);
  assert.deepEqual(spec, { format: 'int4', N: 5, K: 64, group: 64 });
  assert.equal(data.length, 5 * 32);
  assert.equal(scales!.length, 5);
  assert.throws(() => w.add(1), /quantized int4 \[5, 64\] weight; only linear/);
  assert.throws(() => ops.linear(rnd([2, 32]), w), /must end in the weight's 64 input features/);
  assert.throws(() => quantizeWeight(rnd([2, 100]), 'q4_k'), /multiple of 256/);
  const d = ops.dequantize(w);
  assert.deepEqual(d.shape, [5, 64]);
  assert.equal(d.dtype, 'f32');
});

/** |native − reference| bound: activations are quantized to int8 per 32 values for the integer
 *  formats (error ≤ amax/254 per value), K-quants read fp32 activations. */
function bound(format: QuantFormat, x: Float64Array, W: Float32Array, M: number, N: number, K: number): Float64Array {
  const intAct = !format.endsWith('_k');
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const err = new Float64Array(K);
    for (let b = 0; b < K / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[m * K + b * 32 + j]));
      for (let j = 0; j < 32; j++) err[b * 32 + j] = intAct ? amax / 254 + 1e-6 * amax : 0;
    }
    for (let n = 0; n < N; n++) {
      let s = 0, mag = 0;
      for (let k = 0; k < K; k++) { s += err[k] * Math.abs(W[n * K + k]); mag += Math.abs(x[m * K + k] * W[n * K + k]); }
      out[m * N + n] = 1.05 * s + 1e-5 * mag + 1e-6;
    }
  }
  return out;
}

test('eager quant_linear on the native kernels == reference, every format, edge shapes', { skip: nativeSkip }, () => {
  for (const format of QUANT_FORMATS) {
    const K = format.endsWith('_k') ? 512 : 64;
    for (const [M, N] of [[1, 1], [1, 33], [3, 17], [17, 5]]) {
      const w = quantizeWeight(rnd([N, K], 0.5), format, { group: 32 });
      const x = rnd([M, K]);
      const bias = rnd([N]);
      const ref = withEagerBackend('reference', () => ops.linear(x, w, bias));
      const got = withEagerBackend('cpu', () => ops.linear(x, w, bias));
      assert.deepEqual(got.shape, [M, N]);
      const W = dequantizeValues(w.data as Uint8Array, quantParts(w).spec);
      const tol = bound(format, x.toFlatArray(), W, M, N, K);
      const a = got.toFlatArray(), e = ref.toFlatArray();
      for (let i = 0; i < a.length; i++) {
        assert.ok(Math.abs(a[i] - e[i]) <= tol[i], `${format} M=${M} N=${N} K=${K}: element ${i} is ${a[i]}, reference ${e[i]} (tolerance ${tol[i]})`);
      }
    }
  }
});
