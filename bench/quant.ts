// Quantized-inference speed (issue 18): the real W8A8 and FP8 kernels (w8_linear → w8a8_gemm /
// fp8_gemm, native/quant/w8a8.cc) against our own fp32 path and against node-llama-cpp (llama.cpp)
// Q8_0 on the same seeded weights.
//   npx tsx bench/quant.ts [--prompt 128] [--gen 32] [--variants fp32,w8a8,w8a8p,w8a8g,fp8,fp8w,w8a8h,w8a8ph] [--engines ours,llamacpp]
//     [--threads N] [--gemm true]
// Model: the 1.1B (TinyLlama) shape with 4 of its 22 layers (bench/lib/llm-models.ts '1.1b-4l';
// fewer layers keep the f32 source model quantize() reads, and the run, short). Our side loads the
// seeded F16 file as f32 weights, then (per variant, each in its own child process):
//   fp32  the model as loaded, compiled (fp32 packed GEMMs)
//   w8a8  quantize(int8 weights, int8 activations): per-channel int8 weights, per-token int8
//         activations, VNNI int32 GEMM
//   w8a8p quantize(int8 weights, int8 activations, activationScheme 'per-group'): the w8a8 kernel
//         with an activation scale per 32 values of a token (the accuracy of Q8_0 activations)
//   w8a8g quantize(int8 weights, int8 activations, kernel 'qgemm'): the same int8 weights on the
//         LLM path's quant_linear kernel, activations quantized per 32 values (the finer scales
//         that reach issue 18's accuracy floor; bench/quant-accuracy.ts)
//   fp8   quantize(fp8 weights, fp8 activations): E4M3 weights and activations, fp32 products
//   fp8w  quantize(fp8 weights, f32 activations): what FP8 storage alone buys
//   w8a8h, w8a8ph  w8a8 / w8a8p with option lmHead: the LM head quantized too (int8 weights and
//         activations on the same kernel), as llama.cpp's Q8_0 file has it
// (absmax weights, no smoothing: the kernels' speed does not depend on the factors; the LM head
// stays f32 except in the *h variants, as PTQ usually keeps it). llama.cpp runs the Q8_0 file of
// the same seeded values (its output head in Q8_0 too). Rows: prefill tok/s of one --prompt
// sequence, decode tok/s, linear-weight memory (the layers' and the LM head's) and the child's RSS. --gemm also times the layer GEMMs alone
// (M = 1 and M = --prompt) for each 1.1B shape. Prints tables, ratios, and a final JSON line.
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MODELS, ensureModel, promptIds } from './lib/llm-models.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const MODEL = '1.1b-4l' as const;

const { values: args } = parseArgs({
  options: {
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '32' },
    variants: { type: 'string', default: 'fp32,w8a8,w8a8p,w8a8g,fp8,fp8w,w8a8h,w8a8ph' },
    engines: { type: 'string', default: 'ours,llamacpp' },
    threads: { type: 'string' },
    gemm: { type: 'string', default: 'true' },
    child: { type: 'string' },
    model: { type: 'string' },
  },
});

type Variant = 'fp32' | 'w8a8' | 'w8a8p' | 'w8a8g' | 'fp8' | 'fp8w' | 'w8a8h' | 'w8a8ph';
const VARIANTS: Record<Variant, { weights: 'int8' | 'fp8' | null; activations: 'int8' | 'fp8' | null; kernel?: 'qgemm'; activationScheme?: 'per-group'; lmHead?: boolean }> = {
  fp32: { weights: null, activations: null },
  w8a8: { weights: 'int8', activations: 'int8' },
  w8a8p: { weights: 'int8', activations: 'int8', activationScheme: 'per-group' },
  w8a8g: { weights: 'int8', activations: 'int8', kernel: 'qgemm' },
  fp8: { weights: 'fp8', activations: 'fp8' },
  fp8w: { weights: 'fp8', activations: null },
  w8a8h: { weights: 'int8', activations: 'int8', lmHead: true },
  w8a8ph: { weights: 'int8', activations: 'int8', activationScheme: 'per-group', lmHead: true },
};

interface Result { engine: string; prefillTps: number; decodeTps: number; rssMiB: number; setupMs: number; kernels?: string }
interface Settings { nPrompt: number; nGen: number }

