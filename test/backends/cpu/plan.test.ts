// The native plan executor on small traced graphs: every plan kernel family against the eager
// interpreter (node-by-node dispatch on the native kernels) and, for independence, the reference
// kernels; views (split, permute, slice, expand, reshape) without copies; graph outputs that are
// inputs, duplicates or views; dynamic dims (one lowering per shape, passes once); in-place weight
// updates; async == sync; arena vs naive sizes; interpreter fallback with a reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, rand, fromArray, ops, type Tensor } from '../../../src/index.js';
import { trace } from '../../../src/trace/index.js';
import { interpret } from '../../../src/backends/reference/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { optimize } from '../../../src/passes/index.js';
import type { Graph } from '../../../src/ir/index.js';
import { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { reshapeStrides, contiguousStrides } from '../../../src/backends/cpu/plan/views.js';
import { assertClose, U } from './helpers.js';
import { dispatch } from '../../../src/ops/dispatch.js';

const skip = planAddon ? false : 'native plan executor not built';
let seed = 7100;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

interface Compiled { exe: PlanExecutable; graph: Graph; constants: Map<string, Tensor> }
function compile(fn: (...a: any[]) => unknown, args: Tensor[], params: Record<string, Tensor> = {}, options: { spec?: ({ shape: (number | string)[] } | null)[]; passes?: boolean } = {}): Compiled {
  const t = trace(fn, args, { module: { namedParameters: () => Object.entries(params) }, ...(options.spec ? { inputSpec: options.spec } : {}) });
  const graph = options.passes === false ? t.graph : optimize(t.graph);
  return { exe: new PlanExecutable(graph, t.constants), graph, constants: t.constants };
}
const eager = (c: Compiled, inputs: Tensor[]): Tensor[] => withEagerBackend('auto', () => interpret(c.graph, inputs, c.constants));
const reference = (c: Compiled, inputs: Tensor[]): Tensor[] => withEagerBackend('reference', () => interpret(c.graph, inputs, c.constants));

// Plan kernels are ports of the eager native kernels (same SIMD exp/erf, same GEMM microkernel,
// same two-pass norm statistics), so they agree with eager execution to a few ulps; 8u relative
// plus 1e-6 absolute (for values near zero after cancellation) bounds that.
const nearEager = (i: number, e: number): number => 8 * U * Math.abs(e) + 1e-6;
// Against the float64 reference kernels: fp32 accumulation over K <= 256 terms of O(1) values.
const nearRef = (i: number, e: number): number => 2e-4 * Math.max(1, Math.abs(e));

function check(c: Compiled, inputs: Tensor[], what: string, ref = true): Tensor[] {
  assert.equal(c.exe.path, 'plan', `${what}: ${c.exe.describe()}`);
  const got = c.exe.run(inputs);
  const want = eager(c, inputs);
  assert.equal(got.length, want.length);
  got.forEach((g, i) => assertClose(g, want[i], nearEager, `${what} output ${i} vs eager`));
  if (ref) reference(c, inputs).forEach((r, i) => { if (r.dtype === 'f32') assertClose(got[i], r, nearRef, `${what} output ${i} vs reference`); });
  return got;
}

test('reshapeStrides agrees with element enumeration', { skip }, () => {
  // A view's element k (row-major in the new shape) must be the source's element k.
  const cases: [number[], number[], number[]][] = [
    [[2, 3, 4], [0, 2, 1], [2, 12]], // permuted: not viewable as [2, 12]
    [[2, 3, 4], [0, 1, 2], [6, 4]],
    [[2, 3, 4], [0, 2, 1], [2, 4, 3]],
    [[4, 6], [1, 0], [2, 2, 6]],
    [[1, 5, 1, 3], [0, 1, 2, 3], [15]],
    [[3, 1, 4], [2, 1, 0], [4, 3]],
  ];
  for (const [shape, perm, newShape] of cases) {
    const base = contiguousStrides(shape);
    const vs = perm.map((p) => shape[p]), vst = perm.map((p) => base[p]);
    const st = reshapeStrides(vs, vst, newShape);
    // enumerate the source view's elements in row-major order
    const elems: number[] = [];
    const walk = (d: number, off: number): void => { if (d === vs.length) { elems.push(off); return; } for (let i = 0; i < vs[d]; i++) walk(d + 1, off + i * vst[d]); };
    walk(0, 0);
    const viewable = (() => {
      if (!st) return false;
      const got: number[] = [];
      const walk2 = (d: number, off: number): void => { if (d === newShape.length) { got.push(off); return; } for (let i = 0; i < newShape[d]; i++) walk2(d + 1, off + i * st[d]); };
      walk2(0, 0);
      assert.deepEqual(got, elems, `strides ${st} for ${vs}->${newShape}`);
      return true;
    })();
    // a contiguous source is always viewable; the permuted [2,4,3] -> [2,12] case is not
    if (perm.every((p, i) => p === i)) assert.ok(viewable);
    if (shape.join() === '2,3,4' && perm.join() === '0,2,1' && newShape.join() === '2,12') assert.equal(st, null);
  }
});

test('elementwise chains with broadcasting, comparisons and where', { skip }, () => {
  const w = rnd([5]), b = rnd([3, 1]);
  const fn = (x: Tensor, y: Tensor) => {
    const a = x.mul(w).add(b).sigmoid();
    const m = x.greater(y);
    const s = ops.where(m, a, y.exp().neg());
    return [s.sub(x.tanh()).div(y.abs().add(1)), ops.maximum(x, y).sqrt().gelu(), x.sin().add(x.cos()).mul(ops.gelu(x, 'tanh')).silu()];
  };
  const args = [rnd([2, 3, 5]), rnd([3, 5])];
  check(compile(fn, args, { w, b }, { passes: false }), args, 'unfused');
  const fused = compile(fn, args, { w, b });
  assert.ok(fused.graph.nodes.some((n) => n.op === 'fused_elementwise'), 'the passes fused something');
  check(fused, args, 'fused');
});

test('movement: split, permute, slice, expand, concat, non-viewable reshape', { skip }, () => {
  const fn = (x: Tensor) => {
    const [p, q, r] = x.split([2, 3, 1], 2);           // non-contiguous pieces of [4, 6, 6]
    const t = p.permute(2, 0, 1).reshape([2, 24]);      // a permuted view cannot be reshaped: copy
    const s = x.sliceAxis(1, 1, 6, 2).mul(2);               // strided slice
    const e = r.expand([4, 6, 5]).add(q.sum([2], true)); // stride-0 dim
    return [ops.concat([t, t.mul(3)], 0), s, e, q.softmax(1), q.logSoftmax(-1), x.mean([1, 2])];
  };
  const args = [rnd([4, 6, 6])];
  const c = compile(fn, args, {}, { passes: false });
  check(c, args, 'movement');
  const st = c.exe.planStats()!;
  assert.ok(st.views >= 4, `views: ${st.views}`);
});

test('graph outputs that are inputs, duplicates and views', { skip }, () => {
  const fn = (x: Tensor) => {
    const y = x.mul(2);
    return [x, y, y, y.reshape([6, 2]), y.transpose(0, 1)];
  };
  const x = rnd([3, 4]);
  const c = compile(fn, [x], {}, { passes: false });
  const out = check(c, [x], 'outputs');
  assert.equal(out[0], x, 'an input returned as output is the input tensor, as the interpreter returns it');
  assert.equal(out[1], out[2], 'a value returned twice is one tensor');
});

test('linear, linear_fused, matmul (packed, batched, broadcast) and conv2d', { skip }, () => {
  const W1 = rnd([24, 16], 0.25), b1 = rnd([24]), W2 = rnd([16, 24], 0.2), B = rnd([16, 8], 0.3), cw = rnd([6, 2, 3, 3], 0.3), cb = rnd([6]);
  const fn = (x: Tensor, bm: Tensor, img: Tensor) => {
    const h = ops.linear(x, W1, b1).gelu();
    const y = ops.linear(h, W2).add(x);                 // epilogue residual after fusion
    const xt = x.transpose(1, 2);                          // [2, 16, 5]: not a row-major matrix of x's rows
    const z = ops.matmul(xt.transpose(1, 2), B);           // constant B: packed
    const bb = ops.matmul(x, bm);                          // batched [2,5,16] x [2,16,3]
    const bc = ops.matmul(x, bm.sliceAxis(0, 0, 1));           // batch broadcast [1,16,3]
    const conv = ops.conv2d(img, cw, cb, { stride: [1, 2], padding: [1, 0], groups: 2 });
    return [y, z, bb, bc, conv];
  };
  const args = [rnd([2, 5, 16]), rnd([2, 16, 3]), rnd([2, 4, 7, 9])];
  const c = compile(fn, args, { W1, b1, W2, B, cw, cb });
  assert.ok(c.graph.nodes.some((n) => n.op === 'linear_fused'), 'epilogue fusion ran');
  check(c, args, 'linalg');
  assert.ok(c.exe.planStats()!.packedWeights >= 3);
});

test('norms: layer_norm, rms_norm, residual-add norms and adaLN modulation', { skip }, () => {
  const g = rnd([32]), be = rnd([32]);
  const fn = (x: Tensor, r: Tensor, c: Tensor) => {
    const [shift, scale] = c.chunk(2, 1);                  // strided [2, 32] rows of [2, 64]
    const s = x.add(r);
    const a = ops.layerNorm(s, [32], g, be);
    const m = ops.layerNorm(s, [32], null, null, 1e-6).mul(scale.unsqueeze(1).add(1)).add(shift.unsqueeze(1));
    const rmsn = ops.rmsNorm(s, g, 1e-6);
    return [a, m, rmsn, s];
  };
  const args = [rnd([2, 7, 32]), rnd([2, 7, 32]), rnd([2, 64])];
  check(compile(fn, args, { g, be }, { passes: false }), args, 'norms unfused');
  const c = compile(fn, args, { g, be });
  check(c, args, 'norms fused');
});

test('attention: sdpa with masks, causal, GQA, and the fused [B, L, H, D] form', { skip }, () => {
  const fn = (q: Tensor, k: Tensor, v: Tensor, bm: Tensor, fm: Tensor) => {
    const a = ops.scaledDotProductAttention(q, k, v, { mask: bm });
    const b = ops.scaledDotProductAttention(q, k, v, { causal: true, scale: 0.3 });
    const kv = k.sliceAxis(1, 0, 2), vv = v.sliceAxis(1, 0, 2);       // 2 kv heads for 4 query heads
    const g = ops.scaledDotProductAttention(q, kv, vv, { mask: fm });
    return [a.permute(0, 2, 1, 3).reshape([2, 9, 32]), b, g];
  };
  const args = [rnd([2, 4, 9, 8]), rnd([2, 4, 11, 8]), rnd([2, 4, 11, 8]), rand([2, 1, 9, 11], { seed: seed++ }).greater(0.3), rnd([9, 11])];
  check(compile(fn, args, {}, { passes: false }), args, 'sdpa');
  // the attention fusion pass absorbs head split/merge transposes: [B, L, H, D] operands
  const Wqkv = rnd([48, 16], 0.3);
  const fn2 = (x: Tensor) => {
    const [q, k, v] = ops.linear(x, Wqkv).split([16, 16, 16], 2);
    const h = (t: Tensor) => t.reshape([2, 10, 2, 8]).permute(0, 2, 1, 3);
    return ops.scaledDotProductAttention(h(q), h(k), h(v)).permute(0, 2, 1, 3).reshape([2, 10, 16]);
  };
  const x = rnd([2, 10, 16]);
  const c2 = compile(fn2, [x], { Wqkv });
  check(c2, [x], 'fused attention');
  assert.equal(c2.exe.planStats()!.copies, 0, `no copies: ${c2.exe.describe()}`);
});

test('embedding, gather, cast and index errors (sync and async)', { skip }, async () => {
  const table = rnd([10, 6]);
  const fn = (ids: Tensor, x: Tensor) => [ops.embedding(ids, table).add(1), ops.gather(x, ids.sliceAxis(0, 0, 2), 1), ids.cast('f32').mul(0.5)];
  const ids = fromArray([3, 0, 9, 4], [4], 'i64');
  const c = compile(fn, [ids, rnd([3, 12])], { table });
  check(c, [ids, rnd([3, 12])], 'gather');
  assert.throws(() => c.exe.run([fromArray([3, 10, 1, 1], [4], 'i64'), rnd([3, 12])]), /embedding: id 10 is out of range for a vocabulary of 10 rows/);
  await assert.rejects(c.exe.runAsync([fromArray([3, -1, 1, 1], [4], 'i64'), rnd([3, 12])]), /embedding: id -1 is out of range for a vocabulary of 10 rows/);
  check(c, [ids, rnd([3, 12])], 'after an error');
});

test('dynamic dims: one executable, a plan per concrete shape, reused on repeat', { skip }, () => {
  const W = rnd([16, 16], 0.3), g = rnd([16]);
  const fn = (x: Tensor) => ops.layerNorm(ops.linear(x, W).gelu().add(x), [16], g).softmax(1);
  const c = compile(fn, [rnd([1, 5, 16])], { W, g }, { spec: [{ shape: ['batch', 'seq', 16] }] });
  for (const [b, s] of [[1, 5], [2, 9], [1, 33], [2, 9], [1, 5]]) check(c, [rnd([b, s, 16])], `batch ${b} seq ${s}`);
  assert.equal(c.exe.plansBuilt, 3, 'three distinct shapes, three plans');
});

test('in-place weight updates are seen (version counter)', { skip }, () => {
  const W = rnd([8, 8]), Wk = rnd([8, 8]), b = rnd([8]);
  // two linears on the same input fuse horizontally into a derived (concatenated) weight
  const fn = (x: Tensor) => ops.linear(x, W, b).add(ops.linear(x, Wk));
  const x = rnd([3, 8]);
  const c = compile(fn, [x], { W, Wk, b });
  check(c, [x], 'before');
  W.copyFrom(rnd([8, 8]));
  b.copyFrom(rnd([8]));
  check(c, [x], 'after an in-place update');
  const direct = withEagerBackend('reference', () => fn(x));
  assertClose(c.exe.run([x])[0], direct, nearRef, 'against the updated model');
});

test('runAsync equals run, and concurrent async runs are serialized', { skip }, async () => {
  const W = rnd([32, 32], 0.2);
  const fn = (x: Tensor) => ops.linear(x, W).silu().softmax(-1);
  const c = compile(fn, [rnd([4, 32])], { W }, { spec: [{ shape: ['n', 32] }] });
  const xs = [rnd([4, 32]), rnd([7, 32]), rnd([4, 32]), rnd([64, 32])];
  const results = await Promise.all(xs.map((x) => c.exe.runAsync([x])));
  xs.forEach((x, i) => assert.deepEqual(results[i][0].data, c.exe.run([x])[0].data, `async run ${i} is bitwise the sync run`));
  let ticked = false;
  const p = c.exe.runAsync([xs[3]]);
  setImmediate(() => { ticked = true; });
  await p;
  await new Promise((r) => setImmediate(r));
  assert.ok(ticked);
});

test('reuseOutputs: one buffer per plan, same values as fresh outputs; shape changes bind again', { skip }, async () => {
  const W = rnd([32, 32], 0.2);
  const fn = (x: Tensor) => [ops.linear(x, W).silu(), x.mul(2).sum([1])];
  const c = compile(fn, [rnd([4, 32])], { W }, { spec: [{ shape: ['n', 32] }] });
  const reuse = { reuseOutputs: true };
  const x4 = rnd([4, 32]), x4b = rnd([4, 32]), x7 = rnd([7, 32]);
  const a = await c.exe.runAsync([x4], reuse);
  assert.deepEqual(a[0].data, c.exe.run([x4])[0].data, 'kept buffers hold the same values as fresh ones');
  const aData = Float32Array.from(a[0].data as Float32Array);
  const b = await c.exe.runAsync([x4b], reuse);
  assert.equal(b[0].data, a[0].data, 'the second call wrote into the first call\'s buffer');
  assert.deepEqual(b[0].data, c.exe.run([x4b])[0].data, 'and holds the second call\'s values');
  assert.notDeepEqual(b[0].data, aData);
  // another shape: its own plan and buffers (a different binding than the cached one), then back
  const s7 = c.exe.run([x7], reuse);
  assert.notEqual(s7[0].data, a[0].data);
  assert.deepEqual(s7[1].data, c.exe.run([x7])[1].data);
  assert.equal(c.exe.run([x4], reuse)[0].data, a[0].data, 'back to the first shape: its buffer again');
  // without the flag every call gets fresh outputs
  assert.notEqual(c.exe.run([x4])[0].data, c.exe.run([x4])[0].data);
  // a bad input after a cached binding is still checked
  assert.throws(() => c.exe.run([rnd([4, 31])], reuse), /dim 1 must be 32/);
  assert.throws(() => c.exe.run([fromArray([1, 2], [2], 'i32')], reuse), /dtype i32/);
  assert.equal(c.exe.plansBuilt, 2);
});

test('arena: liveness reuse beats one buffer per value', { skip }, () => {
  const Ws = [0, 1, 2, 3, 4, 5, 6, 7].map(() => rnd([64, 64], 0.1));
  const fn = (x: Tensor) => { let h = x; for (const W of Ws) h = ops.linear(h, W).gelu().add(h); return h.sum([1]); };
  const x = rnd([128, 64]);
  const c = compile(fn, [x], Object.fromEntries(Ws.map((w, i) => [`w${i}`, w])));
  check(c, [x], 'chain');
  const s = c.exe.planStats()!;
  // 8 activations of 32 KiB, at most two alive at once
  assert.ok(s.arenaBytes <= s.naiveBytes / 4, `arena ${s.arenaBytes} vs naive ${s.naiveBytes}`);
});

test('a graph with an op the plan cannot run falls back to the interpreter and says why', { skip }, () => {
  // add_softmax (the fused eager op) has no plan rule
  const fn = (x: Tensor) => dispatch('add_softmax', [x.mul(2), x], { axis: -1 })[0];
  const x = rnd([3, 5]);
  const c = compile(fn, [x], {}, { passes: false });
  assert.equal(c.exe.path, 'interpreter');
  assert.match(c.exe.describe(), /add_softmax/);
  assert.deepEqual(c.exe.run([x])[0].data, eager(c, [x])[0].data);
});
