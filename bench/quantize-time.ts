// How long quantize() takes on a 1B-scale model, and what the native search kernels buy
// (src/quant/native-search.ts). Two parts, one process:
//  1. per candidate: one PSS/AWQ/SmoothQuant candidate's site error (siteError: smooth, fake-quantize
//     the activations and weights, GEMM, compare) for each 1.1B layer site shape, 128 sampled rows,
//     W8A8 per token, on the native kernels (median of --calls) and in TypeScript float64 (one call:
//     the search ran this way before; it takes seconds per call);
//  2. GPTQ per 1.1B weight shape (part gptq): the Hessian of --gptq-tokens rows (Σ x xᵀ: the
//     calibration's per-token accumulation before, the native Gram GEMM now) and gptqQuantize
//     (H⁻¹'s factor and the column loop) on the native kernels, and in TypeScript for the q / o
//     shapes (--gptq-ts; the down projection takes minutes there);
//  3. quantize() wall time on the 1.1B shape with 4 of its 22 layers (bench/lib/llm-models.ts
//     '1.1b-4l', or with --model 1.1b all 22 layers; f32 weights read from the F16 file), W8A8, for each --smoothing (none, smoothquant,
//     pss) and int4 AWQ, two calibration sequences of --calib tokens; seconds in all and per layer, the
//     process's peak RSS so far, and (onProgress) when each phase of quantize() ended, also on stderr.
//   npx tsx bench/quantize-time.ts [--parts candidates,quantize] [--model 1.1b-4l|1.1b] [--smoothing none,smoothquant,pss,awq] [--calib 64] [--calls 5]
//     [--pss-selection incremental,full] [--gptq-tokens 6144] [--gptq-ts q_o]
//   smoothing 'gptq' is int4 GPTQ with 24 calibration sequences of 256 tokens (GPTQ needs more tokens than the widest input, 5632).
// Final JSON line {"bench":"quantize-time", ...}.
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { MODELS, ensureModel, promptIds } from './lib/llm-models.js';
import { siteError } from '../src/quant/search.js';
import { nativeSearchAvailable } from '../src/quant/native-search.js';
import { normalSampler } from '../src/quant/outlier-model.js';
import { f16BitsToFloat } from '../src/tensor/half.js';

const { values: args } = parseArgs({
  options: {
    parts: { type: 'string', default: 'candidates,quantize' },
    smoothing: { type: 'string', default: 'none,smoothquant,pss,awq' },
    calib: { type: 'string', default: '64' },
    calls: { type: 'string', default: '5' },
    // PSS's model-level selection: 'incremental' (default), or 'full' (every trial rebuilt and rerun: the path before session 11)
    'pss-selection': { type: 'string', default: 'incremental' },
    'gptq-tokens': { type: 'string', default: '6144' },
    'gptq-ts': { type: 'string', default: 'q_o' },
    // part quantize: the 4-layer 1.1B shape (default) or the whole 22-layer 1.1B (a 2.2 GB F16 file, generated once)
    model: { type: 'string', default: '1.1b-4l' },
  },
});
if (args.model !== '1.1b-4l' && args.model !== '1.1b') throw new Error(`--model: 1.1b-4l or 1.1b, got ${args.model}`);
const parts = args.parts.split(',');
const m = MODELS['1.1b-4l'];
const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]!; };
console.log(`# bench/quantize-time.ts: 1.1B shape, ${os.cpus().length} threads, ${os.cpus()[0]?.model ?? 'cpu'}; native search kernels: ${nativeSearchAvailable}`);
const out: Record<string, unknown> = { bench: 'quantize-time', native: nativeSearchAvailable };

