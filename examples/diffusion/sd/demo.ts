// `npm run demo:sd`: text to image with a small seeded Stable Diffusion (the SD 1.5 structure at toy
// width: the image is structured noise, not a picture), compiled with @inferenceJit; checks one
// compiled UNet step against eager, prints a table of timings and writes the PNG.
// Flags: --prompt TEXT --negative TEXT --steps 8 --size 128 --cfg 7.5 --seed 0 --out PATH --eager
//        --model-dir DIR (a diffusers SD 1.x folder: real weights, real tokenizer; use --size 512)
import { mkdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { backendInfo, fromArray, full, randn, jitStats, type Tensor } from '../../../src/index.js';
import { jitRunner } from '../../../src/jit/index.js';
import { writePng } from '../../../src/io/png.js';
import { progressBar } from '../sample.js';
import { textToImage, type StableDiffusion } from './pipeline.js';
import { createStableDiffusion, loadStableDiffusion, type SdConfigs } from './create.js';
import { TINY_UNET_CONFIG, TINY_VAE_CONFIG, TINY_CLIP_CONFIG } from './config.js';
import { type UNet2DConditionModel } from './unet.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** The demo's size: SD 1.5's layout (cross-attention at the two finer of three levels, attention in
 *  the VAE's mid block, a causal 77-token text encoder), about 1M parameters in all; the VAE
 *  upscales ×4, so 128×128 images use 32×32 latents. */
export const DEMO_CONFIGS: SdConfigs = {
  unet: { ...TINY_UNET_CONFIG, blockOutChannels: [32, 64, 64], downBlockTypes: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'], upBlockTypes: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'], attentionHeads: 4, crossAttentionDim: 64 },
  vae: { ...TINY_VAE_CONFIG, blockOutChannels: [32, 64, 64] },
  text: { ...TINY_CLIP_CONFIG, hiddenSize: 64, intermediateSize: 256, numAttentionHeads: 4 },
};

interface DemoOptions { prompt: string; negative: string; steps: number; size: number; cfg: number; seed: number; out: string; eager: boolean; modelDir?: string }

function parse(argv: string[]): DemoOptions {
  const o: DemoOptions = { prompt: 'a photograph of an astronaut riding a horse', negative: '', steps: 8, size: 128, cfg: 7.5, seed: 0, out: join(HERE, '..', 'out', 'sd-demo.png'), eager: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i], value = argv[i + 1];
    const num = (): number => {
      const v = Number(value);
      if (value === undefined || value === '' || !Number.isFinite(v)) throw new RangeError(`${flag}: expected a number, got ${JSON.stringify(value)}`);
      i++;
      return v;
    };
    const str = (): string => {
      if (value === undefined) throw new RangeError(`${flag}: missing value`);
      i++;
      return value;
    };
    switch (flag) {
      case '--prompt': o.prompt = str(); break;
      case '--negative': o.negative = str(); break;
      case '--steps': o.steps = num(); break;
      case '--size': o.size = num(); break;
      case '--cfg': o.cfg = num(); break;
      case '--seed': o.seed = num(); break;
      case '--out': o.out = resolve(str()); break;
      case '--model-dir': o.modelDir = resolve(str()); break;
      case '--eager': o.eager = true; break;
      default: throw new RangeError(`demo:sd: unknown flag ${JSON.stringify(flag)} (flags: --prompt --negative --steps --size --cfg --seed --out --eager --model-dir)`);
    }
  }
  return o;
}

const ms = (v: number): string => `${v.toFixed(0)} ms`;
const millions = (m: { numParameters(): number }): string => `${(m.numParameters() / 1e6).toFixed(2)}M`;

/** One guided UNet step's input at the first timestep, as textToImage feeds it. */
function firstStepInputs(sd: StableDiffusion, size: number, seed: number): [Tensor, Tensor, Tensor] {
  const latent = size / sd.vae.upscale, c = sd.unet.config.inChannels;
  const z = randn([1, c, latent, latent], { seed });
  const ids = fromArray([...sd.tokenizer.encodePrompt('').ids, ...sd.tokenizer.encodePrompt('a photo').ids], [2, sd.tokenizer.maxLength], 'i64');
  return [z.expand([2, c, latent, latent]), full([2], 981, 'f32'), sd.textEncoder.call(ids)];
}

