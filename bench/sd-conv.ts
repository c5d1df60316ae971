// Single SD 1.5 convolutions (the UNet's at 256x256, batch 2): compiled fp32 plan vs onnxruntime-node
// on our export, same threads, in one process. A development aid for the conv kernels.
// Both forms of the implicit-GEMM kernel are timed: pixels as B panels with the weight read in
// place as A ("panels"), and pixels as A rows against the weight packed as B panels ("rows").
// --vae: the VAE decoder's 3×3 convolutions at 256×256 output (batch 1), timing the panels form
// against the direct form (native/ops/conv_direct.cc) instead of the rows form; no bf16 columns.
// Run: npx tsx bench/sd-conv.ts [--rounds 3] [--vae]
import { rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { getNumThreads, inferenceJit, randn, nn, type Tensor } from '../src/index.js';
import { trace } from '../src/trace/index.js';
import { exportOnnx } from '../src/onnx/export.js';
import { OrtSession } from '../src/backends/onnxruntime/session.js';
import { graphIO } from '../src/backends/onnxruntime/index.js';
import { reducedPrecisionSupport } from '../src/backends/cpu/bf16.js';
import { table, median, pairedRatio, timeRounds } from './lib/timing.js';
import { benchTempDir } from './lib/tempdir.js';

process.env.INFERJIT_CACHE = 'memory';
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1] || 3);
// [C, O, H(=W), k, stride]
const vae = process.argv.includes('--vae');
const SHAPES: [number, number, number, number, number][] = vae
  ? [[512, 512, 32, 3, 1], [512, 512, 64, 3, 1], [512, 512, 128, 3, 1], [512, 256, 128, 3, 1], [256, 256, 128, 3, 1], [256, 256, 256, 3, 1], [256, 128, 256, 3, 1], [128, 128, 256, 3, 1], [128, 3, 256, 3, 1]]
  : [[320, 320, 32, 3, 1], [640, 640, 16, 3, 1], [1280, 1280, 8, 3, 1], [1280, 1280, 4, 3, 1], [320, 320, 32, 1, 1], [320, 320, 32, 3, 2], [4, 320, 32, 3, 1]];
const batch = vae ? 1 : 2;
const threads = getNumThreads();
const dir = benchTempDir('inferjit-bench-sd-conv');
const rows: (string | number)[][] = [];
const json: Record<string, number> = {};
const json16: Record<string, number[]> = {};
const bf16 = !vae && reducedPrecisionSupport().bf16;
for (const [C, O, H, k, s] of SHAPES) {
  const conv = new nn.Conv2d(C, O, k, { padding: k === 3 ? 1 : 0, stride: s, seed: 1 });
  class M extends nn.Module { c = conv; forward(x: Tensor): Tensor { return this.c.forward(x); } }
  const m = new M();
  const x = randn([batch, C, H, H], { seed: 2 });
  // the two forms of the kernel (rules/conv.ts): pixels as B panels (weight read in place as A), and
  // pixels as A rows against the weight pre-packed as B panels; the threshold is read at compile time
  // (--vae: the second is the direct form; INFERJIT_CONV_DIRECT_WIDTH is read at lowering too)
  process.env.INFERJIT_CONV_ROWS = '0';
  process.env.INFERJIT_CONV_DIRECT_WIDTH = 'Infinity';
  const jitA = inferenceJit(m, { name: `conv-${C}-${O}-${H}-${k}-${s}-a` }) as unknown as (x: Tensor) => Tensor;
  jitA(x);
  if (vae) process.env.INFERJIT_CONV_DIRECT_WIDTH = '1';
  else process.env.INFERJIT_CONV_ROWS = String(1 << 30);
  const jitB = inferenceJit(new M(), { name: `conv-${C}-${O}-${H}-${k}-${s}-b` }) as unknown as (x: Tensor) => Tensor;
  jitB(x);
  delete process.env.INFERJIT_CONV_ROWS;
  delete process.env.INFERJIT_CONV_DIRECT_WIDTH;
  // the same two forms in bf16 plans (bf16 panels of the pixels / of the weight, fp32 accumulation)
  const jits16: ((x: Tensor) => Tensor)[] = [];
  if (bf16) {
    for (const v of ['0', String(1 << 30)]) {
      process.env.INFERJIT_CONV_ROWS = v;
      const j = inferenceJit(new M(), { name: `conv-${C}-${O}-${H}-${k}-${s}-bf16-${v}`, precision: 'bf16' }) as unknown as (x: Tensor) => Tensor;
      j(x);
      jits16.push(j);
    }
    delete process.env.INFERJIT_CONV_ROWS;
  }
  const traced = trace((t: Tensor) => m.forward(t), [x], { module: m as never });
  const path = join(dir, 'c.onnx');
  exportOnnx(traced, path, { inputNames: ['x'], outputNames: ['out'] });
  const { inputs, outputs } = graphIO(traced.graph, { inputNames: ['x'], outputNames: ['out'] });
  const ort = new OrtSession(path, { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', logSeverityLevel: 3 }, inputs, outputs);
  const cs = [{ run: (t: Tensor[]) => jitA(t[0]) }, { run: (t: Tensor[]) => ort.runSync(t)[0] }, { run: (t: Tensor[]) => jitB(t[0]) },
    ...jits16.map((j) => ({ run: (t: Tensor[]) => j(t[0]) }))];
  const a = cs[0].run([x]).toFlatArray(), b = cs[1].run([x]).toFlatArray(), c2 = cs[2].run([x]).toFlatArray();
  let err = 0; for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]), Math.abs(c2[i] - b[i]));
  const smp = await timeRounds(cs, [x], rounds);
  const Ho = Math.floor((H + 2 * (k === 3 ? 1 : 0) - k) / s) + 1;
  const gflop = (batch * 2 * O * Ho * Ho * C * k * k) / 1e9;
  const key = `${C}->${O} ${H}x${H} k${k} s${s}`;
  json[key] = Math.round(pairedRatio(smp[1], smp[0]) * 1000) / 1000;
  const rowsForm = pairedRatio(smp[1], smp[2]);
  rows.push([key, median(smp[0]).toFixed(2), median(smp[2]).toFixed(2), median(smp[1]).toFixed(2), json[key].toFixed(2), rowsForm.toFixed(2),
    (gflop / (median(smp[0]) / 1000)).toFixed(0), (gflop / (median(smp[2]) / 1000)).toFixed(0), (gflop / (median(smp[1]) / 1000)).toFixed(0),
    bf16 ? pairedRatio(smp[1], smp[3]).toFixed(2) : '-', bf16 ? pairedRatio(smp[1], smp[4]).toFixed(2) : '-', err.toExponential(1)]);
  if (bf16) json16[key] = [Math.round(pairedRatio(smp[1], smp[3]) * 1000) / 1000, Math.round(pairedRatio(smp[1], smp[4]) * 1000) / 1000];
  ort.dispose();
}
rmSync(dir, { recursive: true, force: true });
const second = vae ? 'direct' : 'rows';
console.log(`load average ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}`);
console.log(table(['conv', 'pixel panels ms', `${second} ms`, 'ORT ms', 'ORT/panels', `ORT/${second}`, 'panels GFLOP/s', `${second} GFLOP/s`, 'ORT GFLOP/s', 'ORT/bf16 panels', 'ORT/bf16 rows', 'max|diff|'], rows));
console.log(JSON.stringify({ bench: 'sd-conv', threads, ratio_vs_ort: json, ratio_bf16_panels_rows_vs_ort: json16 }));
