// Class-conditional image sampling with DiT: classifier-free guidance, DDIM or DDPM, a progress bar
// on stderr, and the result written as a PNG grid. Run it:
//   npx tsx examples/diffusion/sample.ts --model DiT-S/2 --steps 10 --cfg 4 --classes 207,360 --out out.png [--compile]
// Without --ckpt the weights are seeded random (the image is structured noise); with a converted
// checkpoint (safetensors, original DiT names) it draws ImageNet classes.
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { ops, fromArray, randn, type Tensor } from '../../src/index.js';
import { writePng } from '../../src/io/png.js';
import { createDiT, DIT_MODEL_NAMES, type DiT, type DiTName } from './dit.js';
import { createDiffusion, sampleLoop, type StepInfo } from './diffusion.js';
import { loadDiTCheckpoint } from './checkpoint.js';
import { LatentRgbDecoder, imagesToGrid, type Decoder } from './decoder.js';

export interface GenerateOptions {
  /** Class labels, one image each. */
  classes: number[];
  /** Sampling steps (the 1000-step process respaced to this many). */
  steps: number;
  /** Guidance scale; 1 turns guidance off (one forward per step on the plain batch). */
  cfgScale: number;
  sampler: 'ddim' | 'ddpm';
  /** Seed of the initial latents and of the per-step noise. */
  seed: number;
  /** DDIM's η; default 0. */
  eta?: number;
  /** Latents -> RGB; default the linear SD-VAE approximation. */
  decoder?: Decoder;
  onStep?: (info: StepInfo) => void;
}

export interface GenerateResult {
  /** Final latents [N, 4, h, w] (the conditional half when guided). */
  latents: Tensor;
  /** Decoded images [N, 3, H, W] in about [-1, 1]. */
  images: Tensor;
  /** Wall time of every step, milliseconds. */
  stepMs: number[];
}

/** Samples one image per class label with `model` (any DiT, eager or compiled). */
export function generate(model: DiT, options: GenerateOptions): GenerateResult {
  const { inChannels, inputSize, numClasses } = model.config;
  const n = options.classes.length;
  if (n === 0) throw new RangeError('generate: give at least one class label');
  for (const c of options.classes) {
    if (!Number.isInteger(c) || c < 0 || c >= numClasses) throw new RangeError(`generate: class ${c} is outside [0, ${numClasses})`);
  }
  const diffusion = createDiffusion(options.steps, { learnSigma: model.config.learnSigma });
  const z = randn([n, inChannels, inputSize, inputSize], { seed: options.seed });
  const labels = fromArray(options.classes, [n], 'i64');
  const guided = options.cfgScale !== 1;
  if (guided && model.config.classDropoutProb <= 0) throw new RangeError('generate: this model has no null class (classDropoutProb 0), so it cannot use guidance; pass cfgScale 1');
  // With guidance the batch is [z | z] with labels [y | null]; both halves receive the same guided
  // eps (DiT's sample.py does the same and keeps the first half).
  const x = guided ? ops.concat([z, z], 0) : z;
  const y = guided ? ops.concat([labels, fromArray(new Array(n).fill(model.nullClass), [n], 'i64')], 0) : labels;
  const stepMs: number[] = [];
  const denoise = guided
    ? (xt: Tensor, t: Tensor) => model.forwardWithCfg(xt, t, y, options.cfgScale)
    : (xt: Tensor, t: Tensor) => model.call(xt, t, y);
  const out = sampleLoop(diffusion, denoise, x, {
    sampler: options.sampler, eta: options.eta, seed: options.seed + 1,
    onStep: (info) => { stepMs.push(info.ms); options.onStep?.(info); },
  });
  const latents = guided ? out.sliceAxis(0, 0, n) : out;
  const images = (options.decoder ?? new LatentRgbDecoder()).decode(latents);
  return { latents, images, stepMs };
}

/** A one-line progress bar on stderr: rewritten in place on a terminal, one line per step otherwise. */
export function progressBar(label: string): (info: StepInfo) => void {
  const tty = process.stderr.isTTY === true;
  let totalMs = 0;
  return ({ step, total, timestep, ms }) => {
    totalMs += ms;
    const width = 24, done = Math.round(((step + 1) / total) * width);
    const line = `${label} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${step + 1}/${total} t=${String(timestep).padStart(3)} ` +
      `${ms.toFixed(0)} ms/step, ${(totalMs / 1000).toFixed(1)} s total`;
    if (tty) process.stderr.write(`\r${line}${step + 1 === total ? '\n' : ''}`);
    else process.stderr.write(`${line}\n`);
  };
}

