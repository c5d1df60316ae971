// Per-call overhead of the compiled decode step outside the native plan (issue 15 asks for it in
// µs). One sequence decodes greedily on a small model; four timings of the same decode step:
//   engine   StepEngine.generate, per generated token (schedule, metadata tensors, runAsync,
//            sampling, the setImmediate between steps: everything a served token costs)
//   async    PlanExecutable.runAsync on the captured inputs of a decode step, awaited one by one
//   sync     PlanExecutable.run on the same inputs (no libuv thread hop)
//   native   the plan's kernels alone (its profile counters: sum of kernel times per run)
// and the differences: engine − native is the overhead asked for; engine − async is the engine's
// JavaScript; async − sync is the thread hop and promise; sync − native is prepare/collect
// (binding the shapes, the plan lookup, output tensors) and the N-API call.
// It also counts the garbage collections during the engine's decode (count and ms per 100 steps,
// independent of how loaded the machine is): a decode step should allocate next to nothing.
//   npx tsx bench/step-overhead.ts [--model tiny|110m] [--type Q4_0] [--steps 200] [--rounds 3] [--profile]
// --profile: a CPU profile of the main thread during the engine's decode loop (node:inspector);
// prints the functions with the most self time (the native plan runs on a libuv thread, so the
// main thread's share of a step is what the profile shows). Prints a table and a final JSON line.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { ensureModel, promptIds, MODELS, FILE_TYPES, type ModelName, type FileType } from './lib/llm-models.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'tiny' },
    type: { type: 'string', default: 'Q4_0' },
    steps: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '3' },
    profile: { type: 'boolean', default: false },
  },
});

const name = args.model as ModelName, type = args.type as FileType;
if (!(name in MODELS)) throw new RangeError(`--model: unknown model ${JSON.stringify(name)}; choose from ${Object.keys(MODELS).join(', ')}`);
if (!FILE_TYPES.includes(type)) throw new RangeError(`--type: unknown type ${JSON.stringify(type)}; choose from ${FILE_TYPES.join(', ')}`);
const steps = Number(args.steps), rounds = Number(args.rounds);
if (!Number.isInteger(steps) || steps < 2) throw new RangeError(`--steps must be a whole number ≥ 2, got ${args.steps}`);
if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`--rounds must be a whole number ≥ 1, got ${args.rounds}`);

const { loadCausalLM } = await import('../src/llm/models/index.js');
const { getNumThreads } = await import('../src/backends/cpu/index.js');
type T = import('../src/tensor/tensor.js').Tensor;

const file = await ensureModel(name, type);
const { model, engine } = loadCausalLM(file, { maxContext: steps + 64, maxSeqs: 1, maxStepTokens: 64, kvDtype: 'f16' });
const V = model.config.vocabSize;
const greedy = { temperature: 0 };
await engine.generate(promptIds(8, V, 1), { ...greedy, maxTokens: 4 }); // compile and lower the buckets

interface Exe {
  runAsync(inputs: T[], options?: { reuseOutputs?: boolean }): Promise<T[]>;
  run(inputs: T[], options?: { reuseOutputs?: boolean }): T[];
  profile(reset?: boolean): { runs: number; byKernel: Record<string, number> } | null;
  describe(): string;
}
const exe = (engine as unknown as { compiled: { compiledEntries(): { executable: Exe }[] } | null }).compiled?.compiledEntries()[0]?.executable;
if (!exe) throw new Error(`the step is not compiled: ${engine.describe()}`);
// capture the inputs of the latest step (the engine calls runAsync on this executable)
let captured: T[] | null = null;
const original = exe.runAsync.bind(exe);
exe.runAsync = (inputs, options) => { captured = inputs; return original(inputs, options); };
// the engine's runner lets the plan write its kept output buffers; the plan-alone timings do the same
const reuse = { reuseOutputs: true };

/** The decode window of the latest engineDecode on the monotonic clock (µs), as V8's profiler stamps samples. */
const window = { from: 0, to: 0 };
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