/** f16 bits → f32 (every value, subnormals included). */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// ---------------------------------------------------------------- children

async function runOurs(file: string, variant: Variant, s: Settings): Promise<Result> {
  const { loadLlamaGguf } = await import('../src/llm/weights.js');
  const { PagedLlama } = await import('../src/llm/models/llama.js');
  const { StepEngine } = await import('../src/llm/step-engine.js');
  const { quantize } = await import('../src/quant/index.js');
  const t0 = performance.now();
  const table = new Float32Array(65536).map((_, h) => halfToFloat(h));
  // quantize() reads f32 weights: the F16 file's matrices are widened as they are read
  const { config, weights } = loadLlamaGguf(file, {
    transform: (w) => (w.format === 'f16' ? { ...w, format: 'f32', data: Float32Array.from(w.data as Uint16Array, (h) => table[h]) } : w),
  });
  const maxContext = s.nPrompt + s.nGen + 16;
  const model = new PagedLlama(config, weights, { maxPositions: maxContext });
  const V = config.vocabSize;
  const o = VARIANTS[variant];
  const decoder = variant === 'fp32' ? model : quantize(model, {
    ...o, kvCache: null, smoothing: 'none', shift: false, method: 'absmax', calibration: [promptIds(32, V, 77)], maxSamples: 32,
  });
  const engine = new StepEngine(decoder, { maxContext, maxSeqs: 1, maxStepTokens: Math.max(512, s.nPrompt), prefixCaching: false });
  const greedy = { temperature: 0 };
  await engine.generate(promptIds(s.nPrompt, V, 901), { ...greedy, maxTokens: 4 }); // traces and lowers the buckets
  const setupMs = performance.now() - t0;
  let best = { prefill: 0, decode: 0 };
  for (let rep = 0; rep < 2; rep++) {
    const t = performance.now();
    let first = 0;
    await engine.generate(promptIds(s.nPrompt, V, 1000 + rep), { ...greedy, maxTokens: s.nGen + 1 }, () => { if (first === 0) first = performance.now(); });
    const end = performance.now();
    best = { prefill: Math.max(best.prefill, s.nPrompt / ((first - t) / 1000)), decode: Math.max(best.decode, s.nGen / ((end - first) / 1000)) };
  }
  type Exe = { planStats(): { kernelNames: string[] } | null };
  const exe = (engine as unknown as { compiled: { compiledEntries(): { executable: Exe }[] } | null }).compiled?.compiledEntries()[0]?.executable ?? null;
  const names = exe?.planStats()?.kernelNames ?? [];
  const counts = new Map<string, number>();
  for (const n of names) if (/linear|gemm|matmul/.test(n)) counts.set(n, (counts.get(n) ?? 0) + 1);
  return {
    engine: variant, prefillTps: best.prefill, decodeTps: best.decode, rssMiB: process.memoryUsage().rss / 2 ** 20, setupMs,
    kernels: [...counts].map(([n, c]) => `${c}×${n}`).join(' '),
  };
}

async function runLlamaCpp(file: string, s: Settings, threads: number): Promise<Result> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  const { getLlama } = await import(entry);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: s.nPrompt + s.nGen + 64, batchSize: Math.max(512, s.nPrompt), threads, sequences: 1 });
  const setupMs = performance.now() - t0;
  const seq = ctx.getSequence();
  const V = MODELS[MODEL].vocab;
  let best = { prefill: 0, decode: 0 };
  for (let rep = 0; rep < 3; rep++) { // rep 0 warms up
    await seq.clearHistory();
    const prompt = promptIds(s.nPrompt, V, 1000 + rep);
    let t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    const prefill = s.nPrompt / ((performance.now() - t) / 1000);
    t = performance.now();
    let n = 0, last = prompt[s.nPrompt - 1];
    while (n < s.nGen) {
      for await (const tok of seq.evaluate([last], { temperature: 0 })) { last = tok as number; if (++n >= s.nGen) break; }
    }
    const decode = s.nGen / ((performance.now() - t) / 1000);
    if (rep > 0) best = { prefill: Math.max(best.prefill, prefill), decode: Math.max(best.decode, decode) };
  }
  const rssMiB = process.memoryUsage().rss / 2 ** 20;
  seq.dispose();
  await ctx.dispose();
  await model.dispose();
  return { engine: 'llama.cpp Q8_0', prefillTps: best.prefill, decodeTps: best.decode, rssMiB, setupMs };
}

