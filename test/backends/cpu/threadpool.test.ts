// The native thread pool: settable size, results independent of the thread count (each output
// tile is computed by one thread in a fixed order), and no busy workers once a kernel returns.
import assert from 'node:assert/strict';
import { backendInfo, getNumThreads, setNumThreads, randn, ops } from '../../../src/index.js';
import { nativeTest, assertSame } from './helpers.js';

nativeTest('backendInfo reports the native backend and its pool', () => {
  const info = backendInfo();
  assert.equal(info.native, true);
  assert.ok(['avx512', 'avx2', 'scalar'].includes(info.isa!), `isa ${info.isa}`);
  assert.equal(info.threads, getNumThreads());
  assert.ok(getNumThreads() >= 1);
});

nativeTest('results are bitwise identical for 1, 2 and 3 threads', () => {
  const before = getNumThreads();
  const a = randn([300, 500], { seed: 1 }), w = randn([700, 500], { seed: 2 });
  const q = randn([1, 4, 200, 64], { seed: 3 }), k = randn([1, 4, 300, 64], { seed: 4 });
  const run = () => [ops.linear(a, w), ops.scaledDotProductAttention(q, k, k, { causal: true }), ops.softmax(a), ops.layerNorm(a, 500)];
  try {
    setNumThreads(1);
    const one = run();
    for (const n of [2, 3]) {
      setNumThreads(n);
      assert.equal(getNumThreads(), n);
      run().forEach((t, i) => assertSame(t, one[i], `output ${i} with ${n} threads`));
    }
  } finally {
    setNumThreads(before);
  }
  assert.throws(() => setNumThreads(0), /setNumThreads: n must be a whole number from 1 to 1024 .*got 0/);
});

nativeTest('idle workers sleep: no CPU is burnt after a kernel returns', async () => {
  const a = randn([512, 512], { seed: 5 });
  ops.matmul(a, a);
  await new Promise((r) => setTimeout(r, 50)); // past the short post-job spin
  const start = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 300));
  const used = process.cpuUsage(start);
  const ms = (used.user + used.system) / 1000;
  // A spinning worker would burn ~300 ms of CPU here.
  assert.ok(ms < 60, `process used ${ms.toFixed(1)} ms of CPU while idle for 300 ms`);
});
