// The plan kernels added through the kernel table (pad, group_norm / add_group_norm,
// upsample_nearest2d, rotary_embedding, argmax, top_k) against the reference kernels on random
// inputs with edge shapes (size 1, odd sizes, non-multiples of 16), each checked to run as its own
// native kernel; and graphs using them (a rotary decoder block, a UNet-style block) compiled as
// native plans, not interpreter fallbacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, fromArray, ops, type Tensor } from '../../../src/index.js';
import { trace } from '../../../src/trace/index.js';
import { dispatch, withEagerBackend } from '../../../src/ops/dispatch.js';
import { optimize } from '../../../src/passes/index.js';
import type { Graph } from '../../../src/ir/index.js';
import { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { assertClose } from './helpers.js';

const skip = planAddon ? false : 'native plan executor not built';
let seed = 9300;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

type Fn = (...a: Tensor[]) => Tensor | Tensor[];
interface Compiled { exe: PlanExecutable; graph: Graph; fn: Fn }
function compile(fn: Fn, args: Tensor[], params: Record<string, Tensor> = {}): Compiled {
  const t = trace(fn, args, { module: { namedParameters: () => Object.entries(params) } });
  const graph = optimize(t.graph);
  return { exe: new PlanExecutable(graph, t.constants), graph, fn };
}
const asList = (r: Tensor | Tensor[]): Tensor[] => (Array.isArray(r) ? r : [r]);
// the model function itself, run eagerly: on the reference (pure TS) kernels, or the native ones
const reference = (c: Compiled, inputs: Tensor[]): Tensor[] => withEagerBackend('reference', () => asList(c.fn(...inputs)));
const eager = (c: Compiled, inputs: Tensor[]): Tensor[] => withEagerBackend('auto', () => asList(c.fn(...inputs)));
type Tol = (i: number, e: number) => number;
const nearRef: Tol = (_i, e) => 2e-5 * Math.max(1, Math.abs(e));
// group norm scales x - mean by 1/sqrt(var + eps): with a one-element group (var 0) that is
// 1/sqrt(1e-5) ≈ 316 times the fp32 rounding of x·scale + shift, so allow an absolute 5e-4 on top
const nearRefNorm: Tol = (_i, e) => 2e-5 * Math.max(1, Math.abs(e)) + 5e-4;

/** Runs the plan, checks it used `kernel`, and compares every output to the reference kernels
 *  (exactly for movement and selection, within fp32 rounding for arithmetic). */
function check(c: Compiled, inputs: Tensor[], kernel: string, what: string, exact: boolean, tol: Tol = nearRef): void {
  assert.equal(c.exe.path, 'plan', `${what}: ${c.exe.describe()}`);
  const got = c.exe.run(inputs);
  assert.ok(c.exe.planStats()!.kernelNames.includes(kernel), `${what}: no ${kernel} kernel in ${c.exe.planStats()!.kernelNames.join(', ')}`);
  const want = reference(c, inputs);
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    if (exact) {
      assert.deepEqual(g.shape, want[i].shape, `${what} output ${i}: shape`);
      assert.equal(g.dtype, want[i].dtype, `${what} output ${i}: dtype`);
      assert.deepEqual(g.toFlatArray(), want[i].toFlatArray(), `${what} output ${i}`);
    } else assertClose(g, want[i], tol, `${what} output ${i}`);
  });
}

test('pad: constant, reflect and replicate on edge shapes and dtypes', { skip }, () => {
  const cases: { shape: number[]; pads: number[]; mode: 'constant' | 'reflect' | 'replicate'; value?: number }[] = [
    { shape: [1], pads: [1, 2], mode: 'constant', value: 2.5 },
    { shape: [1, 1, 1, 1], pads: [1, 1, 1, 1], mode: 'replicate' },
    { shape: [2, 3, 5, 7], pads: [1, 1, 1, 1], mode: 'constant' },
    { shape: [2, 3, 5, 7], pads: [2, 1, 3, 0], mode: 'reflect' },
    { shape: [1, 4, 17, 19], pads: [0, 3, 2, 2], mode: 'replicate' },
    { shape: [3, 33], pads: [5, 0, 1, 2], mode: 'constant', value: -1 },
    { shape: [2, 1, 16], pads: [15, 15], mode: 'reflect' },
  ];
  for (const { shape, pads, mode, value } of cases) {
    const c = compile((x: Tensor) => ops.pad(x, pads, mode, value ?? 0), [rnd(shape)]);
    check(c, [rnd(shape)], 'pad', `pad ${mode} [${shape}] by [${pads}]`, true);
  }
  // integer data pads with the value converted to its dtype
  const ints = fromArray(Array.from({ length: 15 }, (_, i) => i * 7 - 40), [3, 5], 'i32');
  const c = compile((x: Tensor) => ops.pad(x, [1, 2, 0, 1], 'constant', 3), [ints]);
  check(c, [ints], 'pad', 'pad i32', true);
});

