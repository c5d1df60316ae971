// Weight-only quantized matmul (native/quant): every format against an explicit float64 loop over
// the same quantized values, and quantized models against fp32 by top-1 agreement and KL divergence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randn } from '../../src/index.js';
import {
  loadLlama, quantizeMatrix, dequantizeMatrix, packMatrix, klDivergence, argmax, type WeightMatrix,
} from '../../src/llm/index.js';
import { llmAddon, nativeWeightSpec } from '../../src/llm/weights.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';
import { compiledModel, type CompiledSequence } from './compiled-sequence.js';

/** x rounded as the kernels quantize activations: per 32 values, d = max|x|/127, q = round(x/d). */
function quantizeActivations(x: Float32Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]));
    const d = Math.fround(amax / 127), id = d ? Math.fround(1 / d) : 0;
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(x[b + j] * id);
      out[b + j] = d * (v - Math.floor(v) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v)); // nearbyint: ties to even
    }
  }
  return out;
}

test('quantized and dense matmul kernels equal an explicit loop over the stored values', () => {
  const native = llmAddon('test');
  const N = 37, K = 256, M = 6; // N and M not multiples of the 4x4 register tile
  const W = randn([N, K], { seed: 3 }).data as Float32Array;
  const X = randn([M, K], { seed: 4 }).data as Float32Array;
  const src: WeightMatrix = { format: 'f32', rows: N, cols: K, data: W, scales: null, groupSize: 32 };
  const cases: [string, WeightMatrix][] = [
    ['f32', src],
    ['q8_0', quantizeMatrix(src, 'q8_0')],
    ['q4_0', quantizeMatrix(src, 'q4_0')],
    ['int8', quantizeMatrix(src, 'int8')],
    ['int4/32', quantizeMatrix(src, 'int4', 32)],
    ['int4/64', quantizeMatrix(src, 'int4', 64)],
    ['int4/128', quantizeMatrix(src, 'int4', 128)],
  ];
  for (const [name, w] of cases) {
    const deq = dequantizeMatrix(w);
    const xs = w.format === 'f32' ? Float64Array.from(X) : quantizeActivations(X);
    const y = new Float32Array(M * N);
    native.quantMatmul(nativeWeightSpec(w), X, M, y);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += xs[m * K + k] * deq[n * K + k];
        // Same products, fp32 accumulation of 256 terms of magnitude ~1: 1e-4 absolute.
        assert.ok(Math.abs(s - y[m * N + n]) < 1e-4, `${name} [${m}, ${n}]: ${y[m * N + n]} vs ${s}`);
      }
    }
    // Storage error of the format itself, relative to the weights' max: int8/q8_0 <= 1/254; 4-bit <= 1/8
    // (ggml's scheme maps the largest-magnitude value to -8, so the opposite extreme clamps at +7).
    let err = 0, mx = 0;
    for (let i = 0; i < W.length; i++) { err = Math.max(err, Math.abs(deq[i] - W[i])); mx = Math.max(mx, Math.abs(W[i])); }
    const bound = w.format === 'f32' ? 0 : w.format === 'int8' || w.format === 'q8_0' ? 1 / 200 : 1 / 8;
    assert.ok(err <= bound * mx + 1e-3 * mx, `${name}: max weight error ${err} (max |w| ${mx})`);
  }
});

test('f16 and bf16 weights: the kernel converts in registers', () => {
  const native = llmAddon('test');
  const N = 9, K = 40; // K not a multiple of the vector width
  const W = randn([N, K], { seed: 5 }), X = randn([3, K], { seed: 6 }).data as Float32Array;
  for (const dtype of ['f16', 'bf16'] as const) {
    const stored = W.cast(dtype);
    const w: WeightMatrix = { format: dtype, rows: N, cols: K, data: stored.data as Uint16Array, scales: null, groupSize: 32 };
    const deq = stored.cast('f32').data as Float32Array;
    const y = new Float32Array(3 * N);
    native.quantMatmul(nativeWeightSpec(w), X, 3, y);
    for (let m = 0; m < 3; m++) for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += X[m * K + k] * deq[n * K + k];
      assert.ok(Math.abs(s - y[m * N + n]) < 1e-4, `${dtype} [${m}, ${n}]`);
    }
  }
});

test('packed x16 layouts: same values as the GGUF blocks, kernels equal an explicit loop (row tails, tile tails)', () => {
  const native = llmAddon('test');
  // N = 37: two full 16-row groups and a 5-row tail (padded rows must not leak into the output);
  // N = 20: decode's two-group tile with a partial second group. K = 96: not a multiple of 64 or
  // 256; M covers decode (1), the 8-row VNNI tile and its tails (5, 13), and AMX's 16-row tiles
  // with a VNNI tail (37) where the CPU has AMX-INT8.
  const K = 96;
  for (const N of [37, 20]) {
    const W = randn([N, K], { seed: 13 + N }).data as Float32Array;
    const src: WeightMatrix = { format: 'f32', rows: N, cols: K, data: W, scales: null, groupSize: 32 };
    // Formats without a packed layout come back unchanged.
    assert.equal(packMatrix(src), src);
    for (const format of ['q8_0', 'q4_0'] as const) {
      const plain = quantizeMatrix(src, format);
      const packed = packMatrix(plain);
      assert.equal(packed.format, `${format}x16`);
      assert.equal(packed.data.byteLength, (Math.ceil(N / 16) * 16 * K / 32) * (format === 'q8_0' ? 34 : 18), 'rows padded to a multiple of 16');
      // The relayout loses nothing: the same values, bit for bit.
      assert.deepEqual(dequantizeMatrix(packed), dequantizeMatrix(plain), `${format}: packed values`);
      const deq = dequantizeMatrix(plain);
      for (const M of [1, 5, 13, 37]) {
        const X = randn([M, K], { seed: 20 + M }).data as Float32Array;
        const xs = quantizeActivations(X);
        const y = new Float32Array(M * N).fill(NaN);
        native.quantMatmul(nativeWeightSpec(packed), X, M, y);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += xs[m * K + k] * deq[n * K + k];
            // Integer dot per block, one fp32 scale product per block: 1e-4 absolute as above.
            assert.ok(Math.abs(s - y[m * N + n]) < 1e-4, `${format} M=${M} [${m}, ${n}]: ${y[m * N + n]} vs ${s}`);
          }
        }
      }
    }
  }
});

