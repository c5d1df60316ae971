// The SD VAE decoder at 256×256 (latents [1, 4, 32, 32]): compiled fp32 plan vs onnxruntime-node on
// our export (graphOptimizationLevel 'all', the same intra-op threads), in one process, in alternated
// rounds (order flips each round; --pause ms before each run, default 100 like bench/sd.ts), and the
// plan's per-kernel profile: each convolution's shape, form (direct / implicit GEMM) and GFLOP/s.
// A development aid for the VAE's conv kernels; bench/sd.ts --rows vae256 is the reported number.
// --variant NAME=VALUE compiles a second plan with that environment variable set at lowering (e.g.
// INFERJIT_CONV_DIRECT_WIDTH=32) and times it in the same rounds.
// Run: npx tsx bench/vae-ab.ts [--rounds 6] [--pause 100] [--warmup 2] [--top 25] [--variant NAME=VALUE]
import os from 'node:os';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { getNumThreads, randn, type Tensor } from '../src/index.js';
import { jitRunner } from '../src/jit/index.js';
import { trace } from '../src/trace/index.js';
import { exportOnnx } from '../src/onnx/export.js';
import { OrtSession } from '../src/backends/onnxruntime/session.js';
import { graphIO } from '../src/backends/onnxruntime/index.js';
import { CompiledVaeDecoder } from '../examples/diffusion/sd/vae.js';
import { SD15_VAE_CONFIG } from '../examples/diffusion/sd/config.js';
import { median, settle } from './lib/timing.js';
import { benchTempDir } from './lib/tempdir.js';

