// Tests for matmul, linear and conv2d against explicit loops written here (NumPy matmul
// semantics, a 7-loop convolution), plus shape errors and symbolic shape inference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops, fromArray, randn, Tensor } from '../../src/index.js';
import { dimAdd } from '../../src/tensor/shape.js';

/** Inputs are f32 and the op rounds its float64 result to f32 once; sums here have at most a few
 *  hundred O(1) terms, so 1e-5 relative plus 1e-5 absolute (for sums that cancel) is ample. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what = '', rtol = 1e-5, atol = 1e-5): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    assert.ok(Math.abs(a - e) <= atol + rtol * Math.abs(e), `${what}[${i}]: got ${a}, expected ${e}`);
  }
}
const flat = (t: Tensor): Float64Array => t.toFlatArray();
const prod = (s: number[]): number => s.reduce((p, d) => p * d, 1);

/** NumPy matmul, written from its definition: promote 1-D operands, broadcast batch dims by
 *  walking every output multi-index, then drop the promoted dims. */
function matmulLoop(a: Float64Array, aShape: number[], b: Float64Array, bShape: number[]): { shape: number[]; data: number[] } {
  const A = aShape.length === 1 ? [1, ...aShape] : aShape;
  const B = bShape.length === 1 ? [...bShape, 1] : bShape;
  const [m, k] = A.slice(-2), n = B[B.length - 1];
  const ab = A.slice(0, -2), bb = B.slice(0, -2);
  const r = Math.max(ab.length, bb.length);
  const pad = (s: number[]) => [...new Array(r - s.length).fill(1), ...s];
  const pa = pad(ab), pb = pad(bb);
  const batch = pa.map((d, i) => Math.max(d, pb[i]));
  const data: number[] = [];
  for (let t = 0; t < prod(batch); t++) {
    // multi-index of t in batch, mapped to each operand (size-1 dims read index 0)
    let rem = t, ai = 0, bi = 0, aStride = 1, bStride = 1;
    for (let d = r - 1; d >= 0; d--) {
      const idx = rem % batch[d];
      rem = Math.floor(rem / batch[d]);
      ai += (pa[d] === 1 ? 0 : idx) * aStride; aStride *= pa[d];
      bi += (pb[d] === 1 ? 0 : idx) * bStride; bStride *= pb[d];
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[ai * m * k + i * k + p] * b[bi * k * n + p * n + j];
        data.push(s);
      }
    }
  }
  const shape = [...batch, ...(aShape.length > 1 ? [m] : []), ...(bShape.length > 1 ? [n] : [])];
  return { shape, data };
}

test('matmul: hand-worked 2x2', () => {
  const c = ops.matmul(fromArray([[1, 2], [3, 4]]), fromArray([[5, 6], [7, 8]]));
  assert.deepEqual(c.toArray(), [[19, 22], [43, 50]]);
  assert.equal(ops.matmul(fromArray([1, 2, 3]), fromArray([4, 5, 6])).item(), 32);
});

test('matmul: matches an explicit loop, incl. 1-D operands and broadcast batch dims', () => {
  const cases: [number[], number[]][] = [
    [[2, 3], [3, 4]],
    [[3], [3, 4]], // 1-D a: row vector, dim removed
    [[2, 3], [3]], // 1-D b: column vector, dim removed
    [[3], [3]], // dot product -> scalar
    [[5, 2, 3], [3]],
    [[4], [2, 4, 3]],
    [[2, 1, 3, 4], [5, 4, 2]], // batch [2, 1] x [5] -> [2, 5]
    [[4, 3], [2, 3, 5]], // matrix broadcast against a batch
    [[1, 2, 3], [6, 3, 1]],
    [[2, 0, 3], [3, 4]], // empty rows
    [[2, 3, 0], [0, 4]], // empty inner dim -> zeros
  ];
  let seed = 100;
  for (const [as, bs] of cases) {
    const a = randn(as, { seed: seed++ }), b = randn(bs, { seed: seed++ });
    const c = ops.matmul(a, b);
    const want = matmulLoop(flat(a), as, flat(b), bs);
    assert.deepEqual([...c.shape], want.shape, `shape of [${as}] @ [${bs}]`);
    assertClose(flat(c), want.data, `[${as}] @ [${bs}]`);
  }
});

