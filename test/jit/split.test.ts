// Graph splitting (src/jit/split.ts): a model that reads a traced value into JavaScript in the
// middle of forward runs as compiled pieces around the read (piece 1, the eager read, piece 2),
// and its results equal eager forward for inputs taking each side of the JavaScript branch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, randn, Tensor, inferenceJit } from '../../src/index.js';
import { Graph } from '../../src/ir/index.js';
import { jitRunner } from '../../src/jit/decorator.js';

for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];
process.removeAllListeners('warning'); // the graph-break warning is expected here

/** Encoder, then a JavaScript decision on a reduction (a gate), then one of two heads. */
class GatedModel extends nn.Module {
  enc = new nn.Linear(16, 32, { seed: 1 });
  norm = new nn.LayerNorm(32);
  headA = new nn.Linear(32, 8, { seed: 2 });
  headB = new nn.Linear(32, 8, { seed: 3 });
  forward(x: Tensor): { y: Tensor; gate: number } {
    const h = this.norm.forward(this.enc.forward(x)).gelu();
    const gate = x.mean().item(); // read into JavaScript: the graph break
    const y = gate > 0 ? this.headA.forward(h).relu() : this.headB.forward(h).tanh().mul(gate);
    return { y, gate };
  }
}

const memory = { cache: 'memory' as const };

/** An input whose mean has the given sign. */
function withSign(sign: 1 | -1, seed: number): Tensor {
  return randn([4, 16], { seed }).abs().mul(sign);
}

function close(a: Tensor, b: Tensor): void {
  const x = a.toFlatArray(), y = b.toFlatArray();
  assert.equal(x.length, y.length);
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= 1e-4 * (1 + Math.abs(y[i])), `element ${i}: ${x[i]} vs ${y[i]}`);
}