/** Garbage collections seen during the decode windows of engineDecode (all rounds). */
const gcSeen = { count: 0, ms: 0, steps: 0 };
let inDecode = false;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (inDecode) { gcSeen.count++; gcSeen.ms += e.duration; }
}).observe({ entryTypes: ['gc'] });

/** µs per generated token of one sequence, from its second token (decode steps only). */
async function engineDecode(): Promise<number> {
  let second = 0, count = 0;
  await engine.generate(promptIds(8, V, 2), { ...greedy, maxTokens: steps + 1 }, () => {
    if (++count === 2) { second = performance.now(); window.from = monoUs(); inDecode = true; }
  });
  inDecode = false;
  window.to = monoUs();
  // gc entries are delivered asynchronously: let the ones of the window arrive
  await new Promise((r) => setImmediate(r));
  gcSeen.steps += steps - 1;
  return ((performance.now() - second) / (steps - 1)) * 1000;
}

/** Linux per-thread scheduler counters (ns): the main thread's time on a CPU and waiting for
 *  one, and every thread's time on a CPU. On a loaded machine wall times include waiting for a
 *  core; the main thread's CPU time is the JavaScript side's real cost. null elsewhere. */
function schedstat(): { mainCpu: number; mainWait: number; allCpu: number } | null {
  const read = (tid: string | number) => fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
  try {
    const [mainCpu, mainWait] = read(process.pid);
    let allCpu = 0;
    for (const t of fs.readdirSync('/proc/self/task')) { try { allCpu += read(t)[0]; } catch { /* thread ended */ } }
    return { mainCpu, mainWait, allCpu };
  } catch {
    return null;
  }
}
interface Phase { wallUs: number; mainCpuUs: number; mainWaitUs: number; allCpuUs: number }
/** Runs `fn` (which performs `n` steps) and returns per-step wall and scheduler times (µs). */
async function phase(n: number, fn: () => Promise<unknown> | unknown): Promise<Phase> {
  const s0 = schedstat(), t = performance.now();
  await fn();
  const wallUs = ((performance.now() - t) / n) * 1000, s1 = schedstat();
  const per = (k: 'mainCpu' | 'mainWait' | 'allCpu') => (s0 && s1 ? (s1[k] - s0[k]) / n / 1000 : NaN);
  return { wallUs, mainCpuUs: per('mainCpu'), mainWaitUs: per('mainWait'), allCpuUs: per('allCpu') };
}
const none: Phase = { wallUs: Infinity, mainCpuUs: NaN, mainWaitUs: NaN, allCpuUs: NaN };
const keepBest = (a: Phase, b: Phase): Phase => (b.wallUs < a.wallUs ? b : a);

const best = { engine: none, async: none, sync: none, native: Infinity };
for (let r = 0; r < rounds; r++) {
  // the engine phase counts from the first generate call: per generated token, prefill included
  // in the wall time is removed by engineDecode; scheduler counters cover the whole call
  let perToken = 0;
  const e = await phase(steps, async () => { perToken = await engineDecode(); });
  best.engine = keepBest(best.engine, { ...e, wallUs: perToken });
  const inputs = captured!;
  // the last step was a decode step (T = 1): rerunning it writes the same K/V row again
  if (inputs[0].shape[0] !== 1) throw new Error(`captured a step of ${inputs[0].shape[0]} tokens, expected a decode step`);
  exe.profile(true);
  best.async = keepBest(best.async, await phase(steps, async () => { for (let i = 0; i < steps; i++) await original(inputs, reuse); }));
  const prof = exe.profile(false);
  if (prof && prof.runs > 0) best.native = Math.min(best.native, (Object.values(prof.byKernel).reduce((a, b) => a + b, 0) / prof.runs) * 1000);
  best.sync = keepBest(best.sync, await phase(steps, () => { for (let i = 0; i < steps; i++) exe.run(inputs, reuse); }));
}

