import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, Tensor, zeros, ones, fromArray, arange } from '../../src/index.js';

// A hand-built tree covering every discovery rule: tensor fields, null fields, a submodule, a plain
// array of modules, a ModuleList, a Sequential, a buffer and a non-persistent buffer.
class Leaf extends nn.Module {
  weight = zeros([2, 3]);
  bias: Tensor | null = null;
  scale = 2; // config, ignored
  forward(x: Tensor): Tensor { return x; }
}
class Inner extends nn.Module {
  a = new Leaf();
  gain = ones([3]);
  forward(x: Tensor): Tensor { return x; }
}
class Tree extends nn.Module {
  first = ones([1]);
  inner = new Inner();
  layers = [new Leaf(), new Leaf()];
  list = new nn.ModuleList([new Leaf()]);
  seq = new nn.Sequential(new nn.Identity(), new Leaf());
  table = nn.buffer(arange(4));
  cache = nn.buffer(zeros([2]), { persistent: false });
  #scratch = zeros([5]); // private: not discovered
  last = zeros([1]);
  forward(x: Tensor): Tensor { return this.#scratch.size > 0 ? x : x; }
}

test('parameters are named by dotted field paths in field order', () => {
  const t = new Tree();
  assert.deepEqual(t.namedParameters().map(([n]) => n), [
    'first', 'inner.a.weight', 'inner.gain', 'layers.0.weight', 'layers.1.weight', 'list.0.weight', 'seq.1.weight', 'last',
  ]);
  assert.equal(t.parameters()[1], t.inner.a.weight);
  assert.deepEqual(t.namedBuffers().map(([n]) => n), ['table', 'cache']);
  assert.equal(t.numParameters(), 1 + 6 + 3 + 6 + 6 + 6 + 6 + 1);
});

test('namedModules lists the tree depth first, root first with an empty name', () => {
  const t = new Tree();
  assert.deepEqual(t.namedModules().map(([n, m]) => `${n}:${m.constructor.name}`), [
    ':Tree', 'inner:Inner', 'inner.a:Leaf', 'layers.0:Leaf', 'layers.1:Leaf', 'list:ModuleList', 'list.0:Leaf',
    'seq:Sequential', 'seq.0:Identity', 'seq.1:Leaf',
  ]);
  assert.deepEqual(t.namedChildren().map(([n]) => n), ['inner', 'layers.0', 'layers.1', 'list', 'seq']);
});

test('stateDict holds parameters and persistent buffers, and the module\'s own tensors', () => {
  const t = new Tree();
  const sd = t.stateDict();
  assert.ok(sd instanceof Map);
  assert.deepEqual([...sd.keys()], [
    'first', 'inner.a.weight', 'inner.gain', 'layers.0.weight', 'layers.1.weight', 'list.0.weight', 'seq.1.weight', 'table', 'last',
  ]);
  assert.equal(sd.get('inner.gain'), t.inner.gain);
});

test('tied weights are one parameter but appear under every name in the state dict', () => {
  class Tied extends nn.Module {
    embed = new nn.Embedding(5, 3, { seed: 1 });
    head = new nn.Linear(3, 5, { bias: false, seed: 2 });
    constructor() { super(); this.head.weight = this.embed.weight; }
    forward(x: Tensor): Tensor { return x; }
  }
  const m = new Tied();
  assert.deepEqual(m.namedParameters().map(([n]) => n), ['embed.weight']);
  assert.deepEqual([...m.stateDict().keys()], ['embed.weight', 'head.weight']);
});

test('a back-reference to a parent module does not loop forever', () => {
  class Child extends nn.Module {
    w = ones([1]);
    parent: nn.Module | null = null;
    forward(x: Tensor): Tensor { return x; }
  }
  class Parent extends nn.Module {
    child = new Child();
    constructor() { super(); this.child.parent = this; }
    forward(x: Tensor): Tensor { return x; }
  }
  const p = new Parent();
  assert.deepEqual(p.namedParameters().map(([n]) => n), ['child.w']);
  assert.deepEqual(p.namedModules().map(([n]) => n), ['', 'child']);
  assert.deepEqual([...p.stateDict().keys()], ['child.w']);
});

test('plain objects are walked by key like ModuleDict; other objects are ignored', () => {
  class Heads extends nn.Module {
    heads = { cls: new nn.Linear(2, 3, { seed: 0 }), box: new nn.Linear(2, 4, { bias: false, seed: 1 }) };
    config: Record<string, unknown> = { dim: 2, names: ['a'] };
    table = new Map([['w', ones([1])]]); // not walked: Maps are not plain objects
    forward(x: Tensor): Tensor { return x; }
  }
  const m = new Heads();
  m.config.self = m.config; // a cyclic config must not hang the walk
  assert.deepEqual(m.namedParameters().map(([n]) => n), ['heads.cls.weight', 'heads.cls.bias', 'heads.box.weight']);
  assert.deepEqual(m.namedChildren().map(([n]) => n), ['heads.cls', 'heads.box']);
  m.to('f16');
  assert.equal(m.heads.box.weight.dtype, 'f16');
});

class Small extends nn.Module {
  fc = new nn.Linear(8, 4, { seed: 3 });
  norm = new nn.LayerNorm(4);
  forward(x: Tensor): Tensor { return this.norm.forward(this.fc.forward(x)); }
}

test('loadStateDict copies values into the existing tensors and bumps their versions', () => {
  const a = new Small(), b = new Small();
  b.fc.weight = fromArray(Array.from({ length: 32 }, (_, i) => i / 10), [4, 8]);
  b.norm.weight = fromArray([1, 2, 3, 4]);
  const weight = a.fc.weight, v0 = weight.version;
  const report = a.loadStateDict(b.stateDict());
  assert.deepEqual(report, { missing: [], unexpected: [], mismatched: [] });
  assert.equal(a.fc.weight, weight, 'same tensor object, updated in place');
  assert.equal(weight.version, v0 + 1);
  assert.deepEqual(a.fc.weight.toArray(), b.fc.weight.toArray());
  assert.deepEqual(a.norm.weight!.toArray(), [1, 2, 3, 4]);
  // a plain record works too
  const rec = Object.fromEntries(b.stateDict());
  a.loadStateDict(rec);
  assert.equal(weight.version, v0 + 2);
});

test('loadStateDict reports missing, unexpected and mismatched entries (non-strict loads the rest)', () => {
  const a = new Small();
  const state = new Map<string, Tensor>([
    ['fc.weight', zeros([8, 4])], // transposed shape
    ['fc.bias', fromArray([1, 2, 3, 4])],
    ['norm.bias', zeros([4], 'f16')], // wrong dtype
    ['extra.weight', zeros([1])],
  ]);
  const before = a.fc.weight.toArray();
  const report = a.loadStateDict(state, { strict: false });
  assert.deepEqual(report, {
    missing: ['norm.weight'],
    unexpected: ['extra.weight'],
    mismatched: [
      { name: 'fc.weight', expected: { dtype: 'f32', shape: [4, 8] }, got: { dtype: 'f32', shape: [8, 4] } },
      { name: 'norm.bias', expected: { dtype: 'f32', shape: [4] }, got: { dtype: 'f16', shape: [4] } },
    ],
  });
  assert.deepEqual(a.fc.bias!.toArray(), [1, 2, 3, 4], 'matching entries are loaded');
  assert.deepEqual(a.fc.weight.toArray(), before, 'mismatched entries are skipped');
});

test('strict loadStateDict throws one error listing every problem and copies nothing', () => {
  const a = new Small();
  const state = new Map<string, Tensor>([
    ['fc.weight', zeros([8, 4])],
    ['fc.bias', fromArray([1, 2, 3, 4])],
    ['norm.bias', zeros([4])],
  ]);
  const bias = a.fc.bias!.toArray(), version = a.fc.bias!.version;
  assert.throws(() => a.loadStateDict(state), {
    message: 'loadStateDict: 2 problems: missing "norm.weight"; shape mismatch for "fc.weight": model [4, 8], state [8, 4]',
  });
  assert.deepEqual(a.fc.bias!.toArray(), bias);
  assert.equal(a.fc.bias!.version, version);
  state.set('norm.weight', ones([4], 'bf16'));
  state.set('fc.weight', zeros([4, 8]));
  state.set('head', zeros([1]));
  assert.throws(() => a.loadStateDict(state), {
    message: 'loadStateDict: 2 problems: unexpected "head"; dtype mismatch for "norm.weight": model f32, state bf16',
  });
  assert.throws(() => a.loadStateDict({ 'fc.weight': 3 as unknown as Tensor }), /state entry "fc.weight" is number, not a Tensor/);
});

test('loading a module\'s own state dict is a no-op on values but still marks the tensors modified', () => {
  const a = new Small();
  const before = a.fc.weight.toArray(), v = a.fc.weight.version;
  a.loadStateDict(a.stateDict());
  assert.deepEqual(a.fc.weight.toArray(), before);
  assert.equal(a.fc.weight.version, v + 1);
});

test('eval() and train() set training on the whole tree', () => {
  const t = new Tree();
  assert.ok(t.modules().every((m) => m.training));
  assert.equal(t.eval(), t);
  assert.ok(t.modules().every((m) => !m.training));
  t.train();
  assert.ok(t.modules().every((m) => m.training));
});

test('call() runs forward, including a forward replaced on the instance', () => {
  const id = new nn.Identity();
  const x = ones([2]);
  assert.equal(id.call(x), x);
  id.forward = (_x: Tensor) => zeros([1]);
  assert.deepEqual(id.call(x).shape, [1]);
});

test('registerBuffer stores a buffer field', () => {
  class WithBuf extends nn.Module {
    declare pos: Tensor;
    w = ones([2]);
    constructor() { super(); this.registerBuffer('pos', arange(3)); }
    forward(x: Tensor): Tensor { return x.add(this.pos); }
  }
  const m = new WithBuf();
  assert.ok(nn.isBuffer(m.pos));
  assert.deepEqual(m.namedParameters().map(([n]) => n), ['w']);
  assert.deepEqual(m.namedBuffers().map(([n]) => n), ['pos']);
  assert.deepEqual([...m.stateDict().keys()], ['w', 'pos']);
});

test('to(dtype) casts float parameters and buffers, keeps ties, marks and integer tensors', () => {
  class M extends nn.Module {
    a = new nn.Linear(2, 2, { seed: 0 });
    b = new nn.Linear(2, 2, { seed: 1 });
    ids = nn.buffer(arange(3, undefined, 1, 'i64'));
    pos = nn.buffer(arange(3));
    constructor() { super(); this.b.weight = this.a.weight; }
    forward(x: Tensor): Tensor { return x; }
  }
  const m = new M().to('bf16');
  assert.equal(m.a.weight.dtype, 'bf16');
  assert.equal(m.a.bias!.dtype, 'bf16');
  assert.equal(m.b.weight, m.a.weight);
  assert.equal(m.ids.dtype, 'i64');
  assert.equal(m.pos.dtype, 'bf16');
  assert.ok(nn.isBuffer(m.pos));
  assert.deepEqual(m.namedParameters().map(([n]) => n), ['a.weight', 'a.bias', 'b.bias']);
});

test('ModuleList indexes, iterates and rejects non-modules', () => {
  const l = new nn.ModuleList([new nn.ReLU(), new nn.Tanh()]);
  assert.equal(l.length, 2);
  assert.ok(l.at(-1) instanceof nn.Tanh);
  assert.ok(l[0] instanceof nn.ReLU);
  assert.deepEqual([...l].map((m) => m.constructor.name), ['ReLU', 'Tanh']);
  l.push(new nn.SiLU());
  assert.deepEqual(l.namedChildren().map(([n]) => n), ['0', '1', '2']);
  assert.throws(() => l.at(3), /ModuleList: index 3 out of range for length 3/);
  assert.throws(() => l.push({} as nn.Module), /ModuleList: item 3 is not a Module/);
  assert.throws(() => l.forward(), /ModuleList has no forward/);
});

test('toString prints the module tree', () => {
  class Net extends nn.Module {
    fc = new nn.Linear(4, 8, { seed: 0 });
    act = new nn.GELU({ approximate: 'tanh' });
    forward(x: Tensor): Tensor { return x; }
  }
  assert.equal(String(new Net()), [
    'Net(',
    '  (fc): Linear(inFeatures=4, outFeatures=8, bias=true)',
    "  (act): GELU(approximate='tanh')",
    ')',
  ].join('\n'));
});
