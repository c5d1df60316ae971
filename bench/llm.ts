// LLM generation benchmark: inferjit vs node-llama-cpp (llama.cpp) on the same GGUF files, same
// thread count, each engine in its own child process, one after the other (they never share cores).
//   npx tsx bench/llm.ts [--models 110m,1.1b] [--types F16,Q8_0,Q4_0] [--prompt 128] [--gen 128] [--threads N]
//     [--engines inferjit,compiled,llamacpp] [--batch 1,4,16]
// Engines: inferjit = the hand-written LlamaEngine; compiled = the model's own code
// (src/llm/models/llama.ts) compiled by inferenceJit and served by StepEngine (weights as f32;
// it also measures aggregate decode tok/s with --batch concurrent sequences); llamacpp.
// Models are Llama GGUFs with seeded weights, generated once into bench/out/ (gitignored):
//   110m: dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000
//   1.1b: TinyLlama shape, dim 2048, 22 layers, 32 heads (4 kv), ffn 5632, vocab 32000
// node-llama-cpp runs tuned (UV_THREADPOOL_SIZE=1; see the issue). Prints a markdown table, the
// ratios, decode as a fraction of measured memory bandwidth, and a final JSON line.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MODELS, ensureModel, promptIds, type ModelName, type FileType } from './lib/llama-gguf.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

// The seeded model files (110m, 1.1b, tiny) and prompts live in bench/lib/llama-gguf.ts (shared with bench/serve.ts).

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: '110m,1.1b' },
    types: { type: 'string', default: 'F16,Q8_0,Q4_0' },
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '128' },
    threads: { type: 'string' },
    child: { type: 'string' },
    model: { type: 'string' },
    engines: { type: 'string', default: 'inferjit,compiled,llamacpp' },
    batch: { type: 'string', default: '1,4,16' },
  },
});

interface ChildResult {
  engine: string; prefillTps: number; decodeTps: number; rssMiB: number; loadMs: number;
  /** compiled: aggregate decode tok/s by concurrent sequences, the plan, and per-step overhead (µs) outside the native plan. */
  batchedDecodeTps?: Record<string, number>; describe?: string; decodeOverheadUs?: number;
}

// ---------------------------------------------------------------- children

async function runInferjit(file: string, nPrompt: number, nGen: number, threads: number): Promise<ChildResult> {
  const { LlamaEngine } = await import('../src/llm/index.js');
  const t0 = performance.now();
  const engine = LlamaEngine.load(file, { kvDtype: 'f16', threads, cacheTokens: nPrompt + nGen + 64 });
  const loadMs = performance.now() - t0;
  const prompt = promptIds(nPrompt, engine.vocabSize);
  const argmax = (l: Float32Array) => { let b = 0; for (let i = 1; i < l.length; i++) if (l[i] > l[b]) b = i; return b; };
  // Warm-up: pages, scratch buffers and the thread pool.
  { const s = engine.newSequence(); let l = engine.forward(s, prompt.slice(0, 16)); for (let i = 0; i < 4; i++) l = engine.forward(s, [argmax(l)]); engine.releaseSequence(s); }
  let best = { prefill: 0, decode: 0 };
  for (let rep = 0; rep < 2; rep++) {
    const seq = engine.newSequence();
    let t = performance.now();
    let logits = engine.forward(seq, prompt);
    const prefill = nPrompt / ((performance.now() - t) / 1000);
    let next = argmax(logits);
    t = performance.now();
    for (let i = 0; i < nGen; i++) { logits = engine.forward(seq, [next]); next = argmax(logits); }
    const decode = nGen / ((performance.now() - t) / 1000);
    engine.releaseSequence(seq);
    best = { prefill: Math.max(best.prefill, prefill), decode: Math.max(best.decode, decode) };
  }
  return { engine: 'inferjit', prefillTps: best.prefill, decodeTps: best.decode, rssMiB: process.memoryUsage().rss / 2 ** 20, loadMs };
}