test('group_norm and add_group_norm match the reference', { skip }, () => {
  const cases: { shape: number[]; groups: number; affine: boolean }[] = [
    { shape: [1, 1, 1], groups: 1, affine: true },
    { shape: [1, 2, 1, 1], groups: 2, affine: false },
    { shape: [2, 6, 5, 3], groups: 3, affine: true },
    { shape: [3, 32, 17], groups: 8, affine: true },
    { shape: [1, 64, 9, 11], groups: 32, affine: true },
  ];
  for (const { shape, groups, affine } of cases) {
    const C = shape[1];
    const params: Record<string, Tensor> = affine ? { w: rnd([C], 0.5).add(1), b: rnd([C], 0.1) } : {};
    const fn = (x: Tensor) => ops.groupNorm(x, groups, params.w ?? null, params.b ?? null);
    const plain = compile(fn, [rnd(shape)], params);
    const x = rnd(shape, 3).add(1);
    check(plain, [x], 'group_norm', `group_norm [${shape}] / ${groups}`, false, nearRefNorm);
    // the plan runs the eager kernel's core: identical bits
    assert.deepEqual(plain.exe.run([x])[0].toFlatArray(), eager(plain, [x])[0].toFlatArray(), `group_norm [${shape}] vs eager`);
    // the fused residual form (no pass emits it yet; models and imports can): both outputs leave the graph
    const withRes = compile((a: Tensor, r: Tensor) => {
      const [normed, sum] = dispatch('add_group_norm', [a, r, params.w ?? null, params.b ?? null], { num_groups: groups, eps: 1e-5 });
      return [normed, sum.mul(2)];
    }, [rnd(shape), rnd(shape)], params);
    check(withRes, [rnd(shape), rnd(shape)], 'add_group_norm', `add + group_norm [${shape}]`, false, nearRefNorm);
  }
});

test('upsample_nearest2d repeats rows and columns exactly', { skip }, () => {
  const cases: [number[], [number, number]][] = [[[1, 1, 1, 1], [1, 1]], [[1, 1, 1, 1], [3, 2]], [[2, 3, 5, 7], [2, 3]], [[1, 4, 16, 17], [2, 2]], [[1, 2, 3, 1], [1, 5]]];
  for (const [shape, scale] of cases) {
    const c = compile((x: Tensor) => ops.upsampleNearest2d(x, scale), [rnd(shape)]);
    check(c, [rnd(shape)], 'upsample_nearest2d', `upsample [${shape}] x [${scale}]`, true);
  }
});

test('rotary_embedding (NeoX halves and GPT-J pairs, partial rotary dims) matches the reference', { skip }, () => {
  const cases: { x: number[]; half: number }[] = [
    { x: [1, 1, 1, 2], half: 1 },
    { x: [2, 3, 7, 10], half: 4 },
    { x: [1, 2, 17, 32], half: 16 },
    { x: [5, 33], half: 3 },
  ];
  for (const { x, half } of cases) {
    const seq = x[x.length - 2];
    for (const interleaved of [false, true]) {
      const c = compile((t: Tensor, cos: Tensor, sin: Tensor) => ops.rotaryEmbedding(t, cos, sin, interleaved), [rnd(x), rnd([seq, half]), rnd([seq, half])]);
      check(c, [rnd(x), rnd([seq, half]), rnd([seq, half])], 'rotary_embedding', `rotary [${x}] half ${half} interleaved ${interleaved}`, false);
    }
  }
});

