// Stable Diffusion 1.5 benchmark (issue 20): one UNet step at 256×256 (latents [2, 4, 32, 32]: the
// classifier-free-guidance batch) and at 512×512 (latents [2, 4, 64, 64]), the VAE decoder at
// 256×256 (latents [1, 4, 32, 32]) and the CLIP text encoder (ids [2, 77]), each as our compiled
// fp32 plan (@inferenceJit), our compiled bf16 plan (precision 'bf16', where the CPU has bf16
// instructions) and onnxruntime-node on our ONNX export (graphOptimizationLevel 'all', the same
// intra-op thread count), all in one process, in rounds of seeded random order with settle pauses.
// Also: each row's time share of convolution, attention, norms and GEMM in our plan, and the
// convolutions' GFLOP/s against our GEMMs' (from the plan's per-kernel profile, when the graph runs
// as a plan). Prints markdown tables and a final JSON line:
//   {"bench":"sd","ratio_vs_ort":{"UNet 256x256 b2": ORT ms / compiled fp32 ms, ...},"ratio_bf16_vs_ort":{...},...}
// (ratios > 1: ours is faster).
// Run: npx tsx bench/sd.ts [--tiny] [--rows unet256,unet512,vae256,text] [--rounds 5] [--no-bf16]
// Full size holds SD 1.5's weights several times over (the model, our packed fp32 and bf16 copies,
// ORT's session: ~12 GB for the UNet rows) and writes the UNet's ONNX export (3.4 GB) to a temp dir
// (bench/lib/tempdir.ts: removed on exit and on SIGINT/SIGTERM; a killed run's is swept by the next).
// --tiny runs the same rows on the tiny seeded configs: a smoke test of this script, not a measurement.
import { readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { backendInfo, getNumThreads, inferenceJit, fromArray, randn, full, type Tensor } from '../src/index.js';
import { jitRunner } from '../src/jit/index.js';
import { trace } from '../src/trace/index.js';
import { exportOnnx } from '../src/onnx/export.js';
import { OrtSession, ortVersion } from '../src/backends/onnxruntime/session.js';
import { graphIO } from '../src/backends/onnxruntime/index.js';
import { reducedPrecisionSupport, describeBf16Compute } from '../src/backends/cpu/bf16.js';
import { type Graph } from '../src/ir/graph.js';
import { CompiledUNet } from '../examples/diffusion/sd/unet.js';
import { CompiledVaeDecoder } from '../examples/diffusion/sd/vae.js';
import { CompiledClipTextModel } from '../examples/diffusion/sd/clip.js';
import {
  SD15_UNET_CONFIG, SD15_VAE_CONFIG, SD15_CLIP_CONFIG, TINY_UNET_CONFIG, TINY_VAE_CONFIG, TINY_CLIP_CONFIG,
} from '../examples/diffusion/sd/config.js';
import { settle, table, median, pairedRatio, timeRounds } from './lib/timing.js';
import { benchTempDir } from './lib/tempdir.js';

// A benchmark must not read or fill the user's disk cache: every compile here is in memory.
process.env.INFERJIT_CACHE = 'memory';

const ROW_IDS = ['unet256', 'unet512', 'vae256', 'text'] as const;
type RowId = (typeof ROW_IDS)[number];
interface Args { tiny: boolean; rows: RowId[]; rounds: number; bf16: boolean }

function parseArgs(argv: string[]): Args {
  const a: Args = { tiny: argv.includes('--tiny'), rows: [...ROW_IDS], rounds: 0, bf16: true };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--tiny': break;
      case '--no-bf16': a.bf16 = false; break;
      case '--rows':
        a.rows = (v ?? '').split(',') as RowId[];
        for (const r of a.rows) if (!ROW_IDS.includes(r)) throw new RangeError(`bench/sd: unknown row ${JSON.stringify(r)}; rows: ${ROW_IDS.join(', ')}`);
        i++; break;
      case '--rounds':
        a.rounds = Number(v);
        if (!Number.isInteger(a.rounds) || a.rounds < 1) throw new RangeError(`bench/sd: --rounds must be a positive integer, got ${JSON.stringify(v)}`);
        i++; break;
      default: throw new RangeError(`bench/sd: unknown flag ${argv[i]}; flags: --tiny --rows ${ROW_IDS.join(',')} --rounds N --no-bf16`);
    }
  }
  if (a.rounds === 0) a.rounds = a.tiny ? 3 : 5;
  return a;
}

// ---- rows ----

type Model = { eager(...x: Tensor[]): Tensor; forward(...x: Tensor[]): Tensor };
interface Row { id: RowId; key: string; model: Model & object; inputs: Tensor[]; inputNames: string[] }