if (parts.includes('candidates')) {
  // a layer's sites: the shared input of q/k/v, o, the shared input of gate/up, down ([N, K] per consumer)
  const SITES: Record<string, [number, number][]> = {
    qkv: [[m.dim, m.dim], [(m.dim / m.heads) * m.kvHeads, m.dim], [(m.dim / m.heads) * m.kvHeads, m.dim]],
    o: [[m.dim, m.dim]], gate_up: [[m.ffn, m.dim], [m.ffn, m.dim]], down: [[m.dim, m.ffn]],
  };
  const R = 128, randn = normalSampler(7);
  console.log('\n| site | consumers [N, K] | native ms per candidate | TypeScript ms | speedup |\n|---|---|---|---|---|');
  const rows: Record<string, { nativeMs: number; tsMs: number }> = {};
  for (const [name, consumers] of Object.entries(SITES)) {
    const K = consumers[0]![1];
    const X = Float32Array.from({ length: R * K }, (_, i) => randn() * (i % K === 7 ? 40 : 1));
    const weights = consumers.map(([N]) => ({ W: Float32Array.from({ length: N * K }, () => randn() * 0.02), N }));
    const problem = { K, R, X, weights, act: { format: 'int8' as const, perTensor: false }, weight: { format: 'int8' as const, group: 32 } };
    const s = Float64Array.from({ length: K }, (_, j) => 0.5 + (j % 5) / 4);
    const time = (f: (s: Float64Array) => number): number => { const t = performance.now(); f(s); return performance.now() - t; };
    const native = siteError(problem, { native: true });
    time(native); // first call: the scratch buffers fault in
    const nativeMs = median(Array.from({ length: Number(args.calls) }, () => time(native)));
    const tsMs = time(siteError(problem, { native: false }));
    rows[name] = { nativeMs: +nativeMs.toFixed(1), tsMs: +tsMs.toFixed(0) };
    console.log(`| ${name} | ${consumers.map(([N, k]) => `[${N}, ${k}]`).join(' ')} | ${nativeMs.toFixed(1)} | ${tsMs.toFixed(0)} | ${(tsMs / nativeMs).toFixed(1)}× |`);
  }
  out.candidates = rows;
}

if (parts.includes('gptq')) {
  const { gptqQuantize } = await import('../src/quant/gptq.js');
  const { gramNative } = await import('../src/quant/native-search.js');
  const T = Number(args['gptq-tokens']), randn = normalSampler(8);
  // one Hessian per input width; rows with a few outlier channels, as a decoder's are
  const hessianOf = (K: number): { H: Float64Array; nativeMs: number; tsMs: number } => {
    const X = Float32Array.from({ length: T * K }, (_, i) => randn() * (i % K === 5 ? 30 : 1));
    let t = performance.now();
    const G = gramNative(X, T, K);
    const H = Float64Array.from(G);
    const nativeMs = performance.now() - t;
    // the per-token TypeScript accumulation (calibrate.ts before), timed on 64 rows and scaled
    const Hts = new Float64Array(K * K), rows = 64;
    t = performance.now();
    for (let r = 0; r < rows; r++) for (let i = 0; i < K; i++) { const xi = X[r * K + i]; for (let j = 0; j < K; j++) Hts[i * K + j] += xi * X[r * K + j]; }
    return { H, nativeMs, tsMs: ((performance.now() - t) * T) / rows };
  };
  const hessians = new Map<number, ReturnType<typeof hessianOf>>([[m.dim, hessianOf(m.dim)], [m.ffn, hessianOf(m.ffn)]]);
  console.log(`\n| Hessian of ${T} rows, K | native ms | TypeScript ms (per token, scaled from 64 rows) |\n|---|---|---|`);
  for (const [K, h] of hessians) console.log(`| ${K} | ${h.nativeMs.toFixed(0)} | ${h.tsMs.toFixed(0)} |`);
  const SHAPES: Record<string, [number, number]> = { q_o: [m.dim, m.dim], kv: [(m.dim / m.heads) * m.kvHeads, m.dim], gate_up: [m.ffn, m.dim], down: [m.dim, m.ffn] };
  console.log('\n| weight | [N, K] | native s (first: with the factor) | native s (factor cached) | TypeScript s |\n|---|---|---|---|---|');
  const rows: Record<string, { nativeS: number; cachedS: number; tsS: number | null }> = {};
  for (const [name, [N, K]] of Object.entries(SHAPES)) {
    const W = Float32Array.from({ length: N * K }, () => randn() * 0.02);
    const H = Float64Array.from(hessians.get(K)!.H); // a fresh array: no factor cached for it yet
    const time = (native: boolean): number => { const t = performance.now(); gptqQuantize(W, N, K, H, 'int4', 128, { native }); return (performance.now() - t) / 1000; };
    const nativeS = time(true), cachedS = time(true);
    const tsS = args['gptq-ts'].split(',').includes(name) ? time(false) : null;
    rows[name] = { nativeS: +nativeS.toFixed(2), cachedS: +cachedS.toFixed(2), tsS: tsS === null ? null : +tsS.toFixed(1) };
    console.log(`| ${name} | [${N}, ${K}] | ${nativeS.toFixed(2)} | ${cachedS.toFixed(2)} | ${tsS === null ? '—' : tsS.toFixed(1)} |`);
  }
  out.gptq = { tokens: T, hessian: Object.fromEntries([...hessians].map(([K, h]) => [K, { nativeMs: +h.nativeMs.toFixed(0), tsMs: +h.tsMs.toFixed(0) }])), weights: rows };
}

