// Graph splitting benchmark: a transformer (pre-norm blocks of causal self-attention and an MLP)
// that reads a value into JavaScript in the middle of forward (a gate on a reduction choosing the
// head) run split-compiled (compiled piece before the read,
// eager read, compiled continuation; src/jit/split.ts) against the eager fallback (splitGraphs:
// false: the whole call eagerly, as before splitting existed). Inputs alternate between the two
// sides of the branch. The split path's own cost per call (replaying forward's JavaScript, the
// prefix guard, the continuation key) is what decides the small sizes; the compiled pieces decide
// the large ones.
// Run: npx tsx bench/graph-split.ts [--width 256] [--depth 2] [--heads 4] [--batch 2] [--seq 64] [--round-ms 400]
import { nn, randn, inferenceJit, backendInfo, getNumThreads, type Tensor } from '../src/index.js';
import { compare, table } from './lib/timing.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`bench/graph-split: --${name} needs a positive number, got ${process.argv[i + 1]}`);
  return v;
};
const W = arg('width', 256), DEPTH = arg('depth', 2), HEADS = arg('heads', 4), BATCH = arg('batch', 2), SEQ = arg('seq', 64), ROUND_MS = arg('round-ms', 400);
if (W % HEADS !== 0) throw new Error(`bench/graph-split: --width ${W} must be a multiple of --heads ${HEADS}`);
process.removeAllListeners('warning'); // the graph-break warning is the point of this model

class Block extends nn.Module {
  ln1 = new nn.LayerNorm(W);
  attn = new nn.SelfAttention(W, HEADS, { causal: true, seed: 1 });
  ln2 = new nn.LayerNorm(W);
  mlp = new nn.MLP(W, W * 4, { seed: 2 });
  forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x)));
    return h.add(this.mlp.forward(this.ln2.forward(h)));
  }
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
const xs = [1, -1].map((s) => randn([BATCH, SEQ, W], { seed: 7 }).abs().mul(s));
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
console.log(`inferjit ${info.native ? info.isa : 'no native backend'}, ${getNumThreads()} threads; ${DEPTH}+${DEPTH} transformer blocks of width ${W}, ${HEADS} heads, batch ${BATCH} x ${SEQ} tokens\n`);
console.log(table(['path', 'median ms', 'min ms'], [
  ['split-compiled', ts.medianMs.toFixed(3), ts.minMs.toFixed(3)],
  ['eager fallback', te.medianMs.toFixed(3), te.minMs.toFixed(3)],
]));
console.log(`\nsplit-compiled is ${ratio.toFixed(2)}x the eager fallback's speed (pieces in memory: ${s.pieces})`);
console.log(JSON.stringify({ bench: 'graph-split', width: W, depth: DEPTH, heads: HEADS, batch: BATCH, seq: SEQ, threads: getNumThreads(), split_ms: +ts.medianMs.toFixed(3), eager_ms: +te.medianMs.toFixed(3), speedup: +ratio.toFixed(3), pieces: s.pieces, split_calls: s.splitCalls }));
