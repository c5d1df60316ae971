// inferenceJit's function form in one process: compiled results, guards and recompiles, the
// in-memory LRU, graph breaks and fallback, options that fail clearly, debug dumps.
// Compiled and eager results are compared exactly: the compiled graph runs the same kernels
// through the same dispatch (no passes exist yet), so they must agree bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nn, randn, fromArray, Tensor, GraphBreakError, inferenceJit, configure, resetConfig, jitStats } from '../../src/index.js';
import { doubleIfPositive } from './fixtures/graph-break.js';
import { listPassNames } from '../../src/passes/index.js';

class Mlp extends nn.Module {
  fc1 = new nn.Linear(8, 16, { seed: 1 });
  norm = new nn.LayerNorm(16);
  fc2 = new nn.Linear(16, 4, { seed: 2 });
  scale = 1;
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.norm.forward(this.fc1.forward(x)).gelu()).mul(this.scale);
  }
}

// Deploy-time INFERJIT_* variables override options by design; keep them out of these tests.
for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];

const memory = { cache: 'memory' as const };

test('compiled module: same results as eager; callable, .forward and module fields pass through', () => {
  const m = new Mlp();
  const fast = inferenceJit(m, memory);
  const x = randn([3, 8], { seed: 10 });
  assert.deepEqual(fast(x).toArray(), m.forward(x).toArray());
  assert.deepEqual(fast.forward(x).toArray(), m.forward(x).toArray());
  assert.ok(fast instanceof Mlp);
  assert.equal(fast.fc1, m.fc1);
  assert.equal(fast.module, m);
  const s = fast.stats();
  assert.equal(s.calls, 2);
  assert.equal(s.misses, 1);
  assert.equal(s.hits, 1);
  assert.equal(s.captures, 1);
  assert.equal(s.recompiles, 0);
  assert.ok(s.captureMs > 0);
  assert.match(fast.compiledEntries()[0].capture.graph.print(), /layer_norm\(.*@norm\.weight, @norm\.bias\)/);
});

test('compiled plain function: hand-checked values, nested inputs and outputs', () => {
  const f = inferenceJit((p: { a: Tensor; b: Tensor }, k: number) => ({ sum: p.a.add(p.b).mul(k), diff: [p.a.sub(p.b)] }), memory);
  const a = fromArray([1, 2, 3]), b = fromArray([10, 20, 30]);
  const out = f({ a, b }, 2) as { sum: Tensor; diff: Tensor[] };
  assert.deepEqual(out.sum.toArray(), [22, 44, 66]);
  assert.deepEqual(out.diff[0].toArray(), [-9, -18, -27]);
  // A different non-tensor argument is a guard: it recompiles and gives the new answer.
  const out3 = f({ a, b }, 3) as { sum: Tensor };
  assert.deepEqual(out3.sum.toArray(), [33, 66, 99]);
  const s = f.stats();
  assert.equal(s.recompiles, 1);
  assert.equal(s.recompileReasons[0].guard, 'non-tensor args');
  f({ a, b }, 2);
  assert.equal(f.stats().hits, 1); // both signatures stay cached
});

test('a new static shape recompiles; a shape within a dynamic dim does not', () => {
  const m = new Mlp();
  const fixed = inferenceJit(m, { ...memory, autoDynamic: false });
  fixed(randn([2, 8], { seed: 1 }));
  fixed(randn([5, 8], { seed: 2 }));
  assert.equal(fixed.stats().recompiles, 1);
  assert.deepEqual(fixed.stats().recompileReasons[0], { guard: 'input 0 shape', detail: 'input 0 shape was [2, 8], now [5, 8]' });

  const dynamic = inferenceJit(m, { ...memory, inputSpec: [{ shape: ['batch', 8] }] });
  for (const n of [2, 5, 1, 7]) {
    const x = randn([n, 8], { seed: n });
    assert.deepEqual(dynamic(x).toArray(), m.forward(x).toArray());
  }
  const s = dynamic.stats();
  assert.equal(s.captures, 1);
  assert.equal(s.recompiles, 0);
  assert.equal(s.hits, 3);
  assert.match(dynamic.compiledEntries()[0].capture.graph.print(), /f32\[batch, 4\]/);
  // -1 is dynamic too; a spec'd static dim that does not match is an error, not a recompile.
  const auto = inferenceJit(m, { ...memory, inputSpec: [{ shape: [-1, 8] }] });
  auto(randn([2, 8]));
  auto(randn([3, 8]));
  assert.equal(auto.stats().captures, 1);
  assert.throws(() => dynamic(randn([2, 9])), /input 0 has shape \[2, 9\] but inputSpec\[0\] is \[batch, 8\] \(dim 1 must be 8\)/);
});

