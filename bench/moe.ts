// Mixture-of-experts benchmark: Mixtral-shaped Q4_0 GGUF (8 experts, top-2) through the model's
// own code (src/llm/models/mixtral.ts: Llama attention + the moe op, compiled by inferenceJit into
// one native plan and served by StepEngine) vs node-llama-cpp (llama.cpp) on the same file, same
// thread count, each engine in its own child process, one after the other.
//   npx tsx bench/moe.ts [--models mini] [--prompt 128] [--gen 64] [--threads N] [--engines compiled,llamacpp]
// Models (seeded weights, generated once into bench/out/, gitignored; Q4_0 everywhere except the norms
// and the F32 router, as llama.cpp's quantizer leaves ffn_gate_inp):
//   mini: dim 1024, 8 layers, 8 heads (2 kv, head 128), expert ffn 3584, 8 experts top-2, vocab 32000
//         (Mixtral 8x7B's proportions at 1/4 width, ~0.8 B parameters)
//   tiny: smoke runs only (checks the script works; its numbers mean nothing)
// Prints a markdown table with prefill and decode tok/s, the ratios vs llama.cpp, the moe kernel's
// share of a compiled decode step, and a final JSON line.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const outDir = path.join(here, 'out');

const MODELS = {
  mini: { dim: 1024, layers: 8, heads: 8, kvHeads: 2, ffn: 3584, experts: 8, used: 2, vocab: 32000 },
  tiny: { dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, experts: 8, used: 2, vocab: 512 },
} as const;
type ModelName = keyof typeof MODELS;

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'mini' },
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '64' },
    threads: { type: 'string' },
    child: { type: 'string' },
    model: { type: 'string' },
    engines: { type: 'string', default: 'compiled,llamacpp' },
  },
});

/** xorshift32 uniform in [-scale, scale). */
function fillUniform(out: Float32Array, seed: number, scale: number): void {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
}

