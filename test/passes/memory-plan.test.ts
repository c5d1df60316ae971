// placeBuffers (the placement the native plan lowering uses too): largest first, lowest free
// offset among buffers with overlapping lifetimes. planMemory: liveness-based sharing, in-place elementwise results, views for reshape and
// contiguous split pieces, hand-checked on small graphs; on whole optimized models, no two live
// buffers overlap and executing out of the planned arena reproduces the interpreter bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../src/ir/graph.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { allocStorage, dtypeBytes, type Storage } from '../../src/tensor/dtype.js';
import { dispatch, withEagerBackend } from '../../src/ops/dispatch.js';
import { fromNumbers } from '../../src/tensor/dtype.js';
import { bindInputs, concreteAttrs } from '../../src/backends/reference/index.js';
import { evalShape, type DimBindings } from '../../src/ir/dims.js';
import { planMemory, placeBuffers, describePlan, ARENA_ALIGNMENT, type MemoryPlan } from '../../src/passes/memory-plan.js';
import { optimize } from '../../src/passes/index.js';
import { TinyTransformer } from '../../examples/models/transformer.js';
import { DiT } from '../../examples/diffusion/dit.js';
import { fromArray } from '../../src/tensor/creation.js';
import { traced, rnd, run } from './helpers.js';

function chain(): Graph {
  const g = new Graph();
  const m = { dtype: 'f32' as const, shape: [1024] };
  const x = g.addInput('x', 'f32', [1024]);
  const [a] = g.addNode('exp', [x], {}, [m]);
  const [b] = g.addNode('neg', [a], {}, [m]);
  const [c] = g.addNode('mul', [b, b], {}, [m]);
  const [d] = g.addNode('sum', [c], { axes: [], keepdim: false }, [{ dtype: 'f32', shape: [] }]);
  g.addOutput('d', d);
  g.verify();
  return g;
}

test('placeBuffers: overlapping lifetimes never share bytes, disjoint ones reuse the lowest offset', () => {
  const A = ARENA_ALIGNMENT;
  // 0: [0, 2] 100 B; 1: [1, 3] 300 B; 2: [3, 4] 100 B (fits below 1 once 0 is dead); 3: [5, 5] 1 B
  const bufs = [{ bytes: 100, first: 0, last: 2 }, { bytes: 300, first: 1, last: 3 }, { bytes: 100, first: 3, last: 4 }, { bytes: 1, first: 5, last: 5 }];
  const { offsets, arenaBytes } = placeBuffers(bufs);
  const size = (b: number): number => Math.ceil(bufs[b].bytes / A) * A;
  assert.equal(offsets[1], 0, 'the largest buffer goes first, at 0');
  assert.equal(offsets[0], size(1), 'buffer 0 overlaps 1 in time, so it sits above it');
  assert.equal(offsets[2], size(1), 'buffer 2 reuses buffer 0\'s bytes (0 died at step 2)');
  assert.equal(offsets[3], 0, 'buffer 3 is live alone');
  assert.equal(arenaBytes, size(1) + size(0));
  for (let p = 0; p < bufs.length; p++) {
    for (let q = p + 1; q < bufs.length; q++) {
      const live = bufs[p].first <= bufs[q].last && bufs[q].first <= bufs[p].last;
      const overlap = offsets[p] < offsets[q] + size(q) && offsets[q] < offsets[p] + size(p);
      assert.ok(!(live && overlap), `buffers ${p} and ${q} are live together and overlap`);
    }
  }
  assert.deepEqual(placeBuffers([]), { offsets: [], arenaBytes: 0 });
});

test('a chain of elementwise ops runs in place in one buffer', () => {
  const g = chain();
  const [a, b, c] = g.nodes.map((n) => n.outputs[0]);
  const plan = planMemory(g);
  assert.equal(plan.arenaBytes, 4096);
  assert.equal(plan.naiveBytes, 3 * 4096);
  assert.deepEqual([...plan.inPlace], [[b, a], [c, b]]);
  assert.deepEqual([plan.offsets.get(a), plan.offsets.get(b), plan.offsets.get(c)], [0, 0, 0]);
  assert.match(describePlan(plan), /arena 0\.00 MiB .* 2 in place, 0 views/);
});

test('without in-place, buffers alternate: a and c share memory, b does not overlap either', () => {
  const g = chain();
  const [a, b, c] = g.nodes.map((n) => n.outputs[0]);
  const plan = planMemory(g, new Map(), { inPlace: false });
  assert.equal(plan.arenaBytes, 2 * 4096);
  assert.equal(plan.offsets.get(a), plan.offsets.get(c));
  assert.notEqual(plan.offsets.get(a), plan.offsets.get(b));
  assert.equal(plan.liveBytesBound, 2 * 4096);
});

