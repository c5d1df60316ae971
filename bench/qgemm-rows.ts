// Quantized GEMM cost by activation row count (issue 15: 16 concurrent sequences should cost little
// more per step than one): one compiled quant_linear (the plan's qgemm kernel, native/plan/qgemm.cc
// → native/quant/qmatmul.cc) per 1.1B (TinyLlama) Q4_0 shape, timed for M = 1, 4, 8, 16 rows, with
// the weight read 16-row interleaved (the packed VNNI kernels: what the LLM path runs where they are
// fast) and in GGUF layout. Everything runs in this one process, the variants interleaved round by
// round; each cell is the median over rounds of the mean over --calls calls.
//   npx tsx bench/qgemm-rows.ts [--rows 1,4,8,16] [--shapes qkv,o,gate_up,down] [--format q4_0] [--rounds 9] [--calls 20] [--threads N]
//                               [--ab old,new]
// --ab A,B: packed layout only, each round timed under INFERJIT_QGEMM_ROWS_KERNEL=A and =B in turn
// (the 9..16-row kernel before and after its rows were interleaved; qmatmul.cc), printing B / A.
// Prints per shape: ms per call for each (layout, M), time(M) / time(first row count) (the row-count
// cost ratio: M rows cost M× one row without any weight reuse; the 16-sequence goal needs
// well under that) and packed / GGUF. The weights of one shape (up to 13 MB in Q4_0) may stay in a large L3 between calls:
// M = 1 rows then read cache, not DRAM, and their ratios are upper bounds on the reuse of a real step.
import { parseArgs } from 'node:util';
import { inferenceJit, nn, randn, setNumThreads, type Tensor } from '../src/index.js';
import { quantizeWeight, type QuantFormat } from '../src/tensor/quantized.js';
import { setQuantPacking } from '../src/backends/cpu/plan/rules/quant.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1,4,8,16' },
    shapes: { type: 'string', default: 'qkv,o,gate_up,down' },
    format: { type: 'string', default: 'q4_0' },
    rounds: { type: 'string', default: '9' },
    calls: { type: 'string', default: '20' },
    threads: { type: 'string' },
    ab: { type: 'string' },
  },
});

// [N, K] of the 1.1B layer's GEMMs as the plan runs them (Q/K/V and gate/up joined by horizontal fusion)
const SHAPES: Record<string, [number, number]> = { qkv: [2560, 2048], o: [2048, 2048], gate_up: [11264, 2048], down: [2048, 5632] };
const rows = args.rows.split(',').map(Number);
const rounds = Number(args.rounds), calls = Number(args.calls);
const format = args.format as QuantFormat;
if (args.threads) setNumThreads(Number(args.threads));

const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]!; };
const layouts = args.ab ? ['packed'] as const : ['packed', 'gguf'] as const;
const variants = args.ab ? args.ab.split(',') : [''];
const setVariant = (v: string): void => {
  if (v) process.env.INFERJIT_QGEMM_ROWS_KERNEL = v;
};

for (const name of args.shapes.split(',')) {
  const [N, K] = SHAPES[name]!;
  const lin = new nn.Linear(K, N, { bias: false, seed: 1 });
  lin.weight = quantizeWeight(lin.weight, format);
  // one compiled module per layout (the layout is fixed when the plan is lowered)
  const runs = new Map<string, { f: (x: Tensor) => unknown; x: Tensor }>();
  for (const layout of layouts) {
    for (const M of rows) {
      const prev = setQuantPacking(layout === 'packed' ? 'always' : 'never');
      try {
        const m = new nn.Linear(K, N, { bias: false, seed: 1 });
        m.weight = lin.weight;
        const jit = inferenceJit(m, { device: 'cpu' });
        const x = randn([M, K], { seed: M });
        for (let w = 0; w < 3; w++) jit.forward(x);  // compile (and pack) now, under this layout
        runs.set(`${layout}:${M}`, { f: (t) => jit.forward(t), x });
      } finally { setQuantPacking(prev); }
    }
  }
  const times = new Map<string, number[]>([...runs.keys()].flatMap((k) => variants.map((v) => [`${k}:${v}`, []] as [string, number[]])));
  for (let r = 0; r < rounds; r++) {
    for (const [key, { f, x }] of runs) {
      for (const v of variants) {
        setVariant(v);
        const t0 = performance.now();
        for (let c = 0; c < calls; c++) f(x);
        times.get(`${key}:${v}`)!.push((performance.now() - t0) / calls);
      }
    }
  }
  if (args.ab) {
    const [a, b] = variants as [string, string];
    const msv = (M: number, v: string): number => median(times.get(`packed:${M}:${v}`)!);
    console.log(`\n${name}: N=${N} K=${K} ${format} packed, ms per call (median of ${rounds} interleaved rounds × ${calls} calls)`);
    console.log(`| rows | ${a} ms | ${b} ms | ${b} / ${a} | ${a} t(M)/t(${rows[0]}) | ${b} t(M)/t(${rows[0]}) |`);
    console.log(`|---:|---:|---:|---:|---:|---:|`);
    for (const M of rows) {
      console.log(`| ${M} | ${msv(M, a).toFixed(3)} | ${msv(M, b).toFixed(3)} | ${(msv(M, b) / msv(M, a)).toFixed(3)} | ${(msv(M, a) / msv(rows[0]!, a)).toFixed(2)} | ${(msv(M, b) / msv(rows[0]!, b)).toFixed(2)} |`);
    }
    continue;
  }
  const ms = (layout: string, M: number): number => median(times.get(`${layout}:${M}:`)!);
  console.log(`\n${name}: N=${N} K=${K} ${format}, ms per call (median of ${rounds} interleaved rounds × ${calls} calls)`);
  console.log(`| rows | packed ms | gguf ms | packed t(M)/t(1) | gguf t(M)/t(1) | packed / gguf |`);
  console.log(`|---:|---:|---:|---:|---:|---:|`);
  for (const M of rows) {
    const p = ms('packed', M), g = ms('gguf', M);
    const p1 = ms('packed', rows[0]!), g1 = ms('gguf', rows[0]!);
    console.log(`| ${M} | ${p.toFixed(3)} | ${g.toFixed(3)} | ${(p / p1).toFixed(2)} | ${(g / g1).toFixed(2)} | ${(p / g).toFixed(2)} |`);
  }
}