const f = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');
console.log(`model ${name} ${type}, ${getNumThreads()} threads, ${steps} decode steps, best of ${rounds} rounds; ${exe.describe()}\n`);
console.log('| measurement (µs per decode step) | wall | main thread on CPU | main thread waiting for a CPU | all threads on CPU |');
console.log('|---|---|---|---|---|');
const row = (what: string, p: Phase) => console.log(`| ${what} | ${f(p.wallUs)} | ${f(p.mainCpuUs)} | ${f(p.mainWaitUs)} | ${f(p.allCpuUs)} |`);
row('engine (StepEngine.generate, per token)', best.engine);
row('plan runAsync alone', best.async);
row('plan run (sync) alone', best.sync);
console.log(`| native kernels (plan profile) | ${f(best.native)} | | | |`);
console.log(`\n| difference (wall µs per decode step) | µs |`);
console.log('|---|---|');
console.log(`| **overhead: engine − native** | **${f(best.engine.wallUs - best.native)}** |`);
console.log(`| engine JavaScript: engine − runAsync | ${f(best.engine.wallUs - best.async.wallUs)} |`);
console.log(`| thread hop + promise: runAsync − run | ${f(best.async.wallUs - best.sync.wallUs)} |`);
console.log(`| prepare/collect + N-API: run − native | ${f(best.sync.wallUs - best.native)} |`);
const gcPer100 = (100 * gcSeen.count) / gcSeen.steps, gcMsPer100 = (100 * gcSeen.ms) / gcSeen.steps;
console.log(`\ngarbage collections during the engine's decode: ${gcPer100.toFixed(2)} per 100 steps, ${gcMsPer100.toFixed(2)} ms per 100 steps`);

let top: { fn: string; selfUs: number; share: number }[] = [];
if (args.profile) {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  await session.post('Profiler.start');
  const perToken = await engineDecode();
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  // self time per function: every sample's time delta goes to the node it was taken in; only
  // samples inside the decode window count (not the profiler's own start and stop)
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const stamps: number[] = [];
  profile.timeDeltas!.reduce((t, d) => { stamps.push(t + d); return t + d; }, profile.startTime);
  const inWindow = stamps.some((t) => t >= window.from && t <= window.to);
  if (!inWindow) console.error('profile: no sample stamped inside the decode window (clock mismatch); counting all samples');
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (id: number | undefined): string => {
    if (id === undefined) return '';
    const cf = byId.get(id)!.callFrame;
    const where = cf.url ? ` ${cf.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/')}` : '';
    return `${cf.functionName || '(anonymous)'}${where}`;
  };
  profile.samples!.forEach((id, i) => {
    if (inWindow && (stamps[i] < window.from || stamps[i] > window.to)) return;
    // a function without a name or script (a native binding's) is named by its caller
    const own = label(id);
    const key = own === '(anonymous)' ? `(native) ← ${label(parent.get(id))}` : own;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas![i] ?? 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25)
    .map(([fn, us]) => ({ fn, selfUs: +(us / (steps - 1)).toFixed(2), share: +(us / total).toFixed(3) }));
  console.log(`\nmain-thread CPU profile of the decode loop (${f(perToken)} µs per token while profiled); self time per token:\n`);
  console.log('| function | self µs per token | share |');
  console.log('|---|---|---|');
  for (const t of top) console.log(`| ${t.fn} | ${t.selfUs} | ${(100 * t.share).toFixed(1)}% |`);
}

const r1 = (p: Phase) => ({ wall: +f(p.wallUs), main_cpu: +f(p.mainCpuUs) || null, main_wait: +f(p.mainWaitUs) || null, all_cpu: +f(p.allCpuUs) || null });
console.log(JSON.stringify({
  bench: 'step-overhead', model: name, type, threads: getNumThreads(), steps,
  engine_us: r1(best.engine), run_async_us: r1(best.async), run_sync_us: r1(best.sync), native_us: +f(best.native),
  overhead_us: +f(best.engine.wallUs - best.native), engine_js_us: +f(best.engine.wallUs - best.async.wallUs),
  thread_hop_us: +f(best.async.wallUs - best.sync.wallUs), prepare_collect_us: +f(best.sync.wallUs - best.native),
  gc_per_100_steps: +gcPer100.toFixed(2), gc_ms_per_100_steps: +gcMsPer100.toFixed(2),
  ...(args.profile ? { profile_top: top } : {}),
}));
