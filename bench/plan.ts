// The native plan executor against eager execution and onnxruntime-node: the two-block transformer
// (hidden 384 and 768, 256 tokens, batch 1) run eagerly on the native kernels, compiled with
// inferenceJit on 'cpu' (passes + one native plan call per forward), and compiled on
// 'onnxruntime' (our ONNX export in ORT, intraOpNumThreads = our thread count); then DiT-S/2
// (32×32×4 latent) at batch 1 and 2, compiled vs ORT (and eager). Contenders are timed in
// alternating rounds, each keeping its best round median (bench/lib/timing.ts). Prints a table,
// the kernel-time profile of the compiled plan, and one JSON line.
// Run: npx tsx bench/plan.ts [--rounds 6] [--round-ms 600] [--no-dit] [--dims 384,768]
import { backendInfo, getNumThreads, inferenceJit, randn, fromArray, type Tensor } from '../src/index.js';
import { jitRunner } from '../src/jit/index.js';
import { TinyTransformer } from '../examples/models/transformer.js';
import { createDiT } from '../examples/diffusion/dit.js';
import type { PlanExecutable } from '../src/backends/cpu/plan/executable.js';
import { timeIt, settle, table, type Timing } from './lib/timing.js';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string): string => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : fallback; };
const rounds = Number(opt('rounds', '6')), roundMs = Number(opt('round-ms', '600'));
const dims = opt('dims', '384,768').split(',').map(Number);
const withDit = !argv.includes('--no-dit');

const info = backendInfo();
const threads = getNumThreads();
console.log(`native ${info.native ? `${info.isa} (${info.gemmTile})` : `unavailable: ${info.reason}`}, ${threads} threads`);

let ortAvailable = true;
try { await import('onnxruntime-node'); } catch (e) { ortAvailable = false; console.log(`onnxruntime-node unavailable: ${(e as Error).message}`); }

/** Best-of-rounds median per contender, alternating contenders inside each round. */
async function race(contenders: Record<string, () => unknown>): Promise<Record<string, Timing>> {
  const best: Record<string, Timing> = {};
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(contenders)) {
      await settle(100); // ORT's workers spin after a run; see bench/dit.ts
      const t = await timeIt(fn, roundMs, 10, r === 0 ? 3 : 1);
      if (!best[name] || t.medianMs < best[name].medianMs) best[name] = t;
    }
  }
  return best;
}

const maxAbsDiff = (a: Tensor, b: Tensor): number => {
  const x = a.data as Float32Array, y = b.data as Float32Array;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
};

const rows: (string | number)[][] = [];
const json: Record<string, unknown> = { bench: 'plan', threads, isa: info.isa };
const fmt = (t: Timing | undefined): string => (t ? t.medianMs.toFixed(2) : '-');
const ratio = (a: Timing | undefined, b: Timing | undefined): number | null => (a && b ? Math.round((a.medianMs / b.medianMs) * 100) / 100 : null);

for (const dim of dims) {
  const heads = dim / 64;
  const model = new TinyTransformer({ dim, heads });
  const x = randn([1, 256, dim], { seed: 1 });
  const compiled = inferenceJit(model, { device: 'cpu', cache: 'memory' });
  const y = compiled.forward(x) as Tensor;
  const exe = jitRunner(compiled)!.compiledEntries()[0].executable as unknown as PlanExecutable;
  const eagerOut = model.forward(x);
  console.log(`\ntransformer dim ${dim}: ${exe.describe()}; max |compiled - eager| = ${maxAbsDiff(y, eagerOut).toExponential(2)}`);
  const contenders: Record<string, () => unknown> = { eager: () => model.forward(x), plan: () => compiled.forward(x) };
  if (ortAvailable) {
    const ort = inferenceJit(model, { device: 'onnxruntime', cache: 'memory', onnxruntime: { intraOpNumThreads: threads } });
    const o = ort.forward(x) as Tensor;
    console.log(`  max |ort - eager| = ${maxAbsDiff(o, eagerOut).toExponential(2)}`);
    contenders.ort = () => ort.forward(x);
  }
  exe.profile(true);
  const t = await race(contenders);
  const prof = exe.profile();
  if (prof) {
    const total = Object.values(prof.byKernel).reduce((a, b) => a + b, 0);
    console.log(`  plan kernel time per run: ${Object.entries(prof.byKernel).sort((a, b) => b[1] - a[1]).map(([k, ms]) => `${k} ${(ms / prof.runs).toFixed(2)}ms (${((ms / total) * 100).toFixed(0)}%)`).join(', ')}`);
  }
  rows.push([`transformer d${dim} s256 b1`, fmt(t.eager), fmt(t.plan), fmt(t.ort), ratio(t.eager, t.plan) ?? '-', ratio(t.ort, t.plan) ?? '-']);
  json[`transformer_${dim}`] = { eagerMs: t.eager.medianMs, planMs: t.plan.medianMs, ortMs: t.ort?.medianMs ?? null, eagerOverPlan: ratio(t.eager, t.plan), ortOverPlan: ratio(t.ort, t.plan) };
}

if (withDit) {
  const dit = createDiT('DiT-S/2', {}, { seed: 1 });
  for (const n of [1, 2]) {
    const x = randn([n, 4, 32, 32], { seed: 2 });
    const tt = fromArray([500, 20].slice(0, n), [n], 'f32');
    const yy = fromArray([207, 1000].slice(0, n), [n], 'i64');
    const compiled = inferenceJit(dit, { device: 'cpu', cache: 'memory' });
    const out = compiled.forward(x, tt, yy) as Tensor;
    const exe = jitRunner(compiled)!.compiledEntries()[0].executable as unknown as PlanExecutable;
    const eagerOut = dit.forward(x, tt, yy);
    console.log(`\nDiT-S/2 batch ${n}: ${exe.describe()}; max |compiled - eager| = ${maxAbsDiff(out, eagerOut).toExponential(2)}`);
    const contenders: Record<string, () => unknown> = { eager: () => dit.forward(x, tt, yy), plan: () => compiled.forward(x, tt, yy) };
    if (ortAvailable) {
      const ort = inferenceJit(dit, { device: 'onnxruntime', cache: 'memory', onnxruntime: { intraOpNumThreads: threads } });
      console.log(`  max |ort - eager| = ${maxAbsDiff(ort.forward(x, tt, yy) as Tensor, eagerOut).toExponential(2)}`);
      contenders.ort = () => ort.forward(x, tt, yy);
    }
    exe.profile(true);
    const t = await race(contenders);
    const prof = exe.profile();
    if (prof) {
      const total = Object.values(prof.byKernel).reduce((a, b) => a + b, 0);
      console.log(`  plan kernel time per run: ${Object.entries(prof.byKernel).sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, ms]) => `${k} ${(ms / prof.runs).toFixed(2)}ms (${((ms / total) * 100).toFixed(0)}%)`).join(', ')}`);
    }
    rows.push([`DiT-S/2 32x32x4 b${n}`, fmt(t.eager), fmt(t.plan), fmt(t.ort), ratio(t.eager, t.plan) ?? '-', ratio(t.ort, t.plan) ?? '-']);
    json[`dit_s2_b${n}`] = { eagerMs: t.eager.medianMs, planMs: t.plan.medianMs, ortMs: t.ort?.medianMs ?? null, eagerOverPlan: ratio(t.eager, t.plan), ortOverPlan: ratio(t.ort, t.plan) };
  }
}

console.log(`\n${table(['model', 'eager ms', 'plan ms', 'ORT ms', 'eager/plan', 'ORT/plan'], rows)}`);
console.log(JSON.stringify(json));