/** The layer GEMMs alone: the plan's fp32 linear vs w8_linear int8 / fp8, per 1.1B shape and row count. */
async function gemmRows(M: number[]): Promise<{ shape: string; M: number; f32Ms: number; w8a8Ms: number; w8a8pMs: number; fp8Ms: number }[]> {
  const { randn, fromArray, ops } = await import('../src/index.js');
  const { trace } = await import('../src/trace/index.js');
  const { dispatch1 } = await import('../src/ops/dispatch.js');
  const { PlanExecutable } = await import('../src/backends/cpu/plan/executable.js');
  await import('../src/quant/w8-linear-op.js');
  type T = ReturnType<typeof randn>;
  const time = (fn: (x: T) => T, params: Record<string, T>, m: number, K: number): number => {
    const x = randn([m, K], { seed: 2 });
    const t = trace(fn, [x], { module: { namedParameters: () => Object.entries(params) } });
    const exe = new PlanExecutable(t.graph, t.constants);
    // the output written into one kept buffer: a fresh [M, N] array per call costs a page fault per
    // 4 KiB on first write, and on a VM where a fault costs ~13 µs (session 9's Zen 5) that was up
    // to 3/4 of the time measured (gate/up at M = 128: 9.9 ms instead of 2.3)
    const reuse = { reuseOutputs: true };
    exe.run([x], reuse);
    let best = Infinity;
    for (let i = 0; i < (m === 1 ? 20 : 8); i++) { const t0 = performance.now(); exe.run([x], reuse); best = Math.min(best, performance.now() - t0); }
    return best;
  };
  const rows = [];
  const { dim: D, ffn: F, heads, kvHeads } = MODELS[MODEL];
  for (const [name, N, K] of [['q/o', D, D], ['k/v', (D / heads) * kvHeads, D], ['gate/up', F, D], ['down', D, F]] as [string, number, number][]) {
    const wf = randn([N, K], { seed: 1 }).mul(1 / Math.sqrt(K));
    const codes = fromArray(Int8Array.from({ length: N * K }, (_, i) => ((i * 7919) % 255) - 127), [N, K], 'i8');
    const bits = fromArray(Uint8Array.from({ length: N * K }, (_, i) => ((i * 7919) % 256) & 0xf7), [N, K], 'u8'); // never 0x7f / 0xff (NaN)
    const sc = fromArray(new Float32Array(N).fill(1e-3), [N], 'f32');
    for (const m of M) {
      rows.push({
        shape: `${name} [${N}, ${K}]`, M: m,
        f32Ms: time((x) => ops.linear(x, wf), { wf }, m, K),
        w8a8Ms: time((x) => dispatch1('w8_linear', [x, codes, sc, null, null], { weights: 'int8', activations: 'int8', activation: 'none' }), { codes, sc }, m, K),
        w8a8pMs: time((x) => dispatch1('w8_linear', [x, codes, sc, null, null], { weights: 'int8', activations: 'int8', activation: 'none', actGroup: 32 }), { codes, sc }, m, K),
        fp8Ms: time((x) => dispatch1('w8_linear', [x, bits, sc, null, null], { weights: 'fp8', activations: 'fp8', activation: 'none' }), { bits, sc }, m, K),
      });
    }
  }
  return rows;
}

// ---------------------------------------------------------------- main

const settings: Settings = { nPrompt: Number(args.prompt), nGen: Number(args.gen) };
const threads = Number(args.threads ?? Math.min(os.availableParallelism(), 16));

if (args.child) {
  const r = args.child === 'llamacpp' ? await runLlamaCpp(args.model!, settings, threads) : await runOurs(args.model!, args.child as Variant, settings);
  console.log(`RESULT ${JSON.stringify(r)}`);
  process.exit(0);
}