test('matmul: f16 and bf16 round once from a float64 accumulation', () => {
  const a32 = randn([3, 8], { seed: 1 }), b32 = randn([8, 2], { seed: 2 });
  for (const dt of ['f16', 'bf16'] as const) {
    const a = fromArray(flat(a32), [3, 8], dt), b = fromArray(flat(b32), [8, 2], dt);
    const c = ops.matmul(a, b);
    assert.equal(c.dtype, dt);
    const exact = matmulLoop(flat(a), [3, 8], flat(b), [8, 2]).data;
    // one rounding of the exact result: half an ulp, 2^-11 (f16) or 2^-8 (bf16) relative
    assertClose(flat(c), exact, dt, dt === 'f16' ? 2 ** -11 : 2 ** -8, 1e-6);
  }
});

test('matmul: errors', () => {
  assert.throws(() => ops.matmul(randn([2, 3, 4]), randn([5, 6])), { name: 'RangeError', message: 'matmul: inner dims differ: a is [2, 3, 4], b is [5, 6]' });
  assert.throws(() => ops.matmul(randn([3]), randn([4])), /matmul: inner dims differ: a is \[3\], b is \[4\]/);
  assert.throws(() => ops.matmul(randn([2, 3, 4]), randn([3, 4, 5])), /matmul: batch dims do not broadcast: a is \[2, 3, 4\], b is \[3, 4, 5\]/);
  assert.throws(() => ops.matmul(fromArray(2), randn([3])), /matmul: operands must have at least one dim/);
  assert.throws(() => ops.matmul(fromArray([1, 2], 'i32'), fromArray([1, 2], 'i32')), /matmul: a has dtype i32; matmul needs floating-point tensors/);
  assert.throws(() => ops.matmul(randn([2, 2]), randn([2, 2], { dtype: 'f16' })), /matmul: b has dtype f16 but a has dtype f32; they must match/);
});

test('matmul: symbolic shape inference', () => {
  const mm = ops.getOp('matmul');
  const infer = (a: (number | string)[], b: (number | string)[]) => mm.infer([{ dtype: 'f32', shape: a }, { dtype: 'f32', shape: b }], {})[0].shape;
  assert.deepEqual(infer(['batch', 'seq', 64], [64, 128]), ['batch', 'seq', 128]);
  assert.deepEqual(infer(['batch', 8, 'seq', 64], ['batch', 8, 64, 'seq']), ['batch', 8, 'seq', 'seq']);
  assert.deepEqual(infer(['batch', 1, 4, 8], [3, 8, 2]), ['batch', 3, 4, 2]);
  assert.deepEqual(infer(['k'], ['k', 5]), [5]);
  // a symbolic inner dim cannot be shown to differ from a concrete one
  assert.deepEqual(infer([2, 'hidden'], [64, 3]), [2, 3]);
  assert.throws(() => infer(['batch', 3, 4], [5, 6]), /matmul: inner dims differ: a is \[batch, 3, 4\], b is \[5, 6\]/);
});

test('linear equals matmul with the transposed weight plus bias', () => {
  for (const xs of [[5], [3, 5], [2, 3, 5]]) {
    const x = randn(xs, { seed: 20 }), w = randn([4, 5], { seed: 21 }), b = randn([4], { seed: 22 });
    const wv = flat(w), bv = flat(b);
    const wt = new Float64Array(20);
    for (let o = 0; o < 4; o++) for (let i = 0; i < 5; i++) wt[i * 4 + o] = wv[o * 5 + i];
    const viaMatmul = flat(ops.matmul(x, fromArray(wt, [5, 4])));
    const y = ops.linear(x, w, b);
    assert.deepEqual([...y.shape], [...xs.slice(0, -1), 4]);
    assertClose(flat(y), viaMatmul.map((v, i) => v + bv[i % 4]), `linear ${xs}`);
    assertClose(flat(ops.linear(x, w)), viaMatmul, `linear no bias ${xs}`);
  }
});