function buildRows(args: Args): Row[] {
  const seed = 0;
  const unetConfig = args.tiny ? TINY_UNET_CONFIG : SD15_UNET_CONFIG;
  const textConfig = args.tiny ? TINY_CLIP_CONFIG : SD15_CLIP_CONFIG;
  const rows: Row[] = [];
  const needUnet = args.rows.some((r) => r.startsWith('unet'));
  const unet = needUnet ? new CompiledUNet(unetConfig, { seed }) : null;
  const context = randn([2, 77, unetConfig.crossAttentionDim], { seed: 1 });
  const unetRow = (id: RowId, latent: number): Row => ({
    id, key: `UNet ${latent * 8}x${latent * 8} b2`, model: unet!, inputNames: ['sample', 'timestep', 'encoderHiddenStates'],
    inputs: [randn([2, 4, latent, latent], { seed: 2 }), full([2], 981, 'f32'), context],
  });
  for (const id of args.rows) {
    if (id === 'unet256') rows.push(unetRow(id, 32));
    if (id === 'unet512') rows.push(unetRow(id, 64));
    if (id === 'vae256') {
      rows.push({ id, key: 'VAE decoder 256x256 b1', model: new CompiledVaeDecoder(args.tiny ? TINY_VAE_CONFIG : SD15_VAE_CONFIG, { seed }), inputNames: ['z'], inputs: [randn([1, 4, 32, 32], { seed: 3 })] });
    }
    if (id === 'text') {
      const ids = Array.from({ length: 2 * 77 }, (_, i) => (i % 77 === 0 ? textConfig.vocabSize - 2 : (i * 7919) % (textConfig.vocabSize - 2)));
      rows.push({ id, key: 'text encoder b2', model: new CompiledClipTextModel(textConfig, { seed }), inputNames: ['inputIds'], inputs: [fromArray(ids, [2, 77], 'i64')] });
    }
  }
  return rows;
}

/** ONNX Runtime on our export of the row's traced (unoptimized) graph at the row's shapes; ORT
 *  applies its own fusions. Weights over 2 GiB go to external data in `dir`. */