test('a read into JavaScript in the middle: two compiled pieces, results equal eager on both sides of the branch', () => {
  const m = new GatedModel();
  const fast = inferenceJit(m, memory);
  for (const [sign, seed] of [[1, 10], [-1, 11], [1, 12], [-1, 13], [1, 14]] as const) {
    const x = withSign(sign, seed);
    const got = fast(x), want = m.forward(x);
    assert.equal(got.gate, want.gate);
    assert.ok(!got.y.isSymbolic);
    close(got.y, want.y);
  }
  const s = fast.stats();
  assert.equal(s.graphBreaks, 1, 'one break, met once');
  assert.equal(s.splitCalls, 5, 'every call served by the pieces');
  assert.equal(s.eagerCalls, 0);
  // piece 1 and one continuation per value of the gate folded into headB's graph, plus headA's.
  assert.ok(s.pieces >= 2, `pieces ${s.pieces}`);
  const d = fast.describe();
  assert.match(d, /split at item at .*split\.test\.ts/);
  assert.match(d, /piece 1 \(\d+ ops before the break/);
});

test('a JS branch that does not fold the read value into the graph reuses its continuation', () => {
  class Branchy extends nn.Module {
    enc = new nn.Linear(8, 8, { seed: 4 });
    forward(x: Tensor): Tensor {
      const h = this.enc.forward(x).relu();
      return x.sum().item() > 0 ? h.mul(2) : h.neg(); // the branch reads a reduction of the input
    }
  }
  const m = new Branchy();
  const fast = inferenceJit(m, memory);
  const xs = [1, 2, 3, 4, 5, 6].map((s) => randn([2, 8], { seed: s }).abs().mul(s % 2 ? 1 : -1));
  const sides = new Set<boolean>();
  for (const x of xs) {
    sides.add(x.sum().item() > 0);
    close(fast(x), m.forward(x));
  }
  assert.equal(sides.size, 2, 'the inputs take both sides');
  const s = fast.stats();
  assert.equal(s.splitCalls, 6);
  assert.equal(s.pieces, 3, 'piece 1 and one continuation per side');
  assert.equal(s.graphBreaks, 1, 'the whole-graph trace was tried once');
});

test('a value from before the break needed only on the other side: piece 1 recompiled, result still right', () => {
  class TwoValues extends nn.Module {
    a = new nn.Linear(6, 6, { seed: 5 });
    b = new nn.Linear(6, 6, { seed: 6 });
    forward(x: Tensor): Tensor {
      const early = this.a.forward(x); // consumed below, so not live at first
      const late = this.b.forward(early.relu());
      return late.mean().item() > 0 ? late.mul(3) : early.mul(5);
    }
  }
  const m = new TwoValues();
  const fast = inferenceJit(m, memory);
  const xs = [1, 2, 3, 4, 5, 6, 7, 8].map((s) => randn([3, 6], { seed: s * 7 }));
  const sides = new Set<boolean>();
  for (const x of xs) {
    sides.add(m.b.forward(m.a.forward(x).relu()).mean().item() > 0);
    close(fast(x), m.forward(x));
  }
  assert.equal(sides.size, 2, 'the inputs take both sides');
  assert.equal(fast.stats().eagerCalls, 0);
});

test('a second read after the break: that signature runs eagerly, results still equal', () => {
  class TwoReads extends nn.Module {
    fc = new nn.Linear(4, 4, { seed: 7 });
    forward(x: Tensor): Tensor {
      const h = this.fc.forward(x);
      const a = h.sum().item();
      const g = h.mul(a);
      return g.max().item() > 0 ? g : g.neg();
    }
  }
  const m = new TwoReads();
  const fast = inferenceJit(m, memory);
  for (let s = 1; s <= 3; s++) { const x = randn([2, 4], { seed: s }); close(fast(x), m.forward(x)); }
  const s = fast.stats();
  assert.equal(s.splitCalls, 0);
  assert.equal(s.eagerCalls, 3);
  assert.match(fast.describe(), /eager: .*only one break per call is split/);
});

test('splitGraphs: false runs the whole signature eagerly', () => {
  const m = new GatedModel();
  const fast = inferenceJit(m, { ...memory, splitGraphs: false });
  const x = withSign(1, 20);
  close(fast(x).y, m.forward(x).y);
  assert.equal(fast.stats().splitCalls, 0);
  assert.equal(fast.stats().eagerCalls, 1);
  assert.equal(fast.stats().pieces, 0);
});

test('a weight updated in place after splitting: the pieces are rebuilt, results follow the new weight', () => {
  const m = new GatedModel();
  const fast = inferenceJit(m, memory);
  const x = withSign(1, 30);
  close(fast(x).y, m.forward(x).y);
  m.headA.weight.copyFrom(m.headA.weight.mul(-2));
  m.enc.weight.copyFrom(m.enc.weight.mul(0.5));
  close(fast(x).y, m.forward(x).y);
  assert.equal(fast.stats().splitCalls, 2);
});

test('a continuation is found by its recorded key: no graph hash on a hit, source lines kept, a different literal is a new piece', () => {
  class Scaled extends nn.Module {
    enc = new nn.Linear(8, 8, { seed: 8 });
    head = new nn.Linear(8, 4, { seed: 9 });
    forward(x: Tensor): Tensor {
      const h = this.enc.forward(x).relu();
      const k = x.sum().item() > 0 ? 2 : 3; // folded into the continuation as a literal
      return this.head.forward(h.mul(k));
    }
  }
  const m = new Scaled();
  const fast = inferenceJit(m, memory);
  const pos = randn([2, 8], { seed: 40 }).abs(), neg = pos.neg();
  close(fast(pos), m.forward(pos));
  close(fast(neg), m.forward(neg));
  assert.equal(fast.stats().pieces, 3, 'piece 1 and one continuation per literal (2 and 3)');
  const hash = Graph.prototype.hash;
  let hashes = 0;
  Graph.prototype.hash = function counted(this: Graph) { hashes++; return hash.call(this); };
  try {
    for (let i = 0; i < 6; i++) { const x = i % 2 ? neg.mul(i) : pos.mul(i + 1); close(fast(x), m.forward(x)); }
  } finally {
    Graph.prototype.hash = hash;
  }
  assert.equal(hashes, 0, 'hits hash no graph');
  assert.equal(fast.stats().pieces, 3, 'every later call hit one of the two continuations');
  assert.equal(fast.stats().splitCalls, 8);
  const plan = jitRunner(fast)!.splitPlans()[0];
  const [, ...conts] = plan.compiledEntries();
  assert.equal(conts.length, 2);
  for (const c of conts) {
    const sources = c.capture.graph.nodes.map((n) => n.source);
    assert.ok(sources.length > 0 && sources.every((s) => s && /split\.test\.ts:\d+:\d+$/.test(s)), `continuation nodes keep the user's lines: ${sources.join(', ')}`);
  }
});

test('continuation keys tell NaN, Infinity and -0 literals apart (JSON alone would not)', () => {
  class Special extends nn.Module {
    fc = new nn.Linear(4, 4, { seed: 10 });
    forward(x: Tensor): Tensor {
      const h = this.fc.forward(x);
      const s = x.sum().item();
      const k = s > 10 ? Infinity : s > 0 ? Number.NaN : s > -10 ? -0 : 0;
      return h.abs().add(1).mul(k);
    }
  }
  const m = new Special();
  const fast = inferenceJit(m, memory);
  for (const scale of [10, 1, -1, -10, 10, 1, -1, -10]) {
    const x = randn([2, 4], { seed: 50 }).abs().mul(scale);
    const got = fast(x).toFlatArray(), want = m.forward(x).toFlatArray();
    got.forEach((g, i) => assert.ok(Object.is(g, want[i]), `scale ${scale}, element ${i}: ${g} vs ${want[i]}`));
  }
  assert.equal(fast.stats().pieces, 5, 'piece 1 and a continuation per literal');
});
