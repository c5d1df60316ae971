// LLM generation benchmark: the compiled path (the model's own code, src/llm/models, loaded by
// loadCausalLM, compiled by inferenceJit and served by StepEngine) vs tuned node-llama-cpp
// (llama.cpp) on the same seeded GGUF files, same thread count, each engine in its own child
// process, one after the other (they never share cores).
//   npx tsx bench/llm.ts [--models 110m,1.1b,qwen2-160m,moe-170m] [--types Q4_0,Q4_K_M] [--prompt 128] [--gen 128]
//     [--threads N] [--batch 1,4,16] [--rounds 1] [--prefix 512] [--engines compiled,llamacpp] [--contend] [--contenders 1]
// Rows per file: prefill and decode tok/s of one sequence; aggregate decode tok/s with --batch
// concurrent sequences; time to first token with a --prefix-token shared system prompt, cold
// (first time) and warm (the prefix's KV pages reused; llama.cpp: the sequence's KV cache kept up
// to the prefix and only the new suffix evaluated); the compiled step's overhead outside the
// native plan (µs per decode step). Every row prints the ratio compiled / llama.cpp.
// --rounds N: the batched rows (compiled) measure every sequence count once per round, N rounds; they
// report medians, and the speedup vs one sequence is the median of the rounds' own ratios.
// --contend: busy-looping child processes (--contenders, default 1) run for the whole benchmark,
// both engines included (issue 15: robustness when another process holds a core).
// Types: F16, Q8_0, Q4_0, Q4_K_M (mixed Q4_K/Q6_K as llama.cpp's recipe; see bench/lib/llm-models.ts).
// Models: Llama 110m / 1.1b, a Qwen2-shaped qwen2-160m (QKV bias) and a Mixtral-shaped moe-170m
// (8 experts, top-2); the last two have rows that are not multiples of 256 (no Q4_K_M).
// The files are generated once into bench/out/. Nothing here depends on how the compiled path
// stores the weights: whatever loadCausalLM does with a quantized file is what gets measured (the
// child reports its plan and RSS). The LlamaEngine numbers from before are in bench/RESULTS.md.
// node-llama-cpp runs tuned (UV_THREADPOOL_SIZE=1; see issue 12). Prints markdown tables, the
// ratios, and a final JSON line.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MODELS, FILE_TYPES, ensureModel, promptIds, decodeStepBytes, type ModelName, type FileType } from './lib/llm-models.js';
import { startContention, type Contention } from './lib/contend.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: '110m,1.1b' },
    types: { type: 'string', default: 'Q4_0,Q4_K_M' },
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '128' },
    threads: { type: 'string' },
    batch: { type: 'string', default: '1,4,16' },
    rounds: { type: 'string', default: '1' },
    prefix: { type: 'string', default: '512' },
    engines: { type: 'string', default: 'compiled,llamacpp' },
    contend: { type: 'boolean', default: false },
    contenders: { type: 'string', default: '1' },
    child: { type: 'string' },
    model: { type: 'string' },
    vocab: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
