import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, GraphBreakError, randn, arange, fromArray, ops, nn } from '../../src/index.js';
import { Graph } from '../../src/ir/index.js';
import { trace, rebuildOutput, DynamicDimError, solveDim, type TraceOptions } from '../../src/trace/index.js';
import { interpret } from '../../src/backends/reference/index.js';

// interpret() runs the very kernels eager mode runs, op by op in the same order, so results must be
// bit-identical to eager: every comparison below is exact.
function assertSame(actual: Tensor, expected: Tensor, what = 'tensor'): void {
  assert.equal(actual.dtype, expected.dtype, `${what}: dtype`);
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const a = actual.toFlatArray(), e = expected.toFlatArray();
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], e[i])) assert.fail(`${what}: element ${i} is ${a[i]}, eager gives ${e[i]}`);
  }
}

/** Traces fn on args, interprets the graph on the same args, and checks it equals eager. */
function traceAndCompare(fn: (...args: any[]) => unknown, args: unknown[], options: TraceOptions = {}) {
  const r = trace(fn, args, options);
  const inputs = args.flatMap(function walk(a: unknown): Tensor[] {
    if (a instanceof Tensor) return [a];
    if (Array.isArray(a)) return a.flatMap(walk);
    if (a && typeof a === 'object' && Object.getPrototypeOf(a) === Object.prototype) return Object.values(a).flatMap(walk);
    return [];
  });
  const outs = interpret(r.graph, inputs, r.constants);
  const rebuilt = rebuildOutput(r.outputTree, outs);
  const eager = fn(...args);
  const compare = (x: unknown, y: unknown, path: string): void => {
    if (y instanceof Tensor) return assertSame(x as Tensor, y, path);
    if (Array.isArray(y)) { assert.equal((x as unknown[]).length, y.length, path); y.forEach((v, i) => compare((x as unknown[])[i], v, `${path}[${i}]`)); return; }
    if (y && typeof y === 'object') { assert.deepEqual(Object.keys(x as object), Object.keys(y)); for (const k of Object.keys(y)) compare((x as any)[k], (y as any)[k], `${path}.${k}`); return; }
    assert.deepEqual(x, y, path);
  };
  compare(rebuilt, eager, 'out');
  return r;
}

/** A hand-made module: just the namedParameters() the tracer needs. */
const paramsOf = (entries: Record<string, Tensor>) => ({ namedParameters: () => Object.entries(entries) });

function callerLine(): number {
  const frame = new Error().stack!.split('\n')[2];
  return Number(/trace\.test\.ts:(\d+):\d+/.exec(frame)![1]);
}

test('elementwise chains trace to one node per op and interpret like eager', () => {
  const x = randn([3, 4], { seed: 1 }), y = randn([3, 4], { seed: 2 });
  const r = traceAndCompare((a: Tensor, b: Tensor) => a.mul(b).add(2).exp().sub(b.relu()).tanh().maximum(b.neg()), [x, y]);
  assert.deepEqual(r.graph.nodes.map((n) => n.op), ['mul', 'add', 'exp', 'relu', 'sub', 'tanh', 'neg', 'maximum']);
  assert.deepEqual(r.graph.inputs.map((i) => i.name), ['arg0', 'arg1']);
  const lit = r.graph.constants.find((c) => c.kind === 'literal')!;
  assert.deepEqual([lit.dtype, lit.shape, lit.data], ['f32', [], [2]]);
  assert.equal(r.constants.size, 0);
});

test('module parameters become named constants that are referenced, never copied', () => {
  const w = randn([5, 4], { seed: 3 }), b = randn([5], { seed: 4 }), w2 = randn([5, 3], { seed: 5 });
  const fn = (x: Tensor) => ops.linear(x, w, b).relu().matmul(w2).softmax(-1);
  const r = traceAndCompare(fn, [randn([2, 4], { seed: 6 })], { module: paramsOf({ 'fc.weight': w, 'fc.bias': b, 'out.weight': w2 }) });
  assert.deepEqual(r.graph.constants.map((c) => [c.name, c.kind, c.data]), [['fc.weight', 'param', undefined], ['fc.bias', 'param', undefined], ['out.weight', 'param', undefined]]);
  assert.equal(r.constants.get('fc.weight'), w);
  assert.equal(r.constants.get('out.weight'), w2);
  assert.match(r.graph.print(), /= linear\(%0, @fc\.weight, @fc\.bias\)/);
  // the interpreter reads the live parameter: changing it changes the result
  const x = randn([2, 4], { seed: 7 });
  const before = interpret(r.graph, [x], r.constants)[0].toFlatArray();
  (w2.data as Float32Array).fill(0.5); w2.markModified();
  const after = interpret(r.graph, [x], r.constants)[0];
  assert.notDeepEqual(after.toFlatArray(), before);
  assertSame(after, fn(x));
});