test('rotary_embedding reads and writes strided views: heads transposed out of a wider projection cost no copy', { skip }, () => {
  // x [T, W] holds [T, H, d] head rows in columns at..at+H·d (the q or k piece of a fused QKV
  // projection); the decoder's rope is transpose -> rotary -> transpose back, then a consumer
  const cases: { T: number; W: number; at: number; H: number; d: number; half: number }[] = [
    { T: 1, W: 3, at: 1, H: 1, d: 2, half: 1 },
    { T: 1, W: 80, at: 16, H: 4, d: 16, half: 8 },
    { T: 5, W: 37, at: 3, H: 3, d: 10, half: 4 },
    { T: 17, W: 7 * 33, at: 33, H: 5, d: 33, half: 13 },
    { T: 16, W: 48 * 6, at: 0, H: 4, d: 48, half: 24 },
  ];
  for (const { T, W, at, H, d, half } of cases) {
    for (const interleaved of [false, true]) {
      const fn = (x: Tensor, cos: Tensor, sin: Tensor): Tensor => {
        const heads = ops.sliceAxis(x, 1, at, at + H * d).reshape([T, H, d]).transpose(0, 1);
        const r = ops.rotaryEmbedding(heads, cos, sin, interleaved).transpose(0, 1);
        return r.mul(2);  // a consumer that reads the [T, H, d] layout
      };
      const args = () => [rnd([T, W]), rnd([T, half]), rnd([T, half])];
      const c = compile(fn, args());
      const what = `rotary of heads [${T}, ${H}, ${d}] in [${T}, ${W}] at ${at}, half ${half}, interleaved ${interleaved}`;
      check(c, args(), 'rotary_embedding', what, false);
      assert.equal(c.exe.planStats()!.copies, 0, `${what}: ${c.exe.planStats()!.kernelNames.join(', ')}`);
    }
  }
  // a rank-4 [B, H, T, d] transpose that no [outer, seq, d] strides express is copied once, and right
  const fn4 = (x: Tensor, cos: Tensor, sin: Tensor): Tensor => ops.rotaryEmbedding(x.transpose(1, 2), cos, sin).mul(3);
  const args4 = () => [rnd([2, 7, 3, 12]), rnd([7, 6]), rnd([7, 6])];
  check(compile(fn4, args4()), args4(), 'rotary_embedding', 'rotary of a [2, 3, 7, 12] transpose', false);
});

test('argmax picks the first maximum, NaN first, along any axis', { skip }, () => {
  for (const [shape, axis] of [[[1], 0], [[17], -1], [[5, 17, 3], 1], [[4, 33], -1], [[2, 1, 9], 0]] as [number[], number][]) {
    const c = compile((x: Tensor) => ops.argmax(x, axis), [rnd(shape)]);
    check(c, [rnd(shape)], 'argmax', `argmax [${shape}] axis ${axis}`, true);
  }
  // ties keep the first index; a NaN wins wherever it is
  const x = fromArray([1, 3, 3, 0, NaN, 2, 5, NaN, 5, 5, 5, 5], [3, 4]);
  const c = compile((t: Tensor) => ops.argmax(t, 1), [x]);
  check(c, [x], 'argmax', 'argmax ties and NaN', true);
  assert.deepEqual(Array.from(c.exe.run([x])[0].toFlatArray()), [1, 0, 0]);
});

test('top_k values and indices: largest, smallest, unsorted, ties and NaN', { skip }, () => {
  const cases: { shape: number[]; k: number; axis: number; largest: boolean; sorted: boolean }[] = [
    { shape: [1], k: 1, axis: 0, largest: true, sorted: true },
    { shape: [17], k: 5, axis: 0, largest: true, sorted: true },
    { shape: [3, 33, 2], k: 4, axis: 1, largest: false, sorted: true },
    { shape: [4, 19], k: 7, axis: -1, largest: true, sorted: false },
    { shape: [2, 16], k: 16, axis: 1, largest: false, sorted: false },
    { shape: [2, 5], k: 0, axis: 1, largest: true, sorted: true },
  ];
  for (const { shape, k, axis, largest, sorted } of cases) {
    const c = compile((x: Tensor) => { const r = ops.topk(x, k, axis, largest, sorted); return [r.values, r.indices]; }, [rnd(shape)]);
    if (k === 0) { assert.equal(c.exe.path, 'plan', c.exe.describe()); continue; }
    check(c, [rnd(shape)], 'top_k', `top_k [${shape}] k ${k} axis ${axis} largest ${largest} sorted ${sorted}`, true);
  }
  const x = fromArray([2, NaN, 2, 7, -1, 7, 0, NaN], [8]);
  for (const largest of [true, false]) {
    const c = compile((t: Tensor) => { const r = ops.topk(t, 5, 0, largest); return [r.values, r.indices]; }, [x]);
    check(c, [x], 'top_k', `top_k ties and NaN largest ${largest}`, true);
  }
});

