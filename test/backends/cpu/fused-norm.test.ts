// add_group_norm and add_softmax: hand-worked values on both backends, shape/dtype errors, and the
// native one-pass kernels against the reference kernels on seeded random inputs (sizes 1, 3, 17,
// 127, 1000; non-multiples of the 16-lane vector width; broadcast addends; with/without affine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, fromArray, ops, type Tensor } from '../../../src/index.js';
import { dispatch, withEagerBackend } from '../../../src/ops/dispatch.js';
import { nativeTest, nativeSkip, both, onRef, assertClose, assertSame, U } from './helpers.js';

const SIZES = [1, 3, 17, 127, 1000];
let seed = 4200;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);
const backends = nativeSkip ? ['reference'] as const : ['reference', 'cpu'] as const;
const on = <T>(backend: 'reference' | 'cpu', fn: () => T): T => withEagerBackend(backend, fn);

test('add_group_norm on a hand-worked case: both outputs', () => {
  // s = x + r = [2, 2, 2, 6] as one group: mean 3, variance (1 + 1 + 1 + 9)/4 = 3, eps 0, so
  // normed = (s - 3)/√3 = [-1/√3, -1/√3, -1/√3, √3]; then weight 2 and bias 1 per channel
  // (channel 0 holds the first two values).
  const x = fromArray([1, 2, 3, 4], [1, 2, 2]), r = fromArray([1, 0, -1, 2], [1, 2, 2]);
  const w = fromArray([2, 1]), b = fromArray([1, 0]);
  const k = 1 / Math.sqrt(3);
  for (const backend of backends) {
    const [normed, sum] = on(backend, () => dispatch('add_group_norm', [x, r, w, b], { num_groups: 1, eps: 0 }));
    assert.deepEqual(sum.shape, [1, 2, 2]);
    assert.deepEqual(Array.from(sum.toFlatArray()), [2, 2, 2, 6], backend);
    const expected = [-2 * k + 1, -2 * k + 1, -k, Math.sqrt(3)];
    normed.toFlatArray().forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `${backend} element ${i}: ${v} vs ${expected[i]}`));
  }
});

test('add_softmax on a hand-worked case with a broadcast addend', () => {
  // rows x = [0, ln 2, 0] and [ln 3, 0, 0] plus addend [0, 0, ln 3] (broadcast over rows):
  // softmax([0, ln 2, ln 3]) = [1, 2, 3]/6 and softmax([ln 3, 0, ln 3]) = [3, 1, 3]/7.
  const x = fromArray([[0, Math.LN2, 0], [Math.log(3), 0, 0]]), a = fromArray([0, 0, Math.log(3)]);
  for (const backend of backends) {
    const y = on(backend, () => dispatch('add_softmax', [x, a])[0]).toFlatArray();
    const expected = [1 / 6, 2 / 6, 3 / 6, 3 / 7, 1 / 7, 3 / 7];
    y.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `${backend} element ${i}: ${v} vs ${expected[i]}`));
  }
});

test('add_group_norm and add_softmax name the argument and shapes in their errors', () => {
  assert.throws(() => dispatch('add_group_norm', [rnd([2, 4, 3]), rnd([2, 4, 1])], { num_groups: 2 }),
    /add_group_norm: residual \[2, 4, 1\] must have the shape of x \[2, 4, 3\]/);
  assert.throws(() => dispatch('add_group_norm', [rnd([2, 4, 3]), ops.cast(rnd([2, 4, 3]), 'f16')], { num_groups: 2 }),
    /add_group_norm: residual has dtype f16 but x has dtype f32/);
  assert.throws(() => dispatch('add_group_norm', [rnd([2, 6, 3]), rnd([2, 6, 3])], { num_groups: 4 }), /not divisible by num_groups 4/);
  assert.throws(() => dispatch('add_softmax', [rnd([2, 3]), rnd([3, 3])]), /add_softmax: addend \[3, 3\] does not broadcast to x \[2, 3\]/);
  assert.throws(() => dispatch('add_softmax', [rnd([3]), rnd([2, 3])]), /add_softmax: addend \[2, 3\] does not broadcast to x \[3\]/);
  assert.throws(() => dispatch('add_softmax', [rnd([2, 3]), ops.cast(rnd([3]), 'f16')]), /add_softmax: addend has dtype f16 but x has dtype f32/);
  assert.throws(() => dispatch('add_softmax', [rnd([2, 3]), rnd([3])], { axis: 2 }), /softmax: axis 2 is out of range/);
});

