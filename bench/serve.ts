// Serving benchmark: closed-loop streaming clients against `inferjit serve` (the compiled decoder
// behind the continuous-batching scheduler) and against node-llama-cpp serving the same load with
// the same number of parallel sequences in one context (llama.cpp's own batching), each server in
// its own child process, one after the other (they never share cores).
//   npx tsx bench/serve.ts [--models 110m,1.1b] [--type Q4_0] [--concurrency 1,4,16,64]
//     [--prompt 128] [--gen 64] [--requests 3] [--threads N] [--engines inferjit,llamacpp]
//     [--max-batched-tokens 512]   (inferjit's token budget per step; llama.cpp's batch size is 512)
//     [--prefill-chunk N]          (inferjit: most prompt tokens per step while others decode; default the scheduler's)
//     [--long-prompt N] [--long-clients K]  (the "long prompts keep arriving" mode: K more clients send
//                                  N-token prompts for one token each, back to back, all through the
//                                  measured rounds; they are not measured, the c streams are)
//     [--max-decode-slowdown F]   (inferjit: a step with decodes takes at most F× the decodes alone; 0: off; default the scheduler's)
//     [--prefill-floor N]          (inferjit: prompt tokens a step may always carry beside decodes, whatever F says; default the scheduler's)
//     [--no-warmup]                (inferjit: compile step shapes on first use instead of at start-up; the old behaviour)
// Each of `c` clients sends a streaming completion (a distinct seeded prompt of --prompt tokens,
// --gen tokens, greedy, ignore_eos), reads it to the end and at once sends the next, --requests
// times; new prompts keep arriving while others decode, so chunked prefill is at work. Per
// concurrency it reports aggregate generated tok/s (all tokens / wall time of the round), time to
// first token p50/p99 and inter-token latency p50/p99, the ratios vs node-llama-cpp, the 1.1B
// scaling (tok/s at 16 streams / 1 stream) and p99 ITL at 16 streams / 1 stream; final JSON line
// {"bench":"serve", ...}. Models: the seeded GGUF files of bench/lib/llm-models.ts ('tiny' for smoke runs).
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MODELS, ensureModel, type ModelName, type FileType } from './lib/llm-models.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: '110m,1.1b' },
    type: { type: 'string', default: 'Q4_0' },
    concurrency: { type: 'string', default: '1,4,16,64' },
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '64' },
    requests: { type: 'string', default: '3' },
    threads: { type: 'string' },
    engines: { type: 'string', default: 'inferjit,llamacpp' },
    'max-batched-tokens': { type: 'string', default: '512' },
    'prefill-chunk': { type: 'string' },
    'long-prompt': { type: 'string', default: '0' },
    'long-clients': { type: 'string', default: '1' },
    'no-warmup': { type: 'boolean', default: false },
    'max-decode-slowdown': { type: 'string' },
    'prefill-floor': { type: 'string' },
    // child mode
    child: { type: 'string' },
    file: { type: 'string' },
    seqs: { type: 'string' },
    ctx: { type: 'string' },
  },
});

const positive = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};

/** Seeded prompt ids (past the byte tokens), distinct per request so no engine gets prefix-cache hits. */
function promptFor(request: number, n: number, vocab: number): number[] {
  let s = (request + 1) * 2654435761 >>> 0;
  return [1, ...Array.from({ length: n - 1 }, () => { s = (s * 1103515245 + 12345) >>> 0; return 259 + (s % (vocab - 259)); })];
}

// ---------------------------------------------------------------- servers (child processes)

/** `inferjit serve` programmatically: the continuous-batching scheduler over the compiled decoder. */
async function serveInferjit(file: string, seqs: number, ctx: number, threads: number, budget: number, prefillChunk: number | undefined): Promise<void> {
  const { createServer } = await import('../src/serve/index.js');
  const server = createServer({
    model: file, modelName: 'bench',
    engine: { threads, maxContext: ctx, cacheTokens: seqs * ctx, kvDtype: 'f16' },
    scheduler: { maxRunning: seqs, maxBatchedTokens: budget, prefillChunk, maxDecodeSlowdown: args['max-decode-slowdown'] === undefined ? undefined : Number(args['max-decode-slowdown']), prefillFloor: args['prefill-floor'] === undefined ? undefined : Number(args['prefill-floor']), maxWaiting: 4096, maxWaitingTokens: 1 << 24 },
    warmup: !args['no-warmup'],
  });
  const url = await server.listen(0, '127.0.0.1');
  await server.ready;
  process.stdout.write(`LISTENING ${url}\n`);
  await new Promise<void>((r) => process.stdin.on('close', r).resume());
  await server.close();
}

