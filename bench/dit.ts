// DiT benchmark (issue 7): per-forward latency of DiT-S/2 and DiT-B/2 (256×256 images, latents
// [N, 4, 32, 32]) at batch 1 and 2 for our eager mode (native kernels), our compiled cpu backend
// (@inferenceJit: CompiledDiT), onnxruntime-node on our ONNX export (graphOptimizationLevel 'all',
// the same intra-op thread count) and our compiled path with each pass family disabled, all in one
// process, in alternating rounds. Peak RSS of the compiled path and of ORT is measured in child
// processes. Prints markdown tables and a final JSON line:
//   {"bench":"dit","ratio_vs_ort":{"DiT-S/2 b1": ORT ms / compiled ms, ...},"ratio_vs_eager":{... eager ms / compiled ms}, ...}
// (ratios > 1: the compiled path is faster).
// Run: npx tsx bench/dit.ts [--quick] [--models DiT-S/2,DiT-B/2] [--batches 1,2] [--rounds 5]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { backendInfo, getNumThreads, inferenceJit, type Tensor } from '../src/index.js';
import { listPassNames } from '../src/passes/index.js';
import { jitRunner } from '../src/jit/index.js';
import { ortVersion } from '../src/backends/onnxruntime/session.js';
import { createDiT, type DiTName } from '../examples/diffusion/dit.js';
import { settle, table, median, pairedRatio, timeRounds } from './lib/timing.js';
import { ditInputs as inputs, ditOrtSession as ortSession } from './lib/dit.js';
import { reducedPrecisionSupport, describeBf16Compute } from '../src/backends/cpu/bf16.js';

// A benchmark must not read or fill the user's disk cache: every compile here is in memory.
process.env.INFERJIT_CACHE = 'memory';

interface Args { quick: boolean; models: DiTName[]; batches: number[]; rounds: number; rss: boolean; child: null | { kind: 'compiled' | 'ort'; model: DiTName; batch: number } }

function parseArgs(argv: string[]): Args {
  const quick = argv.includes('--quick');
  const a: Args = { quick, models: quick ? ['DiT-S/2'] : ['DiT-S/2', 'DiT-B/2'], batches: [1, 2], rounds: quick ? 4 : 12, rss: true, child: null };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--quick': break;
      case '--models': a.models = v.split(',') as DiTName[]; i++; break;
      case '--batches': a.batches = v.split(',').map(Number); i++; break;
      case '--rounds': a.rounds = Number(v); i++; break;
      case '--no-rss': a.rss = false; break;
      case '--rss-child': a.child = { kind: v as 'compiled' | 'ort', model: argv[i + 2] as DiTName, batch: Number(argv[i + 3]) }; i += 3; break;
      default: throw new RangeError(`bench/dit: unknown flag ${argv[i]}; flags: --quick --models --batches --rounds --no-rss`);
    }
  }
  return a;
}

// ---- pass families ----

/** The registered passes grouped into the families the issue names; any pass not matched (new
 *  ones included) lands in "clean-up and others". Memory planning is not a graph pass (the plan
 *  lowering does it), so "plan executor off" stands for it: the graph interpreted on eager kernels. */
function passFamilies(): { name: string; passes: string[] }[] {
  const all = listPassNames();
  const families: [string, RegExp][] = [
    ['attention fusion', /attention/],
    ['norm fusion', /norm/],
    ['GEMM epilogue', /epilogue/],
    ['horizontal GEMM', /horizontal/],
    ['elementwise fusion', /elementwise/],
  ];
  const taken = new Set<string>();
  const out = families.map(([name, re]) => {
    const passes = all.filter((p) => re.test(p) && !taken.has(p));
    passes.forEach((p) => taken.add(p));
    return { name, passes };
  }).filter((f) => f.passes.length > 0);
  const rest = all.filter((p) => !taken.has(p));
  if (rest.length) out.push({ name: 'clean-up and others', passes: rest });
  return out;
}

// ---- timing ----

interface Contender { label: string; run: (x: [Tensor, Tensor, Tensor]) => Tensor; note?: string }

const maxAbsDiff = (a: Tensor, b: Tensor): number => {
  const x = a.toFlatArray(), y = b.toFlatArray();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
};


/** The median over rounds of a[r] / b[r]: a ratio that drifting machine load mostly cancels out of. */

// ---- RSS (child processes) ----

function rssChild(kind: 'compiled' | 'ort', name: DiTName, batch: number): void {
  const model = createDiT(name, {}, { seed: 0, compiled: true });
  const afterModel = process.memoryUsage().rss;
  const x = inputs(batch);
  if (kind === 'compiled') for (let i = 0; i < 3; i++) model.forward(...x);
  else {
    const s = ortSession(model, getNumThreads());
    for (let i = 0; i < 3; i++) s.runSync(x);
  }
  process.stdout.write(`${JSON.stringify({ peakMiB: peakRss() / 2 ** 20, modelMiB: afterModel / 2 ** 20 })}\n`);
}