/** The compiled path: prefill and single-sequence decode (best of 2), then aggregate decode tok/s
 *  with `batch` concurrent sequences (each its own prompt, all decoding in shared steps). */
async function runCompiled(file: string, nPrompt: number, nGen: number, batches: number[]): Promise<ChildResult> {
  const { loadPagedLlama } = await import('../src/llm/index.js');
  const t0 = performance.now();
  const maxSeqs = Math.max(1, ...batches);
  const { model, engine } = loadPagedLlama(file, { maxContext: nPrompt + nGen + 16, maxSeqs, maxStepTokens: 512, kvDtype: 'f16' });
  const loadMs = performance.now() - t0;
  const prompt = promptIds(nPrompt, model.config.vocabSize);
  // Warm-up: traces, compiles and lowers the buckets the runs use.
  await engine.generate(prompt.slice(0, 16), { maxTokens: 4 });
  let best = { prefill: 0, decode: 0 };
  let overheadUs = Infinity;
  const exe = (engine as unknown as { compiled: { compiledEntries(): { executable: { profile(reset?: boolean): { runs: number; byKernel: Record<string, number> } | null } }[] } })
    .compiled.compiledEntries()[0].executable;
  for (let rep = 0; rep < 2; rep++) {
    const t = performance.now();
    let first = 0;
    await engine.generate(prompt, { maxTokens: nGen + 1 }, () => { if (first === 0) { first = performance.now(); exe.profile(true); } });
    const end = performance.now();
    best = { prefill: Math.max(best.prefill, nPrompt / ((first - t) / 1000)), decode: Math.max(best.decode, nGen / ((end - first) / 1000)) };
    // per decode step: wall time minus the native plan's own time = the step's overhead
    const prof = exe.profile(false);
    if (prof && prof.runs > 0) {
      const nativeMs = Object.values(prof.byKernel).reduce((a, b) => a + b, 0) / prof.runs;
      overheadUs = Math.min(overheadUs, ((end - first) / nGen - nativeMs) * 1000);
    }
  }
  const batchedDecodeTps: Record<string, number> = {};
  for (const n of batches) {
    // short distinct prompts so the measurement is decode-bound; time from the last first token
    const prompts = Array.from({ length: n }, (_, i) => promptIds(8 + i, model.config.vocabSize));
    // warm-up: lowers this batch size's (tokens, sequences) buckets before timing
    await Promise.all(prompts.map((p) => engine.generate([2, ...p], { maxTokens: 3 })));
    let started = 0, firsts = 0, decoded = 0;
    const seen = new Set<number>();
    await Promise.all(prompts.map((p, i) => engine.generate(p, { maxTokens: nGen + 1 }, () => {
      if (!seen.has(i)) { seen.add(i); if (++firsts === n) started = performance.now(); } else if (started > 0) decoded++;
    })));
    batchedDecodeTps[String(n)] = +(decoded / ((performance.now() - started) / 1000)).toFixed(1);
  }
  return { engine: 'compiled', prefillTps: best.prefill, decodeTps: best.decode, rssMiB: process.memoryUsage().rss / 2 ** 20, loadMs, batchedDecodeTps, describe: engine.describe(), decodeOverheadUs: +overheadUs.toFixed(1) };
}

async function runLlamaCpp(file: string, nPrompt: number, nGen: number, threads: number): Promise<ChildResult> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  const { getLlama } = await import(entry);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: nPrompt + nGen + 64, batchSize: Math.max(512, nPrompt), threads });
  const loadMs = performance.now() - t0;
  const prompt = promptIds(nPrompt, model.tokens.length ?? 32000);
  let best = { prefill: 0, decode: 0 };
  // Rep 0 warms up (first-use allocations), as inferjit's warm-up call does.
  for (let rep = 0; rep < 3; rep++) {
    const seq = ctx.getSequence();
    let t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    const prefill = nPrompt / ((performance.now() - t) / 1000);
    let last = prompt[nPrompt - 1];
    let count = 0;
    t = performance.now();
    while (count < nGen) {
      // Greedy; the generator may end at an end-of-generation token: continue from it.
      for await (const tok of seq.evaluate([last], { temperature: 0 })) {
        last = tok as number;
        if (++count >= nGen) break;
      }
    }
    const decode = nGen / ((performance.now() - t) / 1000);
    seq.dispose();
    if (rep > 0) best = { prefill: Math.max(best.prefill, prefill), decode: Math.max(best.decode, decode) };
  }
  const rssMiB = process.memoryUsage().rss / 2 ** 20; // while the model is loaded (mapped pages it touched count)
  await ctx.dispose();
  await model.dispose();
  return { engine: 'llama.cpp', prefillTps: best.prefill, decodeTps: best.decode, rssMiB, loadMs };
}