// ---- command line ----

interface CliOptions {
  model: DiTName; steps: number; cfg: number; classes: number[]; seed: number; out: string;
  sampler: 'ddim' | 'ddpm'; imageSize: number; ckpt?: string; eta: number;
  /** Run the model compiled (CompiledDiT, @inferenceJit) rather than eagerly. */
  compile: boolean;
}

const USAGE = `usage: tsx examples/diffusion/sample.ts [--model DiT-S/2] [--steps 10] [--cfg 4] [--classes 207,360]
       [--seed 0] [--out out.png] [--sampler ddim|ddpm] [--eta 0] [--image-size 256] [--ckpt model.safetensors] [--compile]`;

export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = { model: 'DiT-S/2', steps: 10, cfg: 4, classes: [207, 360], seed: 0, out: 'out.png', sampler: 'ddim', imageSize: 256, eta: 0, compile: false };
  const num = (flag: string, v: string, integer: boolean): number => {
    const x = Number(v);
    if (v === '' || !Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new RangeError(`${flag}: expected ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}\n${USAGE}`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--help' || flag === '-h') { process.stdout.write(`${USAGE}\n`); process.exit(0); }
    if (flag === '--compile') { o.compile = true; continue; }
    const eq = flag.indexOf('=');
    const [name, inline] = eq > 0 ? [flag.slice(0, eq), flag.slice(eq + 1)] : [flag, undefined];
    const value = inline ?? argv[++i];
    if (value === undefined) throw new RangeError(`${name}: missing value\n${USAGE}`);
    switch (name) {
      case '--model':
        if (!DIT_MODEL_NAMES.includes(value as DiTName)) throw new RangeError(`--model: unknown model ${JSON.stringify(value)}; one of ${DIT_MODEL_NAMES.join(', ')}`);
        o.model = value as DiTName; break;
      case '--steps': o.steps = num(name, value, true); break;
      case '--cfg': o.cfg = num(name, value, false); break;
      case '--classes': o.classes = value.split(',').map((c) => num(name, c.trim(), true)); break;
      case '--seed': o.seed = num(name, value, true); break;
      case '--out': o.out = value; break;
      case '--sampler':
        if (value !== 'ddim' && value !== 'ddpm') throw new RangeError(`--sampler: expected ddim or ddpm, got ${JSON.stringify(value)}`);
        o.sampler = value; break;
      case '--eta': o.eta = num(name, value, false); break;
      case '--image-size':
        o.imageSize = num(name, value, true);
        if (o.imageSize % 8 !== 0) throw new RangeError(`--image-size: must be a multiple of 8 (the VAE factor), got ${o.imageSize}`);
        break;
      case '--ckpt': o.ckpt = value; break;
      default: throw new RangeError(`unknown flag ${JSON.stringify(name)}\n${USAGE}`);
    }
  }
  return o;
}

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const model = createDiT(o.model, { inputSize: o.imageSize / 8 }, { seed: o.seed, compiled: o.compile });
  if (o.ckpt) {
    const report = loadDiTCheckpoint(model, o.ckpt);
    process.stderr.write(`${report.summary}\n`);
  } else {
    process.stderr.write(`${o.model}: seeded random weights (seed ${o.seed}); pass --ckpt for a trained model\n`);
  }
  process.stderr.write(`built ${o.model} (${(model.numParameters() / 1e6).toFixed(1)}M parameters, ${o.compile ? 'compiled on its first step' : 'eager'}) in ${(performance.now() - t0).toFixed(0)} ms\n`);
  const result = generate(model, {
    classes: o.classes, steps: o.steps, cfgScale: o.cfg, sampler: o.sampler, seed: o.seed, eta: o.eta,
    onStep: progressBar(`${o.sampler} ${o.model}`),
  });
  const out = resolve(o.out);
  writePng(out, imagesToGrid(result.images, { nrow: 4 }));
  const mean = result.stepMs.reduce((a, b) => a + b, 0) / result.stepMs.length;
  process.stderr.write(`${o.steps} steps, ${mean.toFixed(0)} ms/step on average; wrote ${out}\n`);
}

if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) {
  try {
    main();
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