/**
 * node-llama-cpp behind a minimal HTTP server speaking the same streaming completions: one context
 * with `seqs` sequences (llama.cpp batches the sequences that evaluate at the same time), one
 * sequence per request in flight.
 */
async function serveLlamaCpp(file: string, seqs: number, ctxSize: number, threads: number): Promise<void> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  const { getLlama } = await import(entry);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  // contextSize is per sequence in node-llama-cpp 3 (the context holds contextSize × sequences cells)
  const context = await model.createContext({ contextSize: ctxSize, sequences: seqs, batchSize: 512, threads });
  type Seq = { clearHistory(): Promise<void>; evaluate(tokens: number[], o: object): AsyncGenerator<number> };
  const free: Seq[] = Array.from({ length: seqs }, () => context.getSequence() as Seq);
  const waiters: ((s: Seq) => void)[] = [];
  const take = () => new Promise<Seq>((r) => { const s = free.pop(); if (s) r(s); else waiters.push(r); });
  const give = (s: Seq) => { const w = waiters.shift(); if (w) w(s); else free.push(s); };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', async () => {
      const b = JSON.parse(body) as { prompt: number[]; max_tokens: number };
      const seq = await take();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let count = 0;
      try {
        await seq.clearHistory();
        let input = b.prompt;
        while (count < b.max_tokens) {
          // greedy; the generator may end at an end-of-generation token: continue from it (ignore_eos)
          for await (const tok of seq.evaluate(input, { temperature: 0 })) {
            res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: model.detokenize([tok]) || `<${tok}>`, finish_reason: null }] })}\n\n`);
            input = [tok];
            if (++count >= b.max_tokens) break;
          }
        }
        res.write(`data: ${JSON.stringify({ choices: [], usage: { completion_tokens: count } })}\n\n`);
        res.end('data: [DONE]\n\n');
      } finally {
        give(seq);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`LISTENING http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
  await new Promise<void>((r) => process.stdin.on('close', r).resume());
  server.close();
  await context.dispose();
  await model.dispose();
}

// ---------------------------------------------------------------- clients (this process)

interface Sample { tokens: number; ttftMs: number; itlMs: number[] }

/** One streaming request; token arrival times from the SSE chunks. */
async function request(url: string, prompt: number[], gen: number): Promise<Sample> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench', prompt, max_tokens: gen, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  if (!r.ok || !r.body) throw new Error(`the server answered ${r.status}: ${await r.text()}`);
  const times: number[] = [];
  let usage = -1, buffer = '';
  const decoder = new TextDecoder();
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    const now = performance.now();
    buffer += decoder.decode(part, { stream: true });
    let at: number;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      if (!event.startsWith('data: {')) continue;
      const chunk = JSON.parse(event.slice(6)) as { choices: { text?: string; finish_reason: string | null }[]; usage?: { completion_tokens: number }; error?: { message: string } };
      if (chunk.error) throw new Error(`stream error: ${chunk.error.message}`);
      if (chunk.usage) usage = chunk.usage.completion_tokens;
      if (chunk.choices[0]?.text) times.push(now);
    }
  }
  if (usage !== gen) throw new Error(`a request generated ${usage} tokens, expected ${gen}`);
  return { tokens: usage, ttftMs: times[0] - t0, itlMs: times.slice(1).map((t, i) => t - times[i]) };
}

const pct = (sorted: number[], q: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);

interface LoadResult { concurrency: number; longPrompts: number; tokS: number; ttftP50: number; ttftP99: number; itlP50: number; itlP99: number; requests: number }

/** Background load: `k` clients sending `len`-token prompts for one token each until `stop` resolves. */
function longPrompts(url: string, k: number, len: number, vocab: number, firstRequest: number): { stop(): Promise<number> } {
  let stopped = false, sent = 0, next = firstRequest;
  const loops = Array.from({ length: k }, async () => {
    while (!stopped) { await request(url, promptFor(next++, len, vocab), 1); sent++; }
  });
  return { async stop() { stopped = true; await Promise.all(loops); return sent; } };
}