const variants = args.variants.split(',') as Variant[];
for (const v of variants) if (!(v in VARIANTS)) throw new RangeError(`--variants: unknown variant ${JSON.stringify(v)}; choose from ${Object.keys(VARIANTS).join(', ')}`);
const engines = args.engines.split(',');
for (const e of engines) if (e !== 'ours' && e !== 'llamacpp') throw new RangeError(`--engines: unknown engine ${JSON.stringify(e)}; choose from ours, llamacpp`);
const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
const child = (kind: string, file: string): Result | null => {
  const argv = [path.join(here, 'quant.ts'), '--child', kind, '--model', file, '--prompt', String(settings.nPrompt), '--gen', String(settings.nGen), '--threads', String(threads)];
  const env = kind === 'llamacpp' ? { UV_THREADPOOL_SIZE: '1' } : { INFERJIT_NUM_THREADS: String(threads) };
  const r = spawnSync(tsx, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: 1_800_000 });
  const line = r.stdout?.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) { console.error(`${kind} failed (status ${r.status}, signal ${r.signal}):\n${(r.stderr ?? '').slice(-2000)}`); return null; }
  return JSON.parse(line.slice(7)) as Result;
};

const m = MODELS[MODEL];
const perLayer = 2 * m.dim * m.dim + 2 * m.dim * (m.dim / m.heads) * m.kvHeads + 3 * m.dim * m.ffn;
// the layers' linears plus the LM head [vocab, dim] (f32 unless the variant quantizes it)
const linearMiB = (bytesPerWeight: number, perRowBytes: number, head: [number, number] = [4, 0]): number =>
  (m.layers * (perLayer * bytesPerWeight + perRowBytes * (2 * m.dim + 2 * (m.dim / m.heads) * m.kvHeads + 3 * m.ffn)) + m.vocab * (m.dim * head[0] + head[1])) / 2 ** 20;
const MEMORY: Record<string, number> = {
  fp32: linearMiB(4, 0), w8a8: linearMiB(1, 4), w8a8p: linearMiB(1 + 4 / 32, 4), w8a8g: linearMiB(34 / 32, 0), fp8: linearMiB(1, 4), fp8w: linearMiB(1, 4),
  w8a8h: linearMiB(1, 4, [1, 4]), w8a8ph: linearMiB(1 + 4 / 32, 4, [1 + 4 / 32, 4]), 'llama.cpp Q8_0': linearMiB(34 / 32, 0, [34 / 32, 0]),
};