process.env.INFERJIT_CACHE = 'memory';
const flag = (name: string, def: number): number => {
  const i = process.argv.indexOf(name);
  return i < 0 ? def : Number(process.argv[i + 1]);
};
const rounds = flag('--rounds', 6), pause = flag('--pause', 100), warmup = flag('--warmup', 2), top = flag('--top', 25);
const threads = getNumThreads();
const model = new CompiledVaeDecoder(SD15_VAE_CONFIG, { seed: 0 });
const z = randn([1, 4, 32, 32], { seed: 3 });
const dir = benchTempDir('inferjit-bench-vae-ab');
const traced = trace((x: Tensor) => model.eager(x), [z], { module: model as never });
const names = { inputNames: ['z'], outputNames: ['out'] };
const path = join(dir, 'vae.onnx');
exportOnnx(traced, path, { ...names, externalData: 'auto' });
const { inputs, outputs } = graphIO(traced.graph, names);
const ort = new OrtSession(path, { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', logSeverityLevel: 3 }, inputs, outputs);
const ours = (): Tensor => model.forward(z);
const variantArg = process.argv.includes('--variant') ? process.argv[process.argv.indexOf('--variant') + 1] : null;
let variant: (() => Tensor) | null = null;
if (variantArg) {
  const [k, v] = variantArg.split('=');
  const before = process.env[k];
  process.env[k] = v;
  const m2 = new CompiledVaeDecoder(SD15_VAE_CONFIG, { seed: 0 });
  m2.forward(z);
  if (before === undefined) delete process.env[k]; else process.env[k] = before;
  variant = () => m2.forward(z);
  const ya = ours().toFlatArray(), yb = m2.forward(z).toFlatArray();
  let d = 0;
  for (let i = 0; i < ya.length; i++) d = Math.max(d, Math.abs(ya[i] - yb[i]));
  console.log(`variant ${variantArg}: max |base - variant| ${d.toExponential(1)}`);
}
const theirs = (): Tensor => ort.runSync([z])[0];
console.log(`threads ${threads}; load ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}; rounds ${rounds}, pause ${pause} ms, warm-up ${warmup}`);
let t0 = performance.now();
ours();
console.log(`first compiled call ${(performance.now() - t0).toFixed(0)} ms`);
t0 = performance.now();
theirs();
console.log(`first ORT call ${(performance.now() - t0).toFixed(0)} ms`);
for (let i = 1; i < warmup; i++) { ours(); theirs(); }
const exe = jitRunner(model)?.compiledEntries()[0]?.executable as unknown as {
  describe(): string; profile(reset?: boolean): { runs: number; byKernel: Record<string, number> } | null;
  lastPlan: { handle: unknown; lowered: { desc: { kernels: { name: string; ints: number[] }[] }; stats: { kernelNames: string[] } } };
};
console.log(exe.describe());
exe.profile(true);
const a: number[] = [], b: number[] = [], c: number[] = [];
// process CPU time of our runs (ms): our pool spins at most ~50 µs after a kernel, so this counts
// the work itself and, unlike wall time, barely moves when other processes take the cores
// (ORT's workers spin longer, so its CPU time is not comparable)
const cpu: number[] = [];
const fns = variant ? [ours, theirs, variant] : [ours, theirs];
const samples = [a, b, c];
for (let r = 0; r < rounds; r++) {
  const order = fns.map((_, i) => i);
  if (r % 2 === 1) order.reverse();
  for (const i of order) {
    if (pause > 0) await settle(pause);
    const s = performance.now(), u = process.cpuUsage();
    fns[i]();
    samples[i].push(performance.now() - s);
    if (i === 0) { const d = process.cpuUsage(u); cpu.push((d.user + d.system) / 1000); }
  }
}
const ratios = a.map((v, i) => b[i] / v);
if (variant) {
  console.log(`variant ${variantArg} ms ${c.map((v) => v.toFixed(0)).join(' ')}  median ${median(c).toFixed(1)}`);
  console.log(`ratio ORT/variant per round ${c.map((v, i) => (b[i] / v).toFixed(3)).join(' ')}  median ${median(c.map((v, i) => b[i] / v)).toFixed(3)}`);
  console.log(`ratio base/variant per round ${c.map((v, i) => (a[i] / v).toFixed(3)).join(' ')}  median ${median(c.map((v, i) => a[i] / v)).toFixed(3)}`);
}
console.log(`compiled ms ${a.map((v) => v.toFixed(0)).join(' ')}  median ${median(a).toFixed(1)}`);
console.log(`compiled CPU ms ${cpu.map((v) => v.toFixed(0)).join(' ')}  min ${Math.min(...cpu).toFixed(1)}  median ${median(cpu).toFixed(1)}`);
console.log(`ORT      ms ${b.map((v) => v.toFixed(0)).join(' ')}  median ${median(b).toFixed(1)}`);
console.log(`ratio ORT/compiled per round ${ratios.map((v) => v.toFixed(3)).join(' ')}  median ${median(ratios).toFixed(3)}`);
// per-kernel profile, by index
const { planAddon } = await import('../src/backends/cpu/plan/native.js') as unknown as { planAddon: { planProfile(h: unknown, reset: boolean): { runs: number; ns: Float64Array } } };
const p = planAddon.planProfile(exe.lastPlan.handle, false);
const kernels = exe.lastPlan.lowered.desc.kernels;
const rowsOut: [number, string][] = [];
let total = 0, convMs = 0, convFlop = 0;
const byName = new Map<string, number>();
kernels.forEach((k, i) => {
  const ms = p.ns[i] / 1e6 / p.runs;
  total += ms;
  byName.set(k.name, (byName.get(k.name) ?? 0) + ms);
  let what = k.name;
  if (k.name.startsWith('conv2d')) {
    const [N, C, H, W, O, kh, kw, sh, sw, ph, pw] = k.ints;
    const Ho = Math.floor((H + 2 * ph - kh) / sh) + 1, Wo = Math.floor((W + 2 * pw - kw) / sw) + 1;
    const flop = 2 * N * O * Ho * Wo * C * kh * kw;
    convMs += ms; convFlop += flop;
    what += ` N${N} C${C}->O${O} ${H}x${W} k${kh} s${sh} p${ph} act${k.ints[14]} res? ${(flop / 1e9 / (ms / 1000)).toFixed(0)} GFLOP/s`;
  }
  rowsOut.push([ms, `#${i} ${what}`]);
});
console.log(`\nplan total ${total.toFixed(1)} ms/run over ${p.runs} runs; conv ${convMs.toFixed(1)} ms (${(convFlop / 1e9 / (convMs / 1000)).toFixed(0)} GFLOP/s)`);
console.log([...byName].sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', '));
rowsOut.sort((x, y) => y[0] - x[0]);
for (const [ms, w] of rowsOut.slice(0, top)) console.log(`${ms.toFixed(2).padStart(8)} ms  ${w}`);
ort.dispose();
rmSync(dir, { recursive: true, force: true });
