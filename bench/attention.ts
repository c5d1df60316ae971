// Attention benchmark: the fused flash-style kernel (one scaled_dot_product_attention op) against
// the unfused path (matmul → scale → softmax → matmul, each a native op that materializes the
// [L × L] scores), for sequence lengths 256/1024/4096 and head dims 64/128.
// Run: npx tsx bench/attention.ts
import { backendInfo, getNumThreads, randn, ops, type Tensor } from '../src/index.js';
import { compare, table } from './lib/timing.js';

const info = backendInfo();
if (!info.native) {
  console.error(`bench/attention: the native backend is not available (${info.reason}); build it with \`npm run build:native\``);
  process.exit(1);
}
const B = 1, H = 4;
console.log(`inferjit ${info.isa}, ${getNumThreads()} threads; q/k/v [${B}, ${H}, L, D], no mask\n`);

function unfused(q: Tensor, k: Tensor, v: Tensor): Tensor {
  const scores = ops.mul(ops.matmul(q, ops.transpose(k, 2, 3)), 1 / Math.sqrt(q.shape[3]));
  return ops.matmul(ops.softmax(scores, -1), v);
}

const rows: (string | number)[][] = [];
const results: { seq: number; head_dim: number; fused_ms: number; unfused_ms: number; speedup: number }[] = [];
for (const L of [256, 1024, 4096]) {
  for (const D of [64, 128]) {
    const q = randn([B, H, L, D], { seed: 1 }), k = randn([B, H, L, D], { seed: 2 }), v = randn([B, H, L, D], { seed: 3 });
    // both paths must agree before they are timed
    const f = ops.scaledDotProductAttention(q, k, v).toFlatArray(), u = unfused(q, k, v).toFlatArray();
    let diff = 0;
    for (let i = 0; i < f.length; i++) diff = Math.max(diff, Math.abs(f[i] - u[i]));
    if (diff > 1e-4) throw new Error(`fused and unfused attention differ by ${diff} at L=${L} D=${D}`);
    const rounds = L >= 4096 ? 3 : 5;
    const [tf, tu] = await compare(() => ops.scaledDotProductAttention(q, k, v), () => unfused(q, k, v), rounds, L >= 4096 ? 1000 : 300);
    const flops = 4 * B * H * L * L * D;
    const speedup = tu.medianMs / tf.medianMs;
    rows.push([L, D, tf.medianMs.toFixed(2), (flops / tf.medianMs / 1e6).toFixed(1), tu.medianMs.toFixed(2), (flops / tu.medianMs / 1e6).toFixed(1), speedup.toFixed(2)]);
    results.push({ seq: L, head_dim: D, fused_ms: +tf.medianMs.toFixed(3), unfused_ms: +tu.medianMs.toFixed(3), speedup: +speedup.toFixed(3) });
  }
}
console.log(table(['seq', 'head dim', 'fused ms', 'fused GFLOP/s', 'unfused ms', 'unfused GFLOP/s', 'fused speedup'], rows));
console.log(JSON.stringify({ bench: 'attention', threads: getNumThreads(), isa: info.isa, batch: B, heads: H, results }));