test('linear: errors and symbolic inference', () => {
  assert.throws(() => ops.linear(randn([2, 3]), randn([4, 5])), /linear: x \[2, 3\] has 3 input features but weight \[4, 5\] expects 5/);
  assert.throws(() => ops.linear(randn([2, 5]), randn([4, 5]), randn([3])), /linear: bias \[3\] must be \[out\] = \[4\] for weight \[4, 5\]/);
  assert.throws(() => ops.linear(randn([2, 5]), randn([5])), /linear: weight must be \[out, in\], got \[5\]/);
  assert.throws(() => ops.linear(randn([2, 5]), randn([4, 5], { dtype: 'bf16' })), /linear: weight has dtype bf16 but x has dtype f32/);
  const lin = ops.getOp('linear');
  assert.deepEqual(lin.infer([{ dtype: 'bf16', shape: ['batch', 'seq', 64] }, { dtype: 'bf16', shape: [256, 64] }, { dtype: 'bf16', shape: [256] }], {}),
    [{ dtype: 'bf16', shape: ['batch', 'seq', 256] }]);
});

interface ConvOpts { stride: [number, number]; padding: [number, number]; dilation: [number, number]; groups: number }

/** Convolution straight from its definition: for every output element, sum over the input
 *  channels of its group and the kernel window, reading zero outside the input. */
function conv2dLoop(x: Float64Array, xs: number[], w: Float64Array, ws: number[], b: Float64Array | null, o: ConvOpts): { shape: number[]; data: number[] } {
  const [n, c, h, wd] = xs, [oc, cg, kh, kw] = ws;
  const oh = Math.floor((h + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0]) + 1;
  const ow = Math.floor((wd + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1]) + 1;
  const ocPerGroup = oc / o.groups;
  const data: number[] = [];
  for (let bi = 0; bi < n; bi++) {
    for (let f = 0; f < oc; f++) {
      const g = Math.floor(f / ocPerGroup);
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          let s = b ? b[f] : 0;
          for (let ci = 0; ci < cg; ci++) {
            for (let u = 0; u < kh; u++) {
              for (let v = 0; v < kw; v++) {
                const yi = i * o.stride[0] - o.padding[0] + u * o.dilation[0];
                const xj = j * o.stride[1] - o.padding[1] + v * o.dilation[1];
                if (yi < 0 || yi >= h || xj < 0 || xj >= wd) continue;
                s += x[((bi * c + g * cg + ci) * h + yi) * wd + xj] * w[((f * cg + ci) * kh + u) * kw + v];
              }
            }
          }
          data.push(s);
        }
      }
    }
  }
  return { shape: [n, oc, oh, ow], data };
}

test('conv2d: hand-worked 2x2 box filter', () => {
  const x = fromArray([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]);
  const w = fromArray([1, 1, 1, 1], [1, 1, 2, 2]);
  assert.deepEqual(ops.conv2d(x, w).toArray(), [[[[12, 16], [24, 28]]]]);
  // padding 1 with a 1x1 kernel of 2 and bias 1: border of 1s around 2x
  const y = ops.conv2d(fromArray([1, 2, 3, 4], [1, 1, 2, 2]), fromArray([2], [1, 1, 1, 1]), fromArray([1]), { padding: 1 });
  assert.deepEqual(y.toArray(), [[[[1, 1, 1, 1], [1, 3, 5, 1], [1, 7, 9, 1], [1, 1, 1, 1]]]]);
});

test('conv2d: matches a 7-loop convolution for stride/padding/dilation/groups combinations', () => {
  const cases: { x: number[]; w: number[]; o: Partial<ConvOpts>; bias: boolean; what: string }[] = [
    { x: [2, 3, 7, 6], w: [4, 3, 3, 3], o: { padding: [1, 1] }, bias: true, what: 'same 3x3' },
    { x: [1, 3, 7, 7], w: [2, 3, 3, 3], o: { stride: [2, 2], padding: [1, 1] }, bias: false, what: 'stride 2' },
    { x: [1, 2, 9, 8], w: [3, 2, 3, 2], o: { dilation: [2, 3], padding: [2, 1] }, bias: true, what: 'dilation' },
    { x: [1, 2, 6, 7], w: [2, 2, 3, 3], o: { stride: [1, 2], padding: [2, 0] }, bias: true, what: 'asymmetric' },
    { x: [2, 4, 5, 5], w: [6, 2, 3, 3], o: { groups: 2, padding: [1, 1] }, bias: true, what: 'groups 2' },
    { x: [1, 4, 6, 6], w: [4, 1, 3, 3], o: { groups: 4, padding: [1, 1] }, bias: true, what: 'depthwise' },
    { x: [1, 3, 5, 5], w: [6, 1, 3, 3], o: { groups: 3, stride: [2, 2] }, bias: false, what: 'depthwise multiplier 2' },
    { x: [2, 3, 8, 12], w: [5, 3, 4, 4], o: { stride: [4, 4] }, bias: true, what: 'patch embed' },
    { x: [1, 2, 3, 3], w: [1, 2, 5, 5], o: { padding: [1, 1] }, bias: false, what: 'kernel larger than input' },
  ];
  let seed = 300;
  for (const { x: xs, w: ws, o, bias, what } of cases) {
    const x = randn(xs, { seed: seed++ }), w = randn(ws, { seed: seed++ });
    const b = bias ? randn([ws[0]], { seed: seed++ }) : null;
    const opts: ConvOpts = { stride: o.stride ?? [1, 1], padding: o.padding ?? [0, 0], dilation: o.dilation ?? [1, 1], groups: o.groups ?? 1 };
    const y = ops.conv2d(x, w, b, opts);
    const want = conv2dLoop(flat(x), xs, flat(w), ws, b ? flat(b) : null, opts);
    assert.deepEqual([...y.shape], want.shape, what);
    assertClose(flat(y), want.data, what);
  }
});

