// Tests for the data-movement ops (src/ops/movement.ts) and the api helpers built on them.
// Expected values are hand-worked or computed by explicit index loops; data movement is exact, so
// values are compared with deepEqual (no tolerance) unless a rounding cast is involved.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, arange, zeros, randn, Tensor, ops, type Dim, type DType } from '../../src/index.js';
import type { TensorMeta } from '../../src/ops/registry.js';
import { f16BitsToFloat } from '../../src/tensor/half.js';
import { dimAdd } from '../../src/tensor/shape.js';

/** Output metadata of an op from input metadata alone (what the tracer sees). */
function infer(op: string, inputs: TensorMeta[], attrs: Record<string, unknown>): TensorMeta[] {
  return ops.getOp(op).infer(inputs, attrs);
}
const meta = (shape: Dim[], dtype: DType = 'f32'): TensorMeta => ({ dtype, shape });

/** i64 tensor from BigInts, to check values beyond 2^53 survive exactly. */
const bigints = (v: bigint[], shape: number[]): Tensor => Tensor.fromStorage('i64', shape, BigInt64Array.from(v));

// ---- reshape ----

test('reshape keeps row-major order and infers one -1', () => {
  const x = arange(6).reshape(2, 3);
  assert.deepEqual(x.toArray(), [[0, 1, 2], [3, 4, 5]]);
  assert.deepEqual(x.reshape(3, -1).toArray(), [[0, 1], [2, 3], [4, 5]]);
  assert.deepEqual(x.view([-1]).toArray(), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(x.reshape(1, 6, 1).shape, [1, 6, 1]);
  assert.deepEqual(fromArray(5).reshape(-1).toArray(), [5]); // rank 0 -> [1]
  assert.deepEqual(fromArray([5]).reshape([]).shape, []);
});

test('reshape handles 0-size tensors', () => {
  const x = zeros([2, 0, 3]);
  assert.deepEqual(x.reshape(0, 5).shape, [0, 5]);
  assert.deepEqual(x.reshape(-1).shape, [0]);
  assert.deepEqual(x.reshape(3, -1, 2).shape, [3, 0, 2]);
});

test('reshape returns a copy: writing the result leaves x unchanged', () => {
  const x = arange(4);
  const y = x.reshape(2, 2);
  (y.data as Float32Array)[0] = 42;
  assert.equal(x.toFlatArray()[0], 0);
});

test('reshape errors name the shapes and element counts', () => {
  const x = zeros([2, 3]);
  assert.throws(() => x.reshape(4, -1), { name: 'RangeError', message: 'reshape: cannot reshape [2, 3] (6 elements) into [4, -1]' });
  assert.throws(() => x.reshape(4, 2), /reshape: cannot reshape \[2, 3\] \(6 elements\) into \[4, 2\]/);
  assert.throws(() => x.reshape(-1, -1), /reshape: shape \[-1, -1\] has more than one -1/);
  assert.throws(() => x.reshape(-2, -3), /reshape: shape \[-2, -3\] has invalid dim -2/);
  assert.throws(() => zeros([0, 3]).reshape(0, -1), /reshape: cannot reshape \[0, 3\] \(0 elements\) into \[0, -1\]: the -1 dim is ambiguous/);
  assert.throws(() => x.reshape(0, -1), /reshape: cannot reshape \[2, 3\] \(6 elements\) into \[0, -1\]$/);
});

test('reshape infers symbolic dims', () => {
  assert.deepEqual(infer('reshape', [meta(['batch', 4, 8])], { shape: [-1, 32] })[0].shape, ['batch', 32]);
  assert.deepEqual(infer('reshape', [meta(['batch', 4, 8])], { shape: ['batch', -1] })[0].shape, ['batch', 32]);
  assert.deepEqual(infer('reshape', [meta([2, 'seq', 3])], { shape: [-1] })[0].shape, ['6*seq']);
  assert.deepEqual(infer('reshape', [meta(['batch', 'seq', 8])], { shape: [-1, 'seq', 2, 4] })[0].shape, ['batch', 'seq', 2, 4]);
  // no -1: a product that can only be checked at run time is accepted ...
  assert.deepEqual(infer('reshape', [meta(['batch', 'seq'])], { shape: ['seq', 'batch'] })[0].shape, ['seq', 'batch']);
  // ... but a provable mismatch (symbols cancel, constant factor 2 remains) is rejected
  assert.throws(() => infer('reshape', [meta(['batch', 4])], { shape: ['batch', 8] }),
    /reshape: cannot reshape \[batch, 4\] \(4\*batch elements\) into \[batch, 8\]/);
  assert.throws(() => infer('reshape', [meta(['batch', 4])], { shape: [-1, 3] }),
    /reshape: cannot infer the -1 dim of \[-1, 3\] from \[batch, 4\] \(4\*batch elements\): 4\*batch is not a known multiple of 3/);
  assert.throws(() => infer('reshape', [meta(['batch', 4])], { shape: ['seq', -1] }), /reshape: cannot infer the -1 dim/);
});

// ---- permute / transpose ----

test('permute matches explicit index math', () => {
  const [A, B, C, D] = [2, 3, 4, 5];
  const x = randn([A, B, C, D], { seed: 7 });
  const xv = x.toFlatArray();
  const perm = [2, 0, 3, 1];
  const y = x.permute(perm);
  assert.deepEqual(y.shape, [C, A, D, B]);
  const yv = y.toFlatArray();
  let k = 0;
  for (let c = 0; c < C; c++) for (let a = 0; a < A; a++) for (let d = 0; d < D; d++) for (let b = 0; b < B; b++) {
    assert.equal(yv[k++], xv[((a * B + b) * C + c) * D + d]);
  }
});

test('permute and transpose on small, empty and rank-0 tensors', () => {
  const x = fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(x.permute(1, 0).toArray(), [[1, 4], [2, 5], [3, 6]]);
  assert.deepEqual(x.transpose(0, -1).toArray(), [[1, 4], [2, 5], [3, 6]]);
  assert.deepEqual(arange(24).reshape(2, 3, 4).transpose(-1, 0).shape, [4, 3, 2]);
  assert.deepEqual(zeros([0, 3]).permute(1, 0).shape, [3, 0]);
  assert.equal(fromArray(7).permute([]).item(), 7);
  // i64 beyond 2^53 moves exactly
  const big = bigints([2n ** 60n + 1n, 2n, 3n, 2n ** 62n - 1n], [2, 2]);
  assert.deepEqual([...(big.permute(1, 0).data as BigInt64Array)], [2n ** 60n + 1n, 3n, 2n, 2n ** 62n - 1n]);
});

test('permute rejects anything but an exact permutation', () => {
  const x = zeros([2, 3, 4]);
  assert.throws(() => x.permute(1, 0), /permute: perm \[1, 0\] has 2 entries but x has rank 3 \(shape \[2, 3, 4\]\)/);
  assert.throws(() => x.permute(0, 0, 1), /permute: perm \[0, 0, 1\] is not a permutation of 0..2 \(x has shape \[2, 3, 4\]\)/);
  assert.throws(() => x.permute(0, 1, 3), /permute: perm \[0, 1, 3\] is not a permutation of 0..2/);
  assert.throws(() => x.permute(-1, 0, 1), /permute: perm \[-1, 0, 1\] is not a permutation/);
  assert.throws(() => x.transpose(0, 3), /transpose: axis 3 is out of range for a tensor of rank 3/);
});

// ---- concat / split / chunk ----

test('concat joins along positive and negative axes', () => {
  const a = fromArray([[1, 2], [3, 4]]);
  const b = fromArray([[5, 6]]);
  const c = fromArray([[7], [8]]);
  assert.deepEqual(ops.concat([a, b]).toArray(), [[1, 2], [3, 4], [5, 6]]);
  assert.deepEqual(ops.concat([a, c], -1).toArray(), [[1, 2, 7], [3, 4, 8]]);
  assert.deepEqual(ops.concat([a, c, a], 1).toArray(), [[1, 2, 7, 1, 2], [3, 4, 8, 3, 4]]);
  assert.deepEqual(ops.concat([a]).toArray(), [[1, 2], [3, 4]]);
  // zero-size pieces contribute nothing
  assert.deepEqual(ops.concat([zeros([2, 0]), c, zeros([2, 0])], 1).toArray(), [[7], [8]]);
  assert.deepEqual(ops.concat([zeros([0, 2]), zeros([0, 2])]).shape, [0, 2]);
  const big = ops.concat([bigints([2n ** 60n + 1n], [1]), bigints([-(2n ** 61n) - 3n], [1])]);
  assert.deepEqual([...(big.data as BigInt64Array)], [2n ** 60n + 1n, -(2n ** 61n) - 3n]);
});

test('concat errors', () => {
  assert.throws(() => ops.concat([]), { name: 'TypeError', message: 'concat: needs at least one tensor, got none' });
  assert.throws(() => ops.concat([zeros([2]), zeros([2], 'i32')]), /concat: tensor 1 has dtype i32 but tensor 0 has dtype f32/);
  assert.throws(() => ops.concat([zeros([2, 3]), zeros([3])]), /concat: tensor 1 has rank 1 but tensor 0 has rank 2 \(shapes \[2, 3\], \[3\]\)/);
  assert.throws(() => ops.concat([zeros([2, 3]), zeros([2, 4])], 0),
    /concat: tensor 1 differs from tensor 0 in dim 1 \(4 vs 3\) outside the concat axis 0 \(shapes \[2, 3\], \[2, 4\]\)/);
  assert.throws(() => ops.concat([zeros([2, 3])], 2), /concat: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => ops.concat([fromArray(1), fromArray(2)]), /concat: cannot concatenate rank-0 tensors/);
});

test('concat sums symbolic dims', () => {
  const out = infer('concat', [meta(['batch', 'seq', 64]), meta(['batch', 1, 64])], { axis: 1 })[0].shape;
  assert.deepEqual(out, ['batch', '(seq+1)', 64]);
  assert.deepEqual(infer('concat', [meta(['batch', 4]), meta(['batch', 8])], { axis: -1 })[0].shape, ['batch', 12]);
  // a symbolic dim off the axis can only be checked at run time; its name is kept
  assert.deepEqual(infer('concat', [meta([3, 4]), meta(['batch', 4])], { axis: 1 })[0].shape, ['batch', 8]);
  assert.throws(() => infer('concat', [meta(['batch', 3]), meta(['batch', 4])], { axis: 0 }), /concat: tensor 1 differs from tensor 0 in dim 1 \(4 vs 3\)/);
});

test('split cuts pieces of the given sizes; concat undoes it', () => {
  const x = arange(12).reshape(3, 4);
  const [p, q] = x.split([1, 3], 1);
  assert.deepEqual(p.toArray(), [[0], [4], [8]]);
  assert.deepEqual(q.toArray(), [[1, 2, 3], [5, 6, 7], [9, 10, 11]]);
  const rows = x.split(2); // equal pieces of 2 along axis 0, the last shorter
  assert.deepEqual(rows.map((t) => t.shape), [[2, 4], [1, 4]]);
  assert.deepEqual(rows[1].toArray(), [[8, 9, 10, 11]]);
  assert.deepEqual(x.split([0, 4], -1).map((t) => t.shape), [[3, 0], [3, 4]]);

  const r = randn([2, 7, 3], { seed: 3 });
  const pieces = r.split([2, 4, 1], 1);
  assert.deepEqual(pieces.map((t) => t.shape), [[2, 2, 3], [2, 4, 3], [2, 1, 3]]);
  assert.deepEqual(ops.concat(pieces, 1).toFlatArray(), r.toFlatArray());
  // and concat then split gives the pieces back
  const again = ops.concat(pieces, -2).split([2, 4, 1], -2);
  again.forEach((t, i) => assert.deepEqual(t.toFlatArray(), pieces[i].toFlatArray()));
});

test('chunk splits unevenly like torch.chunk', () => {
  const x = arange(5);
  assert.deepEqual(x.chunk(3).map((t) => t.toArray()), [[0, 1], [2, 3], [4]]);
  assert.deepEqual(arange(7).chunk(3).map((t) => t.toArray()), [[0, 1, 2], [3, 4, 5], [6]]);
  assert.deepEqual(arange(6).reshape(2, 3).chunk(2, -1).map((t) => t.toArray()), [[[0, 1], [3, 4]], [[2], [5]]]);
  assert.deepEqual(arange(4).chunk(4).map((t) => t.toArray()), [[0], [1], [2], [3]]);
});

test('split errors', () => {
  const x = zeros([3, 4]);
  assert.throws(() => x.split([1, 2], 1), /split: sizes \[1, 2\] sum to 3 but axis 1 of x \[3, 4\] has size 4/);
  assert.throws(() => x.split([5, -1], 1), /split: sizes \[5, -1\] must be non-negative/);
  assert.throws(() => x.split(0), /split: split size must be a positive integer, got 0/);
  assert.throws(() => x.split([3], 2), /split: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => ops.dispatch('split', [x], { axis: 0, sizes: [] }), /split: sizes must list at least one piece/);
  assert.throws(() => x.chunk(0), /chunk: chunks must be a positive integer, got 0/);
});

// ---- slice ----

test('slice follows Python semantics: negative indices, clamping, steps', () => {
  const x = arange(10);
  const s = (start: number, end?: number, step?: number): number[] => x.sliceAxis(0, start, end, step).toArray() as number[];
  // expectations are Python's list(range(10))[start:end:step]
  assert.deepEqual(s(2, 8, 3), [2, 5]);
  assert.deepEqual(s(-3), [7, 8, 9]);
  assert.deepEqual(s(-100, 3), [0, 1, 2]);
  assert.deepEqual(s(5, 100), [5, 6, 7, 8, 9]);
  assert.deepEqual(s(8, 2), []);
  assert.deepEqual(s(1, -1, 4), [1, 5]);
  assert.deepEqual(s(-2, -5), []);
  assert.deepEqual(s(0, undefined, 3), [0, 3, 6, 9]);
  assert.deepEqual(s(-1), [9]);
  assert.deepEqual(s(10), []);
});

test('slice on several axes of a 3-D tensor matches explicit indexing', () => {
  const x = arange(2 * 5 * 6).reshape(2, 5, 6);
  const y = ops.slice(x, [-1, 1, 4], [100, -1, 0], [0, 1, -1], [1, 2, 1]); // x[-1:, 1:-1:2, 4:0]
  assert.deepEqual(y.shape, [1, 2, 0]);
  const z = ops.slice(x, [1, 5], [-1, 1000], [1, -1], [2, 1]); // x[:, 1:-1:2, 5:]
  assert.deepEqual(z.shape, [2, 2, 1]);
  const expected: number[] = [];
  for (const a of [0, 1]) for (const b of [1, 3]) expected.push((a * 5 + b) * 6 + 5);
  assert.deepEqual(Array.from(z.toFlatArray()), expected);
  assert.deepEqual(x.sliceAxis(-1, 0, 2).shape, [2, 5, 2]);
});

test('slice errors', () => {
  const x = zeros([4, 5]);
  assert.throws(() => x.sliceAxis(0, 3, 0, -1), /slice: step must be > 0, got -1 for axis 0/);
  assert.throws(() => x.sliceAxis(1, 0, 2, 0), /slice: step must be > 0, got 0 for axis 1/);
  assert.throws(() => ops.slice(x, [0, 0], [1, 1], [1, -1]), /slice: axis 1 is listed more than once in axes \[1, -1\] \(x has shape \[4, 5\]\)/);
  assert.throws(() => ops.slice(x, [0, 0], [1]), /slice: starts, ends, axes and steps must have the same length, got 2, 1, 2 and 2/);
  assert.throws(() => x.sliceAxis(2, 0, 1), /slice: axis 2 is out of range for a tensor of rank 2/);
});

test('slice infers symbolic lengths where they have a closed form', () => {
  const x = meta(['batch', 'seq', 8]);
  const sl = (start: number, end: number, step = 1): Dim => infer('slice', [x], { starts: [start], ends: [end], axes: [1], steps: [step] })[0].shape[1];
  const END = Number.MAX_SAFE_INTEGER;
  assert.equal(sl(0, END), 'seq');
  assert.equal(sl(-1, END), 1);
  assert.equal(sl(0, 4), 4);
  assert.equal(sl(-4, -1), 3);
  assert.equal(sl(2, END), dimAdd('seq', -2)); // seq - 2, in shape.ts's symbolic-sum form
  assert.equal(sl(1, -1), dimAdd('seq', -2));
  assert.throws(() => sl(1, END, 2), /slice: cannot infer the length of symbolic dim "seq" \(axis 1\) sliced with start 1, end 9007199254740991, step 2/);
  assert.throws(() => sl(-3, 5), /slice: cannot infer the length of symbolic dim "seq"/);
});

// ---- pad (api.pad takes PyTorch order: last dim first) ----

test('pad constant mode', () => {
  const x = fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(ops.pad(x, [1, 2], 'constant', 9).toArray(), [[9, 1, 2, 3, 9, 9], [9, 4, 5, 6, 9, 9]]);
  assert.deepEqual(ops.pad(x, [0, 0, 1, 0]).toArray(), [[0, 0, 0], [1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(ops.pad(x, [1, 0, 0, 1], 'constant', -1).toArray(), [[-1, 1, 2, 3], [-1, 4, 5, 6], [-1, -1, -1, -1]]);
  assert.deepEqual(ops.pad(fromArray([1, 2], 'i32'), [1, 1], 'constant', 7).toArray(), [7, 1, 2, 7]);
  assert.deepEqual(ops.pad(zeros([0, 2]), [0, 0, 1, 1], 'constant', 3).toArray(), [[3, 3], [3, 3]]);
  assert.deepEqual(ops.pad(x, []).toArray(), [[1, 2, 3], [4, 5, 6]]);
});

test('pad reflect mode mirrors without repeating the edge', () => {
  const x = fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(ops.pad(x, [2, 1], 'reflect').toArray(), [[3, 2, 1, 2, 3, 2], [6, 5, 4, 5, 6, 5]]);
  assert.deepEqual(ops.pad(x, [0, 0, 1, 1], 'reflect').toArray(), [[4, 5, 6], [1, 2, 3], [4, 5, 6], [1, 2, 3]]);
  // both dims of an image, as conv padding does: F.pad(x[None, None], (1, 1, 1, 1), 'reflect')
  const img = fromArray([[[[1, 2, 3], [4, 5, 6]]]]);
  assert.deepEqual(ops.pad(img, [1, 1, 1, 1], 'reflect').toArray(), [[[
    [5, 4, 5, 6, 5],
    [2, 1, 2, 3, 2],
    [5, 4, 5, 6, 5],
    [2, 1, 2, 3, 2],
  ]]]);
});

test('pad replicate mode repeats the edge', () => {
  const x = fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(ops.pad(x, [1, 2, 1, 0], 'replicate').toArray(), [[1, 1, 2, 3, 3, 3], [1, 1, 2, 3, 3, 3], [4, 4, 5, 6, 6, 6]]);
  assert.deepEqual(ops.pad(fromArray([7]), [3, 1], 'replicate').toArray(), [7, 7, 7, 7, 7]);
});

test('pad errors', () => {
  const x = zeros([2, 3]);
  assert.throws(() => ops.pad(x, [3, 0], 'reflect'), /pad: reflect padding \(3, 0\) on dim 1 must be smaller than its size 3 \(x has shape \[2, 3\]\)/);
  assert.throws(() => ops.pad(x, [0, 0, 0, 2], 'reflect'), /pad: reflect padding \(0, 2\) on dim 0 must be smaller than its size 2/);
  assert.throws(() => ops.pad(x, [-1, 0]), /pad: pads \[0, 0, -1, 0\] must be non-negative \(use slice to crop\)/);
  assert.throws(() => ops.pad(x, [1]), /pad: pads must hold \(before, after\) pairs for at most 2 dims, got \[1\]/);
  assert.throws(() => ops.pad(x, [1, 1, 1, 1, 1, 1]), /pad: pads must hold \(before, after\) pairs for at most 2 dims/);
  assert.throws(() => ops.pad(zeros([0, 3]), [0, 0, 1, 0], 'replicate'), /pad: replicate padding needs a non-empty dim, but dim 0 of x \[0, 3\] is empty/);
  assert.throws(() => ops.dispatch('pad', [x], { pads: [1, 1] }), /pad: pads must hold 2 entries per dim \(4 for x \[2, 3\]\), got \[1, 1\]/);
  assert.throws(() => ops.pad(x, [1, 1], 'wrap' as 'reflect'), /pad: attribute "mode" must be one of "constant", "reflect", "replicate"/);
});

test('pad infers symbolic dims', () => {
  assert.deepEqual(infer('pad', [meta(['batch', 'seq'])], { pads: [0, 0, 1, 2], mode: 'reflect', value: 0 })[0].shape, ['batch', '(seq+3)']);
});

// ---- expand ----

test('expand broadcasts size-1 dims and adds leading dims', () => {
  const row = fromArray([1, 2, 3]);
  assert.deepEqual(row.expand(2, 3).toArray(), [[1, 2, 3], [1, 2, 3]]);
  const col = fromArray([[1], [2]]);
  assert.deepEqual(col.expand(-1, 3).toArray(), [[1, 1, 1], [2, 2, 2]]);
  const e = fromArray([[10], [20]]).expand([2, 2, 3]);
  assert.deepEqual(e.toArray(), [[[10, 10, 10], [20, 20, 20]], [[10, 10, 10], [20, 20, 20]]]);
  assert.deepEqual(fromArray(4).expand(2, 2).toArray(), [[4, 4], [4, 4]]);
  assert.deepEqual(fromArray([5]).expand(0).shape, [0]);
  assert.deepEqual(row.expand(-1).toArray(), [1, 2, 3]);
  const big = bigints([2n ** 60n + 1n], [1]).expand(2);
  assert.deepEqual([...(big.data as BigInt64Array)], [2n ** 60n + 1n, 2n ** 60n + 1n]);
});

test('expand errors', () => {
  const x = zeros([2, 3]);
  assert.throws(() => x.expand(4, 3), /expand: cannot expand x of shape \[2, 3\] to \[4, 3\]: dim 0 has size 2, which is neither 1 nor 4/);
  assert.throws(() => x.expand(3), /expand: cannot expand x of shape \[2, 3\] to \[3\]: the target has fewer dims than x/);
  assert.throws(() => x.expand(-1, 2, 3), /expand: cannot expand x of shape \[2, 3\] to \[-1, 2, 3\]: new leading dim 0 must be given explicitly, got -1/);
  assert.throws(() => x.expand(2, -2), /dim 1 is -2; use -1 to keep a dim/);
});

test('expand infers symbolic dims', () => {
  assert.deepEqual(infer('expand', [meta(['batch', 1, 8])], { shape: [-1, 'seq', 8] })[0].shape, ['batch', 'seq', 8]);
  assert.deepEqual(infer('expand', [meta([1, 8])], { shape: ['batch', 4, 8] })[0].shape, ['batch', 4, 8]);
});

// ---- gather / indexSelect / embedding ----

test('gather on axis 1 with 2-D and negative indices', () => {
  const x = fromArray([[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]]);
  const idx = fromArray([[0, -1], [2, 1]], 'i64');
  const y = ops.gather(x, idx, 1);
  assert.deepEqual(y.shape, [3, 2, 2]); // x.shape[:1] + [2, 2] + x.shape[2:]
  // out[i][j][k] = x[i][idx[j][k]], with -1 meaning the last column (3)
  assert.deepEqual(y.toArray(), [
    [[0, 3], [2, 1]],
    [[10, 13], [12, 11]],
    [[20, 23], [22, 21]],
  ]);
  assert.deepEqual(ops.gather(x, fromArray([2, 0], 'i32')).toArray(), [[20, 21, 22, 23], [0, 1, 2, 3]]);
  assert.deepEqual(ops.gather(x, fromArray(-1, 'i32'), -1).toArray(), [3, 13, 23]); // rank-0 indices drop the axis
  assert.deepEqual(ops.gather(x, zeros([0], 'i64'), 1).shape, [3, 0]);
});

test('indexSelect selects along an axis with 1-D indices', () => {
  const x = fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(ops.indexSelect(x, 1, fromArray([2, 2, 0], 'i64')).toArray(), [[3, 3, 1], [6, 6, 4]]);
  assert.deepEqual(ops.indexSelect(x, 0, fromArray([1], 'i32')).toArray(), [[4, 5, 6]]);
  assert.throws(() => ops.indexSelect(x, 0, zeros([1, 1], 'i64')), /index_select: indices must be 1-D, got shape \[1, 1\]/);
});

test('gather errors', () => {
  const x = zeros([3, 4]);
  assert.throws(() => ops.gather(x, fromArray([4], 'i64'), 1), { name: 'RangeError', message: /gather: index 4 is out of range for axis 1 of size 4/ });
  assert.throws(() => ops.gather(x, fromArray([-5], 'i32'), 1), /gather: index -5 is out of range for axis 1 of size 4/);
  assert.throws(() => ops.gather(x, fromArray([0]), 0), { name: 'TypeError', message: /gather: indices must be i32 or i64, got f32/ });
  assert.throws(() => ops.gather(x, fromArray([0], 'i64'), 2), /gather: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => ops.gather(fromArray(1), fromArray([0], 'i64')), /gather: x must have at least one dim/);
});

test('gather infers symbolic shapes', () => {
  assert.deepEqual(infer('gather', [meta(['vocab', 64]), meta(['batch', 'seq'], 'i64')], { axis: 0 })[0].shape, ['batch', 'seq', 64]);
});

test('embedding picks rows by id', () => {
  const w = fromArray([[0, 0.5, 1], [10, 10.5, 11], [20, 20.5, 21], [30, 30.5, 31]]);
  const out = ops.embedding(fromArray([[1, 3], [0, 1]], 'i64'), w);
  assert.deepEqual(out.shape, [2, 2, 3]);
  assert.deepEqual(out.toArray(), [[[10, 10.5, 11], [30, 30.5, 31]], [[0, 0.5, 1], [10, 10.5, 11]]]);
  assert.deepEqual(ops.embedding(fromArray(2, 'i32'), w).toArray(), [20, 20.5, 21]);
  // half-precision weights are copied bit for bit
  const w16 = w.cast('f16');
  assert.deepEqual([...(ops.embedding(fromArray([3], 'i32'), w16).data as Uint16Array)], [...(w16.data as Uint16Array).subarray(9, 12)]);
});

test('embedding errors', () => {
  const w = zeros([4, 3]);
  assert.throws(() => ops.embedding(fromArray([4], 'i64'), w), { name: 'RangeError', message: 'embedding: id 4 is out of range for a vocabulary of 4 rows' });
  assert.throws(() => ops.embedding(fromArray([-1], 'i32'), w), /embedding: id -1 is out of range for a vocabulary of 4 rows/);
  assert.throws(() => ops.embedding(fromArray([1]), w), /embedding: ids must be i32 or i64, got f32/);
  assert.throws(() => ops.embedding(fromArray([1], 'i64'), zeros([4])), /embedding: weight must be 2-D \[vocab, dim\], got shape \[4\]/);
});

// ---- cast ----

test('cast f32 -> ints truncates toward zero and saturates at the range (NaN -> 0)', () => {
  const x = fromArray([1.7, -1.7, 2.5, -0.5, 0, 100.99]);
  assert.deepEqual(x.cast('i32').toArray(), [1, -1, 2, 0, 0, 100]);
  assert.deepEqual(x.cast('i64').toArray(), [1, -1, 2, 0, 0, 100]);
  assert.deepEqual(x.cast('i8').toArray(), [1, -1, 2, 0, 0, 100]);
  assert.deepEqual(fromArray([300, -1, NaN]).cast('u8').toArray(), [255, 0, 0]); // saturates (a float source)
  assert.deepEqual(fromArray([300, -1], 'i32').cast('u8').toArray(), [44, 255]); // int -> int wraps modulo 256
  assert.equal(x.cast('i32').dtype, 'i32');
});

test('cast f32 -> f16 -> f32 rounds once to the nearest half', () => {
  const exact = [0, 1, -2.5, 0.125, 65504, 2 ** -24];
  assert.deepEqual(Array.from(fromArray(exact).cast('f16').cast('f32').toFlatArray()), exact);
  const h = fromArray([0.1, 1 + 2 ** -11, 1e5]).cast('f16');
  // 0.1 -> 0x2e66 (0.0999755859375); 1 + 2^-11 is a tie -> even mantissa (1); 1e5 overflows to +inf
  assert.deepEqual([...(h.data as Uint16Array)], [0x2e66, 0x3c00, 0x7c00]);
  assert.equal(f16BitsToFloat(0x2e66), 0.0999755859375);
  assert.deepEqual(Array.from(h.to('f32').toFlatArray()), [0.0999755859375, 1, Infinity]);
  // bf16 keeps 8 mantissa bits: 1 + 2^-7 survives, 1 + 2^-9 rounds to 1
  assert.deepEqual(Array.from(fromArray([1 + 2 ** -7, 1 + 2 ** -9]).cast('bf16').cast('f32').toFlatArray()), [1 + 2 ** -7, 1]);
});

test('cast from i64, including values beyond 2^53', () => {
  const x = fromArray([3, -7, 2 ** 40, 2 ** 24 + 1], 'i64');
  // f32 has 24 mantissa bits: 2^24 + 1 rounds to 2^24
  assert.deepEqual(Array.from(x.cast('f32').toFlatArray()), [3, -7, 2 ** 40, 2 ** 24]);
  const big = bigints([2n ** 60n + 3n, 2n ** 32n + 5n, 2n ** 31n, -1n], [4]);
  assert.deepEqual(big.cast('i32').toArray(), [3, 5, -(2 ** 31), -1]); // wraps modulo 2^32
  assert.deepEqual(big.cast('u8').toArray(), [3, 5, 0, 255]);
  assert.deepEqual(big.cast('bool').toArray(), [1, 1, 1, 1]);
  assert.deepEqual(fromArray([2, -3], 'i32').cast('i64').toArray(), [2, -3]);
});

test('cast to and from bool', () => {
  // x != 0, so NaN maps to true (as in C++, NumPy and PyTorch, and the native plan's cast)
  const b = fromArray([0, -0, 0.5, -2, NaN]).cast('bool');
  assert.equal(b.dtype, 'bool');
  assert.deepEqual(b.toArray(), [0, 0, 1, 1, 1]);
  assert.deepEqual(fromArray([0, 3, -1], 'i32').cast('bool').toArray(), [0, 1, 1]);
  assert.deepEqual(b.cast('f32').toArray(), [0, 0, 1, 1, 1]);
  assert.deepEqual(zeros([0, 2]).cast('bool').shape, [0, 2]);
});

test('cast to the same dtype returns the tensor itself, and unknown dtypes are rejected', () => {
  const x = fromArray([1, 2]);
  assert.equal(x.cast('f32'), x);
  assert.throws(() => ops.dispatch('cast', [x], { dtype: 'f64' }), /cast: attribute "dtype" must be a dtype name, got "f64"/);
});

// ---- upsample_nearest2d ----

test('upsample_nearest2d repeats pixels', () => {
  const x = fromArray([[[[1, 2], [3, 4]]]]);
  assert.deepEqual(ops.upsampleNearest2d(x, 2).toArray(), [[[
    [1, 1, 2, 2],
    [1, 1, 2, 2],
    [3, 3, 4, 4],
    [3, 3, 4, 4],
  ]]]);
  assert.deepEqual(ops.upsampleNearest2d(x, [1, 3]).toArray(), [[[[1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4]]]]);
  // every (n, c) plane is upsampled independently
  const y = ops.upsampleNearest2d(arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2), [2, 2]);
  assert.deepEqual(y.shape, [2, 3, 4, 4]);
  const v = y.toFlatArray();
  for (let p = 0; p < 6; p++) for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) {
    assert.equal(v[(p * 4 + r) * 4 + c], p * 4 + Math.floor(r / 2) * 2 + Math.floor(c / 2));
  }
});

test('upsample_nearest2d errors and symbolic infer', () => {
  assert.throws(() => ops.upsampleNearest2d(zeros([1, 2, 2]), 2), /upsample_nearest2d: x must be 4-D \[N, C, H, W\], got shape \[1, 2, 2\]/);
  assert.throws(() => ops.upsampleNearest2d(zeros([1, 1, 2, 2]), 0), /upsample_nearest2d: scale must be two positive integers \[sh, sw\], got \[0, 0\]/);
  assert.deepEqual(infer('upsample_nearest2d', [meta(['batch', 3, 'h', 8])], { scale: [2, 2] })[0].shape, ['batch', 3, '2*h', 16]);
});

// ---- api helpers built on reshape/permute ----

test('flatten, unsqueeze and squeeze', () => {
  const x = arange(24).reshape(2, 3, 4);
  assert.deepEqual(x.flatten().shape, [24]);
  assert.deepEqual(x.flatten(1).shape, [2, 12]);
  assert.deepEqual(x.flatten(0, 1).shape, [6, 4]);
  assert.deepEqual(x.flatten(-2, -1).toFlatArray(), x.toFlatArray());
  assert.deepEqual(fromArray(3).flatten().shape, [1]);
  assert.deepEqual(x.unsqueeze(0).shape, [1, 2, 3, 4]);
  assert.deepEqual(x.unsqueeze(-1).shape, [2, 3, 4, 1]);
  assert.deepEqual(x.unsqueeze(2).shape, [2, 3, 1, 4]);
  const y = zeros([1, 3, 1]);
  assert.deepEqual(y.squeeze().shape, [3]);
  assert.deepEqual(y.squeeze(0).shape, [3, 1]);
  assert.deepEqual(y.squeeze([0, -1]).shape, [3]);
  assert.throws(() => y.squeeze(1), /squeeze: axis 1 has size 3, not 1, in shape \[1, 3, 1\]/);
  assert.throws(() => x.unsqueeze(4), /unsqueeze: axis 4 is out of range for a tensor of rank 4/);
});
