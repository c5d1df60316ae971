// Tests for rotary_embedding, scaled_dot_product_attention and top_k: hand-worked cases, explicit
// formulas and loops written here, identities, error messages and symbolic shape inference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops, fromArray, randn, rand, Tensor } from '../../src/index.js';

/** Inputs are f32 and each op rounds its float64 result to f32 once; 1e-5 relative plus 1e-6
 *  absolute leaves ~100 ulps for the O(1) values used here. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what = '', rtol = 1e-5, atol = 1e-6): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    assert.ok(Math.abs(a - e) <= atol + rtol * Math.abs(e), `${what}[${i}]: got ${a}, expected ${e}`);
  }
}
const flat = (t: Tensor): Float64Array => t.toFlatArray();

// ---- rotary_embedding ----

/** cos/sin tables [S, R/2] for the usual frequencies theta_i = base^(-2i/R). */
function ropeTables(seq: number, rotaryDim: number): { cos: Tensor; sin: Tensor; angle: (s: number, i: number) => number } {
  const half = rotaryDim / 2;
  const angle = (s: number, i: number) => s * 10000 ** (-(2 * i) / rotaryDim);
  const c: number[] = [], s: number[] = [];
  for (let p = 0; p < seq; p++) for (let i = 0; i < half; i++) { c.push(Math.cos(angle(p, i))); s.push(Math.sin(angle(p, i))); }
  return { cos: fromArray(c, [seq, half]), sin: fromArray(s, [seq, half]), angle };
}

/** The rotation written per pair from the definition, reading the (f32-stored) tables. */
function ropeLoop(x: Float64Array, shape: number[], cos: Float64Array, sin: Float64Array, rotaryDim: number, interleaved: boolean): Float64Array {
  const d = shape[shape.length - 1], seq = shape[shape.length - 2], half = rotaryDim / 2;
  const out = Float64Array.from(x);
  for (let row = 0; row < x.length / d; row++) {
    const pos = row % seq;
    for (let i = 0; i < half; i++) {
      const [p1, p2] = interleaved ? [2 * i, 2 * i + 1] : [i, i + half];
      const x1 = x[row * d + p1], x2 = x[row * d + p2];
      const c = cos[pos * half + i], s = sin[pos * half + i];
      out[row * d + p1] = x1 * c - x2 * s;
      out[row * d + p2] = x2 * c + x1 * s;
    }
  }
  return out;
}

test('rotary_embedding: hand-worked quarter turn in both layouts', () => {
  const x = fromArray([1, 2, 3, 4], [1, 4]);
  const cos = fromArray([0, 0], [1, 2]), sin = fromArray([1, 1], [1, 2]);
  // NeoX pairs (0, 2), (1, 3): (x1, x2) -> (-x2, x1)
  assert.deepEqual(ops.rotaryEmbedding(x, cos, sin, false).toArray(), [[-3, -4, 1, 2]]);
  // GPT-J pairs (0, 1), (2, 3)
  assert.deepEqual(ops.rotaryEmbedding(x, cos, sin, true).toArray(), [[-2, 1, -4, 3]]);
  // partial rotary dim 2 of head dim 4: only dims 0 and 1 rotate
  assert.deepEqual(ops.rotaryEmbedding(x, fromArray([0], [1, 1]), fromArray([1], [1, 1])).toArray(), [[-2, 1, 3, 4]]);
});

test('rotary_embedding: both layouts match the explicit formula, full and partial rotary dims', () => {
  const shape = [2, 3, 5, 8]; // [B, H, S, D]
  const x = randn(shape, { seed: 1 });
  for (const rotaryDim of [8, 4]) {
    const { cos, sin } = ropeTables(5, rotaryDim);
    for (const interleaved of [false, true]) {
      const y = flat(ops.rotaryEmbedding(x, cos, sin, interleaved));
      const want = ropeLoop(flat(x), shape, flat(cos), flat(sin), rotaryDim, interleaved);
      assertClose(y, want, `R=${rotaryDim} interleaved=${interleaved}`);
      // dims past the rotary dim are copied bit-for-bit
      const xv = flat(x);
      for (let i = 0; i < y.length; i++) if (i % 8 >= rotaryDim) assert.equal(y[i], xv[i]);
    }
  }
});

