// KV-cache storage benchmark: decode speed at a long context with the KV pools stored as f32, f16 or
// int8 (a scale per row and kv head, dequantized inside paged attention), the memory each needs per
// token, and node-llama-cpp (llama.cpp) on the same seeded GGUF file with its default F16 KV cache
// and with a Q8_0 one, same thread count, measured in the same run.
//   npx tsx bench/kv-cache.ts [--model 110m] [--type Q4_0] [--context 2048] [--gen 32] [--batch 1,4]
//     [--kv f16,int8] [--rounds 3] [--threads N] [--engines kernel,compiled,llamacpp]
// kernel: the paged_attention plan kernel alone, one decode token per sequence at context --context,
// over the model's layers' pools in turn (as a decode step reads them: a layer's pool is not in
// cache when its turn comes), best of 20 rounds; the rows are the model's attention per decode step.
// Each sequence's prompt fills the context up to --context − --gen; decode tok/s is timed from every
// sequence's first token to the end, so it covers decode steps at context --context − --gen ..
// --context only. Our engines prefill each prompt once (warm-up) and the timed rounds reuse those
// pages through the prefix cache, rounds alternating between the KV dtypes so a load change on the
// shared machine hits every dtype alike. The ratio that matters is int8 / f16 of the same round.
// Ends with a JSON line {"bench":"kv-cache", ...}.
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { MODELS, ensureModel, promptIds, type ModelName, type FileType } from './lib/llm-models.js';
import { setNumThreads } from '../src/backends/cpu/index.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: '110m' }, type: { type: 'string', default: 'Q4_0' },
    context: { type: 'string', default: '2048' }, gen: { type: 'string', default: '32' },
    batch: { type: 'string', default: '1,4' }, kv: { type: 'string', default: 'f16,int8' },
    rounds: { type: 'string', default: '3' }, threads: { type: 'string' }, engines: { type: 'string', default: 'kernel,compiled,llamacpp' },
  },
});
const name = args.model as ModelName, type = args.type as FileType;
const context = Number(args.context), gen = Number(args.gen), rounds = Number(args.rounds);
const batches = args.batch!.split(',').map(Number);
const kvs = args.kv!.split(',') as ('f32' | 'f16' | 'int8')[];
const threads = Number(args.threads ?? Math.max(1, Math.min(os.availableParallelism(), 16)));
const engines = args.engines!.split(',');
if (!(name in MODELS)) throw new RangeError(`--model: one of ${Object.keys(MODELS).join(', ')}`);
if (!(gen > 1 && context > gen + 16)) throw new RangeError('--gen must be > 1 and --context > --gen + 16');
const promptLen = context - gen;
const m = MODELS[name];
const file = await ensureModel(name, type);
const V = m.vocab;
setNumThreads(threads);

/** Aggregate decode tok/s of `n` concurrent sequences, timed from the last sequence's first token. */
async function decodeRate(generate: (i: number, onToken: () => void) => Promise<unknown>, n: number): Promise<number> {
  let started = 0, firsts = 0, decoded = 0;
  const seen = new Set<number>();
  await Promise.all(Array.from({ length: n }, (_, i) => generate(i, () => {
    if (!seen.has(i)) { seen.add(i); if (++firsts === n) started = performance.now(); } else if (started > 0) decoded++;
  })));
  return decoded / ((performance.now() - started) / 1000);
}