// --help: the header comment above is the usage
if (args.help) {
  const header = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
  console.log(header.slice(0, header.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}

/** Tokens after the shared prefix in the prefix-cache rows (the user's turn). */
const SUFFIX = 16;

interface ChildResult {
  engine: string; prefillTps: number; decodeTps: number; rssMiB: number; loadMs: number;
  /** Aggregate decode tok/s by concurrent sequences. */
  batchedDecodeTps: Record<string, number>;
  /** compiled with --rounds > 1: per round, tok/s by sequence count (the batched rows then give the medians). */
  batchedRounds?: Record<string, number>[];
  /** Time to first token (ms) of prefix + SUFFIX tokens: the prefix seen for the first time, then again. */
  prefixTtftMs: { cold: number; warm: number };
  /** compiled: its plan, and the per-step time outside the native plan (µs). */
  describe?: string; decodeOverheadUs?: number;
}

interface Settings { nPrompt: number; nGen: number; batches: number[]; prefixLen: number; rounds: number }

const median = (xs: number[]): number => { const a = [...xs].sort((x, y) => x - y); return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2; };

// ---------------------------------------------------------------- children

/** The compiled path. Prompts of the timed runs are distinct (own seeds), so the prefix cache
 *  never shortens a prefill row; only the prefix rows repeat a prefix on purpose. */
async function runCompiled(file: string, s: Settings): Promise<ChildResult> {
  const { loadCausalLM } = await import('../src/llm/models/index.js');
  const t0 = performance.now();
  const maxContext = Math.max(s.nPrompt + s.nGen, s.prefixLen + SUFFIX + 4, 8 + Math.max(...s.batches) + s.nGen + 4) + 16;
  const { model, engine } = loadCausalLM(file, { maxContext, maxSeqs: Math.max(1, ...s.batches), maxStepTokens: 512, kvDtype: 'f16' });
  const loadMs = performance.now() - t0;
  const V = model.config.vocabSize;
  const greedy = { temperature: 0 };
  // Warm-up: traces, compiles and lowers the buckets the runs use (prompt, prefix chunks, decode).
  await engine.generate(promptIds(s.nPrompt, V, 901), { ...greedy, maxTokens: 4 });
  if (s.prefixLen > 0) await engine.generate(promptIds(s.prefixLen + SUFFIX, V, 902), { ...greedy, maxTokens: 2 });
  let best = { prefill: 0, decode: 0 };
  let overheadUs = Infinity;
  type Exe = { profile(reset?: boolean): { runs: number; byKernel: Record<string, number> } | null };
  const exe = (engine as unknown as { compiled: { compiledEntries(): { executable: Exe }[] } | null }).compiled?.compiledEntries()[0]?.executable ?? null;
  for (let rep = 0; rep < 2; rep++) {
    const t = performance.now();
    let first = 0, second = 0;
    await engine.generate(promptIds(s.nPrompt, V, 1000 + rep), { ...greedy, maxTokens: s.nGen + 1 }, () => {
      if (first === 0) first = performance.now();
      // the decode plan is the latest one from the first decode step on: its profile starts here
      else if (second === 0) { second = performance.now(); exe?.profile(true); }
    });
    const end = performance.now();
    best = { prefill: Math.max(best.prefill, s.nPrompt / ((first - t) / 1000)), decode: Math.max(best.decode, s.nGen / ((end - first) / 1000)) };
    // per decode step: wall time minus the native plan's own time = the step's overhead
    const prof = exe?.profile(false);
    if (prof && prof.runs > 0 && s.nGen > 1) {
      const nativeMs = Object.values(prof.byKernel).reduce((a, b) => a + b, 0) / prof.runs;
      overheadUs = Math.min(overheadUs, ((end - second) / (s.nGen - 1) - nativeMs) * 1000);
    }
  }
  // --rounds: every sequence count once per round, rounds back to back, so a machine whose speed drifts
  // over minutes (this one does, by ±30%) moves all counts of a round alike; the rows give medians and
  // the speedup vs one sequence is the median of each round's own ratio.
  const batchedRounds: Record<string, number>[] = [];
  for (let round = 0; round < s.rounds; round++) {
    const tps: Record<string, number> = {};
    for (const n of s.batches) {
      // short distinct prompts so the measurement is decode-bound; time from the last first token
      const prompts = Array.from({ length: n }, (_, i) => promptIds(8 + i, V, 2000 + i));
      // warm-up: lowers this batch size's (tokens, sequences) buckets before timing (same lengths, other prompts)
      if (round === 0) await Promise.all(prompts.map((p, i) => engine.generate(promptIds(p.length, V, 2500 + i), { ...greedy, maxTokens: 3 })));
      let started = 0, firsts = 0, decoded = 0;
      const seen = new Set<number>();
      await Promise.all(prompts.map((p, i) => engine.generate(p, { ...greedy, maxTokens: s.nGen + 1 }, () => {
        if (!seen.has(i)) { seen.add(i); if (++firsts === n) started = performance.now(); } else if (started > 0) decoded++;
      })));
      tps[String(n)] = +(decoded / ((performance.now() - started) / 1000)).toFixed(1);
    }
    batchedRounds.push(tps);
  }
  const batchedDecodeTps: Record<string, number> = {};
  for (const n of s.batches) batchedDecodeTps[String(n)] = +median(batchedRounds.map((r) => r[String(n)])).toFixed(1);
  const prefixTtftMs = { cold: NaN, warm: NaN };
  if (s.prefixLen > 0) {
    const prefix = promptIds(s.prefixLen, V, 3000);
    const ttft = async (suffixSeed: number): Promise<number> => {
      const t = performance.now();
      let first = 0;
      await engine.generate([...prefix, ...promptIds(SUFFIX, V, suffixSeed)], { ...greedy, maxTokens: 1 }, () => { first = performance.now(); });
      return first - t;
    };
    const hitsBefore = engine.stats.prefixHitTokens;
    prefixTtftMs.cold = +(await ttft(3001)).toFixed(2);
    prefixTtftMs.warm = +(await ttft(3002)).toFixed(2);
    const hit = engine.stats.prefixHitTokens - hitsBefore;
    if (hit < s.prefixLen - engine.blockSize) console.error(`compiled: the warm run reused only ${hit} of ${s.prefixLen} prefix tokens`);
  }
  return {
    engine: 'compiled', prefillTps: best.prefill, decodeTps: best.decode, rssMiB: process.memoryUsage().rss / 2 ** 20, loadMs,
    batchedDecodeTps, ...(s.rounds > 1 ? { batchedRounds } : {}), prefixTtftMs, describe: engine.describe(), decodeOverheadUs: Number.isFinite(overheadUs) ? +overheadUs.toFixed(1) : undefined,
  };
}

async function runLlamaCpp(file: string, s: Settings, threads: number, V: number): Promise<ChildResult> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  const { getLlama } = await import(entry);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const sequences = Math.max(1, ...s.batches);
  // contextSize is per sequence; batchSize covers the longest prompt evaluated in one call
  const ctx = await model.createContext({
    contextSize: Math.max(s.nPrompt + s.nGen, s.prefixLen + SUFFIX + 4, 8 + sequences + s.nGen + 4) + 64,
    batchSize: Math.max(512, s.nPrompt, s.prefixLen + SUFFIX), threads, sequences,
  });
  const loadMs = performance.now() - t0;
  // Sequences are taken once and cleared between runs (a disposed one is not handed back at once).
  const pool: any[] = Array.from({ length: sequences }, () => ctx.getSequence());
  const fresh = async (i: number) => { await pool[i].clearHistory(); return pool[i]; };
  /** Greedy decode of `count` tokens after `last` (the generator may stop at an end token: go on from it). */
  const decode = async (seq: any, last: number, count: number, onToken?: () => void) => {
    let n = 0;
    while (n < count) {
      for await (const tok of seq.evaluate([last], { temperature: 0 })) {
        last = tok as number;
        onToken?.();
        if (++n >= count) break;
      }
    }
  };
  let best = { prefill: 0, decode: 0 };
  // Rep 0 warms up (first-use allocations), as the compiled child's warm-up call does.
  for (let rep = 0; rep < 3; rep++) {
    const seq = await fresh(0);
    const prompt = promptIds(s.nPrompt, V, 1000 + rep);
    let t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    const prefill = s.nPrompt / ((performance.now() - t) / 1000);
    t = performance.now();
    await decode(seq, prompt[s.nPrompt - 1], s.nGen);
    const dec = s.nGen / ((performance.now() - t) / 1000);
    if (rep > 0) best = { prefill: Math.max(best.prefill, prefill), decode: Math.max(best.decode, dec) };
  }
  const batchedDecodeTps: Record<string, number> = {};
  for (const n of s.batches) {
    // concurrent sequences of one context: node-llama-cpp batches their evaluations into shared steps
    const run = async (timed: boolean) => {
      const seqs = await Promise.all(Array.from({ length: n }, (_, i) => fresh(i)));
      let started = 0, firsts = 0, decoded = 0;
      await Promise.all(seqs.map(async (seq, i) => {
        const prompt = promptIds(8 + i, V, 2000 + i);
        // the first generated token ends the prompt's evaluation; time from the last sequence's
        let last = prompt[prompt.length - 1];
        for await (const tok of seq.evaluate(prompt, { temperature: 0 })) { last = tok as number; break; }
        if (++firsts === n) started = performance.now();
        await decode(seq, last, timed ? s.nGen : 2, () => { if (started > 0) decoded++; });
      }));
      return decoded / ((performance.now() - started) / 1000);
    };
    await run(false);
    batchedDecodeTps[String(n)] = +(await run(true)).toFixed(1);
  }
  const prefixTtftMs = { cold: NaN, warm: NaN };
  if (s.prefixLen > 0) {
    const prefix = promptIds(s.prefixLen, V, 3000);
    const firstToken = async (seq: any, tokens: number[]) => {
      const t = performance.now();
      for await (const _ of seq.evaluate(tokens, { temperature: 0 })) break;
      return performance.now() - t;
    };
    await firstToken(await fresh(0), promptIds(s.prefixLen + SUFFIX, V, 902)); // first-use allocations of a long batch
    const seq = await fresh(0);
    prefixTtftMs.cold = +(await firstToken(seq, [...prefix, ...promptIds(SUFFIX, V, 3001)])).toFixed(2);
    // keep the prefix's KV, drop the old suffix (and the token generated after it), evaluate the new suffix
    const t = performance.now();
    await seq.eraseContextTokenRanges([{ start: s.prefixLen, end: seq.nextTokenIndex }]);
    await firstToken(seq, promptIds(SUFFIX, V, 3002));
    prefixTtftMs.warm = +(performance.now() - t).toFixed(2);
  }
  const rssMiB = process.memoryUsage().rss / 2 ** 20; // while the model is loaded (mapped pages it touched count)
  for (const seq of pool) seq.dispose();
  await ctx.dispose();
  await model.dispose();
  return { engine: 'llama.cpp', prefillTps: best.prefill, decodeTps: best.decode, rssMiB, loadMs, batchedDecodeTps, prefixTtftMs };
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

const ratio = (a: number | undefined, b: number | undefined): number => (a !== undefined && b ? +(a / b).toFixed(3) : NaN);
const fmtRatio = (r: number): string => (Number.isFinite(r) ? r.toFixed(2) : '-');
const fmt = (v: number | undefined, digits = 1): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

async function main(): Promise<void> {
  const settings: Settings = {
    nPrompt: Number(args.prompt), nGen: Number(args.gen), prefixLen: Number(args.prefix),
    batches: args.batch.split(',').filter(Boolean).map(Number), rounds: Number(args.rounds),
  };
  if (!Number.isInteger(settings.rounds) || settings.rounds < 1) throw new RangeError(`--rounds must be a whole number ≥ 1, got ${args.rounds}`);
  for (const [k, v] of Object.entries({ prompt: settings.nPrompt, gen: settings.nGen })) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${k} must be a whole number ≥ 1, got ${v}`);
  }
  if (!Number.isInteger(settings.prefixLen) || settings.prefixLen < 0) throw new RangeError(`--prefix must be a whole number ≥ 0 (0: no prefix rows), got ${args.prefix}`);
  if (settings.batches.some((n) => !Number.isInteger(n) || n < 1)) throw new RangeError(`--batch must list whole numbers ≥ 1, got ${args.batch}`);
  const threads = Number(args.threads ?? os.availableParallelism());
  if (args.child) {
    let r: ChildResult | { bandwidthGBs: number };
    if (args.child === 'llamacpp') r = await runLlamaCpp(args.model!, settings, threads, Number(args.vocab));
    else if (args.child === 'compiled') r = await runCompiled(args.model!, settings);
    else r = { bandwidthGBs: await measureBandwidth(threads) };
    console.log(`RESULT ${JSON.stringify(r)}`);
    return;
  }
  const models = args.models.split(',') as ModelName[];
  const types = args.types.split(',') as FileType[];
  for (const m of models) if (!(m in MODELS)) throw new RangeError(`--models: unknown model ${JSON.stringify(m)}; choose from ${Object.keys(MODELS).join(', ')}`);
  for (const t of types) if (!FILE_TYPES.includes(t)) throw new RangeError(`--types: unknown type ${JSON.stringify(t)}; choose from ${FILE_TYPES.join(', ')}`);
  const engines = args.engines.split(',');
  for (const e of engines) if (e !== 'compiled' && e !== 'llamacpp') throw new RangeError(`--engines: unknown engine ${JSON.stringify(e)}; choose from compiled, llamacpp (LlamaEngine is retired; its numbers are in bench/RESULTS.md)`);
  const contenders = Number(args.contenders);
  const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
  const child = (kind: string, file: string | null, vocab: number, env: Record<string, string> = {}): any => {
    const argv = [path.join(here, 'llm.ts'), '--child', kind, '--prompt', String(settings.nPrompt), '--gen', String(settings.nGen),
      '--threads', String(threads), '--batch', settings.batches.join(','), '--prefix', String(settings.prefixLen), '--rounds', String(settings.rounds)];
    if (file) argv.push('--model', file, '--vocab', String(vocab));
    const r = spawnSync(tsx, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: 1_800_000 });
    if (r.stderr) process.stderr.write(r.stderr.split('\n').filter((l) => /warm run reused/.test(l)).map((l) => `${l}\n`).join(''));
    const line = r.stdout?.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) {
      console.error(`${kind} on ${file ?? '-'} failed (status ${r.status}, signal ${r.signal}):\n${(r.stderr ?? '').slice(-2000)}`);
      return null;
    }
    return JSON.parse(line.slice(7));
  };

  // generate the files before any contention starts (generation is not what is measured)
  const files = new Map<string, string>();
  for (const name of models) for (const type of types) files.set(`${name}-${type}`, await ensureModel(name, type));

  let contention: Contention | null = null;
  if (args.contend) {
    contention = await startContention(contenders);
    console.log(`--contend: ${contenders} busy-looping process(es) (pids ${contention.pids.join(', ')}) run for the whole benchmark`);
  }
  try {
    const bw = child('bandwidth', null, 0, { INFERJIT_NUM_THREADS: String(threads) });
    const bandwidth: number = bw?.bandwidthGBs ?? 0;
    console.log(`threads: ${threads}; measured streaming read bandwidth (f32 GEMV over 1 GiB): ${bandwidth.toFixed(1)} GB/s`);
    console.log(`prompt ${settings.nPrompt} tokens, decode ${settings.nGen} tokens, greedy; shared prefix ${settings.prefixLen} + ${SUFFIX} tokens; node-llama-cpp with UV_THREADPOOL_SIZE=1\n`);

    const out = {
      bench: 'llm', threads, contend: args.contend ? contenders : 0, bandwidth_gbs: +bandwidth.toFixed(2),
      prefill_tok_s: {} as Record<string, { compiled?: number; llamacpp?: number }>,
      decode_tok_s: {} as Record<string, { compiled?: number; llamacpp?: number }>,
      prefill_ratio_vs_llamacpp: {} as Record<string, number>, decode_ratio_vs_llamacpp: {} as Record<string, number>,
      batched_decode_tok_s: {} as Record<string, Record<string, number>>,
      llamacpp_batched_decode_tok_s: {} as Record<string, Record<string, number>>,
      batched_ratio_vs_llamacpp: {} as Record<string, Record<string, number>>,
      batched_speedup_vs_one_sequence: {} as Record<string, Record<string, number>>,
      prefix_ttft_ms: {} as Record<string, { compiled?: { cold: number; warm: number }; llamacpp?: { cold: number; warm: number } }>,
      decode_overhead_us: {} as Record<string, number>,
    };
    const main: string[] = [], batchedRows: string[] = [], prefixRows: string[] = [], plans: string[] = [];
    for (const name of models) {
      for (const type of types) {
        const key = `${name}-${type}`;
        const file = files.get(key)!;
        const size = fs.statSync(file).size;
        const ref: ChildResult | null = engines.includes('llamacpp') ? child('llamacpp', file, MODELS[name].vocab, { UV_THREADPOOL_SIZE: '1' }) : null;
        const comp: ChildResult | null = engines.includes('compiled') ? child('compiled', file, MODELS[name].vocab, { INFERJIT_NUM_THREADS: String(threads) }) : null;
        const pr = ratio(comp?.prefillTps, ref?.prefillTps), dr = ratio(comp?.decodeTps, ref?.decodeTps);
        out.prefill_tok_s[key] = { compiled: comp ? +comp.prefillTps.toFixed(1) : undefined, llamacpp: ref ? +ref.prefillTps.toFixed(1) : undefined };
        out.decode_tok_s[key] = { compiled: comp ? +comp.decodeTps.toFixed(1) : undefined, llamacpp: ref ? +ref.decodeTps.toFixed(1) : undefined };
        if (Number.isFinite(pr)) out.prefill_ratio_vs_llamacpp[key] = pr;
        if (Number.isFinite(dr)) out.decode_ratio_vs_llamacpp[key] = dr;
        const gbs = comp ? (decodeStepBytes(name, size) * comp.decodeTps) / 1e9 : NaN;
        main.push(`| ${name} | ${type} | ${(size / 2 ** 20).toFixed(0)} | ${fmt(comp?.prefillTps)} | ${fmt(ref?.prefillTps)} | ${fmtRatio(pr)} | `
          + `${fmt(comp?.decodeTps)} | ${fmt(ref?.decodeTps)} | ${fmtRatio(dr)} | ${fmt(gbs)} (${bandwidth && comp ? ((100 * gbs) / bandwidth).toFixed(0) : '-'}%) | `
          + `${fmt(comp?.decodeOverheadUs)} | ${fmt(comp?.rssMiB, 0)} | ${fmt(ref?.rssMiB, 0)} |`);
        if (comp) out.batched_decode_tok_s[key] = comp.batchedDecodeTps;
        if (ref) out.llamacpp_batched_decode_tok_s[key] = ref.batchedDecodeTps;
        if (comp?.decodeOverheadUs !== undefined) out.decode_overhead_us[key] = comp.decodeOverheadUs;
        const br: Record<string, number> = {}, speedup: Record<string, number> = {};
        for (const n of settings.batches) {
          const c = comp?.batchedDecodeTps[String(n)], l = ref?.batchedDecodeTps[String(n)];
          const r = ratio(c, l);
          if (Number.isFinite(r)) br[String(n)] = r;
          const one = comp?.batchedDecodeTps['1'];
          // paired per round where there are rounds (see runCompiled), else the ratio of the single measurements
          const rounds = comp?.batchedRounds;
          const sp = rounds && one ? median(rounds.map((x) => x[String(n)] / x['1'])) : c !== undefined && one ? c / one : NaN;
          if (Number.isFinite(sp)) speedup[String(n)] = +sp.toFixed(2);
          const perRound = rounds && one ? ` (rounds: ${rounds.map((x) => (x[String(n)] / x['1']).toFixed(2)).join(', ')})` : '';
          batchedRows.push(`| ${name} | ${type} | ${n} | ${fmt(c)} | ${fmt(l)} | ${fmtRatio(r)} | ${Number.isFinite(sp) ? sp.toFixed(2) : '-'}${perRound} |`);
        }
        out.batched_ratio_vs_llamacpp[key] = br;
        out.batched_speedup_vs_one_sequence[key] = speedup;
        if (settings.prefixLen > 0) {
          out.prefix_ttft_ms[key] = { compiled: comp?.prefixTtftMs, llamacpp: ref?.prefixTtftMs };
          // time ratio: llama.cpp / compiled (> 1: the compiled path answers sooner)
          const tr = (a: number | undefined, b: number | undefined) => fmtRatio(ratio(b, a));
          prefixRows.push(`| ${name} | ${type} | ${fmt(comp?.prefixTtftMs.cold)} | ${fmt(ref?.prefixTtftMs.cold)} | ${tr(comp?.prefixTtftMs.cold, ref?.prefixTtftMs.cold)} | `
            + `${fmt(comp?.prefixTtftMs.warm)} | ${fmt(ref?.prefixTtftMs.warm)} | ${tr(comp?.prefixTtftMs.warm, ref?.prefixTtftMs.warm)} |`);
        }
        if (comp?.describe) plans.push(`${key}: ${comp.describe}; load ${(comp.loadMs / 1000).toFixed(1)} s`);
      }
    }
    console.log('| model | type | file MiB | compiled prefill tok/s | llama.cpp prefill tok/s | ratio | compiled decode tok/s | llama.cpp decode tok/s | ratio | compiled decode GB/s (% of bw) | step overhead µs | compiled RSS MiB | llama.cpp RSS MiB |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of main) console.log(r);
    if (batchedRows.length) {
      console.log('\naggregate decode tok/s with concurrent sequences:\n');
      console.log('| model | type | sequences | compiled tok/s | llama.cpp tok/s | ratio | compiled vs 1 sequence |');
      console.log('|---|---|---|---|---|---|---|');
      for (const r of batchedRows) console.log(r);
    }
    if (prefixRows.length) {
      console.log(`\ntime to first token with a ${settings.prefixLen}-token shared prefix + ${SUFFIX} new tokens (ms; ratio = llama.cpp time / compiled time):\n`);
      console.log('| model | type | compiled cold | llama.cpp cold | ratio | compiled warm | llama.cpp warm | ratio |');
      console.log('|---|---|---|---|---|---|---|---|');
      for (const r of prefixRows) console.log(r);
    }
    if (plans.length) console.log(`\ncompiled plans:\n${plans.map((p) => `  ${p}`).join('\n')}`);
    console.log(JSON.stringify(out));
  } finally {
    contention?.stop();
  }
}

await main();
