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

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const outDir = path.join(here, 'out');

const MODELS = {
  '110m': { dim: 768, layers: 12, heads: 12, kvHeads: 12, ffn: 2048, vocab: 32000 },
  '1.1b': { dim: 2048, layers: 22, heads: 32, kvHeads: 4, ffn: 5632, vocab: 32000 },
  /** Smoke runs only (checks the script works; its numbers mean nothing). */
  tiny: { dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocab: 512 },
} as const;
type ModelName = keyof typeof MODELS;
type FileType = 'F16' | 'Q8_0' | 'Q4_0';

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

// ---------------------------------------------------------------- seeded model files

/** xorshift32 uniform in [-1, 1): fast enough to fill a billion weights. */
function fillUniform(out: Float32Array, seed: number, scale: number): void {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
}

function toF16(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    // Round to nearest even; the seeded values are normal and well inside f16's range.
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000, exp = ((x >>> 23) & 0xff) - 112, man = x & 0x7fffff;
    if (exp <= 0) { out[i] = sign; continue; }
    let h = sign | (exp << 10) | (man >>> 13);
    const rem = man & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    out[i] = h;
  }
  return new Uint8Array(out.buffer);
}

async function ensureModel(name: ModelName, type: FileType): Promise<string> {
  const file = path.join(outDir, `llama-${name}-${type}.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(outDir, { recursive: true });
  const { writeGguf, gguf } = await import('../src/io/gguf/index.js');
  const { llmAddon, WEIGHT_FORMAT_CODES } = await import('../src/llm/weights.js');
  const native = llmAddon('bench model generation');
  const m = MODELS[name];
  const hd = m.dim / m.heads;
  const t0 = performance.now();
  let seed = 1;
  const encode = (rows: number, cols: number, scale: number): Uint8Array => {
    const v = new Float32Array(rows * cols);
    fillUniform(v, seed++, scale);
    if (type === 'F16') return toF16(v);
    const fmt = type === 'Q8_0' ? 'q8_0' : 'q4_0';
    const bytes = new Uint8Array((rows * cols / 32) * (type === 'Q8_0' ? 34 : 18));
    native.quantizeWeight(WEIGHT_FORMAT_CODES[fmt], v, 0, rows, cols, 32, bytes, null);
    return bytes;
  };
  const norm = (n: number) => { const v = new Float32Array(n); fillUniform(v, seed++, 0.1); for (let i = 0; i < n; i++) v[i] += 1; return v; };
  // Uniform(-a, a) with a = sqrt(3)·std keeps activations of a deep random net bounded (std ~ 1/sqrt(fan-in)).
  const a = (fanIn: number) => Math.sqrt(3 / fanIn);
  const tensors: { name: string; type: string; shape: number[]; data: Uint8Array | Float32Array }[] = [
    { name: 'token_embd.weight', type, shape: [m.vocab, m.dim], data: encode(m.vocab, m.dim, 1) },
    { name: 'output_norm.weight', type: 'F32', shape: [m.dim], data: norm(m.dim) },
    { name: 'output.weight', type, shape: [m.vocab, m.dim], data: encode(m.vocab, m.dim, a(m.dim)) },
  ];
  for (let l = 0; l < m.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, type: 'F32', shape: [m.dim], data: norm(m.dim) },
      { name: `${p}attn_q.weight`, type, shape: [m.heads * hd, m.dim], data: encode(m.heads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_k.weight`, type, shape: [m.kvHeads * hd, m.dim], data: encode(m.kvHeads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_v.weight`, type, shape: [m.kvHeads * hd, m.dim], data: encode(m.kvHeads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_output.weight`, type, shape: [m.dim, m.heads * hd], data: encode(m.dim, m.heads * hd, a(m.dim)) },
      { name: `${p}ffn_norm.weight`, type: 'F32', shape: [m.dim], data: norm(m.dim) },
      { name: `${p}ffn_gate.weight`, type, shape: [m.ffn, m.dim], data: encode(m.ffn, m.dim, a(m.dim)) },
      { name: `${p}ffn_up.weight`, type, shape: [m.ffn, m.dim], data: encode(m.ffn, m.dim, a(m.dim)) },
      { name: `${p}ffn_down.weight`, type, shape: [m.dim, m.ffn], data: encode(m.dim, m.ffn, a(m.ffn)) },
    );
  }
  // A SentencePiece-style vocabulary llama.cpp accepts: unk, bos, eos, 256 byte tokens, then plain pieces.
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); }
  while (tokens.length < m.vocab) { tokens.push(`\u2581w${tokens.length}`); types.push(1); }
  const scores = new Float32Array(m.vocab).map((_, i) => -i);
  writeGguf(file, {
    metadata: {
      'general.architecture': 'llama',
      'general.name': `inferjit-bench-${name}`,
      'general.file_type': gguf.u32({ F16: 1, Q8_0: 7, Q4_0: 2 }[type]),
      'general.quantization_version': gguf.u32(2),
      'llama.context_length': gguf.u32(2048),
      'llama.embedding_length': gguf.u32(m.dim),
      'llama.block_count': gguf.u32(m.layers),
      'llama.feed_forward_length': gguf.u32(m.ffn),
      'llama.rope.dimension_count': gguf.u32(hd),
      'llama.rope.freq_base': gguf.f32(10000),
      'llama.attention.head_count': gguf.u32(m.heads),
      'llama.attention.head_count_kv': gguf.u32(m.kvHeads),
      'llama.attention.layer_norm_rms_epsilon': gguf.f32(1e-5),
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.tokens': tokens,
      'tokenizer.ggml.scores': scores,
      'tokenizer.ggml.token_type': new Int32Array(types),
      'tokenizer.ggml.bos_token_id': gguf.u32(1),
      'tokenizer.ggml.eos_token_id': gguf.u32(2),
      'tokenizer.ggml.unknown_token_id': gguf.u32(0),
    },
    tensors: tensors.map((t) => ({ name: t.name, type: t.type as FileType, shape: t.shape, data: t.data instanceof Float32Array ? t.data : t.data })),
  });
  console.error(`generated ${path.relative(root, file)} (${(fs.statSync(file).size / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return file;
}

/** Seeded prompt ids, identical for both engines (ids past the byte tokens). */
function promptIds(n: number, vocab: number): number[] {
  let s = 12345;
  return Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) >>> 0; return 259 + (s % (vocab - 259)); });
}

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
