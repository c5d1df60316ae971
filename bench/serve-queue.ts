// The Redis queue's per-token cost: the same closed-loop streaming load against one server that runs
// requests directly and one that sends them through a shared Redis queue (it pushes each request,
// pulls it back, and every generated token travels as a stream event back to it), in this process,
// one after the other, on a real redis-server (test/serve/redis-fixture.ts).
//   npx tsx bench/serve-queue.ts [--model tiny|110m] [--concurrency 1,16] [--requests 4] [--gen 32] [--prompt 16]
// Reports per concurrency: tok/s and inter-token latency p50/p99 both ways, and the queue's extra
// milliseconds per generated token ((wall through the queue - wall direct) / tokens); final JSON line
// {"bench":"serve-queue", ...}. Small models make the queue's share visible ('tiny' is the default).
import { parseArgs } from 'node:util';
import { createServer, type InferjitServer } from '../src/serve/index.js';
import { startRedis } from '../test/serve/redis-fixture.js';
import { MODELS, ensureModel, type ModelName } from './lib/llm-models.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'tiny' },
    concurrency: { type: 'string', default: '1,16' },
    requests: { type: 'string', default: '4' },
    gen: { type: 'string', default: '32' },
    prompt: { type: 'string', default: '16' },
  },
});
const int = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};
const modelName = args.model as ModelName;
if (!(modelName in MODELS)) throw new Error(`--model: unknown model ${modelName}; known: ${Object.keys(MODELS).join(', ')}`);
const levels = args.concurrency!.split(',').map((c) => int('concurrency', c));
const perClient = int('requests', args.requests), gen = int('gen', args.gen), promptLen = int('prompt', args.prompt);
const vocab = MODELS[modelName].vocab;

function promptFor(request: number): number[] {
  let s = (request + 1) * 2654435761 >>> 0;
  return [1, ...Array.from({ length: promptLen - 1 }, () => { s = (s * 1103515245 + 12345) >>> 0; return 259 + (s % (vocab - 259)); })];
}

/** One streaming request: the arrival times of its text events, and the tokens generated (usage). */
async function request(url: string, prompt: number[]): Promise<{ times: number[]; tokens: number }> {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench', prompt, max_tokens: gen, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  if (!r.ok || !r.body) throw new Error(`the server answered ${r.status}: ${await r.text()}`);
  const times: number[] = [];
  let buffer = '', tokens = -1;
  const decoder = new TextDecoder();
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(part, { stream: true });
    let at: number;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      if (!event.startsWith('data: {')) continue;
      const chunk = JSON.parse(event.slice(6)) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      // (a token that completes no character yet arrives with the next one)
      if (chunk.choices[0]?.text) times.push(performance.now());
    }
  }
  return { times, tokens };
}

const pct = (xs: number[], q: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

async function load(url: string, c: number, first: number): Promise<{ wall: number; tokens: number; itl: number[] }> {
  let next = first, tokens = 0;
  const itl: number[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    for (let i = 0; i < perClient; i++) {
      const { times, tokens: n } = await request(url, promptFor(next++));
      tokens += n;
      for (let k = 1; k < times.length; k++) itl.push(times[k] - times[k - 1]);
    }
  }));
  return { wall: performance.now() - t0, tokens, itl };
}

const file = await ensureModel(modelName, 'Q4_0');
const redis = await startRedis();
const results: Record<string, unknown>[] = [];
try {
  const servers: Record<string, InferjitServer> = {};
  const urls: Record<string, string> = {};
  const maxC = Math.max(...levels);
  for (const mode of ['direct', 'queue'] as const) {
    servers[mode] = createServer({
      model: file, modelName: 'bench', engine: { threads: 2 }, scheduler: { maxRunning: maxC },
      ...(mode === 'queue' ? { queue: { url: redis.url, prefix: `bench:${process.pid}` } } : {}),
    });
    urls[mode] = await servers[mode].listen(0, '127.0.0.1');
    await servers[mode].ready;
  }
  let req = 0;
  for (const c of levels) {
    const row: Record<string, unknown> = { concurrency: c };
    const walls: Record<string, number> = {};
    for (const mode of ['direct', 'queue'] as const) {
      await load(urls[mode], c, 1_000_000 + req); // warm-up
      const r = await load(urls[mode], c, req);
      req += c * perClient;
      if (r.tokens !== c * perClient * gen) throw new Error(`${mode}: ${r.tokens} tokens arrived, expected ${c * perClient * gen}`);
      walls[mode] = r.wall;
      row[mode] = { tokS: +(r.tokens / (r.wall / 1000)).toFixed(1), itlP50: +pct(r.itl, 0.5).toFixed(2), itlP99: +pct(r.itl, 0.99).toFixed(2) };
    }
    row.queueMsPerToken = +((walls.queue - walls.direct) / (c * perClient * gen)).toFixed(3);
    const d = row.direct as { tokS: number; itlP50: number }, q = row.queue as { tokS: number; itlP50: number };
    console.log(`c=${c}: direct ${d.tokS} tok/s ITL p50 ${d.itlP50} ms; queue ${q.tokS} tok/s ITL p50 ${q.itlP50} ms; the queue adds ${row.queueMsPerToken} ms per token`);
    results.push(row);
  }
  for (const s of Object.values(servers)) await s.close();
} finally {
  await redis.stop();
}
console.log(JSON.stringify({ bench: 'serve-queue', model: modelName, gen, prompt: promptLen, requestsPerClient: perClient, results }));
