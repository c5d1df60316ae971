// `npm run demo`: samples with DiT-S/2 eagerly and compiled (@inferenceJit), checks the compiled
// output against eager, times a second process that compiles from the disk cache, writes the PNG
// and prints one table. Options: --steps 4 --classes 207,360 --cfg 4 --seed 0 --model DiT-S/2 --out PATH
// --ckpt model.safetensors (converted original weights; without it the weights are seeded random).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ops, fromArray, full, randn, jitStats, backendInfo, type Tensor, type JitStats } from '../../src/index.js';
import { jitRunner } from '../../src/jit/index.js';
import { writePng } from '../../src/io/png.js';
import { createDiT, DIT_MODEL_NAMES, type DiT, type DiTName } from './dit.js';
import { createDiffusion } from './diffusion.js';
import { generate, progressBar } from './sample.js';
import { imagesToGrid } from './decoder.js';
import { loadDiTCheckpoint } from './checkpoint.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '../..');

interface DemoOptions { model: DiTName; steps: number; classes: number[]; cfg: number; seed: number; out: string; ckpt?: string }

function parse(argv: string[]): DemoOptions & { secondRun: boolean } {
  const o: DemoOptions & { secondRun: boolean } = { model: 'DiT-S/2' as DiTName, steps: 4, classes: [207, 360], cfg: 4, seed: 0, out: join(HERE, 'out', 'dit-demo.png'), secondRun: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const num = (): number => {
      const v = Number(value);
      if (value === undefined || !Number.isFinite(v)) throw new RangeError(`${flag}: expected a number, got ${JSON.stringify(value)}`);
      i++;
      return v;
    };
    switch (flag) {
      case '--model':
        if (!DIT_MODEL_NAMES.includes(value as DiTName)) throw new RangeError(`--model: one of ${DIT_MODEL_NAMES.join(', ')}`);
        o.model = value as DiTName; i++; break;
      case '--steps': o.steps = num(); break;
      case '--cfg': o.cfg = num(); break;
      case '--seed': o.seed = num(); break;
      case '--classes': o.classes = (value ?? '').split(',').map(Number); i++; break;
      case '--out': o.out = resolve(value ?? ''); i++; break;
      case '--ckpt': o.ckpt = resolve(value ?? ''); i++; break;
      case '--second-run': o.secondRun = true; break;
      default: throw new RangeError(`demo: unknown flag ${JSON.stringify(flag)} (flags: --model --steps --classes --cfg --seed --out --ckpt)`);
    }
  }
  return o;
}

/** The first step's model input: the guided batch [z | z] with labels [y | null] at the first
 *  (largest) timestep, exactly what generate() feeds the model first. */
function firstStepInputs(model: DiT, o: DemoOptions): [Tensor, Tensor, Tensor] {
  const { inChannels, inputSize } = model.config;
  const n = o.classes.length;
  const z = randn([n, inChannels, inputSize, inputSize], { seed: o.seed });
  const labels = fromArray([...o.classes, ...new Array(n).fill(model.nullClass)], [2 * n], 'i64');
  const d = createDiffusion(o.steps, { learnSigma: model.config.learnSigma });
  return [ops.concat([z, z], 0), full([2 * n], d.timestepMap[d.numTimesteps - 1], 'f32'), labels];
}

/** Times the compiling first call and the median of three steady calls of a fresh compiled model. */
function timeCompile(model: DiT, inputs: [Tensor, Tensor, Tensor]): { firstMs: number; steadyMs: number; out: Tensor; stats: JitStats } {
  let t0 = performance.now();
  const out = model.forward(...inputs);
  const firstMs = performance.now() - t0;
  const steady: number[] = [];
  for (let i = 0; i < 3; i++) {
    t0 = performance.now();
    model.forward(...inputs);
    steady.push(performance.now() - t0);
  }
  return { firstMs, steadyMs: steady.sort((a, b) => a - b)[1], out, stats: jitStats(model)! };
}

const maxAbsDiff = (a: Tensor, b: Tensor): number => {
  const x = a.toFlatArray(), y = b.toFlatArray();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
};
const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
const ms = (v: number): string => `${v.toFixed(0)} ms`;

function load(model: DiT, o: DemoOptions): DiT {
  if (o.ckpt) loadDiTCheckpoint(model, o.ckpt, { strict: true }); // throws with the missing/unexpected/mis-shaped report
  return model;
}

/** The child process: a new CompiledDiT against the first process's cache dir (INFERJIT_CACHE_DIR). */
function secondRun(o: DemoOptions): void {
  const model = load(createDiT(o.model, {}, { seed: o.seed, compiled: true }), o);
  const r = timeCompile(model, firstStepInputs(model, o));
  process.stdout.write(`${JSON.stringify({ firstMs: r.firstMs, steadyMs: r.steadyMs, stats: r.stats })}\n`);
}