test('inputs sharing a dynamic dim name must agree', () => {
  const f = inferenceJit((a: Tensor, b: Tensor) => a.add(b), { ...memory, inputSpec: [{ shape: ['n'] }, { shape: ['n'] }] });
  assert.deepEqual(f(fromArray([1, 2]), fromArray([3, 4])).toArray(), [4, 6]);
  assert.throws(() => f(fromArray([1, 2]), fromArray([3, 4, 5])), /dynamic dim "n" is 2 in input 0 \(axis 0\) but 3 in input 1 \(axis 0\)/);
});

test('changing a weight in place or replacing it invalidates the compiled entry', () => {
  const m = new Mlp();
  const fast = inferenceJit(m, memory);
  const x = randn([2, 8], { seed: 5 });
  fast(x);
  m.fc2.bias!.copyFrom(fromArray([1, 2, 3, 4]));
  const afterCopy = fast(x);
  assert.deepEqual(afterCopy.toArray(), m.forward(x).toArray());
  let s = fast.stats();
  assert.equal(s.recompiles, 1);
  assert.deepEqual(s.recompileReasons[0], { guard: 'parameter fc2.bias', detail: 'parameter fc2.bias was modified in place (version 0 -> 1)' });
  assert.equal(s.captures, 1); // only the weights changed: the captured graph is reused

  m.fc1.weight = randn([16, 8], { seed: 99 });
  assert.deepEqual(fast(x).toArray(), m.forward(x).toArray());
  s = fast.stats();
  assert.equal(s.recompiles, 2);
  assert.deepEqual(s.recompileReasons[1], { guard: 'parameter fc1.weight', detail: 'parameter fc1.weight was replaced by another tensor' });
  fast(x);
  assert.equal(fast.stats().hits, 1);
});

test('training flag and module fields are guarded', () => {
  const m = new Mlp();
  const fast = inferenceJit(m, memory);
  const x = randn([2, 8], { seed: 6 });
  fast(x);
  m.eval();
  fast(x);
  assert.equal(fast.stats().recompileReasons[0].guard, 'training');
  m.scale = 3;
  assert.deepEqual(fast(x).toArray(), m.forward(x).toArray());
  assert.equal(fast.stats().recompileReasons[1].guard, 'module config');
});

test('the in-memory cache is LRU-bounded by maxEntries', () => {
  const f = inferenceJit((x: Tensor) => x.mul(2), { ...memory, maxEntries: 2, autoDynamic: false });
  for (const n of [1, 2, 3]) f(randn([n]));
  let s = f.stats();
  assert.equal(s.entries, 2);
  assert.equal(s.evictions, 1);
  f(randn([3])); // still cached
  f(randn([1])); // evicted earlier: compiled again
  s = f.stats();
  assert.equal(s.hits, 1);
  assert.equal(s.misses, 4);
  assert.deepEqual(s.recompileReasons.at(-1), { guard: 'evicted', detail: 'this signature was compiled before and evicted from the in-memory cache (maxEntries 2)' });
});

test('a graph break names the op and the user source line; fallback "eager" warns once and still answers', async () => {
  const strict = inferenceJit(doubleIfPositive, { ...memory, fallback: 'error' });
  const x = fromArray([1, -2, 4]);
  assert.throws(() => strict(x), (e: unknown) => {
    assert.ok(e instanceof GraphBreakError);
    assert.match(e.message, /graph break: item reads the data of a symbolic tensor at test\/jit\/fixtures\/graph-break\.ts:7:\d+/);
    return true;
  });
  assert.equal(strict.stats().graphBreaks, 1);

  const warnings: Error[] = [];
  const onWarning = (w: Error): void => { if ((w as { code?: string }).code === 'INFERJIT_GRAPH_BREAK') warnings.push(w); };
  process.on('warning', onWarning);
  try {
    const lenient = inferenceJit(doubleIfPositive, { ...memory, fallback: 'eager' });
    assert.deepEqual(lenient(x).toArray(), [2, -4, 8]);
    assert.deepEqual(lenient(fromArray([-1, -2, 0])).toArray(), [1, 2, -0]);
    assert.deepEqual(lenient(x).toArray(), [2, -4, 8]);
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    assert.equal(warnings.length, 1);
    assert.match(warnings[0].message, /graph-break\.ts:7:\d+.*Running this signature as compiled pieces around the read/s);
    const s = lenient.stats();
    assert.equal(s.splitCalls, 3); // split around the read (src/jit/split.ts)
    assert.equal(s.eagerCalls, 0);
    assert.equal(s.graphBreaks, 1); // the decision is cached per signature: no re-trace
    assert.equal(s.captures, 0);
  } finally {
    process.off('warning', onWarning);
  }
});

