// Paged KV cache bookkeeping: page allocation per sequence, block tables, release, truncate, and
// the element offsets the native kernels use; INT8 pools on the blocked native decode kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PagedKvCache, KvCacheFullError } from '../../src/llm/kv-cache.js';
import { randn, fromArray, ops, Tensor } from '../../src/index.js';
import { trace } from '../../src/trace/index.js';
import { interpret } from '../../src/backends/reference/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { optimize } from '../../src/passes/index.js';
import { PlanExecutable } from '../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import type { PagedAttentionOptions } from '../../src/ops/llm.js';

const make = (numBlocks = 4, dtype: 'f32' | 'f16' = 'f32') =>
  new PagedKvCache({ numLayers: 2, numKvHeads: 2, headDim: 8, numBlocks, blockSize: 4, dtype });

test('pages are allocated as sequences grow and returned on release', () => {
  const c = make();
  assert.equal(c.k.length, 2);
  assert.equal(c.k[0].length, 4 * 2 * 4 * 8);
  const a = c.allocate(), b = c.allocate();
  assert.deepEqual([...c.extend(a, 5)], [0, 1]); // 5 positions need 2 pages of 4
  assert.deepEqual([...c.extend(b, 1)], [2]);
  assert.deepEqual([...c.extend(a, 3)], [0, 1]); // positions 5..7 fit page 1
  assert.equal(c.length(a), 8);
  assert.equal(c.freeBlocks, 1);
  assert.throws(() => c.extend(a, 5), (e: unknown) => e instanceof KvCacheFullError && /needs 2 more pages .* only 1 of 4 are free/.test((e as Error).message));
  assert.equal(c.length(a), 8, 'a failed extend leaves the sequence unchanged');
  c.release(a);
  assert.equal(c.freeBlocks, 3);
  const d = c.allocate();
  assert.deepEqual([...c.extend(d, 9)], [0, 1, 3]);
  assert.throws(() => c.length(a), /no sequence 0/);
});

test('truncate frees whole pages past the new length', () => {
  const c = make();
  const s = c.allocate();
  c.extend(s, 10);
  c.truncate(s, 5);
  assert.equal(c.length(s), 5);
  assert.deepEqual([...c.blockTable(s)], [0, 1]);
  assert.equal(c.freeBlocks, 2);
  assert.throws(() => c.truncate(s, 6), /length must be in \[0, 5\]/);
});