test('conv2d: errors', () => {
  const x = randn([1, 4, 5, 5], { seed: 1 });
  assert.throws(() => ops.conv2d(x, randn([2, 3, 3, 3])), /conv2d: channel mismatch: x has 4 channels, weight expects 3 per group × 1 groups = 3; x is \[1, 4, 5, 5\], weight is \[2, 3, 3, 3\]/);
  assert.throws(() => ops.conv2d(x, randn([3, 2, 3, 3]), null, { groups: 2 }), /conv2d: output channels 3 are not divisible by groups 2/);
  assert.throws(() => ops.conv2d(x, randn([3, 1, 3, 3]), null, { groups: 3 }), /conv2d: input channels 4 are not divisible by groups 3/);
  assert.throws(() => ops.conv2d(x, randn([2, 4, 7, 3])), /conv2d: output height would be -1 \(input 5, kernel 7, stride 1, padding 0, dilation 1\)/);
  assert.throws(() => ops.conv2d(x, randn([2, 4, 3, 3]), null, { dilation: 3 }), /conv2d: output height would be -1/);
  assert.throws(() => ops.conv2d(randn([4, 5, 5]), randn([2, 4, 3, 3])), /conv2d: x must be \[N, C, H, W\], got \[4, 5, 5\]/);
  assert.throws(() => ops.conv2d(x, randn([2, 4, 3, 3]), randn([3])), /conv2d: bias \[3\] must be \[O\] = \[2\]/);
  assert.throws(() => ops.conv2d(x, randn([2, 4, 3, 3]), null, { stride: 0 }), /conv2d: stride must be two integers >= 1, got \[0, 0\]/);
  assert.throws(() => ops.conv2d(x, randn([2, 4, 3, 3], { dtype: 'f16' })), /conv2d: weight has dtype f16 but x has dtype f32/);
});

test('conv2d: symbolic shape inference', () => {
  const conv = ops.getOp('conv2d');
  const infer = (xs: (number | string)[], ws: number[], a: Partial<ConvOpts>) =>
    conv.infer([{ dtype: 'f32', shape: xs }, { dtype: 'f32', shape: ws }, null], { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, ...a })[0].shape;
  // "same" convolution keeps symbolic spatial dims
  assert.deepEqual(infer(['batch', 3, 'h', 'w'], [8, 3, 3, 3], { padding: [1, 1] }), ['batch', 8, 'h', 'w']);
  // patch embedding on dims known to be multiples of the patch size
  assert.deepEqual(infer(['batch', 3, '16*ph', '16*pw'], [64, 3, 16, 16], { stride: [16, 16] }), ['batch', 64, 'ph', 'pw']);
  // stride 2, kernel 3, padding 1 on an even dim halves it exactly
  assert.deepEqual(infer([1, 3, '2*h', 8], [4, 3, 3, 3], { stride: [2, 2], padding: [1, 1] }), [1, 4, 'h', 4]);
  // no padding, stride 1: h - 2, in whatever sum form shape.ts writes
  assert.deepEqual(infer([1, 3, 'h', 8], [4, 3, 3, 3], {}), [1, 4, dimAdd('h', -2), 6]);
  assert.throws(() => infer([1, 3, 'h', 8], [4, 3, 3, 3], { stride: [2, 2] }), /conv2d: cannot infer the output height for symbolic input height "h" with stride 2/);
});