function ortSession(row: Row, threads: number, dir: string): { session: OrtSession; graph: Graph } {
  const traced = trace((...x: Tensor[]) => row.model.eager(...x), row.inputs, { module: row.model as never });
  const names = { inputNames: row.inputNames, outputNames: ['out'] };
  const path = join(dir, `${row.id}.onnx`);
  exportOnnx(traced, path, { ...names, externalData: 'auto' });
  const { inputs, outputs } = graphIO(traced.graph, names);
  const session = new OrtSession(path, { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', logSeverityLevel: 3 }, inputs, outputs);
  return { session, graph: traced.graph };
}

// ---- FLOPs, from the traced graph ----

interface Flops { conv: number; gemm: number; attention: number; total: number }

function countFlops(graph: Graph): Flops {
  const f: Flops = { conv: 0, gemm: 0, attention: 0, total: 0 };
  const shape = (id: number | null): number[] => (id === null ? [] : graph.meta(id).shape as number[]);
  const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);
  for (const n of graph.nodes) {
    if (n.op === 'conv2d') {
      const w = shape(n.inputs[1]); // [O, C/groups, kh, kw]
      f.conv += 2 * size(shape(n.outputs[0])) * w[1] * w[2] * w[3];
    } else if (n.op === 'linear') {
      f.gemm += 2 * size(shape(n.outputs[0])) * shape(n.inputs[1])[1];
    } else if (n.op === 'matmul') {
      const a = shape(n.inputs[0]);
      f.gemm += 2 * size(shape(n.outputs[0])) * a[a.length - 1];
    } else if (n.op === 'scaled_dot_product_attention') {
      const q = shape(n.inputs[0]), k = shape(n.inputs[1]); // [B, H, S, D], [B, H, T, D]
      f.attention += 4 * size(q) * k[k.length - 2];
    }
  }
  f.total = f.conv + f.gemm + f.attention;
  return f;
}

/** Plan kernel names -> the families the issue asks about. */
function family(kernel: string): string {
  if (/conv/i.test(kernel)) return 'convolution';
  if (/attention|sdpa/i.test(kernel)) return 'attention';
  if (/norm/i.test(kernel)) return 'norms';
  if (/gemm|linear|matmul/i.test(kernel)) return 'GEMM';
  return 'other';
}

// ---- timing ----

interface Contender { label: string; run: (x: Tensor[]) => Tensor }

const round3 = (v: number): number => Math.round(v * 1000) / 1000;


function relativeError(y: Tensor, ref: Tensor): number {
  const a = y.toFlatArray(), b = ref.toFlatArray();
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}

// ---- main ----

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const info = backendInfo();
  if (!info.native) console.error(`bench/sd: the native backend is not available (${info.reason}); compiled rows run on reference kernels`);
  const threads = getNumThreads();
  const support = reducedPrecisionSupport();
  const bf16 = args.bf16 && support.bf16;
  console.log(`inferjit ${info.isa ?? 'reference'}, ${threads} threads; onnxruntime-node ${ortVersion()} intraOpNumThreads=${threads}, graphOptimizationLevel 'all'; ` +
    `${args.tiny ? 'TINY configs (smoke run, not a measurement)' : 'SD 1.5 sizes'}; ${args.rounds} rounds; bf16: ${bf16 ? describeBf16Compute() : (args.bf16 ? `unavailable (${support.missing})` : 'off')}`);
  console.log(`load average at start ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}\n`);

  const dir = benchTempDir('inferjit-bench-sd');
  const mainRows: (string | number)[][] = [], shareRows: (string | number)[][] = [], notes: string[] = [];
  const json: Record<string, Record<string, unknown>> = { ratio_vs_ort: {}, ratio_bf16_vs_ort: {}, ratio_bf16_vs_fp32: {}, ms: {}, rel_error: {}, gflop: {}, share: {}, conv_gflops: {}, gemm_gflops: {}, kernels_ms: {}, path: {}, path_bf16: {} };
  try {
    const rows = buildRows(args);
    const bf16Handles = new Map<object, unknown>();
    for (const row of rows) {
      const t0 = performance.now();
      const { session, graph } = ortSession(row, threads, dir);
      const exportMs = performance.now() - t0;
      const flops = countFlops(graph);
      // One bf16 handle per model (the two UNet rows share it, and its packed bf16 weights).
      if (bf16 && !bf16Handles.has(row.model)) bf16Handles.set(row.model, inferenceJit(row.model, { name: `sd-${row.id}-bf16`, precision: 'bf16' }));
      const bf16Fn = bf16Handles.get(row.model) ?? null;
      try {
        let contenders: Contender[] = [
          { label: 'compiled fp32', run: (x) => row.model.forward(...x) },
          { label: 'onnxruntime fp32', run: (x) => session.runSync(x)[0] },
          ...(bf16Fn ? [{ label: 'compiled bf16', run: (x: Tensor[]) => (bf16Fn as unknown as (...a: Tensor[]) => Tensor)(...x) }] : []),
        ];
        // Warm-up: the first call compiles (timed), the second settles caches. bf16 runs only as a
        // native plan; a graph the plan cannot lower yet is reported, and the row goes on without it.
        const firstMs: number[] = [], outs: Tensor[] = [];
        for (const c of [...contenders]) {
          const s = performance.now();
          try {
            outs.push(c.run(row.inputs));
          } catch (e) {
            if (c.label !== 'compiled bf16') throw e;
            contenders = contenders.filter((k) => k !== c);
            notes.push(`${row.key}: no bf16 row: ${(e as Error).message}`);
            continue;
          }
          firstMs.push(performance.now() - s);
          c.run(row.inputs);
        }
        const hasBf16 = contenders.length === 3;
        const executable = jitRunner(row.model)?.compiledEntries()[0]?.executable as unknown as { describe?(): string; profile?(reset?: boolean): { runs: number; byKernel: Record<string, number> } | null };
        executable?.profile?.(true);
        const samples = await timeRounds(contenders, row.inputs, args.rounds);
        const profile = executable?.profile?.() ?? null;
        const med = samples.map(median);
        const fp32 = samples[0], ort = samples[1], b16 = hasBf16 ? samples[2] : null;
        json.ratio_vs_ort[row.key] = round3(pairedRatio(ort, fp32));
        if (b16) {
          json.ratio_bf16_vs_ort[row.key] = round3(pairedRatio(ort, b16));
          json.ratio_bf16_vs_fp32[row.key] = round3(pairedRatio(fp32, b16));
        }
        json.ms[row.key] = Object.fromEntries(contenders.map((c, i) => [c.label, round3(med[i])]));
        json.rel_error[row.key] = { ort_vs_fp32: Number(relativeError(outs[1], outs[0]).toExponential(2)), ...(b16 ? { bf16_vs_fp32: Number(relativeError(outs[2], outs[0]).toExponential(2)) } : {}) };
        json.gflop[row.key] = round3(flops.total / 1e9);
        json.path[row.key] = executable?.describe?.() ?? '?';
        // the bf16 plan's own summary: which bf16 kernel ran, or that it computed in fp32 here and why
        if (b16 && bf16Fn) json.path_bf16[row.key] = (jitRunner(bf16Fn)?.compiledEntries()[0]?.executable as unknown as { describe?(): string } | undefined)?.describe?.() ?? '?';
        mainRows.push([row.key, (flops.total / 1e9).toFixed(1), med[0].toFixed(1), b16 ? med[2].toFixed(1) : '-', med[1].toFixed(1),
          (json.ratio_vs_ort[row.key] as number).toFixed(2), b16 ? (json.ratio_bf16_vs_ort[row.key] as number).toFixed(2) : '-',
          firstMs[0].toFixed(0), relativeError(outs[1], outs[0]).toExponential(1), b16 ? relativeError(outs[2], outs[0]).toExponential(1) : '-']);
        if (profile && profile.runs > 0) {
          const byFamily: Record<string, number> = {};
          for (const [k, v] of Object.entries(profile.byKernel)) byFamily[family(k)] = (byFamily[family(k)] ?? 0) + v / profile.runs;
          const total = Object.values(byFamily).reduce((a, b) => a + b, 0);
          const share = (f: string): string => `${(((byFamily[f] ?? 0) / total) * 100).toFixed(0)}%`;
          const gflops = (flop: number, ms: number | undefined): number | null => (ms && flop ? round3(flop / 1e9 / (ms / 1000)) : null);
          json.share[row.key] = Object.fromEntries(Object.entries(byFamily).map(([k, v]) => [k, round3(v / total)]));
          json.kernels_ms[row.key] = Object.fromEntries(Object.entries(profile.byKernel).sort((x, y) => y[1] - x[1]).slice(0, 8).map(([k, v]) => [k, round3(v / profile.runs)]));
          const convGflops = gflops(flops.conv, byFamily.convolution), gemmGflops = gflops(flops.gemm, byFamily.GEMM);
          json.conv_gflops[row.key] = convGflops;
          json.gemm_gflops[row.key] = gemmGflops;
          shareRows.push([row.key, share('convolution'), share('attention'), share('norms'), share('GEMM'), share('other'), convGflops ?? '-', gemmGflops ?? '-']);
        } else {
          shareRows.push([row.key, '-', '-', '-', '-', '-', '-', `- (${executable?.describe?.() ?? 'no plan'})`]);
        }
        // per row as it finishes (a full run takes long on a shared machine; a cut-off run keeps these)
        console.error(`${row.key}: compiled = ${json.path[row.key]}; ${b16 ? `compiled bf16 = ${json.path_bf16[row.key]}; ` : ''}ORT export ${exportMs.toFixed(0)} ms; ${contenders.map((c, i) => `${c.label} ${med[i].toFixed(1)}`).join(', ')} ms; ` +
          `ratio vs ORT fp32 ${json.ratio_vs_ort[row.key]}, bf16 ${json.ratio_bf16_vs_ort[row.key] ?? '-'}; share ${JSON.stringify(json.share[row.key] ?? null)}; ` +
          `conv GFLOP/s ${json.conv_gflops[row.key] ?? '-'}, GEMM GFLOP/s ${json.gemm_gflops[row.key] ?? '-'}; top kernels ms ${JSON.stringify(json.kernels_ms[row.key] ?? null)}`);
      } finally {
        session.dispose();
        // The UNet's export is 3.4 GB at full size: do not keep one per row on disk.
        for (const f of readdirSync(dir)) rmSync(join(dir, f), { force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  console.log('Per-call latency, ms (median over rounds); ratios: median over rounds of the per-round ratio (> 1: ours faster):\n');
  console.log(table(['row', 'GFLOP', 'compiled fp32', 'compiled bf16', 'ORT fp32', 'fp32 vs ORT', 'bf16 vs ORT', 'first call ms', 'rel.err ORT', 'rel.err bf16'], mainRows));
  console.log('(GFLOP: convolutions, GEMMs and attention of one call, from the traced graph. rel.err: ||y - y_fp32|| / ||y_fp32||.)');
  console.log('\nWhere the compiled fp32 plan spends its time (per-kernel profile), and GFLOP/s of its convolutions vs its GEMMs:\n');
  console.log(table(['row', 'convolution', 'attention', 'norms', 'GEMM', 'other', 'conv GFLOP/s', 'GEMM GFLOP/s'], shareRows));
  for (const n of notes) console.log(`\nnote: ${n}`);
  console.log(`\nload average at end ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}`);
  console.log(JSON.stringify({ bench: 'sd', tiny: args.tiny, threads, ...json, notes }));
}

await main();