test('nn modules trace: LayerNorm, Linear, GELU and a residual', () => {
  class Block extends nn.Module {
    ln = new nn.LayerNorm(8);
    fc1 = new nn.Linear(8, 16, { seed: 1 });
    fc2 = new nn.Linear(16, 8, { seed: 2 });
    forward(x: Tensor): Tensor { return x.add(this.fc2.forward(this.fc1.forward(this.ln.forward(x)).gelu())); }
  }
  const m = new Block();
  const r = traceAndCompare((x: Tensor) => m.forward(x), [randn([2, 3, 8], { seed: 8 })], { module: m });
  assert.deepEqual(r.graph.nodes.map((n) => n.op), ['layer_norm', 'linear', 'gelu', 'linear', 'add']);
  assert.deepEqual([...r.constants.keys()].sort(), ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight', 'ln.bias', 'ln.weight']);
});

test('a traced graph prints as a stable, readable listing', () => {
  class Tiny extends nn.Module {
    norm = new nn.LayerNorm(4);
    scale = this.registerBuffer('scale', fromArray([1, 2, 3, 4]));
    forward(x: Tensor): Tensor {
      const [B] = x.shape;
      return this.norm.forward(x).mul(this.scale).reshape(B, 2, 2).softmax(-1).add(1);
    }
  }
  const m = new Tiny();
  const r = trace((x: Tensor) => m.forward(x), [randn([3, 4], { seed: 1 })], { inputSpec: [{ shape: ['batch', 4] }], module: m });
  assert.equal(r.graph.print({ source: false }), [
    'graph {',
    '  input %0: f32[batch, 4]  "arg0"',
    '  param @norm.weight %1: f32[4]',
    '  param @norm.bias %2: f32[4]',
    '  param @scale %4: f32[4]',
    '  literal @lit0 %8: f32[] = 1',
    '  %3: f32[batch, 4] = layer_norm(%0, @norm.weight, @norm.bias) {normalized_ndim=1, eps=1e-5}',
    '  %5: f32[batch, 4] = mul(%3, @scale)',
    '  %6: f32[batch, 2, 2] = reshape(%5) {shape=[batch, 2, 2]}',
    '  %7: f32[batch, 2, 2] = softmax(%6) {axis=-1}',
    '  %9: f32[batch, 2, 2] = add(%7, @lit0)',
    '  return %9 "out"',
    '}',
  ].join('\n'));
  assert.match(r.graph.print(), /= layer_norm\(.*  # test\/trace\/trace\.test\.ts:\d+:\d+\n/);
  assert.equal(r.constants.get('scale'), m.scale);
});

test('reshape, permute, split and concat chains', () => {
  const fn = (x: Tensor) => {
    const [a, b, c] = x.reshape(2, 3, 4).permute(2, 0, 1).split([1, 2, 1], 0);
    return ops.concat([c, a.mul(b), b.flatten(0, 1).reshape(2, 2, 3).transpose(1, 2).transpose(1, 2)], 0).unsqueeze(0).squeeze(0);
  };
  traceAndCompare(fn, [randn([6, 4], { seed: 9 })]);
});

test('multi-output ops and nested result structures are rebuilt', () => {
  const fn = (x: Tensor) => {
    const { values, indices } = ops.topk(x, 2, -1);
    const [lo, hi] = x.split(2, 1);
    return { top: [values, indices], halves: { lo, hi: hi.exp() }, k: 2, label: 'top2', same: lo };
  };
  const r = traceAndCompare(fn, [randn([3, 4], { seed: 10 })]);
  assert.deepEqual(r.graph.outputs.map((o) => o.name), ['out.top[0]', 'out.top[1]', 'out.halves.lo', 'out.halves.hi', 'out.same']);
  assert.equal(r.graph.nodes.find((n) => n.op === 'top_k')!.outputs.length, 2);
  const out = rebuildOutput(r.outputTree, interpret(r.graph, [randn([3, 4], { seed: 11 })], r.constants)) as any;
  assert.equal(out.k, 2);
  assert.equal(out.label, 'top2');
  assert.equal(out.top[1].dtype, 'i64');
  assert.equal(out.same, out.halves.lo);
});

test('tensors nested in array and object arguments become inputs in depth-first order', () => {
  const fn = (pair: Tensor[], opts: { mask: Tensor; scale: number }) => pair[0].add(pair[1]).mul(opts.scale).add(opts.mask);
  const a = randn([2, 2], { seed: 12 }), b = randn([2, 2], { seed: 13 }), mask = randn([2], { seed: 14 });
  const r = traceAndCompare(fn, [[a, b], { mask, scale: 3 }]);
  assert.deepEqual(r.graph.inputs.map((i) => i.name), ['arg0[0]', 'arg0[1]', 'arg1.mask']);
  assert.deepEqual(r.guards.nonTensorArgs, [[{ $tensor: 0 }, { $tensor: 1 }], { mask: { $tensor: 2 }, scale: 3 }]);
});

test('non-tensor arguments are folded in as constants and reported as guards', () => {
  const fn = (x: Tensor, cfg: { eps: number; act: string }, flip: boolean) => {
    let y = cfg.act === 'relu' ? x.relu() : x.sigmoid();
    if (flip) y = y.neg();
    return y.add(cfg.eps);
  };
  const x = randn([4], { seed: 15 });
  const r1 = traceAndCompare(fn, [x, { eps: 0.5, act: 'relu' }, true]);
  assert.deepEqual(r1.graph.nodes.map((n) => n.op), ['relu', 'neg', 'add']);
  assert.deepEqual(r1.guards.nonTensorArgs, [{ $tensor: 0 }, { act: 'relu', eps: 0.5 }, true]);
  const r2 = traceAndCompare(fn, [x, { act: 'sigmoid', eps: 0.5 }, false]);
  assert.deepEqual(r2.graph.nodes.map((n) => n.op), ['sigmoid', 'add']);
  assert.notEqual(r1.graph.hash(), r2.graph.hash());
  const r3 = trace(fn, [x, { eps: 0.25, act: 'relu' }, true]);
  assert.notEqual(r3.graph.hash(), r1.graph.hash(), 'a different folded number is a different literal');
  assert.deepEqual(r3.guards.nonTensorArgs[1], { act: 'relu', eps: 0.25 });
});

test('JS loops over numbers unroll; concrete tensors made inside forward are folded to literals', () => {
  const fn = (x: Tensor) => {
    const steps = arange(3).mul(2); // computed now: no symbolic input
    const n = steps.sum().item();   // reading a concrete tensor is fine while tracing
    for (let i = 0; i < n / 2; i++) x = x.add(steps.sliceAxis(0, i % 3, i % 3 + 1));
    return x;
  };
  const r = traceAndCompare(fn, [randn([2, 1], { seed: 16 })]);
  assert.deepEqual(r.graph.nodes.map((n) => n.op), ['add', 'add', 'add']);
  assert.deepEqual(r.graph.constants.map((c) => c.data), [[0], [2], [4]]);
});

test('the graph hash depends on parameter names and shapes, not their values', () => {
  const build = (seed: number, name = 'w', width = 4) => {
    const w = randn([width, 4], { seed });
    return trace((x: Tensor) => x.matmul(w).relu(), [randn([2, width], { seed: 1 })], { module: paramsOf({ [name]: w }) }).graph.hash();
  };
  assert.equal(build(1), build(2));
  assert.notEqual(build(1), build(1, 'v'));
  assert.notEqual(build(1), build(1, 'w', 5));
});

test('reading a symbolic tensor\'s data is a graph break naming the op and this file\'s line', () => {
  const x = randn([3], { seed: 17 });
  let line = 0;
  assert.throws(() => trace((t: Tensor) => {
    const s = t.sum();
    line = callerLine() + 1;
    if (s.item() > 0) return t.relu();
    return t;
  }, [x]), (e: unknown) => {
    assert.ok(e instanceof GraphBreakError);
    assert.equal(e.op, 'item');
    assert.equal(e.sourceLine?.replace(/:\d+$/, ''), `test/trace/trace.test.ts:${line}`);
    assert.match(e.message, new RegExp(`graph break: item reads the data of a symbolic tensor at test/trace/trace\\.test\\.ts:${line}:\\d+\\. The tensor \\(the output of sum at test/trace/trace\\.test\\.ts:${line - 2}:\\d+\\) has no values while tracing`));
    return true;
  });
  assert.throws(() => trace((t: Tensor) => (t.sum() as unknown as number) > 1 ? t : t.neg(), [x]),
    /graph break: implicit conversion to number reads the data of a symbolic tensor at test\/trace\/trace\.test\.ts:\d+/);
  assert.throws(() => trace((t: Tensor) => t.exp().toArray(), [x]), /graph break: toArray reads/);
  assert.throws(() => trace((t: Tensor) => t.data, [x]), /graph break: data reads/);
  const w = randn([3], { seed: 18 });
  assert.throws(() => trace((t: Tensor) => t.add(w.exp().item()), [x], { module: paramsOf({ w }) }),
    /graph break: item reads the data of a symbolic tensor .*The tensor \(the output of exp at/, 'ops on parameters are traced too');
});

test('results that are inputs or parameters become outputs; escaped tracers are reported', () => {
  const w = randn([2], { seed: 19 });
  const x = randn([2], { seed: 20 });
  const r = trace((t: Tensor) => [t, w, t.add(w)], [x], { module: paramsOf({ w }) });
  const [a, b, c] = rebuildOutput(r.outputTree, interpret(r.graph, [x], r.constants)) as Tensor[];
  assert.equal(a, x);
  assert.equal(b, w);
  assertSame(c, x.add(w));
  let leaked: Tensor | undefined;
  trace((t: Tensor) => (leaked = t.relu()), [x]);
  assert.throws(() => leaked!.add(1), /a symbolic tensor was used outside of tracing/);
  assert.throws(() => trace((t: Tensor) => t.add(leaked!), [x]), /a symbolic tensor from another tracing run was used/);
});

test('dynamic batch: a model reshaping with x.shape[0] runs at any batch size', () => {
  const w = randn([8, 8], { seed: 21 });
  const fn = (x: Tensor) => {
    const [B, L, C] = x.shape;
    const heads = 2;
    const h = x.matmul(w).reshape(B, L, heads, C / heads).permute(0, 2, 1, 3).softmax(-1);
    return h.reshape(B * heads, L * (C / heads)).sum(-1).reshape(B, heads);
  };
  const r = trace(fn, [randn([2, 3, 8], { seed: 22 })], { inputSpec: [{ shape: ['batch', 3, 8] }], module: paramsOf({ w }) });
  assert.deepEqual(r.guards.dynamicDims, ['batch']);
  const text = r.graph.print({ source: false });
  assert.match(text, /input %0: f32\[batch, 3, 8\]/);
  assert.match(text, /f32\[batch, 3, 2, 4\] = reshape\(%\d+\) \{shape=\[batch, 3, 2, 4\]\}/);
  assert.match(text, /f32\[2\*batch, 12\] = reshape\(%\d+\) \{shape=\[2\*batch, 12\]\}/);
  assert.match(text, /f32\[batch, 2\] = reshape\(%\d+\) \{shape=\[batch, 2\]\}/);
  assert.doesNotMatch(text, /\[2, 3, 2, 4\]/, 'the example batch size is not baked in');
  for (const b of [1, 3, 5]) {
    const x = randn([b, 3, 8], { seed: 30 + b });
    const [y] = interpret(r.graph, [x], r.constants);
    assertSame(y, fn(x) as Tensor, `batch ${b}`);
  }
});

test('dynamic batch and sequence through nn.SelfAttention; -1 dims get names', () => {
  const attn = new nn.SelfAttention(8, 2, { seed: 3 });
  const fn = (x: Tensor) => attn.forward(x);
  const r = trace(fn, [randn([2, 3, 8], { seed: 23 })], { inputSpec: [{ shape: [-1, 'seq', 8] }], module: attn });
  assert.deepEqual(r.guards.dynamicDims, ['arg0_dim0', 'seq']);
  assert.match(r.graph.print(), /input %0: f32\[arg0_dim0, seq, 8\]/);
  for (const [b, s] of [[1, 1], [3, 5], [2, 7]]) {
    const x = randn([b, s, 8], { seed: 40 + b * s });
    assertSame(interpret(r.graph, [x], r.constants)[0], fn(x), `[${b}, ${s}]`);
  }
});

test('sums of dynamic dims from concat (a KV cache) stay symbolic through shape arithmetic', () => {
  const fn = (past: Tensor, x: Tensor) => {
    const kv = ops.concat([past, x], 1);
    const [B, T, C] = kv.shape;
    return kv.reshape(B, T * C).softmax(-1).reshape(B, T, C).sum(1);
  };
  const r = trace(fn, [randn([2, 3, 4], { seed: 1 }), randn([2, 1, 4], { seed: 2 })], { inputSpec: [{ shape: ['b', 'past', 4] }, { shape: ['b', 'new', 4] }] });
  const text = r.graph.print({ source: false });
  assert.match(text, /f32\[b, 4\*\(past\+new\)\] = reshape\(%2\) \{shape=\[b, 4\*\(past\+new\)\]\}/);
  assert.match(text, /f32\[b, \(past\+new\), 4\] = reshape\(%4\) \{shape=\[b, \(past\+new\), 4\]\}/);
  for (const [b, p, n] of [[1, 1, 1], [3, 5, 2], [2, 0, 6]]) {
    const past = randn([b, p, 4], { seed: 50 + p }), x = randn([b, n, 4], { seed: 60 + n });
    assertSame(interpret(r.graph, [past, x], r.constants)[0], fn(past, x), `b=${b} past=${p} new=${n}`);
  }
});

test('solveDim finds c·∏dims from two observations and refuses other arithmetic', () => {
  const dims = [{ name: 'batch', v1: 2, v2: 4, prime: 2 }, { name: 'seq', v1: 4, v2: 12, prime: 3 }];
  assert.equal(solveDim(7, 7, dims), 7);
  assert.equal(solveDim(512, 1024, dims), '256*batch');
  assert.equal(solveDim(8 * 6, 48 * 6, dims), '6*batch*seq');
  assert.equal(solveDim(16, 144, dims), 'seq*seq');
  assert.equal(solveDim(5, 13, dims), undefined, 'seq + 1');
  assert.equal(solveDim(2, 6, dims), undefined, 'seq / 2');
  assert.equal(solveDim(3, 11, dims), undefined, 'seq - 1');
  assert.equal(solveDim(2.5, 5, dims), undefined, 'floats');
  const kv = [{ name: 'past', v1: 3, v2: 6, prime: 2 }, { name: 'new', v1: 1, v2: 3, prime: 3 }];
  assert.equal(solveDim(16, 36, kv, ['(past+new)']), '4*(past+new)');
  assert.equal(solveDim(17, 37, kv, ['(past+new)']), undefined);
});

test('dims that cannot be made symbolic are refused with the op and source line', () => {
  const x = randn([2, 4], { seed: 24 });
  const spec = { inputSpec: [{ shape: ['batch', 'seq'] }] };
  // a sum of a dim and a number cannot be expressed as a product of dims
  assert.throws(() => trace((t: Tensor) => t.reshape(t.shape[0] * t.shape[1] + 0 * 1, 1).sliceAxis(0, 0, t.shape[1] - 1), [x], spec),
    (e: unknown) => e instanceof DynamicDimError &&
      /dynamic dim\(s\) "batch", "seq" are not dynamic-safe at node 1 \(slice at test\/trace\/trace\.test\.ts:\d+:\d+\): attribute "ends" is \[3\] when traced with batch=2, seq=4 and \[11\] with batch=4, seq=12/.test(e.message) &&
      /Mark the dim static/.test(e.message));
  // control flow that depends on a dim changes the graph's structure
  assert.throws(() => trace((t: Tensor) => (t.shape[0] > 2 ? t.relu() : t.exp()), [x], spec),
    /the traced graph depends on the value of dynamic dim\(s\) "batch", "seq": traced with batch=2, seq=4 and again with batch=4, seq=12, the graphs first differ at node 0 \(exp at test\/trace\/trace\.test\.ts:\d+:\d+\)/);
  // a literal built from a dynamic dim
  assert.throws(() => trace((t: Tensor) => t.add(arange(t.shape[1])), [x], spec),
    /a tensor created inside the traced function \(@lit0, first used by add at test\/trace\/trace\.test\.ts:\d+:\d+\) is f32\[4\] in one run and f32\[12\] in the other/);
  // a static dim stays static even when it shares its example value with a dynamic one
  const r = trace((t: Tensor) => t.reshape(t.shape[0], 2, 2).sum(-1), [randn([2, 4], { seed: 25 })], { inputSpec: [{ shape: ['batch', 4] }] });
  assert.deepEqual(r.graph.nodes[0].attrs.shape, ['batch', 2, 2]);
});

test('interpret validates inputs and binds symbolic dims consistently', () => {
  const fn = (x: Tensor, m: Tensor) => x.add(m);
  const r = trace(fn, [randn([2, 3], { seed: 26 }), randn([2, 3], { seed: 27 })], { inputSpec: [{ shape: ['batch', 3] }, { shape: ['batch', 3] }] });
  const ok = interpret(r.graph, [randn([4, 3], { seed: 1 }), randn([4, 3], { seed: 2 })], r.constants);
  assert.deepEqual(ok[0].shape, [4, 3]);
  assert.throws(() => interpret(r.graph, [randn([4, 3])], r.constants), /interpret: the graph takes 2 inputs \(arg0, arg1\), got 1/);
  assert.throws(() => interpret(r.graph, [randn([4, 3]), fromArray([[1, 2, 3]], 'i32')], r.constants), /input 1 \("arg1"\) has dtype i32; the graph expects f32\[batch, 3\]/);
  assert.throws(() => interpret(r.graph, [randn([4, 3]), randn([4, 5])], r.constants), /input 1 \("arg1"\) has shape \[4, 5\]; the graph expects f32\[batch, 3\]: dim 1 must be 3/);
  assert.throws(() => interpret(r.graph, [randn([4, 3]), randn([5, 3])], r.constants), /input 1 \("arg1"\) has shape \[5, 3\]; dim 0 \("batch"\) is 5 but "batch" is 4 from input 0 \("arg0"\) dim 0/);
  assert.throws(() => interpret(r.graph, [randn([4, 3]), randn([4, 3, 1])], r.constants), /has shape \[4, 3, 1\] \(rank 3\); the graph expects f32\[batch, 3\] \(rank 2\)/);
  const w = randn([3], { seed: 28 });
  const rw = trace((t: Tensor) => t.mul(w), [randn([3])], { module: paramsOf({ scale: w }) });
  assert.throws(() => interpret(rw.graph, [randn([3])], new Map()), /interpret: parameter @scale is not in the constants map/);
  assert.throws(() => interpret(rw.graph, [randn([3])], new Map([['scale', randn([4])]])), /parameter @scale is f32\[4\] but the graph was traced with f32\[3\]/);
});

test('inputSpec is checked against the example inputs', () => {
  const x = randn([2, 3]);
  const fn = (t: Tensor) => t.relu();
  assert.throws(() => trace(fn, [x], { inputSpec: [{ shape: ['batch'] }] }), /inputSpec\[0\] \(input "arg0", f32\[2, 3\]\) has shape \[batch\]: it must list 2 dims/);
  assert.throws(() => trace(fn, [x], { inputSpec: [{ shape: ['batch', 4] }] }), /dim 1 is static 4 in the spec but 3 in the example/);
  assert.throws(() => trace(fn, [x], { inputSpec: [{ shape: ['batch', 3], dtype: 'f16' }] }), /asks for dtype f16/);
  assert.throws(() => trace(fn, [x], { inputSpec: [{ shape: ['bad name', 3] }] }), /dim 0 is "bad name"; use a number \(static\), -1 or a name/);
  assert.throws(() => trace((a: Tensor, b: Tensor) => a.add(b.sum()), [x, randn([3])], { inputSpec: [{ shape: ['n', 3] }, { shape: ['n'] }] }),
    /dynamic dim "n" is 2 at input "arg0" dim 0 but 3 at input "arg1" dim 0/);
  assert.throws(() => trace(fn, [x], { inputSpec: [null, null] }), /inputSpec has 2 entries but the call has 1 tensor inputs/);
});

test('traced graphs round-trip through JSON and still interpret', () => {
  const w = randn([4, 4], { seed: 29 });
  const fn = (x: Tensor) => x.matmul(w).reshape(x.shape[0], 2, 2).softmax(-1);
  const r = trace(fn, [randn([3, 4], { seed: 30 })], { inputSpec: [{ shape: ['n', 4] }], module: paramsOf({ w }) });
  const back = Graph.fromJSON(JSON.parse(JSON.stringify(r.graph)));
  back.verify();
  assert.equal(back.hash(), r.graph.hash());
  const x = randn([5, 4], { seed: 31 });
  assertSame(interpret(back, [x], r.constants)[0], fn(x));
});
