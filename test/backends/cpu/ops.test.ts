// Native elementwise, softmax, reduction, norm, rotary and data-movement kernels against the
// reference kernels on seeded random inputs (sizes 1, 3, 17, 127, 1000; non-multiples of the
// 16-lane vector width; broadcasting). Each test states its tolerance.
import assert from 'node:assert/strict';
import { randn, rand, fromArray, ops, type Tensor } from '../../../src/index.js';
import { dispatch } from '../../../src/ops/dispatch.js';
import { nativeTest, both, assertClose, assertSame, U } from './helpers.js';

const SIZES = [1, 3, 17, 127, 1000];
let seed = 900;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

nativeTest('unary ops match the reference', () => {
  // exp/sigmoid/SiLU/GELU-tanh use a polynomial exp (<= 2 ulp) and a division: 8u relative.
  // GELU's erf is a rational approximation accurate to ~1e-7 absolute, so 1e-6·max(1, |x|) is added.
  // tanh, erf, sin, cos, log, rsqrt call the C library in float: 4u relative; neg/abs/relu/sqrt are exact.
  const exact = new Set(['neg', 'abs', 'relu', 'sqrt']);
  for (const n of SIZES) {
    const x = rnd([n], 4);
    const pos = ops.add(ops.abs(x), 0.01);
    for (const op of ['neg', 'abs', 'relu', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'silu', 'gelu', 'gelu_tanh', 'erf', 'sin', 'cos']) {
      const input = ['log', 'sqrt', 'rsqrt'].includes(op) ? pos : x;
      const xv = input.toFlatArray();
      const { ref, cpu } = both(() => dispatch(op, [input])[0]);
      // exp-based ops also see their fp32-rounded exponent argument y: relative error |y|·u, with
      // |y| <= 2|x|(1 + 0.045x²) for GELU-tanh and |x| otherwise.
      const expBased = ['exp', 'sigmoid', 'silu', 'gelu_tanh'].includes(op);
      const rel = (i: number) => (exact.has(op) ? 0 : (8 + (expBased ? 2 * Math.abs(xv[i]) * (1 + 0.045 * xv[i] * xv[i]) : 0)) * U);
      // gelu_tanh: the reference's 1 + tanh(u) cancels for x << 0 (float64 error ~1e-16·|x|) where
      // the native x·sigmoid(2u) form keeps tiny nonzero values.
      const abs = op === 'gelu' ? 1e-6 : op === 'gelu_tanh' ? 1e-15 : 0;
      assertClose(cpu, ref, (i, e) => rel(i) * Math.abs(e) + abs * Math.max(1, Math.abs(xv[i])), `${op} n=${n}`);
    }
  }
});

