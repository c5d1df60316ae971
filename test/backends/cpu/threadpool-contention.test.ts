// The thread pool under contention (issue 15): with another process keeping a core busy, a
// worker can be descheduled for a whole time slice. The pool hands tasks out dynamically and
// never waits for a worker that claimed none, so the caller and the running workers absorb the
// missing worker's share. These tests run the kernels (GEMM, attention, softmax, LayerNorm, the
// quantized GEMV/GEMM of decode and prefill, paged attention through a plan) with busy-looping
// child processes alive and check every result is bitwise identical to the quiet run at the same
// thread count (each output is computed by one task in a fixed order, whoever runs it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { getNumThreads, setNumThreads, randn, ops, fromArray, Tensor } from '../../../src/index.js';
import { llmAddon, WEIGHT_FORMAT_CODES } from '../../../src/llm/weights.js';
import { trace } from '../../../src/trace/index.js';
import { optimize } from '../../../src/passes/index.js';
import { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { nativeTest, assertSame } from './helpers.js';

/** Busy-looping child processes, one per `count`; killed (by their own ids) in `stop`. */
function busyLoops(count: number): { children: ChildProcess[]; stop: () => void } {
  const children = Array.from({ length: count }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  return { children, stop: () => { for (const c of children) c.kill('SIGKILL'); } };
}

/** Waits until every child has burnt some CPU (it is really running, not still starting). */
async function running(children: ChildProcess[]): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
  for (const c of children) assert.equal(c.exitCode, null, 'busy-looping child exited early');
}

/** Q4_0 weights [N, K] from seeded values, as the GGUF loader keeps them. */
function q4Weight(N: number, K: number, seed: number): [number, Uint8Array, null, number, number, number] {
  const native = llmAddon('contention test');
  const v = randn([N, K], { seed }).data as Float32Array;
  const bytes = new Uint8Array((N * K / 32) * 18);
  native.quantizeWeight(WEIGHT_FORMAT_CODES.q4_0, v, 0, N, K, 32, bytes, null);
  return [WEIGHT_FORMAT_CODES.q4_0, bytes, null, N, K, 32];
}

/** A decode step of paged attention (long context: flash-decoding splits) plus kv_write, as a plan. */
function pagedPlan() {
  const H = 8, Hkv = 2, D = 64, BS = 16, L = 700, NB = Math.ceil(L / BS) + 2;
  const tables = new Int32Array(Array.from({ length: NB - 2 }, (_, i) => (i * 7) % (NB - 2) + 1));
  const p = L - 1;
  const slots = new Int32Array([tables[Math.floor(p / BS)] * BS + (p % BS)]);
  const fn = (q: Tensor, k: Tensor, v: Tensor, kPool: Tensor, vPool: Tensor, bt: Tensor, sl: Tensor, qs: Tensor, sm: Tensor): Tensor =>
    ops.pagedAttention(q, ops.kvWrite(kPool, k, sm), ops.kvWrite(vPool, v, sm), bt, sl, qs);
  const args = [randn([1, H, D], { seed: 31 }), randn([1, Hkv, D], { seed: 32 }), randn([1, Hkv, D], { seed: 33 }),
    randn([NB, Hkv, BS, D], { seed: 34 }), randn([NB, Hkv, BS, D], { seed: 35 }),
    fromArray(tables, [1, NB - 2], 'i32'), fromArray(new Int32Array([L]), [1], 'i32'), fromArray(new Int32Array([0, 1]), [2], 'i32'),
    fromArray(slots, [1], 'i32')];
  const t = trace(fn, args);
  const exe = new PlanExecutable(optimize(t.graph), t.constants);
  assert.equal(exe.path, 'plan', exe.describe());
  return { exe, args };
}

function kernels() {
  const native = llmAddon('contention test');
  const a = randn([67, 300], { seed: 1 }), w = randn([129, 300], { seed: 2 });
  const q = randn([1, 4, 33, 64], { seed: 3 }), k = randn([1, 4, 150, 64], { seed: 4 });
  const wq = q4Weight(1000, 256, 5);
  const x1 = randn([1, 256], { seed: 6 }).data as Float32Array, x7 = randn([7, 256], { seed: 7 }).data as Float32Array;
  const paged = pagedPlan();
  return (): Tensor[] => {
    const y1 = new Float32Array(1000), y7 = new Float32Array(7000);
    native.quantMatmul(wq, x1, 1, y1);
    native.quantMatmul(wq, x7, 7, y7);
    const pools = [paged.args[3], paged.args[4]].map((p) => Tensor.fromStorage('f32', [...p.shape], (p.data as Float32Array).slice()));
    const [att] = paged.exe.run([...paged.args.slice(0, 3), ...pools, ...paged.args.slice(5)]);
    return [ops.linear(a, w), ops.scaledDotProductAttention(q, k, k, { causal: true }), ops.softmax(a), ops.layerNorm(a, 300),
      fromArray(y1, [1000]), fromArray(y7, [7, 1000]), att, pools[0]];
  };
}

nativeTest('kernels give identical results while busy-looping processes hold the cores', async () => {
  const before = getNumThreads();
  const run = kernels();
  // 2 threads: the decode setting of a 2-core machine; one per core plus one: oversubscribed;
  // four per core: the pool stops spinning and only fans wake-ups out.
  const counts = [...new Set([2, availableParallelism() + 1, 4 * availableParallelism()])];
  const quiet = new Map<number, Tensor[]>();
  try {
    for (const n of counts) { setNumThreads(n); run(); quiet.set(n, run()); }
    const busy = busyLoops(Math.max(1, availableParallelism() - 1));
    try {
      await running(busy.children);
      for (const n of counts) {
        setNumThreads(n);
        for (let rep = 0; rep < 5; rep++) {
          run().forEach((t, i) => assertSame(t, quiet.get(n)![i], `output ${i} with ${n} threads under contention, repetition ${rep}`));
        }
      }
    } finally {
      busy.stop();
    }
  } finally {
    setNumThreads(before);
  }
});

nativeTest('thousands of small parallel jobs under contention all complete (no lost wake-up, no stale claim)', async () => {
  const before = getNumThreads();
  const x = randn([256, 64], { seed: 9 }); // 256 rows of 64: 4 tasks per job (grain 64 rows)
  const want = ops.softmax(x);
  const busy = busyLoops(1);
  try {
    await running(busy.children);
    for (const n of [2, 3]) {
      setNumThreads(n);
      // Back-to-back jobs with sleeps between some of them: workers alternate between spinning,
      // sleeping and waking late, so jobs start while a worker of the previous one is still out.
      for (let i = 0; i < 3000; i++) {
        const got = ops.softmax(x);
        if (i % 500 === 0) { assertSame(got, want, `softmax ${i} with ${n} threads`); await new Promise((r) => setTimeout(r, 1)); }
      }
      assertSame(ops.softmax(x), want, `last softmax with ${n} threads`);
    }
  } finally {
    busy.stop();
    setNumThreads(before);
  }
});
