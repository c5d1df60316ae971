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

/** |native − reference| bound: activations are quantized to int8 per block (32 values for Q8_0/Q4_0/int8/
 *  int4, one 256-value super-block for the K-quants), so each input is off by at most amax(block)/254;
 *  the native result is then within Σ_k err_k·|W[n][k]| (plus float rounding) of the f32 reference. */
function bound(format: QuantFormat, x: Float64Array | Float32Array, W: Float32Array, M: number, N: number, K: number): Float64Array {
  const blk = format.endsWith('_k') ? 256 : 32;
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const err = new Float64Array(K);
    for (let b = 0; b < K / blk; b++) {
      let amax = 0;
      for (let j = 0; j < blk; j++) amax = Math.max(amax, Math.abs(x[m * K + b * blk + j]));
      for (let j = 0; j < blk; j++) err[b * blk + j] = amax / 254 + 1e-6 * amax;
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

interface KquantAddon {
  quantMatmul(w: [number, ArrayBufferView, Float32Array | null, number, number, number], x: Float32Array, M: number, y: Float32Array): void;
  packWeight(w: [number, ArrayBufferView, Float32Array | null, number, number, number]): Uint8Array | null;
  kquantIsa?: string;
}

// The K-quant integer-dot kernels (native/quant/kquants.cc) on both weight layouts: the GGUF blocks
// (re-laid 16 rows at a time per task) and the 16-row packed copy the plan reads must give the same
// bits; a row computed in a batch of M must equal the row alone (tiles of 4 and of 1 do the same
// integer sums and float steps); and every output is within the int8 activation bound of the
// reference dequantize-then-f32 product.
test('K-quant integer-dot kernels: packed == GGUF layout == row alone, within the int8 bound of the reference', { skip: nativeSkip }, async () => {
  const { addon } = await import('../../../src/backends/cpu/addon.js');
  const a = addon as unknown as KquantAddon;
  assert.ok(['avx512-vnni', 'avx512', 'avx2', 'scalar'].includes(a.kquantIsa ?? ''), `kquantIsa: ${a.kquantIsa}`);
  const run = (code: number, bytes: Uint8Array, N: number, K: number, x: Float32Array, M: number): Float32Array => {
    const y = new Float32Array(M * N);
    a.quantMatmul([code, bytes, null, N, K, 32], x, M, y);
    return y;
  };
  for (const format of ['q4_k', 'q5_k', 'q6_k'] as QuantFormat[]) {
    for (const [K, N] of [[256, 37], [768, 16], [512, 1], [1024, 49]]) {
      const w = quantizeWeight(rnd([N, K], 0.5), format, { group: 32 });
      const bytes = w.data as Uint8Array;
      const W = dequantizeValues(bytes, quantParts(w).spec);
      const code = { q4_k: 9, q5_k: 10, q6_k: 11 }[format as 'q4_k'];
      const packed = a.packWeight([code, bytes, null, N, K, 32]);
      assert.ok(packed, `${format}: packWeight returned null`);
      assert.equal(packed!.length, Math.ceil(N / 16) * (K / 256) * (format === 'q4_k' ? 2368 : 4416));
      for (const M of [1, 2, 3, 15, 16, 17, 33]) {
        const xt = rnd([M, K]);
        const x = Float32Array.from(xt.toFlatArray());
        if (M === 17) x.fill(0, 5 * K, 6 * K); // an all-zero row (activation scale 0)
        const got = run(code, bytes, N, K, x, M);
        const gotPacked = run(code + 3, packed!, N, K, x, M);
        const what = `${format} M=${M} N=${N} K=${K}`;
        for (let i = 0; i < got.length; i++) assert.ok(Object.is(got[i], gotPacked[i]), `${what}: element ${i}: GGUF layout ${got[i]}, packed ${gotPacked[i]}`);
        for (const m of [0, M - 1]) {
          const alone = run(code + 3, packed!, N, K, x.subarray(m * K, (m + 1) * K), 1);
          for (let n = 0; n < N; n++) assert.ok(Object.is(alone[n], got[m * N + n]), `${what}: row ${m} alone ${alone[n]}, in the batch ${got[m * N + n]}`);
        }
        const tol = bound(format, x, W, M, N, K);
        let err = 0;
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += x[m * K + k] * W[n * K + k];
            const d = Math.abs(got[m * N + n] - s);
            err = Math.max(err, d);
            assert.ok(d <= tol[m * N + n], `${what}: y[${m}][${n}] = ${got[m * N + n]}, reference ${s} (tolerance ${tol[m * N + n]})`);
            if (M === 17 && m === 5) assert.equal(got[m * N + n], 0, `${what}: zero row`);
          }
        }
        assert.ok(err > 0, `${what}: bit-exact to the f32 reference: were the activations quantized at all?`);
      }
    }
  }
});