test('devices route to their backends; ones that cannot run here fail clearly on the first call', () => {
  const x = randn([2]);
  // onnxruntime-node's CPU provider is bundled, so device 'onnxruntime' runs here and matches eager.
  assert.deepEqual(inferenceJit((t: Tensor) => t.neg(), { ...memory, device: 'onnxruntime' })(x).toArray(), x.neg().toArray());
  // No TensorRT provider on this machine: the error names what is missing.
  assert.throws(() => inferenceJit((t: Tensor) => t.neg(), { ...memory, device: 'tensorrt' })(x), /TensorRT/);
  assert.throws(() => inferenceJit((t: Tensor) => t.neg(), { ...memory, precision: 'int8' })(x), /precision 'int8' is not available yet/);
  assert.throws(() => inferenceJit((t: Tensor) => t.neg(), { devise: 'cpu' } as never), /unknown option "devise"/);
  assert.deepEqual(inferenceJit((t: Tensor) => t.neg(), { ...memory, device: 'reference' })(fromArray([1, -2])).toArray(), [-1, 2]);
});

test('configure() overrides the call-site device later, and the device guard recompiles', () => {
  const f = inferenceJit((t: Tensor) => t.exp(), { ...memory, device: 'cpu' });
  const x = fromArray([0, 1]);
  f(x);
  try {
    configure({ device: 'reference' });
    // Reference kernels compute in float64 and round once to f32: exp(1) to f32 precision.
    assert.deepEqual(f(x).toArray(), [1, Math.fround(Math.E)]);
    assert.deepEqual(f.stats().recompileReasons[0], { guard: 'device', detail: 'device changed from cpu to reference' });
    assert.equal(f.compiledEntries()[0].executable.backend, 'reference');
  } finally {
    resetConfig();
  }
});

test('cache "memory" compiles once and keeps the entry in memory, writing nothing to disk; debug dumps the captured IR', () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-debug-'));
  const cacheDir = mkdtempSync(join(tmpdir(), 'inferjit-memory-only-'));
  const f = inferenceJit(function addOne(t: Tensor) { return t.add(1); }, { cache: 'memory', cacheDir, debug: dir });
  assert.deepEqual(f(fromArray([1])).toArray(), [2]);
  assert.deepEqual(f(fromArray([5])).toArray(), [6]);
  const s = f.stats();
  assert.equal(s.captures, 1);
  assert.equal(s.hits, 1);
  assert.equal(s.diskWrites, 0);
  assert.deepEqual(readdirSync(cacheDir), []);
  const [folder] = readdirSync(dir);
  assert.match(folder, /^addOne-[0-9a-f]{10}$/);
  const files = readdirSync(join(dir, folder)).sort();
  // The captured IR, then the IR after each registered pass, in pipeline order.
  const perPass = listPassNames().flatMap((name, i) => {
    const stem = `${String(i + 1).padStart(2, '0')}-${name}`;
    return [`${stem}.json`, `${stem}.txt`];
  });
  assert.deepEqual(files, ['00-capture.json', '00-capture.txt', ...perPass, 'signature.json'].sort());
  assert.match(readFileSync(join(dir, folder, '00-capture.txt'), 'utf8'), /= add\(%0, /);
  rmSync(dir, { recursive: true });
});

test('a compiled submodule called inside a compiled model becomes part of the outer graph', () => {
  class Outer extends nn.Module {
    inner = new nn.Linear(4, 4, { seed: 3 });
    forward(x: Tensor): Tensor { return this.inner.forward(x).relu(); }
  }
  const m = new Outer();
  const innerFast = inferenceJit(m.inner, memory);
  m.inner.forward = innerFast.forward; // the user swaps in the compiled layer
  const fast = inferenceJit(m, memory);
  const x = randn([2, 4], { seed: 8 });
  const expected = new Outer().forward(x); // same seeds: same weights
  assert.deepEqual(fast(x).toArray(), expected.toArray());
  assert.match(fast.compiledEntries()[0].capture.graph.print(), /linear\(.*\n.*relu/);
  assert.equal(innerFast.stats().captures, 0); // inlined into the outer trace
  assert.equal(jitStats(m), null); // nothing decorated on the instance itself
});

test('an unusable cache folder is reported once and the model still runs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-badcache-'));
  const notADir = join(dir, 'file');
  writeFileSync(notADir, 'not a folder');
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { if ((w as { code?: string }).code === 'INFERJIT_CACHE') warnings.push(w.message); };
  process.on('warning', onWarning);
  try {
    const f = inferenceJit((t: Tensor) => t.add(1), { cacheDir: notADir });
    assert.deepEqual(f(fromArray([1, 2])).toArray(), [2, 3]);
    assert.deepEqual(f(fromArray([1, 2, 3])).toArray(), [2, 3, 4]);
    await new Promise((r) => setImmediate(r));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /cannot use .*file .*continuing without the disk cache/);
    assert.equal(f.stats().diskWrites, 0);
  } finally {
    process.off('warning', onWarning);
    rmSync(dir, { recursive: true });
  }
});