nativeTest('binary ops broadcast like the reference', () => {
  // add/sub/mul/div/max/min are single IEEE operations: the fp32 result differs from the rounded
  // float64 result by at most one rounding (u·|e|, doubled for safety); pow calls powf: 4u relative.
  const shapes: [number[], number[]][] = [
    [[1000], [1000]], [[17, 1000], [1000]], [[3, 1, 17], [1, 127, 1]], [[], [127]], [[127], []], [[2, 3, 4, 5], [3, 1, 5]],
    [[1], [3]], [[17, 1], [17, 3]],
  ];
  for (const [as, bs] of shapes) {
    const a = rnd(as), b = rnd(bs);
    for (const op of ['add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'pow']) {
      const [x, y] = op === 'pow' ? [ops.add(ops.abs(a), 0.1), b] : [a, b];
      const { ref, cpu } = both(() => dispatch(op, [x, y])[0]);
      const rel = op === 'pow' ? 4 * U : 2 * U;
      assertClose(cpu, ref, (_, e) => rel * Math.abs(e), `${op} [${as}] with [${bs}]`);
    }
  }
  // NaN propagates through maximum/minimum as in the reference
  const withNan = fromArray([1, NaN, 3]), other = fromArray([2, 2, NaN]);
  for (const op of ['maximum', 'minimum']) {
    const { ref, cpu } = both(() => dispatch(op, [withNan, other])[0]);
    assertClose(cpu, ref, () => 0, `${op} with NaN`);
  }
});

nativeTest('softmax and log_softmax along the last and a middle axis', () => {
  // Each weight is exp(x - max)/sum: x - max is rounded in fp32 (u·|x - max| absolute, which exp
  // turns into relative error), exp adds 2 ulp and the sum (n terms) n·u relative, so
  // (n + 8 + |x| + max|x|)·u·|e| for softmax; log_softmax is x - max - log(sum): (n + 8)·u·(1 + |e| + |x|).
  for (const n of SIZES) {
    const x = rnd([3, n], 3);
    const xv = x.toFlatArray();
    const xMax = xv.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (const axis of [-1, 0]) {
      const size = x.shape[axis < 0 ? 1 : 0];
      const s = both(() => ops.softmax(x, axis));
      assertClose(s.cpu, s.ref, (i, e) => (size + 8 + Math.abs(xv[i]) + xMax) * U * Math.abs(e), `softmax [3, ${n}] axis ${axis}`);
      const l = both(() => ops.logSoftmax(x, axis));
      assertClose(l.cpu, l.ref, (i, e) => (size + 8) * U * (1 + Math.abs(e) + Math.abs(xv[i])), `log_softmax [3, ${n}] axis ${axis}`);
    }
  }
});

nativeTest('sum, mean, max, min over contiguous axis blocks', () => {
  // Sums accumulate in 4×16 fp32 lanes then double: error <= (n/64 + 4)·u·Σ|x| per output.
  // max/min are exact.
  for (const n of SIZES) {
    const x = rnd([4, 3, n]);
    for (const axes of [[-1], [1, 2], [], [1], [0]]) {
      const absSum = ops.sum(ops.abs(x), axes).toFlatArray();
      const count = axes.length === 0 ? x.size : axes.reduce((c, a) => c * x.shape[a < 0 ? a + 3 : a], 1);
      for (const op of ['sum', 'mean', 'max', 'min']) {
        for (const keepdim of [false, true]) {
          const { ref, cpu } = both(() => dispatch(op, [x], { axes, keepdim })[0]);
          const tol = (i: number, e: number) => (op === 'sum' || op === 'mean' ? (count / 64 + 4) * U * absSum[i] / (op === 'mean' ? count : 1) + U * Math.abs(e) : 0);
          assertClose(cpu, ref, tol, `${op} [4, 3, ${n}] axes [${axes}] keepdim=${keepdim}`);
        }
      }
    }
  }
  const nan = fromArray([1, NaN, 2, 5]);
  for (const op of ['max', 'min']) {
    const { ref, cpu } = both(() => dispatch(op, [nan], { axes: [0] })[0]);
    assertClose(cpu, ref, () => 0, `${op} propagates NaN`);
  }
});

// Norm tolerance: mean and variance are accumulated in 2×16 fp32 lanes and combined in double, so
// their relative errors are <= (n/32 + 8)·u; y = (x - mean)·inv·w + b inherits that relative error
// on |y - b| plus a few roundings: (n/32 + 16)·u·(|e| + |b| + |w|·(1 + |mean|/σ)). Inputs here are
// randn-scaled (|mean|/σ < 1), so (n/32 + 16)·u·(2|e| + 2|w| + |b| + 1) bounds it.
function normTol(n: number, w: Tensor | null, b: Tensor | null, cols: number) {
  const wv = w?.toFlatArray(), bv = b?.toFlatArray();
  return (i: number, e: number) => (n / 32 + 16) * U * (2 * Math.abs(e) + 2 * (wv ? Math.abs(wv[i % cols]) : 1) + (bv ? Math.abs(bv[i % cols]) : 0) + 1);
}

nativeTest('layer_norm, rms_norm and their fused residual-add forms', () => {
  for (const n of SIZES) {
    const x = rnd([2, 3, n], 2), r = rnd([2, 3, n]), w = rnd([n]), b = rnd([n]);
    for (const [wt, bt] of [[w, b], [null, null], [w, null]] as const) {
      const ln = both(() => ops.layerNorm(x, n, wt, bt));
      assertClose(ln.cpu, ln.ref, normTol(n, wt, bt, n), `layer_norm n=${n} w=${!!wt} b=${!!bt}`);
      const rms = both(() => ops.rmsNorm(x, wt));
      assertClose(rms.cpu, rms.ref, normTol(n, wt, null, n), `rms_norm n=${n} w=${!!wt}`);
      const aln = both(() => dispatch('add_layer_norm', [x, r, wt, bt], { eps: 1e-5 }));
      assertSame(aln.cpu[1], aln.ref[1], `add_layer_norm sum n=${n}`);
      assertClose(aln.cpu[0], aln.ref[0], normTol(n, wt, bt, n), `add_layer_norm n=${n}`);
      const arms = both(() => dispatch('add_rms_norm', [x, r, wt]));
      assertSame(arms.cpu[1], arms.ref[1], `add_rms_norm sum n=${n}`);
      assertClose(arms.cpu[0], arms.ref[0], normTol(n, wt, null, n), `add_rms_norm n=${n}`);
    }
  }
  // normalized over two trailing dims
  const x = rnd([3, 17, 5]), w = rnd([17, 5]), b = rnd([17, 5]);
  const two = both(() => ops.layerNorm(x, [17, 5], w, b));
  assertClose(two.cpu, two.ref, normTol(85, w, b, 85), 'layer_norm over [17, 5]');
});

nativeTest('group_norm over [N, C, *]', () => {
  for (const [shape, groups] of [[[2, 6, 17], 3], [[1, 32, 8, 8], 8], [[3, 4], 2], [[1, 3, 127], 1], [[2, 8, 5, 5], 8]] as [number[], number][]) {
    const x = rnd(shape, 3), w = rnd([shape[1]]), b = rnd([shape[1]]);
    const perGroup = x.size / shape[0] / groups;
    const spatial = x.size / shape[0] / shape[1];
    for (const [wt, bt] of [[w, b], [null, null]] as const) {
      const { ref, cpu } = both(() => ops.groupNorm(x, groups, wt, bt));
      const wv = wt?.toFlatArray(), bv = bt?.toFlatArray();
      const ch = (i: number) => Math.floor(i / spatial) % shape[1];
      assertClose(cpu, ref, (i, e) => (perGroup / 32 + 16) * U * (2 * Math.abs(e) + 2 * (wv ? Math.abs(wv[ch(i)]) : 1) + (bv ? Math.abs(bv[ch(i)]) : 0) + 1),
        `group_norm [${shape}] groups=${groups} affine=${!!wt}`);
    }
  }
});

nativeTest('rotary_embedding, NeoX and GPT-J pairing, partial rotary dim', () => {
  // Each output is x1·c ∓ x2·s in fp32 (possibly fused): <= 3u·(|x1| + |x2|) with |c|, |s| <= 1.
  for (const [shape, half] of [[[2, 3, 17, 64], 32], [[1, 127, 10], 3], [[5, 1, 8], 4], [[2, 2, 3, 34], 17]] as [number[], number][]) {
    const seq = shape[shape.length - 2];
    const x = rnd(shape), angle = rnd([seq, half]);
    const cos = ops.cos(angle), sin = ops.sin(angle);
    const d = shape[shape.length - 1], xv = x.toFlatArray();
    for (const interleaved of [false, true]) {
      const { ref, cpu } = both(() => ops.rotaryEmbedding(x, cos, sin, interleaved));
      assertClose(cpu, ref, (i) => {
        const row = i - (i % d), j = i % d;
        if (j >= 2 * half) return 0;
        const partner = interleaved ? (j % 2 === 0 ? j + 1 : j - 1) : j < half ? j + half : j - half;
        return 3 * U * (Math.abs(xv[i]) + Math.abs(xv[row + partner]));
      }, `rotary [${shape}] half=${half} interleaved=${interleaved}`);
    }
  }
});

nativeTest('permute of any dtype equals the reference bit for bit', () => {
  const cases: [number[], number[]][] = [
    [[17, 127], [1, 0]], [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 3, 4, 5], [3, 2, 1, 0]], [[1000, 3], [1, 0]],
    [[3, 1, 17], [2, 1, 0]], [[1], [0]], [[], []], [[4, 33, 65], [2, 0, 1]], [[2, 64, 3, 40], [0, 2, 1, 3]],
  ];
  for (const [shape, perm] of cases) {
    const base = rnd(shape, 10);
    for (const dtype of ['f32', 'i64', 'u8', 'f16', 'bool', 'i32'] as const) {
      const x = dtype === 'bool' ? ops.greater(base, 0) : ops.cast(base, dtype);
      const { ref, cpu } = both(() => ops.permute(x, perm));
      assertSame(cpu, ref, `permute ${dtype} [${shape}] by [${perm}]`);
    }
  }
});

