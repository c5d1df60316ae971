// Per-call overhead of a compiled call: a tiny model (Linear(8, 8) on a [1, 8] input), where the
// kernels take almost nothing, so the time is the JIT's own work per call (argument flattening,
// signature and guard checks, the cache lookup, the executable call) against the eager forward.
// Calls are timed in batches (per-call performance.now() would dominate at this scale), eager and
// compiled alternating, best batch average kept. Prints one JSON line.
// Run: npx tsx bench/overhead.ts [--rounds 8] [--calls 5000]
import { inferenceJit, nn, randn } from '../src/index.js';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string): string => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : fallback; };
const rounds = Number(opt('rounds', '8')), calls = Number(opt('calls', '5000'));

const model = new nn.Linear(8, 8);
model.eval();
const x = randn([1, 8], { seed: 1 });
const fast = inferenceJit(model, { cache: 'memory' });

/** Average microseconds per call over one batch. */
function batch(fn: () => unknown): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1e3 / calls;
}

const eager = (): unknown => model.forward(x);
const compiled = (): unknown => fast(x);
compiled(); // compile outside the timing
for (let i = 0; i < 3; i++) { batch(eager); batch(compiled); } // warm up the JIT of V8 too
let bestEager = Infinity, bestCompiled = Infinity;
for (let r = 0; r < rounds; r++) {
  bestEager = Math.min(bestEager, batch(eager));
  bestCompiled = Math.min(bestCompiled, batch(compiled));
}
const stats = fast.stats();
if (stats.misses !== 1) throw new Error(`overhead bench: expected one compile, got ${stats.misses} (${JSON.stringify(stats.recompileReasons)})`);
const round2 = (v: number): number => Math.round(v * 100) / 100;
console.log(JSON.stringify({ bench: 'overhead', model: 'Linear(8, 8), input [1, 8]', compiled_us: round2(bestCompiled), eager_us: round2(bestEager), ratio: round2(bestCompiled / bestEager), calls, rounds, describe: fast.compiledEntries()[0]?.executable.describe?.() ?? null }));