/** `c` closed-loop clients, `perClient` requests each (and the long-prompt clients, when asked, meanwhile). */
async function load(url: string, c: number, perClient: number, promptLen: number, gen: number, vocab: number, firstRequest: number, long = { len: 0, clients: 0 }): Promise<LoadResult> {
  const samples: Sample[] = [];
  let next = firstRequest;
  const background = long.len > 0 ? longPrompts(url, long.clients, long.len, vocab, 2_000_000_000 + firstRequest) : null;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    for (let i = 0; i < perClient; i++) samples.push(await request(url, promptFor(next++, promptLen, vocab), gen));
  }));
  const wall = (performance.now() - t0) / 1000;
  const longSent = background ? await background.stop() : 0;
  const ttft = samples.map((s) => s.ttftMs).sort((a, b) => a - b);
  const itl = samples.flatMap((s) => s.itlMs).sort((a, b) => a - b);
  const r2 = (x: number) => +x.toFixed(2);
  return {
    concurrency: c, requests: samples.length, longPrompts: longSent, tokS: r2(samples.reduce((a, s) => a + s.tokens, 0) / wall),
    ttftP50: r2(pct(ttft, 0.5)), ttftP99: r2(pct(ttft, 0.99)), itlP50: r2(pct(itl, 0.5)), itlP99: r2(pct(itl, 0.99)),
  };
}

/** The scheduler's flags, passed on to the server child as given (absent: the scheduler's default). */
const SCHEDULER_FLAGS = ['prefill-chunk', 'max-decode-slowdown', 'prefill-floor'] as const;