// ------------------------------------------------------------------ the attention kernel alone
const kernelMs: Record<string, Record<string, number>> = {};
if (engines.includes('kernel')) {
  const { randn, fromArray, ops, Tensor } = await import('../src/index.js');
  const { trace } = await import('../src/trace/index.js');
  const { optimize } = await import('../src/passes/index.js');
  const { PlanExecutable } = await import('../src/backends/cpu/plan/executable.js');
  type T = ReturnType<typeof randn>;
  const hd = m.dim / m.heads, BS = 16, MB = Math.ceil(context / BS);
  for (const b of batches) {
    const NB = MB * b;
    const i32 = (v: Int32Array, shape: number[]) => fromArray(v, shape, 'i32');
    const q = randn([b, m.heads, hd], { seed: 1 });
    const meta = [i32(Int32Array.from({ length: b * MB }, (_, i) => i), [b, MB]), i32(new Int32Array(b).fill(context), [b]), i32(Int32Array.from({ length: b + 1 }, (_, i) => i), [b + 1])];
    // the pools are session state written by kv_write (here of padding rows, slot −1: nothing), as in the model's step
    const pad = [randn([b, m.kvHeads, hd], { seed: 3 }), i32(new Int32Array(b).fill(-1), [b])];
    const step = (qq: T, k: T, v: T, bt: T, sl: T, qs: T, r: T, sm: T) => ops.pagedAttention(qq, ops.kvWrite(k, r, sm), ops.kvWrite(v, r, sm), bt, sl, qs);
    const allSlots = i32(Int32Array.from({ length: NB * BS }, (_, i) => i), [NB * BS]);
    const runs: Record<string, (() => void)[]> = {};
    for (const kv of kvs) {
      runs[kv] = [];
      for (let l = 0; l < m.layers; l++) {
        const pool = (seed: number) => {
          const p = kv === 'int8' ? Tensor.empty('i8', [NB, m.kvHeads, BS, hd + 4]) : Tensor.empty(kv, [NB, m.kvHeads, BS, hd]);
          ops.kvWrite(p, randn([NB * BS, m.kvHeads, hd], { seed }), allSlots);
          return p;
        };
        const args = [q, pool(10 + l), pool(100 + l), ...meta, ...pad];
        const t = trace(step, args);
        const exe = new PlanExecutable(optimize(t.graph), t.constants);
        if (exe.path !== 'plan') throw new Error(`kernel bench: ${exe.describe()}`);
        runs[kv].push(() => { exe.run(args); });
      }
    }
    const best: Record<string, number> = Object.fromEntries(kvs.map((k) => [k, Infinity]));
    for (let r = 0; r < 20; r++) {
      for (const kv of kvs) {
        const t = performance.now();
        for (const run of runs[kv]) run();
        best[kv] = Math.min(best[kv], performance.now() - t);
      }
    }
    for (const kv of kvs) (kernelMs[kv] ??= {})[b] = +best[kv].toFixed(3);
    process.stderr.write(`kernel batch ${b}: ${kvs.map((k) => `${k} ${best[k].toFixed(2)} ms`).join(', ')}\n`);
  }
}