test('rotary_embedding: the rotation preserves each pair norm and matches the angle form', () => {
  const shape = [4, 6, 16];
  const x = randn(shape, { seed: 2 });
  const { cos, sin, angle } = ropeTables(6, 16);
  const xv = flat(x), y = flat(ops.rotaryEmbedding(x, cos, sin));
  for (let row = 0; row < 24; row++) {
    for (let i = 0; i < 8; i++) {
      const a = row * 16 + i, b = a + 8;
      const before = Math.hypot(xv[a], xv[b]), after = Math.hypot(y[a], y[b]);
      assert.ok(Math.abs(before - after) <= 1e-5 * before + 1e-6, `row ${row} pair ${i}: ${before} vs ${after}`);
      // (x1 + i·x2) · e^{iθ}: the complex-number form of the same rotation, θ from float64
      const t = angle(row % 6, i);
      assert.ok(Math.abs(y[a] - (xv[a] * Math.cos(t) - xv[b] * Math.sin(t))) <= 1e-5 * (1 + before));
    }
  }
});

test('rotary_embedding: f32 tables may rotate bf16 activations', () => {
  const x = randn([3, 8], { seed: 3, dtype: 'bf16' });
  const { cos, sin } = ropeTables(3, 8);
  const y = ops.rotaryEmbedding(x, cos, sin);
  assert.equal(y.dtype, 'bf16');
  // a single bf16 rounding of the float64 result: 2^-8 relative
  assertClose(flat(y), ropeLoop(flat(x), [3, 8], flat(cos), flat(sin), 8, false), 'bf16', 2 ** -8, 1e-6);
});

test('rotary_embedding: errors and symbolic inference', () => {
  const x = randn([2, 5, 8]);
  assert.throws(() => ops.rotaryEmbedding(x, randn([5, 5]), randn([5, 5])), /rotary_embedding: rotary dim 10 \(2 × cos \[5, 5\]\[1\]\) exceeds the head dim 8 of x \[2, 5, 8\]/);
  assert.throws(() => ops.rotaryEmbedding(x, randn([4, 4]), randn([4, 4])), /rotary_embedding: cos \[4, 4\] has 4 positions but x \[2, 5, 8\] has seq 5/);
  assert.throws(() => ops.rotaryEmbedding(x, randn([5, 4]), randn([5, 3])), /rotary_embedding: sin \[5, 3\] must have the shape of cos \[5, 4\]/);
  assert.throws(() => ops.rotaryEmbedding(x, randn([1, 5, 4]), randn([1, 5, 4])), /rotary_embedding: cos must be \[seq, rotaryDim\/2\], got \[1, 5, 4\]/);
  assert.throws(() => ops.rotaryEmbedding(randn([8]), randn([1, 4]), randn([1, 4])), /rotary_embedding: x must be \[\.\.\., seq, headDim\] \(rank >= 2\)/);
  const rope = ops.getOp('rotary_embedding');
  assert.deepEqual(rope.infer([{ dtype: 'f16', shape: ['batch', 8, 'seq', 64] }, { dtype: 'f32', shape: ['seq', 32] }, { dtype: 'f32', shape: ['seq', 32] }], { interleaved: false }),
    [{ dtype: 'f16', shape: ['batch', 8, 'seq', 64] }]);
});

// ---- scaled_dot_product_attention ----

interface AttnCase { b: number; hq: number; hkv: number; lq: number; lk: number; d: number; dv: number }

