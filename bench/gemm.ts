// fp32 GEMM benchmark: inferjit's native matmul (weights constant, pre-packed after first use)
// against onnxruntime-node's MatMul with a constant weight initializer, same shapes, same thread
// count, same process, timed in alternating rounds (best round median of each). Prints a markdown
// table and a final JSON line.
// Run: npx tsx bench/gemm.ts   (INFERJIT_NUM_THREADS sets both sides' thread count)
import * as ort from 'onnxruntime-node';
import { backendInfo, getNumThreads, randn, ops } from '../src/index.js';
import { onnxModel } from './lib/onnx.js';
import { compare, table } from './lib/timing.js';

const SHAPES: [number, number, number][] = [
  [256, 384, 1152],
  [512, 768, 3072],
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
  if (maxDiff > 1e-4 * Math.max(1, maxAbs)) throw new Error(`results differ for ${M}x${K}x${N}: max |diff| ${maxDiff}`);

  const flops = 2 * M * N * K;
  const [tOurs, tOrt] = await compare(() => ops.matmul(a, b), () => session.run(feeds));
  const gOurs = flops / tOurs.medianMs / 1e6, gOrt = flops / tOrt.medianMs / 1e6;
  const ratio = gOurs / gOrt;
  rows.push([`${M}×${K}×${N}`, tOurs.medianMs.toFixed(3), gOurs.toFixed(1), tOrt.medianMs.toFixed(3), gOrt.toFixed(1), ratio.toFixed(2)]);
  results.push({ shape: `${M}x${K}x${N}`, ours_gflops: +gOurs.toFixed(1), ort_gflops: +gOrt.toFixed(1), ratio: +ratio.toFixed(3) });
  await session.release();
}

console.log(table(['M×K×N', 'inferjit ms', 'inferjit GFLOP/s', 'ORT ms', 'ORT GFLOP/s', 'ratio'], rows));
console.log(JSON.stringify({ bench: 'gemm', min_ratio_vs_ort: Math.min(...results.map((r) => r.ratio)), threads, isa: info.isa, shapes: results }));