// ------------------------------------------------------------------ ours
const ours: Record<string, { bytesPerToken: number; poolMiB: number; tps: Record<string, number[]> }> = {};
if (engines.includes('compiled')) {
  const { loadCausalLM } = await import('../src/llm/models/index.js');
  const maxSeqs = Math.max(...batches);
  const built = kvs.map((kv) => {
    // room for every prompt's cached pages plus the running sequences' new ones (no eviction between rounds)
    const numBlocks = maxSeqs * Math.ceil(context / 16) + 64;
    const { engine } = loadCausalLM(file, { maxContext: context, maxSeqs, maxStepTokens: 512, kvDtype: kv, numBlocks, blockSize: 16 });
    const pools = [...engine.kPools, ...engine.vPools];
    const bytes = pools.reduce((a, p) => a + p.data.byteLength, 0);
    const slots = engine.numBlocks * engine.blockSize;
    ours[kv] = { bytesPerToken: bytes / slots, poolMiB: bytes / 2 ** 20, tps: {} };
    return { kv, engine };
  });
  const greedy = { temperature: 0 };
  const prompt = (i: number) => promptIds(promptLen, V, 7000 + i);
  for (const { kv, engine } of built) {
    const t = performance.now();
    // prefill every prompt once (pages stay in the prefix cache) and lower each batch's decode buckets
    for (let i = 0; i < maxSeqs; i++) await engine.generate(prompt(i), { ...greedy, maxTokens: 2 });
    for (const n of batches) await Promise.all(Array.from({ length: n }, (_, i) => engine.generate(prompt(i), { ...greedy, maxTokens: 3 })));
    process.stderr.write(`compiled ${kv}: warm-up (${maxSeqs} prefills of ${promptLen} tokens) ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
  for (let r = 0; r < rounds; r++) {
    for (const n of batches) {
      for (const { kv, engine } of built) {
        const tps = await decodeRate((i, on) => engine.generate(prompt(i), { ...greedy, maxTokens: gen }, on), n);
        (ours[kv].tps[n] ??= []).push(tps);
        process.stderr.write(`round ${r} batch ${n} ${kv}: ${tps.toFixed(1)} tok/s\n`);
      }
    }
  }
}

// ------------------------------------------------------------------ llama.cpp
const peer: Record<string, Record<string, number> | string> = {};
if (engines.includes('llamacpp')) {
  const { getLlama } = await import(process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  for (const kvType of ['F16', 'Q8_0']) {
    try {
      const n = Math.max(...batches);
      const ctx = await model.createContext({
        contextSize: context + 64, batchSize: 512, threads, sequences: n,
        experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType, flashAttention: kvType !== 'F16',
      });
      const seqs: any[] = Array.from({ length: n }, () => ctx.getSequence());
      const rates: Record<string, number> = {};
      for (const b of batches) {
        let best = 0;
        for (let r = 0; r < Math.max(1, rounds - 1); r++) {
          for (let i = 0; i < b; i++) { await seqs[i].clearHistory(); await seqs[i].evaluateWithoutGeneratingNewTokens(promptIds(promptLen - 1, V, 7000 + i)); }
          best = Math.max(best, await decodeRate(async (i, on) => {
            let k = 0;
            for await (const _ of seqs[i].evaluate([promptIds(promptLen, V, 7000 + i)[promptLen - 1]], { temperature: 0 })) { on(); if (++k >= gen) break; }
          }, b));
        }
        rates[b] = +best.toFixed(1);
        process.stderr.write(`llama.cpp ${kvType} KV batch ${b}: ${best.toFixed(1)} tok/s\n`);
      }
      peer[kvType] = rates;
      await ctx.dispose();
    } catch (e) {
      peer[kvType] = `failed: ${(e as Error).message.split('\n')[0]}`;
      process.stderr.write(`llama.cpp ${kvType} KV: ${peer[kvType]}\n`);
    }
  }
}

// ------------------------------------------------------------------ report
const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
console.log(`\n${name} ${type}, decode of ${gen} tokens after a ${promptLen}-token prompt (context up to ${context}), ${threads} threads; machine: ${os.cpus()[0]?.model ?? '?'} (shared)\n`);
console.log('| KV storage | bytes / token (all layers, K+V) | ' + batches.map((b) => `decode tok/s, batch ${b} (median of ${rounds})`).join(' | ') + ' |');
console.log('|---|---|' + batches.map(() => '---|').join(''));
for (const kv of Object.keys(ours)) {
  console.log(`| ours ${kv} | ${Math.round(ours[kv].bytesPerToken)} | ` + batches.map((b) => median(ours[kv].tps[b]).toFixed(1)).join(' | ') + ' |');
}
for (const [kv, r] of Object.entries(peer)) console.log(`| llama.cpp ${kv} | | ` + batches.map((b) => (typeof r === 'string' ? r : String(r[b]))).join(' | ') + ' |');
const ratios: Record<string, number> = {};
if (kernelMs.int8 && kernelMs.f16) {
  console.log(`\npaged_attention over all ${m.layers} layers' pools, one decode token per sequence at context ${context} (best of 20, ms):`);
  for (const kv of Object.keys(kernelMs)) console.log(`  ${kv}: ` + batches.map((b) => `batch ${b} ${kernelMs[kv][b]}`).join(', '));
  for (const b of batches) {
    ratios[`kernel_int8_vs_f16_batch${b}`] = +(kernelMs.f16[b] / kernelMs.int8[b]).toFixed(3);
    console.log(`  int8 vs f16 attention speed, batch ${b}: ${(kernelMs.f16[b] / kernelMs.int8[b]).toFixed(2)}×`);
  }
}
if (ours.int8 && ours.f16) {
  for (const b of batches) {
    // per round (same load), then the median
    const per = ours.int8.tps[b].map((x, i) => x / ours.f16.tps[b][i]);
    ratios[`int8_vs_f16_batch${b}`] = +median(per).toFixed(3);
    console.log(`int8 / f16 decode, batch ${b}: ${median(per).toFixed(2)}× (per round: ${per.map((x) => x.toFixed(2)).join(', ')})`);
  }
}
for (const b of batches) {
  const p = peer.F16;
  if (ours.int8 && p && typeof p !== 'string') {
    ratios[`int8_vs_llamacpp_f16_batch${b}`] = +(median(ours.int8.tps[b]) / p[b]).toFixed(3);
    console.log(`ours int8 / llama.cpp F16 KV, batch ${b}: ${(median(ours.int8.tps[b]) / p[b]).toFixed(2)}×`);
  }
}
console.log(JSON.stringify({
  bench: 'kv-cache', model: name, type, context, gen, threads, batches,
  ours: Object.fromEntries(Object.entries(ours).map(([k, v]) => [k, { bytes_per_token: Math.round(v.bytesPerToken), pool_mib: +v.poolMiB.toFixed(1), decode_tps: Object.fromEntries(batches.map((b) => [b, +median(v.tps[b]).toFixed(1)])) }])),
  attention_kernel_ms: kernelMs, llamacpp: peer, ratios,
}));