/** Attention from its definition: explicit score matrix, masks, a max-shifted softmax, weighted sum. */
function attentionLoop(q: Float64Array, k: Float64Array, v: Float64Array, s: AttnCase,
  opts: { causal?: boolean; scale?: number; keep?: (b: number, h: number, i: number, j: number) => boolean; add?: (b: number, h: number, i: number, j: number) => number }): number[] {
  const scale = opts.scale ?? 1 / Math.sqrt(s.d);
  const out: number[] = [];
  for (let b = 0; b < s.b; b++) {
    for (let h = 0; h < s.hq; h++) {
      const kh = Math.floor(h / (s.hq / s.hkv));
      for (let i = 0; i < s.lq; i++) {
        const scores: number[] = [];
        for (let j = 0; j < s.lk; j++) {
          let dot = 0;
          for (let t = 0; t < s.d; t++) dot += q[((b * s.hq + h) * s.lq + i) * s.d + t] * k[((b * s.hkv + kh) * s.lk + j) * s.d + t];
          let sc = dot * scale + (opts.add ? opts.add(b, h, i, j) : 0);
          if (opts.causal && j - (s.lk - s.lq) > i) sc = -Infinity;
          if (opts.keep && !opts.keep(b, h, i, j)) sc = -Infinity;
          scores.push(sc);
        }
        const m = Math.max(...scores);
        const e = scores.map((x) => (m === -Infinity ? 0 : Math.exp(x - m)));
        const z = e.reduce((p, x) => p + x, 0);
        for (let t = 0; t < s.dv; t++) {
          let acc = 0;
          for (let j = 0; j < s.lk; j++) if (z > 0) acc += (e[j] / z) * v[((b * s.hkv + kh) * s.lk + j) * s.dv + t];
          out.push(acc);
        }
      }
    }
  }
  return out;
}

function qkv(s: AttnCase, seed: number): { q: Tensor; k: Tensor; v: Tensor } {
  return {
    q: randn([s.b, s.hq, s.lq, s.d], { seed }),
    k: randn([s.b, s.hkv, s.lk, s.d], { seed: seed + 1 }),
    v: randn([s.b, s.hkv, s.lk, s.dv], { seed: seed + 2 }),
  };
}

test('sdpa: hand-worked: equal scores average the values; one dominant key selects its value', () => {
  const q = fromArray([0, 0], [1, 1, 1, 2]);
  const k = fromArray([1, 2, 3, 4, 5, 6], [1, 1, 3, 2]);
  const v = fromArray([1, 10, 2, 20, 6, 60], [1, 1, 3, 2]);
  assertClose(flat(ops.scaledDotProductAttention(q, k, v)), [3, 30]);
  const q2 = fromArray([100, 0], [1, 1, 1, 2]);
  const k2 = fromArray([1, 0, 0, 0, -1, 0], [1, 1, 3, 2]);
  assertClose(flat(ops.scaledDotProductAttention(q2, k2, v)), [1, 10]);
});

test('sdpa: matches an explicit loop: plain, custom scale, causal (Lq = Lk and Lq < Lk), grouped-query', () => {
  const cases: [AttnCase, { causal?: boolean; scale?: number }, string][] = [
    [{ b: 2, hq: 2, hkv: 2, lq: 3, lk: 4, d: 5, dv: 3 }, {}, 'plain'],
    [{ b: 1, hq: 2, hkv: 2, lq: 4, lk: 4, d: 4, dv: 4 }, { scale: 0.3 }, 'scale'],
    [{ b: 1, hq: 2, hkv: 2, lq: 5, lk: 5, d: 4, dv: 4 }, { causal: true }, 'causal square'],
    [{ b: 2, hq: 2, hkv: 1, lq: 2, lk: 6, d: 4, dv: 3 }, { causal: true }, 'causal Lq < Lk (decode with cache)'],
    [{ b: 1, hq: 6, hkv: 2, lq: 3, lk: 5, d: 8, dv: 8 }, {}, 'GQA 3 query heads per kv head'],
    [{ b: 2, hq: 4, hkv: 1, lq: 1, lk: 7, d: 4, dv: 2 }, { causal: true }, 'MQA single-token decode'],
  ];
  let seed = 10;
  for (const [s, o, what] of cases) {
    const { q, k, v } = qkv(s, (seed += 3));
    const y = ops.scaledDotProductAttention(q, k, v, o);
    assert.deepEqual([...y.shape], [s.b, s.hq, s.lq, s.dv], what);
    assertClose(flat(y), attentionLoop(flat(q), flat(k), flat(v), s, o), what);
  }
});