test('dense weights from 16 input rows on (packed fp32 GEMM path) equal an explicit loop', () => {
  const native = llmAddon('test');
  const N = 45, K = 40, M = 37; // none a multiple of the 14x32 microkernel tile or the vector width
  const W = randn([N, K], { seed: 31 }), X = randn([M, K], { seed: 32 }).data as Float32Array;
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    const stored = dtype === 'f32' ? W : W.cast(dtype);
    const w: WeightMatrix = { format: dtype, rows: N, cols: K, data: stored.data as Float32Array | Uint16Array, scales: null, groupSize: 32 };
    const deq = stored.cast('f32').data as Float32Array;
    const y = new Float32Array(M * N).fill(NaN);
    native.quantMatmul(nativeWeightSpec(w), X, M, y);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += X[m * K + k] * deq[n * K + k];
      assert.ok(Math.abs(s - y[m * N + n]) < 1e-4, `${dtype} [${m}, ${n}]: ${y[m * N + n]} vs ${s}`);
    }
  }
});

test('quantized models vs fp32: top-1 agreement and KL divergence (figures printed)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-quant-'));
  try {
    const file = path.join(dir, 'm.gguf');
    // Wider than the other fixtures so the statistics are not dominated by one matrix.
    writeTinyLlamaGguf(file, { dim: 128, heads: 4, kvHeads: 2, ffn: 256, layers: 2, seed: 21, scale: 0.1 });
    const loaded = loadLlama(file);
    const ids = Array.from({ length: 48 }, (_, i) => 3 + ((i * 37) % (loaded.config.vocabSize - 3)));
    // every position's logits from the compiled paged step (quantized weights as qgemm params)
    const all = (s: CompiledSequence) => s.forward(ids, true);
    const ref = all(compiledModel(loaded.config, loaded.weights));
    const V = loaded.config.vocabSize;
    const figures: Record<string, { top1: number; kl: number }> = {};
    const variants: [string, () => CompiledSequence][] = [
      ['int8', () => compiledModel(loaded.config, loaded.weights, { precision: 'int8' })],
      ['int4/32', () => compiledModel(loaded.config, loaded.weights, { precision: 'int4', groupSize: 32 })],
      ['int4/128', () => compiledModel(loaded.config, loaded.weights, { precision: 'int4', groupSize: 128 })],
    ];
    for (const type of ['Q8_0', 'Q4_0'] as const) {
      const qf = path.join(dir, `${type}.gguf`);
      writeTinyLlamaGguf(qf, { dim: 128, heads: 4, kvHeads: 2, ffn: 256, layers: 2, seed: 21, scale: 0.1, type });
      variants.push([type, () => { const q = loadLlama(qf); return compiledModel(q.config, q.weights); }]);
    }
    for (const [name, make] of variants) {
      const got = all(make());
      let agree = 0, kl = 0;
      for (let t = 0; t < ids.length; t++) {
        const r = ref.subarray(t * V, (t + 1) * V), g = got.subarray(t * V, (t + 1) * V);
        if (argmax(r) === argmax(g)) agree++;
        kl += klDivergence(r, g);
      }
      figures[name] = { top1: agree / ids.length, kl: kl / ids.length };
    }
    console.log(`quantized vs fp32 (48 positions, seeded 2-layer dim-128 model): ${JSON.stringify(figures)}`);
    // Loose floors that still catch a broken kernel (a wrong layout gives ~1/vocab agreement, KL > 1).
    // Random-weight models have flat logits with small top-1 margins, so 4-bit agreement is modest.
    for (const [name, f] of Object.entries(figures)) {
      const eight = name === 'int8' || name === 'Q8_0';
      assert.ok(f.top1 >= (eight ? 0.85 : 0.3), `${name}: top-1 agreement ${f.top1}`);
      assert.ok(f.kl <= (eight ? 0.01 : 0.2), `${name}: mean KL ${f.kl}`);
    }
    assert.ok(figures['int8'].kl < figures['int4/32'].kl, 'int8 is closer to fp32 than int4');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('quantizeMatrix validates its inputs', () => {
  const w: WeightMatrix = { format: 'f32', rows: 2, cols: 48, data: new Float32Array(96), scales: null, groupSize: 32 };
  assert.throws(() => quantizeMatrix(w, 'int8'), /cols 48 must be a multiple of 32/);
  const w2 = { ...w, cols: 64, data: new Float32Array(128) };
  assert.throws(() => quantizeMatrix(w2, 'int4', 128), /int4 groupSize must be 32, 64 or 128 and divide cols 64, got 128/);
});