async function ensureModel(name: ModelName): Promise<string> {
  const file = path.join(outDir, `mixtral-${name}-Q4_0.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(outDir, { recursive: true });
  const { writeGguf, gguf } = await import('../src/io/gguf/index.js');
  const { llmAddon, WEIGHT_FORMAT_CODES } = await import('../src/llm/weights.js');
  const native = llmAddon('bench model generation');
  const m = MODELS[name];
  const hd = m.dim / m.heads;
  const t0 = performance.now();
  let seed = 1;
  // Q4_0 blocks of a [rows, cols] matrix (an expert stack is [E·rows, cols]: experts' rows in order)
  const q4 = (rows: number, cols: number, scale: number): Uint8Array => {
    const v = new Float32Array(rows * cols);
    fillUniform(v, seed++, scale);
    const bytes = new Uint8Array((rows * cols / 32) * 18);
    native.quantizeWeight(WEIGHT_FORMAT_CODES.q4_0, v, 0, rows, cols, 32, bytes, null);
    return bytes;
  };
  const f32 = (n: number, scale: number, offset = 0) => { const v = new Float32Array(n); fillUniform(v, seed++, scale); for (let i = 0; i < n; i++) v[i] += offset; return v; };
  // Uniform(-a, a) with a = sqrt(3 / fan-in) keeps activations bounded through the layers
  const a = (fanIn: number) => Math.sqrt(3 / fanIn);
  type T = { name: string; type: 'Q4_0' | 'F32'; shape: number[]; data: Uint8Array | Float32Array };
  const tensors: T[] = [
    { name: 'token_embd.weight', type: 'Q4_0', shape: [m.vocab, m.dim], data: q4(m.vocab, m.dim, 1) },
    { name: 'output_norm.weight', type: 'F32', shape: [m.dim], data: f32(m.dim, 0.1, 1) },
    { name: 'output.weight', type: 'Q4_0', shape: [m.vocab, m.dim], data: q4(m.vocab, m.dim, a(m.dim)) },
  ];
  for (let l = 0; l < m.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, type: 'F32', shape: [m.dim], data: f32(m.dim, 0.1, 1) },
      { name: `${p}attn_q.weight`, type: 'Q4_0', shape: [m.heads * hd, m.dim], data: q4(m.heads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_k.weight`, type: 'Q4_0', shape: [m.kvHeads * hd, m.dim], data: q4(m.kvHeads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_v.weight`, type: 'Q4_0', shape: [m.kvHeads * hd, m.dim], data: q4(m.kvHeads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_output.weight`, type: 'Q4_0', shape: [m.dim, m.heads * hd], data: q4(m.dim, m.heads * hd, a(m.dim)) },
      { name: `${p}ffn_norm.weight`, type: 'F32', shape: [m.dim], data: f32(m.dim, 0.1, 1) },
      { name: `${p}ffn_gate_inp.weight`, type: 'F32', shape: [m.experts, m.dim], data: f32(m.experts * m.dim, 4 * a(m.dim)) },
      { name: `${p}ffn_gate_exps.weight`, type: 'Q4_0', shape: [m.experts, m.ffn, m.dim], data: q4(m.experts * m.ffn, m.dim, a(m.dim)) },
      { name: `${p}ffn_up_exps.weight`, type: 'Q4_0', shape: [m.experts, m.ffn, m.dim], data: q4(m.experts * m.ffn, m.dim, a(m.dim)) },
      { name: `${p}ffn_down_exps.weight`, type: 'Q4_0', shape: [m.experts, m.dim, m.ffn], data: q4(m.experts * m.dim, m.ffn, a(m.ffn)) },
    );
  }
  // A SentencePiece-style vocabulary llama.cpp accepts: unk, bos, eos, 256 byte tokens, then plain pieces.
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); }
  while (tokens.length < m.vocab) { tokens.push(`\u2581w${tokens.length}`); types.push(1); }
  writeGguf(file, {
    metadata: {
      'general.architecture': 'llama',
      'general.name': `inferjit-bench-mixtral-${name}`,
      'general.file_type': gguf.u32(2),
      'general.quantization_version': gguf.u32(2),
      'llama.context_length': gguf.u32(2048),
      'llama.embedding_length': gguf.u32(m.dim),
      'llama.block_count': gguf.u32(m.layers),
      'llama.feed_forward_length': gguf.u32(m.ffn),
      'llama.expert_count': gguf.u32(m.experts),
      'llama.expert_used_count': gguf.u32(m.used),
      'llama.rope.dimension_count': gguf.u32(hd),
      'llama.rope.freq_base': gguf.f32(1e6),
      'llama.attention.head_count': gguf.u32(m.heads),
      'llama.attention.head_count_kv': gguf.u32(m.kvHeads),
      'llama.attention.layer_norm_rms_epsilon': gguf.f32(1e-5),
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.tokens': tokens,
      'tokenizer.ggml.scores': new Float32Array(m.vocab).map((_, i) => -i),
      'tokenizer.ggml.token_type': new Int32Array(types),
      'tokenizer.ggml.bos_token_id': gguf.u32(1),
      'tokenizer.ggml.eos_token_id': gguf.u32(2),
      'tokenizer.ggml.unknown_token_id': gguf.u32(0),
    },
    tensors,
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
  /** compiled: the plan, and the moe kernel's share of a decode step's native time. */
  describe?: string; moeShare?: number;
}

type Profiled = { profile(reset?: boolean): { runs: number; byKernel: Record<string, number> } | null };

/** The compiled Mixtral step: prefill and single-sequence decode, best of 2 after a warm-up. */
async function runCompiled(file: string, nPrompt: number, nGen: number, threads: number): Promise<ChildResult> {
  const { loadCausalLM, PagedMixtral } = await import('../src/llm/index.js');
  const { setNumThreads } = await import('../src/backends/cpu/index.js');
  setNumThreads(threads);
  const t0 = performance.now();
  const { model, engine } = loadCausalLM(file, { maxContext: nPrompt + nGen + 16, maxSeqs: 1, maxStepTokens: 512, kvDtype: 'f16' });
  if (!(model instanceof PagedMixtral)) throw new Error(`${file} did not load as PagedMixtral`);
  const loadMs = performance.now() - t0;
  const prompt = promptIds(nPrompt, model.config.vocabSize);
  // warm-up: traces, compiles and lowers the buckets the runs use
  await engine.generate(prompt, { maxTokens: 4 });
  const exe = (engine as unknown as { compiled: { compiledEntries(): { executable: Profiled }[] } }).compiled.compiledEntries()[0].executable;
  let best = { prefill: 0, decode: 0 };
  let moeShare = 0;
  for (let rep = 0; rep < 2; rep++) {
    const t = performance.now();
    let first = 0;
    await engine.generate(prompt, { maxTokens: nGen + 1 }, () => { if (first === 0) { first = performance.now(); exe.profile(true); } });
    const end = performance.now();
    best = { prefill: Math.max(best.prefill, nPrompt / ((first - t) / 1000)), decode: Math.max(best.decode, nGen / ((end - first) / 1000)) };
    const prof = exe.profile(false);
    if (prof && prof.runs > 0) {
      const total = Object.values(prof.byKernel).reduce((x, y) => x + y, 0);
      if (total > 0) moeShare = (prof.byKernel.moe ?? 0) / total;
    }
  }
  return { engine: 'compiled', prefillTps: best.prefill, decodeTps: best.decode, rssMiB: process.memoryUsage().rss / 2 ** 20, loadMs, describe: engine.describe(), moeShare };
}

async function runLlamaCpp(file: string, nPrompt: number, nGen: number, threads: number): Promise<ChildResult> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  const { getLlama } = await import(entry);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: nPrompt + nGen + 64, batchSize: Math.max(512, nPrompt), threads });
  const loadMs = performance.now() - t0;
  // the vocabulary size from the file itself (identical prompt ids for both engines)
  const { readGguf } = await import('../src/io/gguf/index.js');
  const prompt = promptIds(nPrompt, readGguf(file).tensorInfo('token_embd.weight').shape[0]);
  let best = { prefill: 0, decode: 0 };
  // rep 0 warms up (first-use allocations), as the compiled engine's warm-up call does
  for (let rep = 0; rep < 3; rep++) {
    const seq = ctx.getSequence();
    let t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    const prefill = nPrompt / ((performance.now() - t) / 1000);
    let last = prompt[nPrompt - 1];
    let count = 0;
    t = performance.now();
    while (count < nGen) {
      // greedy; the generator may end at an end-of-generation token: continue from it
      for await (const tok of seq.evaluate([last], { temperature: 0 })) {
        last = tok as number;
        if (++count >= nGen) break;
      }
    }
    const decode = nGen / ((performance.now() - t) / 1000);
    seq.dispose();
    if (rep > 0) best = { prefill: Math.max(best.prefill, prefill), decode: Math.max(best.decode, decode) };
  }
  const rssMiB = process.memoryUsage().rss / 2 ** 20;
  await ctx.dispose();
  await model.dispose();
  return { engine: 'llama.cpp', prefillTps: best.prefill, decodeTps: best.decode, rssMiB, loadMs };
}