test('sdpa: bool and float masks broadcast to [B, Hq, Lq, Lk]', () => {
  const s: AttnCase = { b: 2, hq: 4, hkv: 2, lq: 3, lk: 5, d: 4, dv: 4 };
  const { q, k, v } = qkv(s, 50);
  // key padding mask [B, 1, 1, Lk]: batch 0 keeps 3 keys, batch 1 keeps all 5
  const lens = [3, 5];
  const pad: boolean[] = [];
  for (let b = 0; b < 2; b++) for (let j = 0; j < 5; j++) pad.push(j < lens[b]);
  const padMask = fromArray(pad.map(Number), [2, 1, 1, 5], 'bool');
  assertClose(flat(ops.scaledDotProductAttention(q, k, v, { mask: padMask })),
    attentionLoop(flat(q), flat(k), flat(v), s, { keep: (b, _h, _i, j) => j < lens[b] }), 'bool padding');
  // bool mask combined with causal: both apply
  assertClose(flat(ops.scaledDotProductAttention(q, k, v, { mask: padMask, causal: true })),
    attentionLoop(flat(q), flat(k), flat(v), s, { keep: (b, _h, _i, j) => j < lens[b], causal: true }), 'bool + causal');
  // additive float bias [Lq, Lk] (e.g. ALiBi-like), broadcast over batch and heads
  const bias = rand([3, 5], { seed: 60, low: -2, high: 2 });
  const bv = flat(bias);
  assertClose(flat(ops.scaledDotProductAttention(q, k, v, { mask: bias })),
    attentionLoop(flat(q), flat(k), flat(v), s, { add: (_b, _h, i, j) => bv[i * 5 + j] }), 'float [Lq, Lk]');
  // per-head float mask [1, Hq, 1, Lk]
  const headBias = randn([1, 4, 1, 5], { seed: 61 });
  const hb = flat(headBias);
  assertClose(flat(ops.scaledDotProductAttention(q, k, v, { mask: headBias, scale: 0.5 })),
    attentionLoop(flat(q), flat(k), flat(v), s, { add: (_b, h, _i, j) => hb[h * 5 + j], scale: 0.5 }), 'float per head');
});

test('sdpa: a row with every key masked outputs zeros (documented choice, not NaN)', () => {
  const s: AttnCase = { b: 1, hq: 1, hkv: 1, lq: 2, lk: 3, d: 2, dv: 2 };
  const { q, k, v } = qkv(s, 70);
  const mask = fromArray([1, 1, 0, 0, 0, 0], [2, 3], 'bool'); // row 1 keeps nothing
  const y = flat(ops.scaledDotProductAttention(q, k, v, { mask }));
  assertClose(y.subarray(0, 2), attentionLoop(flat(q), flat(k), flat(v), s, { keep: (_b, _h, i, j) => i === 0 && j < 2 }).slice(0, 2));
  assert.deepEqual([...y.subarray(2)], [0, 0]);
  // a float mask of -Infinity behaves the same
  const neg = fromArray([0, 0, -Infinity, -Infinity, -Infinity, -Infinity], [2, 3]);
  assert.deepEqual([...flat(ops.scaledDotProductAttention(q, k, v, { mask: neg })).subarray(2)], [0, 0]);
  // causal with Lq > Lk: the first Lq - Lk queries see no key
  const s2: AttnCase = { b: 1, hq: 1, hkv: 1, lq: 4, lk: 2, d: 2, dv: 2 };
  const t = qkv(s2, 80);
  const y2 = flat(ops.scaledDotProductAttention(t.q, t.k, t.v, { causal: true }));
  assert.deepEqual([...y2.subarray(0, 4)], [0, 0, 0, 0]);
  assertClose(y2.subarray(4), attentionLoop(flat(t.q), flat(t.k), flat(t.v), s2, { causal: true }).slice(4));
});