nativeTest('gather and embedding with i32/i64 indices, negative indices and range errors', () => {
  const x = rnd([5, 17, 3]);
  for (const idxType of ['i64', 'i32'] as const) {
    const idx = fromArray([0, 4, -1, 2, 2, -5], [2, 3], idxType);
    for (const axis of [0, -3]) assertSame(both(() => ops.gather(x, idx, axis)).cpu, both(() => ops.gather(x, idx, axis)).ref, `gather axis ${axis} ${idxType}`);
    const idx1 = fromArray([16, 0, 3, -17], [4], idxType);
    assertSame(both(() => ops.gather(x, idx1, 1)).cpu, both(() => ops.gather(x, idx1, 1)).ref, `gather axis 1 ${idxType}`);
    const idx2 = fromArray([2, 1, 0, 1, 2], [5], idxType);
    assertSame(both(() => ops.gather(x, idx2, -1)).cpu, both(() => ops.gather(x, idx2, -1)).ref, `gather axis -1 ${idxType}`);
    const ids = fromArray([[3, 0, 4], [1, 1, 2]], idxType);
    const table = rnd([5, 1000]);
    assertSame(both(() => ops.embedding(ids, table)).cpu, both(() => ops.embedding(ids, table)).ref, `embedding ${idxType}`);
  }
  const ints = ops.cast(rnd([6, 4], 100), 'i64');
  const sel = fromArray([5, 0], [2], 'i64');
  assertSame(both(() => ops.gather(ints, sel, 0)).cpu, both(() => ops.gather(ints, sel, 0)).ref, 'gather of i64 values');
  assert.throws(() => ops.gather(x, fromArray([5], [1], 'i64'), 0), /gather: index 5 is out of range for axis 0 of size 5/);
  assert.throws(() => ops.embedding(fromArray([-1], [1], 'i64'), rnd([4, 2])), /embedding: id -1 is out of range for a vocabulary of 4 rows/);
});

nativeTest('native results do not depend on rand() of big inputs: a large softmax stays normalized', () => {
  const x = rand([4, 100000], { seed: 3 }).mul(30);
  const s = ops.sum(ops.softmax(x), [-1]).toFlatArray();
  for (const v of s) assert.ok(Math.abs(v - 1) < 1e-4, `row sum ${v}`);
});

nativeTest('vectorized exp keeps IEEE special values: overflow to +Inf, underflow to 0, NaN stays NaN', () => {
  const x = fromArray([100, -100, NaN, Infinity, -Infinity, 88, -87, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  for (const op of ['exp', 'sigmoid', 'silu']) {
    const { ref, cpu } = both(() => dispatch(op, [x])[0]);
    // finite results: 8u relative plus the |x|·u of the rounded argument (see the unary test);
    // results below the smallest normal float (2^-126) flush to 0 instead of becoming subnormal
    const xv = x.toFlatArray();
    assertClose(cpu, ref, (i, e) => (8 + Math.abs(xv[i])) * U * Math.abs(e) + 2 ** -126, `${op} special values`);
  }
});
