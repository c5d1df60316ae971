// Per-step overhead of the paged step outside the native plan, under decode load: N sequences decode
// together through StepEngine (PagedStepRunner) on a small seeded model, and per step it reports
//   host   = time step() spends on the JS thread building the metadata and doing its bookkeeping;
//   outside = wall time per step minus the native plan's own time (host + runAsync's preparation and
//             thread hop + sampling + the loop's turn of the event loop).
// It also times building one decode step's 7 metadata tensors both ways: fresh typed arrays wrapped
// by fromArray every step (what StepEngine did before the runner) and the runner's per-bucket
// tensors refilled in place.
//   npx tsx bench/step-overhead.ts [--model tiny|110m] [--seqs 16] [--gen 64]
// Final JSON line {"bench":"step-overhead", ...}. On a loaded machine the numbers are smoke only.
import { parseArgs } from 'node:util';
import { ensureModel, promptIds, MODELS, type ModelName } from './lib/llama-gguf.js';
import { loadPagedLlama } from '../src/llm/index.js';
import { fromArray } from '../src/tensor/creation.js';
import { Tensor } from '../src/tensor/tensor.js';

const { values: args } = parseArgs({ options: { model: { type: 'string', default: 'tiny' }, seqs: { type: 'string', default: '16' }, gen: { type: 'string', default: '64' } } });
const name = args.model as ModelName;
if (!(name in MODELS)) throw new Error(`--model must be one of ${Object.keys(MODELS).join(', ')}, got ${args.model}`);
const seqs = Number(args.seqs), gen = Number(args.gen);
const file = await ensureModel(name, 'Q4_0');
const { model, engine } = loadPagedLlama(file, { maxContext: 256, maxSeqs: seqs, maxStepTokens: 256 });
const prompts = Array.from({ length: seqs }, (_, i) => promptIds(8 + i, model.config.vocabSize));
// warm-up: lowers the buckets the decode uses
await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 4 })));
const exe = engine.compiled!.compiledEntries()[0].executable as unknown as { profile(reset?: boolean): { runs: number; byKernel: Record<string, number> } | null };
let started = 0, firsts = 0, steps0 = 0, host0 = 0;
const seen = new Set<number>();
await Promise.all(prompts.map((p, i) => engine.generate(p, { maxTokens: gen + 1 }, () => {
  if (seen.has(i) || (seen.add(i), ++firsts < seqs)) return;
  // every sequence has its first token: decode-only steps from here
  started = performance.now(); steps0 = engine.stats.steps; host0 = engine.stats.hostMs; exe.profile(true);
})));
const wall = performance.now() - started;
const steps = engine.stats.steps - steps0;
const prof = exe.profile(false);
const nativeMs = prof ? Object.values(prof.byKernel).reduce((a, b) => a + b, 0) : NaN;
const result = {
  bench: 'step-overhead', model: name, seqs, steps,
  stepUs: +(wall / steps * 1000).toFixed(1),
  nativeUs: +(nativeMs / steps * 1000).toFixed(1),
  outsideUs: +((wall - nativeMs) / steps * 1000).toFixed(1),
  hostUs: +((engine.stats.hostMs - host0) / steps * 1000).toFixed(1),
};

// metadata of a decode step of `seqs` sequences (3 pages each), built both ways
const T = seqs, S = seqs, MB = 16;
const pages = Array.from({ length: S }, (_, i) => [i * 3, i * 3 + 1, i * 3 + 2]);
const fresh = () => {
  const ids = new Int32Array(T), positions = new Int32Array(T), slots = new Int32Array(T).fill(-1);
  const tables = new Int32Array(S * MB), lens = new Int32Array(S), starts = new Int32Array(S + 1), last = new Int32Array(S);
  for (let i = 0; i < S; i++) { ids[i] = i; positions[i] = 40; slots[i] = 33; starts[i] = i; lens[i] = 41; last[i] = i; tables.set(pages[i], i * MB); }
  starts[S] = S;
  return [fromArray(ids, [T], 'i32'), fromArray(positions, [T], 'i32'), fromArray(slots, [T], 'i32'), fromArray(tables, [S, MB], 'i32'), fromArray(lens, [S], 'i32'), fromArray(starts, [S + 1], 'i32'), fromArray(last, [S], 'i32')];
};
const kept = [[T], [T], [T], [S, MB], [S], [S + 1], [S]].map((shape) => Tensor.empty('i32', shape));
const reused = () => {
  const [ids, positions, slots, tables, lens, starts, last] = kept.map((b) => b.data as Int32Array);
  for (let i = 0; i < S; i++) { ids[i] = i; positions[i] = 40; slots[i] = 33; starts[i] = i; lens[i] = 41; last[i] = i; tables.set(pages[i], i * MB); tables.fill(0, i * MB + 3, (i + 1) * MB); }
  starts[S] = S;
  return kept;
};
const timeIt = (f: () => unknown): number => {
  for (let i = 0; i < 2000; i++) f();
  const t = performance.now();
  for (let i = 0; i < 20000; i++) f();
  return +((performance.now() - t) / 20000 * 1000).toFixed(2);
};
timeIt(fresh); timeIt(reused);
const metadataUs = { fresh: timeIt(fresh), reused: timeIt(reused) };
Object.assign(result, { metadataFreshUs: metadataUs.fresh, metadataReusedUs: metadataUs.reused });
console.log(`metadata of one step: ${metadataUs.fresh} µs fresh (fromArray per step), ${metadataUs.reused} µs reused per-bucket tensors`);
console.log(`${seqs} sequences decoding on ${name}: ${result.stepUs} µs per step, ${result.nativeUs} µs in the native plan, ${result.outsideUs} µs outside it (${result.hostUs} µs in step()'s metadata and bookkeeping)`);
console.log(JSON.stringify(result));