/** This process's peak RSS in bytes. VmHWM belongs to the address space, which exec replaces;
 *  getrusage's maxRSS is not used because Linux carries it over from the forking parent. */
function peakRss(): number {
  const m = /VmHWM:\s*(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

function measureRss(kind: 'compiled' | 'ort', name: DiTName, batch: number): { peakMiB: number; modelMiB: number } | null {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--rss-child', kind, name, String(batch)], { encoding: 'utf8' });
  if (r.status !== 0) { console.error(`rss child (${kind} ${name} b${batch}) failed: ${r.stderr}`); return null; }
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

// ---- main ----

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child) return rssChild(args.child.kind, args.child.model, args.child.batch);
  const info = backendInfo();
  if (!info.native) console.error(`bench/dit: the native backend is not available (${info.reason}); eager and compiled run on reference kernels`);
  const threads = getNumThreads();
  const families = passFamilies();
  console.log(`inferjit ${info.isa ?? 'reference'} (${info.gemmTile ?? '-'} tile), ${threads} threads; onnxruntime-node ${ortVersion()} intraOpNumThreads=${threads}, graphOptimizationLevel 'all'`);
  console.log(`${args.rounds} rounds, each running every contender once (seeded random order), after warm-up; ms = median over rounds, ratios = median over rounds of the per-round ratio; load average at start ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}`);
  console.log(`pass families: ${families.map((f) => `${f.name} = ${f.passes.join('+')}`).join('; ')}\n`);

  const ratioVsOrt: Record<string, number> = {}, ratioVsEager: Record<string, number> = {};
  const msTable: Record<string, Record<string, number>> = {}, rssTable: Record<string, unknown> = {};
  const mainRows: (string | number)[][] = [], familyRows: (string | number)[][] = [], bf16Rows: (string | number)[][] = [];
  const ratioBf16VsOrt: Record<string, number> = {}, relErrBf16: Record<string, number> = {};
  const bf16Support = reducedPrecisionSupport();

  for (const name of args.models) {
    const model = createDiT(name, {}, { seed: 0, compiled: true });
    const ort = ortSession(model, threads);
    // The decorated class is the compiled path; the function form on the same instance (sharing its
    // weights) compiles the variants with pass families disabled.
    const variants = families.map((f) => ({ f, fn: inferenceJit(model, { passes: { disable: f.passes } }) }));
    const noPlan = inferenceJit(model, { name: 'no-plan' });
    // Nothing disabled, function form: a control whose ratio to 'compiled' shows the noise floor.
    const control = inferenceJit(model, { name: 'control' });
    // Issue 9: the same model compiled with precision 'bf16' (bf16 GEMMs and attention, fp32 norms).
    const bf16 = bf16Support.bf16 ? inferenceJit(model, { name: 'bf16', precision: 'bf16' }) : null;
    try {
      for (const batch of args.batches) {
        const x = inputs(batch);
        const key = `${name} b${batch}`;
        const contenders: Contender[] = [
          { label: 'eager', run: (a) => model.eager(...a) },
          { label: 'compiled', run: (a) => model.forward(...a) },
          { label: 'onnxruntime', run: (a) => ort.runSync(a)[0] },
          ...variants.map(({ f, fn }) => ({ label: `no ${f.name}`, run: (a: [Tensor, Tensor, Tensor]) => fn(...a) as Tensor })),
          { label: 'plan executor off', run: (a) => noPlan(...a) as Tensor },
          { label: 'control: nothing off (function form)', run: (a) => control(...a) as Tensor },
          ...(bf16 ? [{ label: BF16_LABEL, run: (a: [Tensor, Tensor, Tensor]) => bf16(...a) as Tensor }] : []),
        ];
        // Warm-up: the first call compiles (timed), the second settles caches; and every contender
        // is checked against eager.
        const want = model.eager(...x);
        const firstMs: number[] = [], diffs: number[] = [];
        for (const c of contenders) {
          // INFERJIT_PLAN=0 is read when the executable is built (the first call): the interpreter path.
          if (c.label === 'plan executor off') process.env.INFERJIT_PLAN = '0';
          const t0 = performance.now();
          const out = c.run(x);
          firstMs.push(performance.now() - t0);
          delete process.env.INFERJIT_PLAN;
          diffs.push(maxAbsDiff(out, want));
          c.run(x);
        }
        const path = jitRunner(model)?.compiledEntries()[0]?.executable.describe?.() ?? '?';
        const samples = await timeRounds(contenders, x, args.rounds);
        const med = samples.map(median);
        const idx = (label: string): number => contenders.findIndex((c) => c.label === label);
        const m = (label: string): number => med[idx(label)];
        const compiledSamples = samples[idx('compiled')];
        msTable[key] = Object.fromEntries(contenders.map((c, i) => [c.label, round(med[i])]));
        ratioVsOrt[key] = round(pairedRatio(samples[idx('onnxruntime')], compiledSamples));
        ratioVsEager[key] = round(pairedRatio(samples[idx('eager')], compiledSamples));
        mainRows.push([key, m('eager').toFixed(1), m('compiled').toFixed(1), m('onnxruntime').toFixed(1), ratioVsEager[key].toFixed(2), ratioVsOrt[key].toFixed(2),
          firstMs[1].toFixed(0), diffs[1].toExponential(1), diffs[2].toExponential(1)]);
        if (bf16) {
          const b = idx(BF16_LABEL);
          ratioBf16VsOrt[key] = round(pairedRatio(samples[idx('onnxruntime')], samples[b]));
          const rel = relativeError(contenders[b].run(x), want);
          bf16Rows.push([key, m('compiled').toFixed(1), med[b].toFixed(1), m('onnxruntime').toFixed(1), pairedRatio(compiledSamples, samples[b]).toFixed(2), ratioBf16VsOrt[key].toFixed(2), rel.toExponential(1)]);
          relErrBf16[key] = Number(rel.toExponential(2));
        }
        for (let i = 3; i < contenders.length; i++) {
          if (contenders[i].label === BF16_LABEL) continue;
          familyRows.push([key, contenders[i].label, med[i].toFixed(1), pairedRatio(samples[i], compiledSamples).toFixed(2), diffs[i].toExponential(1)]);
        }
        console.error(`${key}: compiled = ${path}`);
        console.error(`${key}: ${contenders.map((c, i) => `${c.label} ${med[i].toFixed(1)}`).join(', ')} ms`);
      }
    } finally { ort.dispose(); }
  }

  console.log('Per-forward latency, ms (median):\n');
  console.log(table(['model, batch', 'eager', 'compiled', 'ORT', 'vs eager', 'vs ORT', 'first call ms', 'max|Δ| compiled', 'max|Δ| ORT'], mainRows));
  console.log("(first call: the compile (trace, passes, lowering) at a model's first batch; at the next batch only a new concrete plan. max|Δ|: max abs difference from eager.)");
  console.log('\nCompiled path with one pass family disabled (slowdown: median over rounds of variant ms / compiled ms):\n');
  console.log(table(['model, batch', 'variant', 'ms', 'slowdown', 'max|Δ| vs eager'], familyRows));

  if (bf16Rows.length) {
    console.log(`\nprecision 'bf16' (${describeBf16Compute()}) vs fp32 compiled and ORT fp32 (ratios: median over rounds; rel. error ||y - y_eager|| / ||y_eager||):\n`);
    console.log(table(['model, batch', 'compiled fp32', 'compiled bf16', 'ORT fp32', 'bf16 vs fp32', 'bf16 vs ORT', 'rel. error'], bf16Rows));
  } else console.log(`\nno bf16 rows: ${bf16Support.missing ?? 'bf16 unavailable'}`);

  if (args.rss) {
    const rows: (string | number)[][] = [];
    for (const name of args.models) {
      const batch = Math.max(...args.batches);
      const c = measureRss('compiled', name, batch), o = measureRss('ort', name, batch);
      rssTable[`${name} b${batch}`] = { compiled: c, onnxruntime: o };
      const f = (v: { peakMiB: number; modelMiB: number } | null): string => (v ? `${v.peakMiB.toFixed(0)} (+${(v.peakMiB - v.modelMiB).toFixed(0)})` : 'failed');
      rows.push([`${name} b${batch}`, f(c), f(o)]);
    }
    console.log('\nPeak RSS, MiB, each in its own process (in parentheses: above the RSS after building the eager model):\n');
    console.log(table(['model, batch', 'compiled', 'onnxruntime'], rows));
  }
  console.log(`\nload average at end ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}`);
  console.log(JSON.stringify({ bench: 'dit', ratio_vs_ort: ratioVsOrt, ratio_vs_eager: ratioVsEager, ratio_bf16_vs_ort: ratioBf16VsOrt, rel_error_bf16: relErrBf16, ms: msTable, rss_mib: rssTable, threads }));
}

const round = (v: number): number => Math.round(v * 1000) / 1000;
const BF16_LABEL = 'compiled bf16';

function relativeError(y: Tensor, ref: Tensor): number {
  const a = y.toFlatArray(), b = ref.toFlatArray();
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}

await main();