nativeTest('add_group_norm matches the reference: sum bit for bit, normed within the group_norm bound', () => {
  // The sum is one IEEE fp32 add in both backends, so it is identical. The normalized output has
  // group_norm's error: mean and variance accumulate in 2×16 fp32 lanes combined in double
  // ((n/32 + 8)·u relative for a group of n values), and y = (s - mean)·(inv·w) + b adds a few
  // roundings, so (n/32 + 16)·u·(2|e| + 2|w| + |b| + 1). The kernel folds each channel into
  // y = s·(inv·w) + (b - mean·inv·w), whose rounding of mean·inv·w adds 4u·|mean|·inv·|w| — large
  // next to y when a group's values are nearly equal (one-element groups: inv = 1/√eps).
  const cases: [number[], number][] = [];
  for (const n of SIZES) cases.push([[2, 6, n], 3], [[1, 4, n], 1]);
  cases.push([[1, 32, 8, 8], 8], [[3, 4], 2], [[2, 3], 3], [[2, 8, 5, 5], 8]);
  for (const [shape, groups] of cases) {
    const x = rnd(shape, 3), r = rnd(shape), w = rnd([shape[1]]), b = rnd([shape[1]]);
    const perGroup = x.size / shape[0] / groups;
    const spatial = x.size / shape[0] / shape[1];
    for (const [wt, bt] of [[w, b], [null, null], [w, null]] as const) {
      const { ref, cpu } = both(() => dispatch('add_group_norm', [x, r, wt, bt], { num_groups: groups }));
      const what = `add_group_norm [${shape}] groups=${groups} w=${!!wt} b=${!!bt}`;
      assertSame(cpu[1], ref[1], `${what}: sum`);
      const wv = wt?.toFlatArray(), bv = bt?.toFlatArray();
      const ch = (i: number) => Math.floor(i / spatial) % shape[1];
      // |mean|·inv of each group, from the (bit-identical) sum in float64
      const sv = ref[1].toFlatArray();
      const fold = new Float64Array(sv.length / perGroup).map((_, g) => {
        let m = 0, q = 0;
        for (let j = 0; j < perGroup; j++) m += sv[g * perGroup + j];
        m /= perGroup;
        for (let j = 0; j < perGroup; j++) q += (sv[g * perGroup + j] - m) ** 2;
        return Math.abs(m) / Math.sqrt(q / perGroup + 1e-5);
      });
      assertClose(cpu[0], ref[0], (i, e) => {
        const wAbs = wv ? Math.abs(wv[ch(i)]) : 1;
        return (perGroup / 32 + 16) * U * (2 * Math.abs(e) + 2 * wAbs + (bv ? Math.abs(bv[ch(i)]) : 0) + 1) + 4 * U * fold[Math.floor(i / perGroup)] * wAbs;
      }, what);
    }
  }
});

nativeTest('add_softmax matches the reference for broadcast addends along last, middle and first axes', () => {
  // s = x + a is the same fp32 add in both backends. Each weight is exp(s - max)/sum: s - max is
  // rounded in fp32 (u·|s - max| absolute in the exponent, i.e. relative in the weight), exp adds
  // 2 ulp, the fp32 sum of n terms n·u relative and the scaling 2 roundings, so
  // (n + 8 + |s| + max|s|)·u·|e| — the bound of the plain softmax test.
  for (const n of SIZES) {
    const x = rnd([3, 4, n], 3);
    const addends: number[][] = [[3, 4, n], [n], [3, 1, n], [3, 4, 1], [], [4, n], [1, 4, 1], [3, 1, 1]];
    for (const as of addends) {
      const a = rnd(as, 2);
      const sv = onRef(() => ops.add(x, a)).toFlatArray();
      const sMax = sv.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (const axis of [-1, 1, 0]) {
        const size = x.shape[axis < 0 ? axis + 3 : axis];
        const { ref, cpu } = both(() => dispatch('add_softmax', [x, a], { axis })[0]);
        assertClose(cpu, ref, (i, e) => (size + 8 + Math.abs(sv[i]) + sMax) * U * Math.abs(e), `add_softmax [3, 4, ${n}] + [${as}] axis ${axis}`);
      }
    }
  }
});

nativeTest('add_softmax with an attention mask: -inf entries give 0, a fully masked row gives NaN like the reference', () => {
  // scores [B, H, Lq, Lk] plus a key-padding mask [B, 1, 1, Lk] of 0 / -inf, and a causal-style
  // [Lq, Lk] mask whose first row is entirely -inf (NaN there in both backends). Same bound as above.
  for (const lk of [17, 127]) {
    const scores = rnd([2, 3, 5, lk], 4);
    // sample 0 pads its last 3 keys, sample 1 its last 8; query row q of tri sees keys 0..4q, row 0 none
    const pad = fromArray(Array.from({ length: 2 * lk }, (_, i) => (i % lk >= lk - (i < lk ? 3 : 8) ? -Infinity : 0)), [2, 1, 1, lk]);
    const tri = fromArray(Array.from({ length: 5 * lk }, (_, i) => {
      const q = Math.floor(i / lk), k = i % lk;
      return q === 0 || k > 4 * q ? -Infinity : 0;
    }), [5, lk]);
    for (const mask of [pad, tri]) {
      const sv = onRef(() => ops.add(scores, mask)).toFlatArray();
      const sMax = sv.reduce((m, v) => (Number.isFinite(v) ? Math.max(m, Math.abs(v)) : m), 0);
      const { ref, cpu } = both(() => dispatch('add_softmax', [scores, mask])[0]);
      assertClose(cpu, ref, (i, e) => (lk + 8 + (Number.isFinite(sv[i]) ? Math.abs(sv[i]) : 0) + sMax) * U * Math.abs(e), `add_softmax mask [${mask.shape}] lk=${lk}`);
      const cv = cpu.toFlatArray();
      sv.forEach((v, i) => { if (v === -Infinity && !Number.isNaN(cv[i])) assert.equal(cv[i], 0, `masked element ${i}`); });
      if (mask === tri) assert.ok(Number.isNaN(cv[0]) && Number.isNaN(cv[lk - 1]), 'a fully masked row is NaN');
    }
  }
});

nativeTest('add_softmax on a scalar and on long rows split across threads stays normalized', () => {
  // A scalar is a one-element row: softmax is exactly 1.
  const one = both(() => dispatch('add_softmax', [fromArray([2.5], []), fromArray([-1], [])])[0]);
  assert.deepEqual(Array.from(one.cpu.toFlatArray()), [1]);
  assertSame(one.cpu, one.ref, 'scalar add_softmax');
  // 64 rows of 20000: each row sums to 1 within the fp32 summation bound (n/32 + 4)·u ≈ 4e-5.
  const x = rnd([64, 20000], 5), a = rnd([20000], 5);
  const rows = ops.sum(dispatch('add_softmax', [x, a])[0], [-1]).toFlatArray();
  for (const v of rows) assert.ok(Math.abs(v - 1) < 1e-4, `row sum ${v}`);
});
