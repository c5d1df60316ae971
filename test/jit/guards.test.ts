// The per-call fast path (src/jit/guards.ts, JitRunner.call): a cached call checks parameter
// versions and an identity snapshot of the module's fields instead of re-fingerprinting the whole
// configuration. Every change the full guards catch must still be caught through the fast path,
// and a change that leaves the configuration equal must still hit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, randn, fromArray, inferenceJit, type Tensor } from '../../src/index.js';
import { StructureSnapshot } from '../../src/jit/guards.js';

for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];
const memory = { cache: 'memory' as const, device: 'reference' as const };

class Scaled extends nn.Module {
  fc = new nn.Linear(4, 4, { seed: 1 });
  config = { scale: 2, act: 'relu', nested: { shift: [0, 1] } };
  blocks: nn.Module[] = [new nn.Linear(4, 4, { seed: 2 })];
  forward(x: Tensor): Tensor {
    let y = this.fc.forward(x).mul(this.config.scale).add(this.config.nested.shift[1]);
    for (const b of this.blocks) y = (b as nn.Linear).forward(y);
    return this.config.act === 'relu' ? y.relu() : y.tanh();
  }
}

const x = randn([2, 4], { seed: 3 });
/** Compiled vs eager: the passes fuse ops (fewer f32 roundings), so a few ulps apart. */
function same(a: Tensor, b: Tensor): void {
  const p = a.toFlatArray(), q = b.toFlatArray();
  assert.deepEqual(a.shape, b.shape);
  for (let i = 0; i < p.length; i++) assert.ok(Math.abs(p[i] - q[i]) <= 1e-5 + 1e-5 * Math.abs(q[i]), `element ${i}: ${p[i]} vs ${q[i]}`);
}

test('repeated calls are hits through the fast path: one compile, no recompile', () => {
  const m = new Scaled();
  const fast = inferenceJit(m, memory);
  for (let i = 0; i < 5; i++) same(fast(x), m.forward(x));
  const s = fast.stats();
  assert.deepEqual([s.calls, s.misses, s.hits, s.recompiles], [5, 1, 4, 0]);
});

test('a nested config field, an added field, a replaced submodule and a replaced array element are caught', () => {
  const m = new Scaled();
  const fast = inferenceJit(m, memory);
  fast(x);
  m.config.nested.shift[1] = 5; // two levels below a module field
  same(fast(x), m.forward(x));
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'module config');
  m.config.act = 'tanh';
  same(fast(x), m.forward(x));
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'module config');
  (m as unknown as Record<string, unknown>).extra = 7; // a new field: part of the fingerprint
  fast(x);
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'module config');
  m.blocks[0] = new nn.Linear(4, 4, { seed: 9 }); // same names and shapes, other tensors
  same(fast(x), m.forward(x));
  assert.match(fast.stats().recompileReasons.at(-1)!.guard, /^parameter blocks\.0\./);
  assert.equal(fast.stats().recompiles, 4);
});

test('an in-place weight update (version counter) and a replaced weight are caught', () => {
  const m = new Scaled();
  const fast = inferenceJit(m, memory);
  fast(x);
  m.fc.bias!.copyFrom(fromArray([1, 2, 3, 4]));
  same(fast(x), m.forward(x));
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'parameter fc.bias');
  m.fc.weight = randn([4, 4], { seed: 11 });
  same(fast(x), m.forward(x));
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'parameter fc.weight');
});

test('a field set to an equal value still hits (the full check decides, then the snapshot is retaken)', () => {
  const m = new Scaled();
  const fast = inferenceJit(m, memory);
  fast(x);
  m.config = { scale: 2, act: 'relu', nested: { shift: [0, 1] } }; // a new object, equal content
  fast(x);
  fast(x);
  const s = fast.stats();
  assert.deepEqual([s.misses, s.hits, s.recompiles], [1, 2, 0]);
});

test('the training flag of a submodule is a config change; of the root, a signature change', () => {
  const m = new Scaled();
  const fast = inferenceJit(m, memory);
  fast(x);
  m.fc.training = false;
  fast(x);
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'module config');
  m.eval();
  fast(x);
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'training');
});