function main(): void {
  const o = parse(process.argv.slice(2));
  process.env.INFERJIT_CACHE ??= 'memory'; // a demo should not fill the user's disk cache
  const info = backendInfo();
  let t0 = performance.now();
  const compiled = !o.eager;
  const { sd, note } = o.modelDir
    ? (() => {
      const r = loadStableDiffusion(o.modelDir!, { compiled });
      return { sd: r.sd, note: r.reports.map((x) => x.summary).join('\n') };
    })()
    : { sd: createStableDiffusion({ configs: DEMO_CONFIGS, seed: o.seed, compiled }), note: `seeded random weights (seed ${o.seed}): the image is structured noise; --model-dir for a real SD 1.x folder` };
  const buildMs = performance.now() - t0;
  process.stderr.write(`${note}\n`);
  process.stderr.write(`UNet ${millions(sd.unet)}, VAE decoder ${millions(sd.vae)}, text encoder ${millions(sd.textEncoder)} parameters, built in ${ms(buildMs)}; ` +
    `${o.size}×${o.size}, ${o.steps} DDIM steps, guidance ${o.cfg} (UNet batch ${o.cfg > 1 ? 2 : 1}); ${compiled ? 'compiled (@inferenceJit)' : 'eager'}; ` +
    `${info.native ? `native ${info.isa ?? ''} kernels, ${info.threads ?? '?'} threads` : `reference kernels (${info.reason ?? 'no native addon'})`}\n`);

  t0 = performance.now();
  const result = textToImage(sd, {
    prompt: o.prompt, negativePrompt: o.negative, height: o.size, width: o.size, steps: o.steps, guidanceScale: o.cfg, seed: o.seed,
    onStep: progressBar(`ddim ${o.size}×${o.size}`),
  });
  const totalMs = performance.now() - t0;
  mkdirSync(dirname(o.out), { recursive: true });
  writePng(o.out, result.image);

  const rows: [string, string][] = [
    ['prompt', `${JSON.stringify(o.prompt)} -> ${result.promptIds.filter((id) => id !== sd.tokenizer.bosId && id !== sd.tokenizer.eosId).length} tokens${result.truncated ? ' (truncated)' : ''}`],
    ['text encoder (prompt + negative, batch 2)', ms(result.timings.textMs)],
    ['UNet step, first (compiles when compiled)', ms(result.timings.stepMs[0])],
    ['UNet step, mean of the rest', result.timings.stepMs.length > 1 ? ms(mean(result.timings.stepMs.slice(1))) : '-'],
    ['VAE decode', ms(result.timings.decodeMs)],
    ['total', ms(totalMs)],
  ];
  if (compiled) {
    // The compiled UNet against its own eager forward on the first step's input.
    const unet = sd.unet as UNet2DConditionModel;
    const inputs = firstStepInputs(sd, o.size, o.seed);
    t0 = performance.now();
    const want = unet.eager(...inputs);
    const eagerMs = performance.now() - t0;
    t0 = performance.now();
    const got = unet.forward(...inputs);
    const compiledMs = performance.now() - t0;
    const w = want.toFlatArray(), g = got.toFlatArray();
    const diff = w.reduce((m, v, i) => Math.max(m, Math.abs(v - g[i])), 0);
    const executable = jitRunner(unet)?.compiledEntries()[0]?.executable;
    rows.push(['UNet step, eager vs compiled', `${ms(eagerMs)} vs ${ms(compiledMs)}; max |Δ| ${diff.toExponential(1)} (outputs up to ${Math.max(...w.map(Math.abs)).toFixed(1)})`]);
    rows.push(['UNet compiled as', `${executable?.describe?.() ?? executable?.backend ?? '?'}; compile ${ms(jitStats(unet)!.captureMs + jitStats(unet)!.compileMs)}`]);
  }
  rows.push(['PNG', relative(process.cwd(), o.out) || o.out]);
  const width = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\n| ${'Stable Diffusion demo'.padEnd(width)} | ${o.size}×${o.size}, ${o.steps} steps, seed ${o.seed} |\n| ${'-'.repeat(width)} | --- |\n`);
  for (const [k, v] of rows) process.stdout.write(`| ${k.padEnd(width)} | ${v} |\n`);
}

const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;

if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) {
  try {
    main();
  } catch (e) {
    // A bad flag or size is the user's to fix: its message is enough; anything else gets the stack.
    process.stderr.write(`${e instanceof RangeError ? e.message : e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  }
}