console.log(`# bench/quant.ts: ${MODEL} (1.1B shape, ${m.layers} of 22 layers), prompt ${settings.nPrompt}, gen ${settings.nGen}, ${threads} threads, ${os.cpus()[0]?.model ?? 'cpu'}`);
const fmt = (x: number | undefined, d = 1): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
let gemm: Awaited<ReturnType<typeof gemmRows>> = [];
if (args.gemm === 'true') {
  console.log('\n| layer GEMM | M | fp32 ms | W8A8 ms | W8A8 speedup | W8A8 per-group ms | per-group speedup | FP8 ms | FP8 speedup |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  gemm = await gemmRows([1, settings.nPrompt]);
  for (const g of gemm) console.log(`| ${g.shape} | ${g.M} | ${g.f32Ms.toFixed(2)} | ${g.w8a8Ms.toFixed(2)} | ${(g.f32Ms / g.w8a8Ms).toFixed(2)}× | ${g.w8a8pMs.toFixed(2)} | ${(g.f32Ms / g.w8a8pMs).toFixed(2)}× | ${g.fp8Ms.toFixed(2)} | ${(g.f32Ms / g.fp8Ms).toFixed(2)}× |`);
}
// rows print as each child finishes (a run cut short keeps what it measured); ratios against fp32
// and llama.cpp use whichever of the two has already run, and the final table repeats them all
const results: Result[] = [];
const row = (r: Result): string => {
  const base = results.find((x) => x.engine === 'fp32'), llama = results.find((x) => x.engine.startsWith('llama.cpp'));
  return `| ${r.engine} | ${fmt(r.prefillTps)} | ${fmt(base && r.prefillTps / base.prefillTps, 2)}× | ${fmt(llama && r.prefillTps / llama.prefillTps, 2)}× | ${fmt(r.decodeTps)} | ${fmt(base && r.decodeTps / base.decodeTps, 2)}× | ${fmt(llama && r.decodeTps / llama.decodeTps, 2)}× | ${fmt(MEMORY[r.engine], 0)} | ${fmt(r.rssMiB, 0)} | ${r.kernels ?? ''} |`;
};
const header = '\n| variant | prefill tok/s | vs fp32 | vs llama.cpp Q8_0 | decode tok/s | vs fp32 | vs llama.cpp Q8_0 | linear weights MiB (with the LM head) | RSS MiB | plan GEMM kernels |\n|---|---|---|---|---|---|---|---|---|---|';
console.log(header);
const f16 = engines.includes('ours') ? await ensureModel(MODEL, 'F16') : '';
const q8 = engines.includes('llamacpp') ? await ensureModel(MODEL, 'Q8_0') : '';
const order: string[] = [...variants.filter((v) => v === 'fp32' || v === 'w8a8')];
if (engines.includes('llamacpp')) order.push('llamacpp');
order.push(...variants.filter((v) => v !== 'fp32' && v !== 'w8a8'));
for (const kind of order) {
  if (kind !== 'llamacpp' && !engines.includes('ours')) continue;
  const r = child(kind, kind === 'llamacpp' ? q8 : f16);
  if (r) { results.push(r); console.log(row(r)); }
}
const base = results.find((r) => r.engine === 'fp32');
const llama = results.find((r) => r.engine.startsWith('llama.cpp'));
console.log(header);
for (const r of results) console.log(row(r));
const byEngine = Object.fromEntries(results.map((r) => [r.engine, { prefill_tok_s: +r.prefillTps.toFixed(1), decode_tok_s: +r.decodeTps.toFixed(1), linear_weights_mib: +(MEMORY[r.engine] ?? NaN).toFixed(0), rss_mib: +r.rssMiB.toFixed(0) }]));
const ratio = (v: string, key: 'prefillTps' | 'decodeTps', against: Result | undefined): number | null => {
  const r = results.find((x) => x.engine === v);
  return r && against ? +(r[key] / against[key]).toFixed(2) : null;
};
console.log(JSON.stringify({
  bench: 'quant', model: MODEL, layers: m.layers, prompt: settings.nPrompt, gen: settings.nGen, threads, variants: byEngine,
  w8a8_prefill_vs_fp32: ratio('w8a8', 'prefillTps', base), fp8_prefill_vs_fp32: ratio('fp8', 'prefillTps', base),
  w8a8_decode_vs_fp32: ratio('w8a8', 'decodeTps', base), fp8_decode_vs_fp32: ratio('fp8', 'decodeTps', base), fp8w_decode_vs_fp32: ratio('fp8w', 'decodeTps', base),
  w8a8_prefill_vs_llamacpp_q8_0: ratio('w8a8', 'prefillTps', llama), w8a8_decode_vs_llamacpp_q8_0: ratio('w8a8', 'decodeTps', llama),
  w8a8p_prefill_vs_fp32: ratio('w8a8p', 'prefillTps', base), w8a8p_decode_vs_fp32: ratio('w8a8p', 'decodeTps', base),
  w8a8p_prefill_vs_llamacpp_q8_0: ratio('w8a8p', 'prefillTps', llama), w8a8p_decode_vs_llamacpp_q8_0: ratio('w8a8p', 'decodeTps', llama),
  w8a8h_decode_vs_fp32: ratio('w8a8h', 'decodeTps', base), w8a8h_decode_vs_llamacpp_q8_0: ratio('w8a8h', 'decodeTps', llama),
  w8a8ph_decode_vs_fp32: ratio('w8a8ph', 'decodeTps', base), w8a8ph_decode_vs_llamacpp_q8_0: ratio('w8a8ph', 'decodeTps', llama),
  w8a8g_prefill_vs_fp32: ratio('w8a8g', 'prefillTps', base), w8a8g_decode_vs_fp32: ratio('w8a8g', 'decodeTps', base),
  w8a8g_prefill_vs_llamacpp_q8_0: ratio('w8a8g', 'prefillTps', llama), w8a8g_decode_vs_llamacpp_q8_0: ratio('w8a8g', 'decodeTps', llama),
  gemm: gemm.map((g) => ({ shape: g.shape, M: g.M, w8a8_speedup: +(g.f32Ms / g.w8a8Ms).toFixed(2), w8a8_per_group_speedup: +(g.f32Ms / g.w8a8pMs).toFixed(2), fp8_speedup: +(g.f32Ms / g.fp8Ms).toFixed(2) })),
}));