test('different input shapes keep separate fast entries; switching between them does not recompile', () => {
  const m = new Scaled();
  const fast = inferenceJit(m, memory);
  const x5 = randn([5, 4], { seed: 4 });
  for (let i = 0; i < 3; i++) { same(fast(x), m.forward(x)); same(fast(x5), m.forward(x5)); }
  const s = fast.stats();
  assert.deepEqual([s.misses, s.hits, s.recompiles], [2, 4, 1]);
});

test('StructureSnapshot: identity check of module fields; Maps and typed arrays make it defer to the full check', () => {
  const m = new Scaled();
  const snap = new StructureSnapshot(m.namedModules().map(([, x]) => x));
  assert.equal(snap.exact, true);
  assert.equal(snap.check(), true);
  m.config.nested.shift.push(2);
  assert.equal(snap.check(), false);
  class WithMap extends nn.Module { table = new Map([[1, 2]]); forward(t: Tensor): Tensor { return t; } }
  class WithTyped extends nn.Module { lut = new Float32Array(4); forward(t: Tensor): Tensor { return t; } }
  for (const mod of [new WithMap(), new WithTyped()]) {
    const s = new StructureSnapshot([mod]);
    assert.equal(s.exact, false);
    assert.equal(s.check(), false);
  }
  // An undefined field deleted and another added keeps the key count: still caught.
  class Opt extends nn.Module { a: number | undefined = undefined; forward(t: Tensor): Tensor { return t; } }
  const o = new Opt();
  const so = new StructureSnapshot([o]);
  delete (o as { a?: number }).a;
  (o as unknown as Record<string, number>).b = 1;
  assert.equal(so.check(), false);
});

test('a Map field still guards its content (full check on every call)', () => {
  class Lookup extends nn.Module {
    table = new Map<string, number>([['k', 2]]);
    forward(t: Tensor): Tensor { return t.mul(this.table.get('k')!); }
  }
  const m = new Lookup();
  const fast = inferenceJit(m, memory);
  same(fast(x), x.mul(2));
  m.table.set('k', 3);
  same(fast(x), x.mul(3));
  assert.equal(fast.stats().recompileReasons.at(-1)!.guard, 'module config');
});

test('a cached call does not walk the module tree (no namedParameters/namedModules calls)', () => {
  const m = new Scaled();
  let walks = 0;
  const params = m.namedParameters.bind(m), modules = m.namedModules.bind(m);
  // Own fields: installed before compiling so the snapshot includes them.
  Object.assign(m, { namedParameters: () => { walks++; return params(); }, namedModules: () => { walks++; return modules(); } });
  const fast = inferenceJit(m, memory);
  fast(x);
  assert.ok(walks > 0, 'compiling walks the tree');
  walks = 0;
  for (let i = 0; i < 3; i++) fast(x);
  assert.equal(walks, 0);
  assert.equal(fast.stats().hits, 3);
  m.config.scale = 4; // a change: the full check runs and walks the tree
  fast(x);
  assert.ok(walks > 0);
});

test('dynamic dims: one entry serves every batch size through the fast path; an evicted entry is not served', () => {
  const m = new Scaled();
  const dyn = inferenceJit(m, { ...memory, inputSpec: [{ shape: ['batch', 4] }] });
  for (const b of [2, 3, 4, 2, 3]) { const xb = randn([b, 4], { seed: b }); same(dyn(xb), m.forward(xb)); }
  let s = dyn.stats();
  assert.deepEqual([s.misses, s.hits, s.captures], [1, 4, 1]);

  const small = inferenceJit(m, { ...memory, maxEntries: 1, autoDynamic: false });
  const x5 = randn([5, 4], { seed: 5 });
  small(x); small(x5); // x's entry is evicted by x5's
  same(small(x), m.forward(x));
  s = small.stats();
  assert.equal(s.misses, 3);
  assert.equal(s.recompileReasons.at(-1)!.guard, 'evicted');
});