test('describe(): a rotary decoder block and a UNet-style block run as native plans', { skip }, () => {
  // decoder block: rms_norm, q/k/v projections, rotary on q and k, causal attention, output
  // projection with a residual, then argmax / top_k over the logits
  const [B, S, H, D, V] = [1, 7, 2, 8, 37];
  const E = H * D;
  const p = {
    norm: rnd([E], 0.1).add(1), wq: rnd([E, E], 0.2), wk: rnd([E, E], 0.2), wv: rnd([E, E], 0.2), wo: rnd([E, E], 0.2), head: rnd([V, E], 0.2),
    cos: rnd([S, D / 2]), sin: rnd([S, D / 2]),
  };
  const heads = (t: Tensor) => t.reshape([B, S, H, D]).permute([0, 2, 1, 3]);
  const decoder = (x: Tensor) => {
    const h = ops.rmsNorm(x, p.norm);
    const q = ops.rotaryEmbedding(heads(ops.linear(h, p.wq)), p.cos, p.sin);
    const k = ops.rotaryEmbedding(heads(ops.linear(h, p.wk)), p.cos, p.sin);
    const a = ops.scaledDotProductAttention(q, k, heads(ops.linear(h, p.wv)), { causal: true });
    const y = ops.linear(a.permute([0, 2, 1, 3]).reshape([B, S, E]), p.wo).add(x);
    const logits = ops.linear(y, p.head);
    return [logits, ops.argmax(logits, -1), ops.topk(logits, 3).indices];
  };
  const dec = compile(decoder, [rnd([B, S, E])], p);
  const input = rnd([B, S, E]);
  const got = dec.exe.run([input]);
  assert.match(dec.exe.describe(), /^cpu plan: /, dec.exe.describe());
  const names = dec.exe.planStats()!.kernelNames;
  for (const k of ['rotary_embedding', 'argmax', 'top_k']) assert.ok(names.includes(k), `decoder kernels: ${names.join(', ')}`);
  const want = reference(dec, [input]);
  assertClose(got[0], want[0], (_i, e) => 1e-4 * Math.max(1, Math.abs(e)), 'decoder logits');

  // UNet-style block: conv, group_norm, silu, nearest upsampling, pad, conv, residual group_norm
  const q = { w1: rnd([8, 4, 3, 3], 0.2), b1: rnd([8], 0.1), w2: rnd([8, 8, 3, 3], 0.1), gw: rnd([8], 0.1).add(1), gb: rnd([8], 0.1) };
  const unet = (x: Tensor) => {
    const h = ops.silu(ops.groupNorm(ops.conv2d(x, q.w1, q.b1, { padding: 1 }), 4, q.gw, q.gb));
    const up = ops.pad(ops.upsampleNearest2d(h, 2), [1, 1, 1, 1], 'reflect');
    const y = ops.conv2d(up, q.w2);
    return ops.groupNorm(y.add(ops.upsampleNearest2d(h, 2)), 2, q.gw, q.gb);
  };
  const un = compile(unet, [rnd([1, 4, 5, 7])], q);
  const x = rnd([1, 4, 5, 7]);
  const out = un.exe.run([x]);
  assert.match(un.exe.describe(), /^cpu plan: /, un.exe.describe());
  const unNames = un.exe.planStats()!.kernelNames;
  for (const k of ['pad', 'upsample_nearest2d']) assert.ok(unNames.includes(k), `unet kernels: ${unNames.join(', ')}`);
  assert.ok(unNames.some((n) => n === 'group_norm' || n === 'add_group_norm'), `unet kernels: ${unNames.join(', ')}`);
  assertClose(out[0], reference(un, [x])[0], (_i, e) => 1e-4 * Math.max(1, Math.abs(e)), 'unet output');
});