function runChild(engine: string, file: string, threads: number): ChildResult | null {
  const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
  const r = spawnSync(tsx, [path.join(here, 'moe.ts'), '--child', engine, '--model', file,
    '--prompt', String(args.prompt), '--gen', String(args.gen), '--threads', String(threads)], {
    cwd: root, encoding: 'utf8', maxBuffer: 1 << 26, timeout: 900_000,
    // node-llama-cpp tuned: its own threads do the work, libuv's pool only adds contention
    env: { ...process.env, UV_THREADPOOL_SIZE: engine === 'llamacpp' ? '1' : process.env.UV_THREADPOOL_SIZE, INFERJIT_NUM_THREADS: String(threads) },
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) {
    console.error(`${engine} on ${path.basename(file)} failed (exit ${r.status}):\n${r.stderr.slice(-2000)}`);
    return null;
  }
  return JSON.parse(line.slice(7)) as ChildResult;
}

async function main(): Promise<void> {
  const nPrompt = Number(args.prompt), nGen = Number(args.gen);
  const threads = Number(args.threads ?? (await import('node:os')).availableParallelism());
  if (args.child) {
    const r = args.child === 'llamacpp' ? await runLlamaCpp(args.model!, nPrompt, nGen, threads) : await runCompiled(args.model!, nPrompt, nGen, threads);
    console.log(`RESULT ${JSON.stringify(r)}`);
    return;
  }
  const names = args.models.split(',') as ModelName[];
  for (const n of names) if (!(n in MODELS)) throw new Error(`bench/moe: unknown model ${JSON.stringify(n)}; choose from ${Object.keys(MODELS).join(', ')}`);
  const engines = args.engines.split(',');
  console.log(`Mixtral-shaped Q4_0 (8 experts, top-2); prompt ${nPrompt} tokens, decode ${nGen} tokens, greedy, ${threads} threads; node-llama-cpp with UV_THREADPOOL_SIZE=1\n`);
  console.log('| model | file MiB | compiled prefill tok/s | llama.cpp prefill tok/s | ratio | compiled decode tok/s | llama.cpp decode tok/s | ratio | moe share of decode step |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  const decodeRatio: Record<string, number> = {}, prefillRatio: Record<string, number> = {}, raw: Record<string, unknown> = {};
  let plan = '';
  for (const name of names) {
    const file = await ensureModel(name);
    const ours = engines.includes('compiled') ? runChild('compiled', file, threads) : null;
    const ref = engines.includes('llamacpp') ? runChild('llamacpp', file, threads) : null;
    const pr = ours && ref ? ours.prefillTps / ref.prefillTps : NaN, dr = ours && ref ? ours.decodeTps / ref.decodeTps : NaN;
    if (Number.isFinite(pr)) prefillRatio[name] = +pr.toFixed(3);
    if (Number.isFinite(dr)) decodeRatio[name] = +dr.toFixed(3);
    raw[name] = { compiled: ours, llamacpp: ref };
    const f = (x?: number) => (x === undefined ? '-' : x.toFixed(1));
    console.log(`| ${name} | ${(fs.statSync(file).size / 2 ** 20).toFixed(0)} | ${f(ours?.prefillTps)} | ${f(ref?.prefillTps)} | ${Number.isFinite(pr) ? pr.toFixed(2) : '-'} | `
      + `${f(ours?.decodeTps)} | ${f(ref?.decodeTps)} | ${Number.isFinite(dr) ? dr.toFixed(2) : '-'} | ${ours?.moeShare !== undefined ? `${(100 * ours.moeShare).toFixed(0)}%` : '-'} |`);
    if (ours?.describe) plan = ours.describe;
  }
  if (plan) console.log(`\ncompiled step: ${plan}`);
  console.log(JSON.stringify({ bench: 'moe', threads, prompt: nPrompt, gen: nGen, decode_ratio_vs_llamacpp: decodeRatio, prefill_ratio_vs_llamacpp: prefillRatio, results: raw }));
}

await main();