test('K-quant packed weights: wrong byte counts are rejected with the layout named', { skip: nativeSkip }, async () => {
  const { addon } = await import('../../../src/backends/cpu/addon.js');
  const a = addon as unknown as KquantAddon;
  assert.throws(() => a.quantMatmul([12, new Uint8Array(2000), null, 16, 256, 32], new Float32Array(256), 1, new Float32Array(16)), /q4_kx16 data holds 2000 bytes, the shape needs 2368/);
  assert.throws(() => a.quantMatmul([14, new Uint8Array(4416), null, 16, 288, 32], new Float32Array(288), 1, new Float32Array(16)), /multiple of 256/);
});

// The 16-row packed Q4_0 / Q8_0 kernels (qmatmul.cc packedTileX2 for 1..4 rows over two groups at
// once, packedTile above): every tile height from 1 to 16
// activation rows (a decode batch runs as one tile over each weight group), more than 16 (tiles of
// 16, then the rest), N not a multiple of 16. Each row's integer dot is exact and its float steps do
// not depend on the tile, so a row in a batch equals the row alone bit for bit; the GGUF-layout
// kernel sums the same products in another order (rounding only); both are within the int8
// activation bound of the reference dequantize-then-f32 product.
test('packed Q4_0 / Q8_0 kernels: tiles of 1..16 rows and beyond == the row alone, == GGUF layout, within the int8 bound', { skip: nativeSkip }, async () => {
  const { addon } = await import('../../../src/backends/cpu/addon.js');
  const a = addon as unknown as KquantAddon;
  const run = (code: number, bytes: Uint8Array, N: number, K: number, x: Float32Array, M: number): Float32Array => {
    const y = new Float32Array(M * N);
    a.quantMatmul([code, bytes, null, N, K, 32], x, M, y);
    return y;
  };
  for (const format of ['q4_0', 'q8_0'] as QuantFormat[]) {
    const code = format === 'q4_0' ? 4 : 3;
    for (const [K, N] of [[64, 37], [96, 16], [32, 1], [256, 65], [64, 20]]) { // 20: a second group of 4 rows
      const w = quantizeWeight(rnd([N, K], 0.5), format, { group: 32 });
      const bytes = w.data as Uint8Array;
      const W = dequantizeValues(bytes, quantParts(w).spec);
      const packed = a.packWeight([code, bytes, null, N, K, 32]);
      assert.ok(packed, `${format}: packWeight returned null`);
      for (const M of [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 33]) {
        const x = Float32Array.from(rnd([M, K]).toFlatArray());
        if (M === 9) x.fill(0, 4 * K, 5 * K); // an all-zero row (activation scale 0)
        const got = run(code + 4, packed!, N, K, x, M);
        const gguf = run(code, bytes, N, K, x, M);
        const what = `${format} M=${M} N=${N} K=${K}`;
        for (const m of new Set([0, Math.floor(M / 2), M - 1])) {
          const alone = run(code + 4, packed!, N, K, x.subarray(m * K, (m + 1) * K), 1);
          for (let n = 0; n < N; n++) assert.ok(Object.is(alone[n], got[m * N + n]), `${what}: row ${m} alone ${alone[n]}, in the batch ${got[m * N + n]}`);
        }
        const tol = bound(format, x, W, M, N, K);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = 0, mag = 0;
            for (let k = 0; k < K; k++) { s += x[m * K + k] * W[n * K + k]; mag += Math.abs(x[m * K + k] * W[n * K + k]); }
            const i = m * N + n;
            assert.ok(Math.abs(got[i] - s) <= tol[i], `${what}: y[${m}][${n}] = ${got[i]}, reference ${s} (tolerance ${tol[i]})`);
            // the same block dot products in another order: a few ulps of the products' magnitude
            assert.ok(Math.abs(got[i] - gguf[i]) <= 1e-5 * mag + 1e-7, `${what}: y[${m}][${n}] packed ${got[i]}, GGUF layout ${gguf[i]}`);
            if (M === 9 && m === 4) assert.equal(got[i], 0, `${what}: zero row`);
          }
        }
      }
    }
  }
});