test('offsets follow the [block][kvHead][slot][dim] layout', () => {
  const c = make();
  const a = c.allocate(), b = c.allocate();
  c.extend(b, 4); // b takes page 0
  c.extend(a, 6); // a takes pages 1, 2
  // position 5 of a: logical block 1 -> page 2, slot 1; kv head 1
  assert.equal(c.offset(a, 5, 1), ((2 * 2 + 1) * 4 + 1) * 8);
  assert.throws(() => c.offset(a, 6, 0), /outside the sequence's 6 positions/);
});

test('f16 storage and option validation', () => {
  const c = make(2, 'f16');
  assert.ok(c.k[0] instanceof Uint16Array);
  assert.equal(c.bytes, 2 * 2 * (2 * 2 * 4 * 8) * 2);
  assert.throws(() => new PagedKvCache({ numLayers: 1, numKvHeads: 1, headDim: 8, numBlocks: 0 }), /numBlocks must be a positive integer, got 0/);
});

// INT8 KV pools on the blocked decode kernel (native/llm/paged_attention.cc: head dims 16..128,
// VNNI int16 dots where the CPU has them) against the reference paged attention on the same int8
// rows: every head dim the blocked kernel takes (odd multiples of 16 leave a half vector), one and
// several query heads per kv head (rows widened once into a tile), contexts of 1 and not multiples
// of the page or of the 16-key blocks, pages of 5, windows starting mid-page, a long context split
// across threads, mixed with prefill and padding tokens. Tolerance 1e-4: the kernel rounds the
// query and the softmax weights to int16 (relative 2^-16, 256x below the rows' own int8 rounding)
// and sums in another order; outputs are O(1) here.

interface Int8Case { H: number; Hkv: number; D: number; BS: number; seqs: { L: number; n: number }[]; pad?: number; opts?: PagedAttentionOptions }

function int8Step(c: Int8Case, seed: number) {
  const S = c.seqs.length, maxBlocks = Math.max(1, ...c.seqs.map((s) => Math.ceil(s.L / c.BS)));
  const NB = c.seqs.reduce((a, s) => a + Math.ceil(s.L / c.BS), 0) + 2;
  // pages handed out in reverse so logical and physical order differ
  const tables = new Int32Array(S * maxBlocks).fill(-1);
  let next = NB - 1;
  c.seqs.forEach((s, i) => { for (let b = 0; b < Math.ceil(s.L / c.BS); b++) tables[i * maxBlocks + b] = next--; });
  const T = c.seqs.reduce((a, s) => a + s.n, 0) + (c.pad ?? 0);
  const starts = new Int32Array(S + 1), lens = new Int32Array(S), slots = new Int32Array(T).fill(-1);
  c.seqs.forEach((s, i) => {
    starts[i + 1] = starts[i] + s.n; lens[i] = s.L;
    for (let k = 0; k < s.n; k++) { const p = s.L - s.n + k; slots[starts[i] + k] = tables[i * maxBlocks + Math.floor(p / c.BS)] * c.BS + (p % c.BS); }
  });
  const i32 = (v: Int32Array, shape: number[]) => fromArray(v, shape, 'i32');
  const allSlots = i32(Int32Array.from({ length: NB * c.BS }, (_, i) => i), [NB * c.BS]);
  const pool = (s: number): Tensor => {
    const p = Tensor.empty('i8', [NB, c.Hkv, c.BS, c.D + 4]);
    withEagerBackend('reference', () => ops.kvWrite(p, randn([NB * c.BS, c.Hkv, c.D], { seed: s }), allSlots));
    return p;
  };
  return [randn([T, c.H, c.D], { seed: seed + 1 }), randn([T, c.Hkv, c.D], { seed: seed + 2 }), randn([T, c.Hkv, c.D], { seed: seed + 3 }),
    pool(seed + 4), pool(seed + 5), i32(tables, [S, maxBlocks]), i32(lens, [S]), i32(starts, [S + 1]), i32(slots, [T])];
}

const int8Cases: [string, Int8Case][] = [
  ['D 64, one head per kv head, contexts 1, 17, 130, 16', { H: 4, Hkv: 4, D: 64, BS: 16, seqs: [{ L: 1, n: 1 }, { L: 17, n: 1 }, { L: 130, n: 1 }, { L: 16, n: 1 }] }],
  ['D 16, pages of 3', { H: 2, Hkv: 1, D: 16, BS: 3, seqs: [{ L: 31, n: 1 }, { L: 2, n: 1 }] }],
  ['D 32, long context split over threads', { H: 2, Hkv: 2, D: 32, BS: 16, seqs: [{ L: 2000, n: 1 }] }],
  ['D 48, GQA 3, window', { H: 6, Hkv: 2, D: 48, BS: 8, seqs: [{ L: 50, n: 1 }, { L: 3, n: 1 }], opts: { window: 21 } }],
  ['D 80, GQA 2, pages of 5', { H: 4, Hkv: 2, D: 80, BS: 5, seqs: [{ L: 77, n: 1 }, { L: 1, n: 1 }] }],
  ['D 96, GQA 5 (groups of 4 + 1)', { H: 5, Hkv: 1, D: 96, BS: 16, seqs: [{ L: 301, n: 1 }] }],
  ['D 112, one head', { H: 1, Hkv: 1, D: 112, BS: 16, seqs: [{ L: 45, n: 1 }] }],
  ['D 128, GQA 4, pages of 5, mixed with prefill and padding', { H: 8, Hkv: 2, D: 128, BS: 5, seqs: [{ L: 7, n: 1 }, { L: 333, n: 1 }, { L: 41, n: 6 }], pad: 2 }],
  ['D 64, GQA 8, 1000 keys', { H: 8, Hkv: 1, D: 64, BS: 16, seqs: [{ L: 1000, n: 1 }, { L: 999, n: 1 }] }],
];

for (const [name, c] of int8Cases) {
  test(`int8 pools, decode on the blocked kernel == reference: ${name}`, { skip: !planAddon && 'native plan executor not built' }, () => {
    const args = int8Step(c, 7000 + c.D + c.H);
    const fn = (q: Tensor, k: Tensor, v: Tensor, kp: Tensor, vp: Tensor, bt: Tensor, sl: Tensor, qs: Tensor, slots: Tensor): Tensor =>
      ops.pagedAttention(q, ops.kvWrite(kp, k, slots), ops.kvWrite(vp, v, slots), bt, sl, qs, c.opts ?? {});
    const t = trace(fn, args);
    const graph = optimize(t.graph);
    const exe = new PlanExecutable(graph, t.constants);
    assert.equal(exe.path, 'plan', exe.describe());
    const copy = (x: Tensor): Tensor => Tensor.fromStorage(x.dtype, [...x.shape], (x.data as Int8Array).slice());
    const [got] = exe.run([...args.slice(0, 3), copy(args[3]), copy(args[4]), ...args.slice(5)]);
    const [want] = withEagerBackend('reference', () => interpret(graph, [...args.slice(0, 3), copy(args[3]), copy(args[4]), ...args.slice(5)], t.constants));
    const g = got.data as Float32Array, w = want.data as Float32Array;
    let worst = 0, top = 0;
    for (let i = 0; i < w.length; i++) { worst = Math.max(worst, Math.abs(g[i] - w[i])); top = Math.max(top, Math.abs(w[i])); }
    assert.ok(top > 0.05 && worst < 1e-4, `max |plan − reference| = ${worst} (outputs up to ${top})`);
  });
}