if (parts.includes('quantize')) {
  const { loadLlamaGguf } = await import('../src/llm/weights.js');
  const { PagedLlama } = await import('../src/llm/models/llama.js');
  const { quantize } = await import('../src/quant/index.js');
  const qm = MODELS[args.model as '1.1b' | '1.1b-4l'];
  const file = await ensureModel(args.model as '1.1b' | '1.1b-4l', 'F16');
  const table = Float32Array.from({ length: 65536 }, (_, h) => f16BitsToFloat(h));
  const calib = [promptIds(Number(args.calib), m.vocab, 71), promptIds(Number(args.calib), m.vocab, 72)];
  console.log(`\n${args.model} (${qm.layers} layers)\n\n| configuration | quantize() s | s per layer | peak RSS GiB (process, so far) |\n|---|---|---|---|`);
  const rows: Record<string, number> = {};
  const peak: Record<string, number> = {};
  const phases: Record<string, Record<string, number>> = {};
  const runs = args.smoothing.split(',').flatMap((smoothing) => (smoothing === 'pss' ? args['pss-selection'].split(',').map((sel) => [smoothing, sel]) : [[smoothing, '']]));
  for (const [smoothing, selection] of runs) {
    // a fresh f32 model per configuration: quantize() leaves its source untouched, but the runs stay
    // independent. The loaded weights are dropped once the model holds its copy (at 1B scale: 4.4 GB).
    const model = ((): InstanceType<typeof PagedLlama> => {
      const { config, weights } = loadLlamaGguf(file, {
        transform: (w) => {
          if (w.format !== 'f16') return w;
          const src = w.data as Uint16Array, d = new Float32Array(src.length);
          for (let i = 0; i < src.length; i++) d[i] = table[src[i]!]!;
          return { ...w, format: 'f32', data: d };
        },
      });
      return new PagedLlama(config, weights, { maxPositions: 256 });
    })();
    const o = smoothing === 'awq' || smoothing === 'gptq'
      ? { weights: 'int4', activations: null, smoothing: 'none', method: smoothing }
      : { weights: 'int8', activations: 'int8', smoothing, method: 'absmax' };
    // GPTQ needs at least as many calibration tokens as the widest linear input (5632)
    const calibration = smoothing === 'gptq' ? Array.from({ length: 24 }, (_, i) => promptIds(256, m.vocab, 100 + i)) : calib;
    const t = performance.now();
    // when each phase ended (seconds into quantize()), and a line on stderr as it does
    const ended: Record<string, number> = {};
    const onProgress = ({ phase, done, total }: { phase: string; done: number; total: number }): void => {
      const at = (performance.now() - t) / 1000;
      if (done === total) ended[phase] = +at.toFixed(1);
      if (done === total || phase === 'select') console.error(`  ${smoothing}: ${phase} ${done}/${total} at ${at.toFixed(1)} s`);
    };
    quantize(model, { ...o, kvCache: null, shift: false, calibration, onProgress } as Parameters<typeof quantize>[1], { incremental: selection !== 'full' });
    const sec = (performance.now() - t) / 1000;
    const name = smoothing === 'awq' ? 'int4 AWQ' : smoothing === 'gptq' ? 'int4 GPTQ (6144 calibration tokens)' : `W8A8 ${smoothing}${selection ? ` (${selection} selection)` : ''}`;
    rows[name] = +sec.toFixed(1);
    phases[name] = ended;
    const rssGiB = process.resourceUsage().maxRSS / 1024 / 1024;
    peak[name] = +rssGiB.toFixed(2);
    console.log(`| ${name} | ${sec.toFixed(1)} | ${(sec / qm.layers).toFixed(1)} | ${rssGiB.toFixed(2)} |`);
  }
  out.quantizeSeconds = rows;
  out.peakRssGiB = peak;
  out.phaseEndSeconds = phases;
  out.model = args.model;
  out.layers = qm.layers;
}
console.log(JSON.stringify(out));
