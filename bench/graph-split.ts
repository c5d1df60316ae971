// Graph splitting benchmark: a model that reads a value into JavaScript in the middle of forward
// (a gate on a reduction choosing the head) run split-compiled (compiled piece before the read,
// eager read, compiled continuation; src/jit/split.ts) against the eager fallback (splitGraphs:
// false: the whole call eagerly, as before splitting existed). Inputs alternate between the two
// sides of the branch.
// Run: npx tsx bench/graph-split.ts [--width 512] [--depth 4] [--batch 32] [--round-ms 400]
import { nn, randn, inferenceJit, backendInfo, getNumThreads, type Tensor } from '../src/index.js';
import { compare, table } from './lib/timing.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`bench/graph-split: --${name} needs a positive number, got ${process.argv[i + 1]}`);
  return v;
};
const W = arg('width', 512), DEPTH = arg('depth', 4), BATCH = arg('batch', 32), ROUND_MS = arg('round-ms', 400);
process.removeAllListeners('warning'); // the graph-break warning is the point of this model

class Block extends nn.Module {
  fc1 = new nn.Linear(W, W * 2, { seed: 1 });
  fc2 = new nn.Linear(W * 2, W, { seed: 2 });
  norm = new nn.LayerNorm(W);
  forward(x: Tensor): Tensor { return x.add(this.fc2.forward(this.fc1.forward(this.norm.forward(x)).gelu())); }
}

class GatedStack extends nn.Module {
  before = new nn.ModuleList(Array.from({ length: DEPTH }, () => new Block()));
  after = new nn.ModuleList(Array.from({ length: DEPTH }, () => new Block()));
  headA = new nn.Linear(W, 16, { seed: 3 });
  headB = new nn.Linear(W, 16, { seed: 4 });
  forward(x: Tensor): Tensor {
    let h = x;
    for (const b of this.before) h = b.forward(h);
    const gate = h.mean().item(); // read into JavaScript: the graph break
    for (const b of this.after) h = b.forward(h);
    return gate > 0 ? this.headA.forward(h) : this.headB.forward(h).neg();
  }
}

const info = backendInfo();
const m = new GatedStack();
const split = inferenceJit(m, { cache: 'memory' });
const eager = inferenceJit(m, { cache: 'memory', splitGraphs: false });
const xs = [1, -1].map((s) => randn([BATCH, W], { seed: 7 }).abs().mul(s));
let k = 0;
const next = (): Tensor => xs[k++ % 2];
// both must agree before they are timed
for (const x of xs) {
  const a = split(x).toFlatArray(), b = m.forward(x).toFlatArray();
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  if (diff > 1e-3) throw new Error(`bench/graph-split: split-compiled and eager differ by ${diff}`);
}
const [ts, te] = await compare(() => split(next()), () => eager(next()), 5, ROUND_MS);
const s = split.stats();
if (s.splitCalls === 0 || s.pieces < 2) throw new Error(`bench/graph-split: the model did not run split (${JSON.stringify({ splitCalls: s.splitCalls, pieces: s.pieces })})`);
const ratio = te.medianMs / ts.medianMs;
console.log(`inferjit ${info.native ? info.isa : 'no native backend'}, ${getNumThreads()} threads; ${DEPTH}+${DEPTH} blocks of width ${W}, batch ${BATCH}\n`);
console.log(table(['path', 'median ms', 'min ms'], [
  ['split-compiled', ts.medianMs.toFixed(3), ts.minMs.toFixed(3)],
  ['eager fallback', te.medianMs.toFixed(3), te.minMs.toFixed(3)],
]));
console.log(`\nsplit-compiled is ${ratio.toFixed(2)}x the eager fallback's speed (pieces in memory: ${s.pieces})`);
console.log(JSON.stringify({ bench: 'graph-split', width: W, depth: DEPTH, batch: BATCH, threads: getNumThreads(), split_ms: +ts.medianMs.toFixed(3), eager_ms: +te.medianMs.toFixed(3), speedup: +ratio.toFixed(3), pieces: s.pieces, split_calls: s.splitCalls }));
