// fp32 GEMM benchmark: inferjit's native matmul (weights constant, pre-packed after first use)
// against onnxruntime-node's MatMul with a constant weight initializer, same shapes, same thread
// count, same process, timed in alternating rounds (best round median of each). Prints a markdown
// table and a final JSON line.
// bf16 rows: our bf16 GEMM (weights packed to bf16 once, fp32 activations converted while packing,
// fp32 accumulation) per kernel available here (AVX512_BF16 vdpbf16ps, AMX-BF16), with ratios
// against our fp32 and ORT fp32, and its max error relative to max|fp32 result|.
// Run: npx tsx bench/gemm.ts [--shapes 512x768x3072,...] [--no-bf16]
//   (INFERJIT_NUM_THREADS sets both sides' thread count; shapes are M×K×N)
import * as ort from 'onnxruntime-node';
import { backendInfo, getNumThreads, randn, ops } from '../src/index.js';
import { onnxModel } from './lib/onnx.js';
import { compare, table, timeIt, settle } from './lib/timing.js';
import { reducedPrecisionSupport, describeBf16Compute, packBf16Weight, gemmBf16, type Bf16KernelChoice } from '../src/backends/cpu/bf16.js';

const argv = process.argv.slice(2);
const shapesArg = argv.indexOf('--shapes');
// Default: transformer-sized shapes, DiT-B/2 batch 2's four (qkv, proj, fc1, fc2 at 512 tokens)
// and the LLM prefill and decode shapes.
const SHAPES: [number, number, number][] = shapesArg >= 0 ? argv[shapesArg + 1].split(',').map((s) => {
  const d = s.split('x').map(Number);
  if (d.length !== 3 || d.some((v) => !Number.isInteger(v) || v <= 0)) throw new RangeError(`bench/gemm: --shapes wants MxKxN[,MxKxN...], got "${s}"`);
  return d as [number, number, number];
}) : [
  [256, 384, 1152],
  [512, 768, 2304],
  [512, 768, 768],
  [512, 768, 3072],
  [512, 3072, 768],
  [1024, 1024, 1024],
  [1, 4096, 4096],
  [128, 4096, 11008],
];

const info = backendInfo();
if (!info.native) {
  console.error(`bench/gemm: the native backend is not available (${info.reason}); build it with \`npm run build:native\``);
  process.exit(1);
}
const threads = getNumThreads();
console.log(`inferjit ${info.isa} (${info.gemmTile} tile, -march=${info.arch}), ${threads} threads; onnxruntime-node intraOpNumThreads=${threads}\n`);

const rp = reducedPrecisionSupport();
const bf16Kernels: Bf16KernelChoice[] = argv.includes('--no-bf16') ? [] : rp.bf16 ? (rp.amx ? ['avx512', 'amx'] : ['avx512']) : [];
if (!rp.bf16) console.log(`bf16 rows skipped: ${rp.missing}\n`);
/** Best round median over alternating-style rounds (same budget as compare()). */
async function bestOf(fn: () => unknown, rounds = 6, roundMs = 400): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    await settle(50);
    best = Math.min(best, (await timeIt(fn, roundMs, 3, r === 0 ? 2 : 1)).medianMs);
  }
  return best;
}
const bf16Rows: (string | number)[][] = [];
const bf16Results: { shape: string; kernel: string; gflops: number; vs_fp32: number; vs_ort: number; max_rel_err: number }[] = [];

const rows: (string | number)[][] = [];
const results: { shape: string; ours_gflops: number; ort_gflops: number; ratio: number }[] = [];
for (const [M, K, N] of SHAPES) {
  const a = randn([M, K], { seed: 1 });
  const b = randn([K, N], { seed: 2 }).mul(1 / Math.sqrt(K));
  const session = await ort.InferenceSession.create(onnxModel({
    nodes: [{ op: 'MatMul', inputs: ['A', 'B'], outputs: ['Y'] }],
    inputs: [{ name: 'A', shape: [M, K] }],
    outputs: [{ name: 'Y', shape: [M, N] }],
    initializers: [{ name: 'B', shape: [K, N], data: b.data as Float32Array }],
  }), { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
  const feeds = { A: new ort.Tensor('float32', a.data as Float32Array, [M, K]) };

  // Same answer from both (and the packed weight is in place before timing).
  const ours = ops.matmul(a, b);
  ops.matmul(a, b);
  const peer = (await session.run(feeds)).Y.data as Float32Array;
  const mine = ours.data as Float32Array;
  let maxDiff = 0, maxAbs = 0;
  for (let i = 0; i < mine.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(mine[i] - peer[i])); maxAbs = Math.max(maxAbs, Math.abs(peer[i])); }
  if (!process.env.XSKIP && maxDiff > 1e-4 * Math.max(1, maxAbs)) throw new Error(`results differ for ${M}x${K}x${N}: max |diff| ${maxDiff}`);

  const flops = 2 * M * N * K;
  const [tOurs, tOrt] = await compare(() => ops.matmul(a, b), () => session.run(feeds));
  const gOurs = flops / tOurs.medianMs / 1e6, gOrt = flops / tOrt.medianMs / 1e6;
  const ratio = gOurs / gOrt;
  rows.push([`${M}×${K}×${N}`, tOurs.medianMs.toFixed(3), gOurs.toFixed(1), tOrt.medianMs.toFixed(3), gOrt.toFixed(1), ratio.toFixed(2)]);
  results.push({ shape: `${M}x${K}x${N}`, ours_gflops: +gOurs.toFixed(1), ort_gflops: +gOrt.toFixed(1), ratio: +ratio.toFixed(3) });
  if (bf16Kernels.length) {
    const packed = packBf16Weight(b, { transposed: false });
    for (const kernel of bf16Kernels) {
      const y = gemmBf16(a, packed, { kernel }).data as Float32Array;
      let errMax = 0;
      for (let i = 0; i < y.length; i++) errMax = Math.max(errMax, Math.abs(y[i] - mine[i]));
      const t = await bestOf(() => gemmBf16(a, packed, { kernel }));
      const g = flops / t / 1e6;
      const name = kernel === 'amx' ? 'amx-bf16' : 'avx512-bf16';
      bf16Rows.push([`${M}×${K}×${N}`, name, t.toFixed(3), g.toFixed(1), (g / gOurs).toFixed(2), (g / gOrt).toFixed(2), (errMax / maxAbs).toExponential(1)]);
      bf16Results.push({ shape: `${M}x${K}x${N}`, kernel: name, gflops: +g.toFixed(1), vs_fp32: +(g / gOurs).toFixed(3), vs_ort: +(g / gOrt).toFixed(3), max_rel_err: +(errMax / maxAbs).toPrecision(2) });
    }
  }
  await session.release();
}

console.log(table(['M×K×N', 'inferjit ms', 'inferjit GFLOP/s', 'ORT ms', 'ORT GFLOP/s', 'ratio'], rows));
if (bf16Rows.length) {
  console.log(`\nbf16 GEMM kernels (precision 'bf16' plans here: ${describeBf16Compute()}):\n`);
  console.log(table(['M×K×N', 'kernel', 'ms', 'GFLOP/s', 'vs our fp32', 'vs ORT fp32', 'max err / max|y|'], bf16Rows));
}
console.log(JSON.stringify({ bench: 'gemm', min_ratio_vs_ort: Math.min(...results.map((r) => r.ratio)), threads, isa: info.isa, shapes: results, bf16: bf16Results }));