function main(): void {
  const o = parse(process.argv.slice(2));
  if (o.secondRun) return secondRun(o);
  // A fresh cache dir, so the first compile is cold and the second process's is a disk hit; the
  // environment (which outranks configure() and the decorator) carries it to the child too.
  const cacheDir = mkdtempSync(join(tmpdir(), 'inferjit-demo-cache-'));
  process.env.INFERJIT_CACHE_DIR = cacheDir;
  process.env.INFERJIT_CACHE = 'disk';
  try {
    run(o, cacheDir);
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

function run(o: DemoOptions, cacheDir: string): void {
  const info = backendInfo();
  const eager = load(createDiT(o.model, {}, { seed: o.seed }), o);
  const compiled = load(createDiT(o.model, {}, { seed: o.seed, compiled: true }), o); // same seed (or checkpoint), same weights
  const n = o.classes.length;
  process.stderr.write(
    `${o.model}: ${(eager.numParameters() / 1e6).toFixed(1)}M parameters, ${o.ckpt ? `weights from ${o.ckpt}` : `seeded random weights (seed ${o.seed}: the image is structured noise; --ckpt for a trained model)`}; ` +
    `${o.steps} DDIM steps, classes ${o.classes.join(',')}, guidance ${o.cfg} -> batch ${2 * n} per forward; ` +
    `${info.native ? `native ${info.isa ?? ''} kernels, ${info.threads ?? '?'} threads` : `reference kernels (${info.reason ?? 'no native addon'})`}\n`,
  );

  // Compile on the first step's input, and check it against eager on the same input.
  const inputs = firstStepInputs(compiled, o);
  const cold = timeCompile(compiled, inputs);
  const firstStepDiff = maxAbsDiff(cold.out, compiled.eager(...inputs));
  const executable = jitRunner(compiled)?.compiledEntries()[0]?.executable;
  process.stderr.write(`compiled: ${executable?.describe?.() ?? executable?.backend ?? '?'}\n`);

  const options = { classes: o.classes, steps: o.steps, cfgScale: o.cfg, sampler: 'ddim' as const, seed: o.seed };
  const eagerRun = generate(eager, { ...options, onStep: progressBar(`eager    ${o.model}`) });
  const compiledRun = generate(compiled, { ...options, onStep: progressBar(`compiled ${o.model}`) });
  const latentDiff = maxAbsDiff(compiledRun.latents, eagerRun.latents);
  mkdirSync(dirname(o.out), { recursive: true });
  writePng(o.out, imagesToGrid(compiledRun.images, { nrow: 4 }));

  // A second process compiles the same model against the same cache dir: a disk-cache hit.
  const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--second-run',
    '--model', o.model, '--steps', String(o.steps), '--classes', o.classes.join(','), '--cfg', String(o.cfg), '--seed', String(o.seed),
    ...(o.ckpt ? ['--ckpt', o.ckpt] : [])],
  { cwd: REPO, env: { ...process.env, INFERJIT_CACHE_DIR: cacheDir }, encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`demo: the second-run process failed (exit ${child.status}):\n${child.stderr}`);
  const warm = JSON.parse(child.stdout.trim().split('\n').pop()!) as { firstMs: number; steadyMs: number; stats: JitStats };
  const hit = warm.stats.captures === 0 && warm.stats.diskHits > 0;

  const eagerMs = mean(eagerRun.stepMs), compiledMs = mean(compiledRun.stepMs);
  const compileMs = (r: { firstMs: number; steadyMs: number }): string => `${ms(r.firstMs - r.steadyMs)} (first call ${ms(r.firstMs)} − median steady call ${ms(r.steadyMs)})`;
  const rows: [string, string][] = [
    ['eager time per step', ms(eagerMs)],
    ['compiled time per step', `${ms(compiledMs)} (${(eagerMs / compiledMs).toFixed(2)}× eager)`],
    ['compile time, first process (cold disk cache)', `${compileMs(cold)}; trace ${ms(cold.stats.captureMs)}, passes + lowering ${ms(cold.stats.compileMs)}`],
    [`compile time, second process (${hit ? 'disk cache hit: no trace, no passes' : 'disk cache MISS'})`,
      `${compileMs(warm)}; disk hits ${warm.stats.diskHits}, optimized-graph hits ${warm.stats.artifactHits}, traces ${warm.stats.captures}`],
    ['max abs diff compiled vs eager, first step output', firstStepDiff.toExponential(2)],
    [`max abs diff compiled vs eager, latents after ${o.steps} steps`, `${latentDiff.toExponential(2)} (largest latent magnitude ${eagerRun.latents.abs().max().item().toFixed(1)})`],
    ['PNG', relative(process.cwd(), o.out) || o.out],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\n| ${'DiT demo'.padEnd(w)} | ${o.model}, ${o.steps} DDIM steps, batch ${2 * n} (CFG) |\n| ${'-'.repeat(w)} | --- |\n`);
  for (const [k, v] of rows) process.stdout.write(`| ${k.padEnd(w)} | ${v} |\n`);
  if (!hit) process.stderr.write(`note: the second process did not hit the disk cache: ${JSON.stringify(warm.stats.diskRejects)}\n`);
}

if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) {
  try {
    main();
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  }
}