/** Streaming read bandwidth: an f32 GEMV over 1 GiB of weights on the native pool (best of 3). */
async function measureBandwidth(threads: number): Promise<number> {
  const { llmAddon } = await import('../src/llm/weights.js');
  const { setNumThreads } = await import('../src/backends/cpu/index.js');
  setNumThreads(threads);
  const native = llmAddon('bandwidth');
  const N = 65536, K = 4096;
  const w = new Float32Array(N * K).fill(0.5);
  const x = new Float32Array(K).fill(1), y = new Float32Array(N);
  let best = 0;
  for (let i = 0; i < 4; i++) {
    const t = performance.now();
    native.quantMatmul([0, w, null, N, K, 32], x, 1, y);
    const gbs = (N * K * 4) / ((performance.now() - t) / 1000) / 1e9;
    if (i > 0) best = Math.max(best, gbs);
  }
  return best;
}

// ---------------------------------------------------------------- driver

async function main(): Promise<void> {
  const nPrompt = Number(args.prompt), nGen = Number(args.gen);
  const threads = Number(args.threads ?? (await import('node:os')).availableParallelism());
  if (args.child) {
    let r: ChildResult | { bandwidthGBs: number };
    if (args.child === 'inferjit') r = await runInferjit(args.model!, nPrompt, nGen, threads);
    else if (args.child === 'llamacpp') r = await runLlamaCpp(args.model!, nPrompt, nGen, threads);
    else if (args.child === 'compiled') r = await runCompiled(args.model!, nPrompt, nGen, args.batch.split(',').map(Number));
    else r = { bandwidthGBs: await measureBandwidth(threads) };
    console.log(`RESULT ${JSON.stringify(r)}`);
    return;
  }
  const models = args.models.split(',') as ModelName[];
  const types = args.types.split(',') as FileType[];
  const engines = args.engines.split(',');
  const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
  const child = (kind: string, file: string | null, env: Record<string, string> = {}): any => {
    const argv = [path.join(here, 'llm.ts'), '--child', kind, '--prompt', String(nPrompt), '--gen', String(nGen), '--threads', String(threads), '--batch', args.batch];
    if (file) argv.push('--model', file);
    const r = spawnSync(tsx, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: 900_000 });
    const line = r.stdout?.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) {
      console.error(`${kind} on ${file ?? '-'} failed (status ${r.status}):\n${(r.stderr ?? '').slice(-2000)}`);
      return null;
    }
    return JSON.parse(line.slice(7));
  };

  const bw = child('bandwidth', null, { INFERJIT_NUM_THREADS: String(threads) });
  const bandwidth: number = bw?.bandwidthGBs ?? 0;
  console.log(`threads: ${threads}; measured streaming read bandwidth (f32 GEMV over 1 GiB): ${bandwidth.toFixed(1)} GB/s`);
  console.log(`prompt ${nPrompt} tokens, decode ${nGen} tokens, greedy; node-llama-cpp with UV_THREADPOOL_SIZE=1\n`);
  console.log('| model | type | file MiB | inferjit prefill tok/s | llama.cpp prefill tok/s | ratio | inferjit decode tok/s | llama.cpp decode tok/s | ratio | inferjit decode GB/s (% of bw) | inferjit RSS MiB | llama.cpp RSS MiB |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  const decodeRatio: Record<string, number> = {}, prefillRatio: Record<string, number> = {};
  const rows: unknown[] = [];
  const compiledRows: string[] = [];
  const batched: Record<string, Record<string, number>> = {};
  for (const name of models) {
    for (const type of types) {
      const file = await ensureModel(name, type);
      const size = fs.statSync(file).size;
      const ours = engines.includes('inferjit') ? child('inferjit', file, { INFERJIT_NUM_THREADS: String(threads) }) : null;
      const ref = engines.includes('llamacpp') ? child('llamacpp', file, { UV_THREADPOOL_SIZE: '1' }) : null;
      const comp = engines.includes('compiled') ? child('compiled', file, { INFERJIT_NUM_THREADS: String(threads) }) : null;
      if (comp) {
        batched[`${name}-${type}`] = comp.batchedDecodeTps;
        const vs = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) : '-');
        compiledRows.push(`| ${name} | ${type} | ${comp.prefillTps.toFixed(1)} | ${vs(comp.prefillTps, ref?.prefillTps)} | ${vs(comp.prefillTps, ours?.prefillTps)} | `
          + `${comp.decodeTps.toFixed(1)} | ${vs(comp.decodeTps, ref?.decodeTps)} | ${vs(comp.decodeTps, ours?.decodeTps)} | `
          + `${Object.entries(comp.batchedDecodeTps as Record<string, number>).map(([k, v]) => `${k}: ${v}`).join(', ')} | ${comp.decodeOverheadUs} | ${comp.rssMiB.toFixed(0)} |`);
      }
      const key = `${name}-${type}`;
      const pr = ours && ref ? ours.prefillTps / ref.prefillTps : NaN;
      const dr = ours && ref ? ours.decodeTps / ref.decodeTps : NaN;
      if (Number.isFinite(pr)) prefillRatio[key] = +pr.toFixed(3);
      if (Number.isFinite(dr)) decodeRatio[key] = +dr.toFixed(3);
      // Bytes a decode step reads: every weight once except the embedding table (one row).
      const m = MODELS[name];
      const stepBytes = size * (1 - (m.vocab * m.dim) / (2 * m.vocab * m.dim + m.layers * (2 * m.dim * m.dim * (1 + m.kvHeads / m.heads) + 3 * m.dim * m.ffn)));
      const gbs = ours ? (stepBytes * ours.decodeTps) / 1e9 : 0;
      const f = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));
      console.log(`| ${name} | ${type} | ${(size / 2 ** 20).toFixed(0)} | ${f(ours?.prefillTps)} | ${f(ref?.prefillTps)} | ${Number.isFinite(pr) ? pr.toFixed(2) : '-'} | ` +
        `${f(ours?.decodeTps)} | ${f(ref?.decodeTps)} | ${Number.isFinite(dr) ? dr.toFixed(2) : '-'} | ${gbs.toFixed(1)} (${bandwidth ? ((100 * gbs) / bandwidth).toFixed(0) : '-'}%) | ` +
        `${f(ours?.rssMiB)} | ${f(ref?.rssMiB)} |`);
      rows.push({ model: name, type, inferjit: ours, llamacpp: ref, compiled: comp });
    }
  }
  if (compiledRows.length) {
    console.log('\ncompiled path (model code through inferenceJit + StepEngine):\n');
    console.log('| model | type | prefill tok/s | vs llama.cpp | vs LlamaEngine | decode tok/s | vs llama.cpp | vs LlamaEngine | aggregate decode tok/s by concurrent sequences | decode step overhead µs | RSS MiB |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of compiledRows) console.log(r);
  }
  console.log(JSON.stringify({ bench: 'llm', threads, bandwidth_gbs: +bandwidth.toFixed(2), decode_ratio_vs_llamacpp: decodeRatio, prefill_ratio_vs_llamacpp: prefillRatio, batched_decode_tok_s: batched }));
}

await main();
