// Quick A/B of compiled fp32 DiT against onnxruntime-node for one (model, batch): alternating
// single forwards with a pause before each (ORT's workers spin after a run; see bench/dit.ts),
// printing the medians and the median per-round ratio. For tuning kernels between full
// `bench/dit.ts` runs (env knobs such as INFERJIT_GEMM_KC / INFERJIT_GEMM_MC apply as usual).
// Run: npx tsx bench/dit-ab.ts [DiT-B/2] [batch 2] [rounds 12] [pause ms 100]
process.env.INFERJIT_CACHE = 'memory';
import { getNumThreads } from '../src/index.js';
import { createDiT, type DiTName } from '../examples/diffusion/dit.js';
import { settle } from './lib/timing.js';
import { ditInputs, ditOrtSession } from './lib/dit.js';

const [name = 'DiT-B/2', batchArg = '2', roundsArg = '12', pauseArg = '100'] = process.argv.slice(2);
const n = Number(batchArg), rounds = Number(roundsArg), pause = Number(pauseArg);
if (![n, rounds, pause].every(Number.isFinite)) throw new RangeError('bench/dit-ab: usage: [model] [batch] [rounds] [pause ms]');

const model = createDiT(name as DiTName, {}, { seed: 0, compiled: true });
const ort = ditOrtSession(model, getNumThreads());
try {
  const x = ditInputs(n);
  for (let i = 0; i < 2; i++) { model.forward(...x); ort.runSync(x); }
  const ours: number[] = [], theirs: number[] = [], ratio: number[] = [];
  for (let r = 0; r < rounds; r++) {
    await settle(pause);
    const t0 = performance.now(); model.forward(...x); const t1 = performance.now();
    await settle(pause);
    const t2 = performance.now(); ort.runSync(x); const t3 = performance.now();
    ours.push(t1 - t0); theirs.push(t3 - t2); ratio.push((t3 - t2) / (t1 - t0));
  }
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[v.length >> 1];
  console.log(`${name} b${n}: compiled ${median(ours).toFixed(1)} ms, ORT ${median(theirs).toFixed(1)} ms, ORT/compiled ${median(ratio).toFixed(3)} (${rounds} rounds, ${pause} ms pauses)`);
} finally { ort.dispose(); }