test('sdpa: errors', () => {
  const q = randn([1, 4, 3, 8]), k = randn([1, 2, 5, 8]), v = randn([1, 2, 5, 6]);
  assert.throws(() => ops.scaledDotProductAttention(randn([1, 3, 8]), randn([1, 5, 8]), randn([1, 5, 8])),
    /scaled_dot_product_attention: q must be rank 4 \[B, Hq, Lq, D\], got \[1, 3, 8\]/);
  assert.throws(() => ops.scaledDotProductAttention(q, randn([1, 3, 5, 8]), randn([1, 3, 5, 6])),
    /scaled_dot_product_attention: query heads 4 must be a multiple of key\/value heads 3/);
  assert.throws(() => ops.scaledDotProductAttention(q, randn([1, 2, 5, 7]), v), /scaled_dot_product_attention: q and k head dims differ: q is \[1, 4, 3, 8\], k is \[1, 2, 5, 7\]/);
  assert.throws(() => ops.scaledDotProductAttention(q, k, randn([1, 2, 4, 6])), /k and v must agree on heads and length/);
  assert.throws(() => ops.scaledDotProductAttention(q, randn([2, 2, 5, 8]), randn([2, 2, 5, 6])), /batch sizes differ/);
  assert.throws(() => ops.scaledDotProductAttention(q, k, v, { mask: randn([3, 4]) }),
    /scaled_dot_product_attention: mask \[3, 4\] does not broadcast to the score shape \[1, 4, 3, 5\]/);
  assert.throws(() => ops.scaledDotProductAttention(q, k, v, { mask: fromArray([1, 0, 1, 1, 1], 'i32') }), /mask has dtype i32; it must be bool/);
  assert.throws(() => ops.scaledDotProductAttention(q, randn([1, 2, 5, 8], { dtype: 'f16' }), v), /k has dtype f16 but q has dtype f32/);
});

test('sdpa: symbolic shape inference', () => {
  const attn = ops.getOp('scaled_dot_product_attention');
  const m = (shape: (number | string)[], dtype: 'f32' | 'bool' = 'f32') => ({ dtype, shape });
  assert.deepEqual(attn.infer([m(['batch', 8, 'seq', 64]), m(['batch', 2, 'kv', 64]), m(['batch', 2, 'kv', 32]), m(['batch', 1, 'seq', 'kv'], 'bool')], { causal: true, scale: 0 }),
    [{ dtype: 'f32', shape: ['batch', 8, 'seq', 32] }]);
  assert.throws(() => attn.infer([m(['batch', 8, 'seq', 64]), m(['batch', 3, 'kv', 64]), m(['batch', 3, 'kv', 64]), null], { causal: false, scale: 0 }), /query heads 8 must be a multiple of key\/value heads 3/);
});

// ---- top_k ----

test('top_k: values and indices, ties keep the lower index first', () => {
  const x = fromArray([1, 3, 2, 3, 0]);
  const big = ops.topk(x, 3);
  assert.deepEqual(big.values.toArray(), [3, 3, 2]);
  assert.deepEqual(big.indices.toArray(), [1, 3, 2]);
  assert.equal(big.indices.dtype, 'i64');
  assert.equal(big.values.dtype, 'f32');
  const small = ops.topk(x, 2, -1, false);
  assert.deepEqual(small.values.toArray(), [0, 1]);
  assert.deepEqual(small.indices.toArray(), [4, 0]);
  const ties = ops.topk(fromArray([5, 5, 5, 5]), 2, 0, false);
  assert.deepEqual(ties.indices.toArray(), [0, 1]);
  // sorted=false keeps the chosen entries in their original order
  const unsorted = ops.topk(fromArray([1, 9, 4, 7]), 2, -1, true, false);
  assert.deepEqual(unsorted.values.toArray(), [9, 7]);
  assert.deepEqual(unsorted.indices.toArray(), [1, 3]);
  // k = size sorts the whole axis; k = 0 is empty
  assert.deepEqual(ops.topk(fromArray([2, 1, 3]), 3).values.toArray(), [3, 2, 1]);
  assert.deepEqual([...ops.topk(fromArray([2, 1, 3]), 0).values.shape], [0]);
});