function startChild(engine: string, file: string, seqs: number, ctx: number, threads: number): Promise<{ child: ChildProcess; url: string }> {
  const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
  const env = { ...process.env, ...(engine === 'llamacpp' ? { UV_THREADPOOL_SIZE: '1' } : {}) };
  // INFERJIT_SERVE_CPU_PROF=DIR: the server child writes a V8 CPU profile there when it exits
  const prof = process.env.INFERJIT_SERVE_CPU_PROF;
  const [cmd, pre] = prof ? [process.execPath, ['--cpu-prof', '--cpu-prof-dir', prof, '--import', 'tsx']] : [tsx, []];
  const child = spawn(cmd, [...pre, path.join(here, 'serve.ts'), '--child', engine, '--file', file, '--seqs', String(seqs), '--ctx', String(ctx), '--threads', String(threads), '--max-batched-tokens', String(args['max-batched-tokens']), ...(args['no-warmup'] ? ['--no-warmup'] : []), ...SCHEDULER_FLAGS.flatMap((f) => (args[f] ? [`--${f}`, args[f]] : []))], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = out.match(/LISTENING (\S+)/);
      if (m) resolve({ child, url: m[1] });
    });
    child.on('exit', (code) => reject(new Error(`the ${engine} server exited (${code}) before listening`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  if (args.child) {
    const [file, seqs, ctx, threads] = [args.file!, positive('seqs', args.seqs), positive('ctx', args.ctx), positive('threads', args.threads)];
    if (args.child === 'inferjit') {
      const chunk = args['prefill-chunk'] === undefined ? undefined : positive('prefill-chunk', args['prefill-chunk']);
      return serveInferjit(file, seqs, ctx, threads, positive('max-batched-tokens', args['max-batched-tokens']), chunk);
    }
    if (args.child === 'llamacpp') return serveLlamaCpp(file, seqs, ctx, threads);
    throw new Error(`unknown child ${args.child}`);
  }
  const models = args.models!.split(',') as ModelName[];
  for (const m of models) if (!(m in MODELS)) throw new Error(`--models: unknown model ${m}; known: ${Object.keys(MODELS).join(', ')}`);
  const type = args.type as FileType;
  if (!['F16', 'Q8_0', 'Q4_0'].includes(type)) throw new Error(`--type must be F16, Q8_0 or Q4_0, got ${type}`);
  const levels = args.concurrency!.split(',').map((c) => positive('concurrency', c));
  const engines = args.engines!.split(',');
  for (const e of engines) if (e !== 'inferjit' && e !== 'llamacpp') throw new Error(`--engines: unknown engine ${e}; known: inferjit, llamacpp`);
  const promptLen = positive('prompt', args.prompt), gen = positive('gen', args.gen), perClient = positive('requests', args.requests);
  const threads = args.threads ? positive('threads', args.threads) : Math.max(1, os.availableParallelism());
  const long = { len: Number(args['long-prompt']), clients: positive('long-clients', args['long-clients']) };
  if (!Number.isInteger(long.len) || long.len < 0) throw new Error(`--long-prompt must be a non-negative integer, got ${args['long-prompt']}`);
  if (long.len === 0) long.clients = 0;
  // the long-prompt clients hold sequences too
  const maxC = Math.max(...levels) + long.clients;
  const ctx = Math.ceil((Math.max(promptLen + gen, long.len + 1) + 16) / 16) * 16;
  console.log(`threads ${threads}; ${type}; prompt ${promptLen} tokens, ${gen} generated per request, ${perClient} requests per client, closed loop; concurrency ${levels.join(', ')}`
    + (long.len ? `; meanwhile ${long.clients} client(s) keep sending ${long.len}-token prompts (1 token each, not measured)` : ''));

  const results: Record<string, Record<string, LoadResult[]>> = {};
  for (const m of models) {
    const file = await ensureModel(m, type);
    results[m] = {};
    for (const engine of engines) {
      let started: { child: ChildProcess; url: string };
      try {
        started = await startChild(engine, file, maxC, ctx, threads);
      } catch (e) {
        // the peer may be unavailable (node-llama-cpp not installed or not loadable here): say so, go on
        if (engine !== 'llamacpp') throw e;
        console.error(`node-llama-cpp unavailable: ${(e as Error).message}`);
        continue;
      }
      const { child, url } = started;
      try {
        results[m][engine] = [];
        let requestId = 0;
        for (const c of levels) {
          // warm-up (untimed): the buckets / batch shapes of this concurrency
          await load(url, c, 1, promptLen, 4, MODELS[m].vocab, 1_000_000 + requestId);
          const r = await load(url, c, perClient, promptLen, gen, MODELS[m].vocab, requestId, long);
          requestId += c * perClient;
          results[m][engine].push(r);
          console.error(`${m} ${engine} c=${c}: ${r.tokS} tok/s, TTFT p50 ${r.ttftP50} ms p99 ${r.ttftP99} ms, ITL p50 ${r.itlP50} ms p99 ${r.itlP99} ms${long.len ? `; ${r.longPrompts} long prompts meanwhile` : ''}`);
        }
      } finally {
        await stopChild(child);
      }
    }
  }

  const ratios: Record<string, Record<string, number>> = {};
  const goals: Record<string, unknown> = {};
  for (const m of models) {
    console.log(`\n${m} ${type}\n`);
    console.log('| streams | inferjit tok/s | llama.cpp tok/s | ratio | inferjit TTFT p50/p99 ms | llama.cpp TTFT p50/p99 ms | inferjit ITL p50/p99 ms | llama.cpp ITL p50/p99 ms |');
    console.log('|---|---|---|---|---|---|---|---|');
    ratios[m] = {};
    levels.forEach((c, i) => {
      const a = results[m].inferjit?.[i], b = results[m].llamacpp?.[i];
      const ratio = a && b ? +(a.tokS / b.tokS).toFixed(2) : NaN;
      if (!Number.isNaN(ratio)) ratios[m][String(c)] = ratio;
      const f = (r: LoadResult | undefined, k: 'tokS') => (r ? String(r[k]) : '-');
      const pair = (r: LoadResult | undefined, p: 'ttft' | 'itl') => (r ? `${r[`${p}P50`]} / ${r[`${p}P99`]}` : '-');
      console.log(`| ${c} | ${f(a, 'tokS')} | ${f(b, 'tokS')} | ${Number.isNaN(ratio) ? '-' : ratio} | ${pair(a, 'ttft')} | ${pair(b, 'ttft')} | ${pair(a, 'itl')} | ${pair(b, 'itl')} |`);
    });
    const own = results[m].inferjit;
    const at = (c: number) => own?.[levels.indexOf(c)];
    if (at(1) && at(16)) {
      goals[m] = { scaling16: +(at(16)!.tokS / at(1)!.tokS).toFixed(2), itlP99Ratio16: +(at(16)!.itlP99 / at(1)!.itlP99).toFixed(2) };
      console.log(`\ninferjit at 16 streams: ${(goals[m] as { scaling16: number }).scaling16}× the tok/s of one stream (goal on 1.1b: ≥ 6×); p99 ITL ${(goals[m] as { itlP99Ratio16: number }).itlP99Ratio16}× one stream's (goal ≤ 3×)`);
    }
  }
  console.log(JSON.stringify({ bench: 'serve', type, threads, prompt: promptLen, gen, requestsPerClient: perClient, longPrompt: long.len, longClients: long.clients, warmup: !args['no-warmup'], maxDecodeSlowdown: args['max-decode-slowdown'] ?? null, prefillFloor: args['prefill-floor'] ?? null, prefillChunk: args['prefill-chunk'] ?? null, results, tokS_ratio_vs_llamacpp: ratios, goals }));
}

await main();