test('reshape and contiguous split pieces are views; symbolic dims take their bound sizes', () => {
  const t = traced((x) => {
    const [p, q] = x.exp().reshape([1, 3, x.metaShape[1]]).split([1, 2], 1); // leading dim 1: pieces are contiguous
    return p.sum().add(q.sum());
  }, [rnd([3, 6], 1)], {}, [{ shape: [3, 'n'] }]);
  const g = t.graph;
  const plan = planMemory(g, new Map([['n', 6]]));
  const exp = g.nodes.find((n) => n.op === 'exp')!.outputs[0];
  const split = g.nodes.find((n) => n.op === 'split')!;
  assert.equal(plan.sizes.get(exp), 3 * 6 * 4);
  assert.equal(plan.views.size, 3); // the reshape and both pieces
  assert.equal(plan.offsets.get(split.outputs[0]), plan.offsets.get(exp));
  assert.equal(plan.offsets.get(split.outputs[1]), plan.offsets.get(exp)! + 6 * 4); // piece 1 starts after one row of 6 floats
  // exp's 72 bytes (aligned: 128) stay live until q is summed; the two sums (64 each, aligned) are
  // live together with it
  assert.equal(plan.arenaBytes, 128 + 64 + 64);
  assert.equal(plan.arenaBytes % ARENA_ALIGNMENT, 0);
});

/** Executes `graph` with every planned value stored in one arena at its planned offset. */
function runInArena(graph: Graph, plan: MemoryPlan, inputs: Tensor[], params: ReadonlyMap<string, Tensor>): Tensor[] {
  const bindings = bindInputs(graph, inputs);
  const arena = new Uint8Array(plan.arenaBytes);
  const env = new Map<number, Tensor>();
  graph.inputs.forEach((inp, i) => env.set(inp.value, inputs[i]));
  for (const c of graph.constants) {
    env.set(c.value, c.kind === 'param' ? params.get(c.name)! : Tensor.fromStorage(c.dtype, c.shape as number[], fromNumbers(c.dtype, c.data!)));
  }
  const bytesOf = (s: Storage): Uint8Array => new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
  const read = (v: number): Tensor => {
    if (!plan.offsets.has(v)) return env.get(v)!;
    const m = graph.meta(v);
    const shape = evalShape(m.shape, bindings);
    const s = allocStorage(m.dtype, shape.reduce((a, b) => a * b, 1));
    const off = plan.offsets.get(v)!;
    bytesOf(s).set(arena.subarray(off, off + s.length * dtypeBytes(m.dtype)));
    return Tensor.fromStorage(m.dtype, shape, s);
  };
  for (const node of graph.nodes) {
    const outs = withEagerBackend('reference', () => dispatch(node.op, node.inputs.map((v) => (v === null ? null : read(v))), concreteAttrs(node.op, node.attrs, bindings)));
    node.outputs.forEach((v, i) => {
      if (plan.offsets.has(v)) arena.set(bytesOf(outs[i].data), plan.offsets.get(v)!);
      else env.set(v, outs[i]);
    });
  }
  return graph.outputs.map((o) => read(o.value));
}

function checkNoOverlap(plan: MemoryPlan): void {
  const owners = [...plan.lifetimes.keys()];
  for (let i = 0; i < owners.length; i++) {
    for (let j = i + 1; j < owners.length; j++) {
      const [a, b] = [owners[i], owners[j]];
      const [la, lb] = [plan.lifetimes.get(a)!, plan.lifetimes.get(b)!];
      if (la[0] > lb[1] || lb[0] > la[1]) continue;
      const [oa, ob] = [plan.offsets.get(a)!, plan.offsets.get(b)!];
      const disjoint = oa + plan.sizes.get(a)! <= ob || ob + plan.sizes.get(b)! <= oa;
      assert.ok(disjoint, `live buffers %${a} [${oa}, +${plan.sizes.get(a)}) and %${b} [${ob}, +${plan.sizes.get(b)}) overlap`);
    }
  }
}

test('optimized transformer and DiT: live buffers never overlap, and arena execution equals the interpreter', () => {
  const tf = new TinyTransformer({ dim: 32, heads: 4 });
  const x = rnd([2, 6, 32], 2);
  const t1 = traced((a) => tf.forward(a), [x], Object.fromEntries(tf.namedParameters()), [{ shape: ['b', 's', 32] }]);
  const dit = new DiT({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 4, mlpRatio: 2, numClasses: 10 }, { seed: 3 });
  const dParams = Object.fromEntries([...dit.namedParameters(), ...dit.namedBuffers()]);
  const dIn = [rnd([2, 4, 8, 8], 4), fromArray([10, 500]), fromArray([1, 3], [2], 'i64')];
  const t2 = traced((p, q, r) => dit.forward(p, q, r), dIn, dParams);
  for (const [label, t, bindings] of [['transformer', t1, new Map([['b', 2], ['s', 6]])], ['dit', t2, new Map()]] as [string, typeof t1, DimBindings][]) {
    const g = optimize(t.graph);
    const plan = planMemory(g, bindings);
    checkNoOverlap(plan);
    assert.ok(plan.arenaBytes < plan.naiveBytes / 2, `${label}: ${describePlan(plan)}`);
    // Buffers live at the same step never share bytes, so the arena holds at least their aligned sum.
    assert.ok(plan.arenaBytes >= plan.liveBytesBound, `${label}: arena ${plan.arenaBytes} B below the live bound ${plan.liveBytesBound} B`);
    const want = run(g, t.inputs, t.constants);
    const got = runInArena(g, plan, t.inputs, t.constants);
    got.forEach((o, i) => assert.deepEqual([...o.toFlatArray()], [...want[i].toFlatArray()], `${label} output ${i}`));
  }
});