test('top_k: along axis 0 of a matrix, and a middle axis against a selection loop', () => {
  const x = fromArray([[1, 8], [7, 2], [4, 6]]);
  const r = ops.topk(x, 2, 0);
  assert.deepEqual(r.values.toArray(), [[7, 8], [4, 6]]);
  assert.deepEqual(r.indices.toArray(), [[1, 0], [2, 2]]);

  // [2, 6, 3] along axis 1, values from a small integer set so ties are common
  const shape = [2, 6, 3];
  const data = flat(rand(shape, { seed: 90, low: 0, high: 4 })).map(Math.floor);
  const t = fromArray(data, shape);
  for (const largest of [true, false]) {
    const { values, indices } = ops.topk(t, 4, 1, largest);
    const gotV = flat(values), gotI = flat(indices);
    for (let o = 0; o < 2; o++) {
      for (let c = 0; c < 3; c++) {
        // repeated selection: take the best remaining entry, first index on ties
        const taken = new Set<number>();
        for (let j = 0; j < 4; j++) {
          let best = -1;
          for (let i = 0; i < 6; i++) {
            if (taken.has(i)) continue;
            const vi = data[(o * 6 + i) * 3 + c];
            if (best < 0 || (largest ? vi > data[(o * 6 + best) * 3 + c] : vi < data[(o * 6 + best) * 3 + c])) best = i;
          }
          taken.add(best);
          const at = (o * 4 + j) * 3 + c;
          assert.equal(gotI[at], best, `largest=${largest} o=${o} c=${c} j=${j}`);
          assert.equal(gotV[at], data[(o * 6 + best) * 3 + c]);
        }
      }
    }
  }
});

test('top_k: integer inputs keep exact values; NaN ranks above every number', () => {
  const big = 2 ** 53 + 2;
  const r = ops.topk(fromArray([3, big, -7], 'i64'), 2);
  assert.equal(r.values.dtype, 'i64');
  assert.deepEqual([...(r.values.data as BigInt64Array)], [BigInt(big), 3n]);
  const n = ops.topk(fromArray([1, NaN, 5]), 2);
  assert.ok(Number.isNaN(flat(n.values)[0]));
  assert.deepEqual(n.indices.toArray(), [1, 2]);
  assert.deepEqual(ops.topk(fromArray([1, NaN, 5]), 2, 0, false).indices.toArray(), [0, 2]);
});

test('top_k: errors and symbolic inference', () => {
  assert.throws(() => ops.topk(fromArray([1, 2, 3]), 4), /top_k: k 4 is out of range for axis 0 of size 3 in x \[3\]/);
  assert.throws(() => ops.topk(fromArray([1, 2, 3]), -1), /top_k: k -1 is out of range/);
  assert.throws(() => ops.topk(randn([2, 3]), 1, 2), /top_k: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => ops.topk(fromArray(1), 1), /top_k: x must have at least one dim/);
  assert.throws(() => ops.topk(fromArray([1, 0], 'bool'), 1), /top_k: x has dtype bool/);
  const tk = ops.getOp('top_k');
  assert.deepEqual(tk.infer([{ dtype: 'f16', shape: ['batch', 'vocab'] }], { k: 50, axis: -1, largest: true, sorted: true }),
    [{ dtype: 'f16', shape: ['batch', 50] }, { dtype: 'i64', shape: ['batch', 50] }]);
});
