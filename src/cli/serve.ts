// `inferjit serve --model file.gguf [--port 8000]`: the OpenAI-compatible HTTP server
// (src/serve). Runs until SIGINT/SIGTERM, then stops taking requests and closes.
import { ArgReader, UsageError } from './args.js';
import { createServer } from '../serve/index.js';
import { type ServeModelOptions } from '../serve/model.js';
import { createGrpcServer } from '../serve/grpc.js';
import { DEFAULT_MAX_DECODE_SLOWDOWN, DEFAULT_PREFILL_FLOOR, type SchedulerOptions } from '../serve/scheduler.js';

export interface ServeIo { out(line: string): void; err(line: string): void }
const stdio: ServeIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

export const SERVE_USAGE = `usage: inferjit serve --model <file.gguf> [options]

Serves the model over HTTP with OpenAI's API: POST /v1/completions, POST /v1/chat/completions,
GET /v1/models, GET /health, GET /metrics (Prometheus, vLLM names), POST /tokenize, POST /detokenize.

options:
  --help, -h                 this text
  --model PATH               the .gguf file to serve (required)
  --port N                   port to listen on (default 8000; 0 picks a free one)
  --host HOST                address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --grpc-port N              also serve gRPC (proto/inferjit.proto: Generate, GenerateStream, Tokenize) on this port
  --queue redis://HOST:PORT  pull requests through a Redis queue shared with other instances: accepted
                             requests are queued, each instance runs them while it has free capacity
  --queue-prefix P           Redis key prefix of the shared queue (default inferjit:<model name>)
  --queue-liveness-ms N      an instance silent this long has its requests re-queued (default 10000); the
                             next instance resumes each after the tokens its client already has
  --queue-event-timeout-ms N a request accepted here that gets no event for this long (nobody took it, or
                             the instance running it went silent) ends with an error (default 120000)
  --queue-max-outstanding N  requests this instance may have queued or running elsewhere; more get 429 (default 1024)
  --queue-no-pull            accept requests and forward them to the queue, but run none here
  --model-name NAME          the name clients send as "model" (default: the file's base name)
  --threads N                native thread pool size (default: physical cores)
  --cache-tokens N           positions the KV pool holds across all requests (default 16384)
  --block-size N             positions per KV block (default 16)
  --kv-dtype f32|f16|int8    KV cache storage (default f32)
  --max-context N            longest context of one request (default: the model's, at most 2048)
  --no-prefix-cache          do not reuse the KV blocks of prompt prefixes seen before
  --max-batched-tokens N     tokens one scheduler step feeds in all (default 512)
  --max-running N            sequences running at once (default 64)
  --max-waiting N            sequences allowed to wait; more get 429 (default 256)
  --max-waiting-tokens N     prompt tokens allowed to wait; more get 429 (default 65536)
  --prefill-chunk N          most prompt tokens a step prefills while others decode (default: --max-batched-tokens,
                             at most that); smaller keeps inter-token latency low while long prompts arrive
  --max-decode-slowdown X    while streams decode, a step's prefill is sized so the step takes at most X times
                             their decodes alone (step costs learned as they run); X > 1, or 0 for off (default ${DEFAULT_MAX_DECODE_SLOWDOWN})
  --prefill-floor N          prompt tokens a step with decodes may always prefill, however slow (default ${DEFAULT_PREFILL_FLOOR},
                             at most --prefill-chunk); raise both to admit new prompts sooner (2 and 16: first
                             tokens ~2x sooner, p99 inter-token latency ~1.6x higher under load)

Unknown options are errors. Values: N a whole number, X a decimal number.`;

/** Every option the usage lists (an option left over after parsing is unknown, or given twice). */
const KNOWN_OPTIONS = new Set([...SERVE_USAGE.matchAll(/^ {2}(-{1,2}[a-z][a-z-]*)/gm)].map((m) => m[1]));

/** ` (did you mean --x?)` for an unknown option close to a known one (a typo), else ''. */
function suggest(name: string): string {
  let best = '', bestDistance = 3;
  for (const known of KNOWN_OPTIONS) {
    const d = editDistance(name, known);
    if (d < bestDistance) { best = known; bestDistance = d; }
  }
  return best ? ` (did you mean ${best}? inferjit serve --help lists every option)` : ' (inferjit serve --help lists every option)';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length];
}

/** Runs `inferjit serve`; resolves with the exit code once the server has stopped. */
export async function runServeCommand(argv: readonly string[], io: ServeIo = stdio, stop?: Promise<void>): Promise<number> {
  let close: (() => Promise<void>) | null = null;
  try {
    const r = new ArgReader(argv);
    if (r.flag('--help') || r.flag('-h')) { io.out(SERVE_USAGE); return 0; }
    const model = r.option('--model');
    const int = (name: string, min: number): number | undefined => {
      const v = r.option(name);
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < min) throw new UsageError(`${name} must be an integer >= ${min}, got "${v}"`);
      return n;
    };
    const decimal = (name: string): number | undefined => {
      const v = r.option(name);
      if (v === undefined) return undefined;
      if (!/^\d+(\.\d+)?$/.test(v)) throw new UsageError(`${name} must be a decimal number, got "${v}"`);
      return Number(v);
    };
    const choice = <T extends string>(name: string, values: readonly T[]): T | undefined => {
      const v = r.option(name);
      if (v !== undefined && !values.includes(v as T)) throw new UsageError(`${name} must be one of ${values.join(', ')}, got "${v}"`);
      return v as T | undefined;
    };
    const port = int('--port', 0) ?? 8000;
    if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
    const host = r.option('--host') ?? '127.0.0.1';
    const grpcPort = int('--grpc-port', 0);
    if (grpcPort !== undefined && grpcPort > 65535) throw new UsageError(`--grpc-port must be at most 65535, got ${grpcPort}`);
    const queueUrl = r.option('--queue');
    if (queueUrl !== undefined && !/^rediss?:\/\//.test(queueUrl)) throw new UsageError(`--queue must be a redis:// URL, got "${queueUrl}"`);
    const queuePrefix = r.option('--queue-prefix');
    const livenessTtlMs = int('--queue-liveness-ms', 100);
    const eventTimeoutMs = int('--queue-event-timeout-ms', 100);
    const maxOutstanding = int('--queue-max-outstanding', 1);
    const noPull = r.flag('--queue-no-pull');
    if (queueUrl === undefined) {
      const given = [['--queue-prefix', queuePrefix], ['--queue-liveness-ms', livenessTtlMs], ['--queue-event-timeout-ms', eventTimeoutMs], ['--queue-max-outstanding', maxOutstanding], ['--queue-no-pull', noPull || undefined]]
        .filter(([, v]) => v !== undefined).map(([name]) => name);
      if (given.length > 0) throw new UsageError(`${given.join(', ')} ${given.length > 1 ? 'need' : 'needs'} --queue`);
    }
    const queue = queueUrl === undefined ? undefined : { url: queueUrl, prefix: queuePrefix, livenessTtlMs, eventTimeoutMs, maxOutstanding, ...(noPull ? { pull: false } : {}) };
    const modelName = r.option('--model-name');
    // Absent options stay undefined: the engine and the scheduler apply their defaults.
    const engine: ServeModelOptions = {
      threads: int('--threads', 1), cacheTokens: int('--cache-tokens', 1), blockSize: int('--block-size', 1),
      kvDtype: choice('--kv-dtype', ['f32', 'f16', 'int8'] as const), maxContext: int('--max-context', 2),
      ...(r.flag('--no-prefix-cache') ? { prefixCaching: false } : {}),
    };
    const scheduler: SchedulerOptions = {
      maxBatchedTokens: int('--max-batched-tokens', 1), maxRunning: int('--max-running', 1),
      maxWaiting: int('--max-waiting', 1), maxWaitingTokens: int('--max-waiting-tokens', 1), prefillChunk: int('--prefill-chunk', 1),
      maxDecodeSlowdown: decimal('--max-decode-slowdown'), prefillFloor: int('--prefill-floor', 1),
    };
    // The limits against each other, here rather than after the model has loaded.
    const batched = scheduler.maxBatchedTokens ?? 512, chunk = scheduler.prefillChunk ?? batched;
    if (chunk > batched) throw new UsageError(`--prefill-chunk (${chunk}) must be at most --max-batched-tokens (${batched}): a step carries at most that many tokens`);
    const floor = scheduler.prefillFloor ?? DEFAULT_PREFILL_FLOOR;
    if (floor > chunk) throw new UsageError(`--prefill-floor (${floor}) must be at most --prefill-chunk (${chunk})`);
    const slowdown = scheduler.maxDecodeSlowdown;
    if (slowdown !== undefined && !(slowdown === 0 || slowdown > 1)) throw new UsageError(`--max-decode-slowdown must be above 1 (a step may take that many times the decodes alone), or 0 to turn it off; got ${slowdown}`);
    if (r.rest.length > 0) {
      const [a] = r.rest;
      if (a.startsWith('-')) {
        const name = a.split('=')[0];
        throw new UsageError(KNOWN_OPTIONS.has(name) ? `${name} is given more than once` : `unknown option ${name}${suggest(name)}`);
      }
      throw new UsageError(`unexpected arguments: ${r.rest.join(' ')}`);
    }
    if (model === undefined) throw new UsageError('--model is required');

    const server = createServer({ model, modelName, engine, scheduler, queue });
    const rpc = grpcPort === undefined ? null : createGrpcServer(server);
    // Both at once: closing the HTTP side aborts the sequences that in-flight gRPC calls wait on.
    close = async () => { await Promise.all([rpc?.close(), server.close()]); };
    const address = await server.listen(port, host);
    io.out(`inferjit: listening on ${address} (loading ${model})`);
    if (rpc) io.out(`inferjit: gRPC on ${host}:${await rpc.listen(grpcPort, host)}`);
    await server.ready;
    io.out(`inferjit: serving ${modelName ?? model.split(/[\\/]/).pop()} at ${address}/v1`);
    // The limits in force (defaults included), so an operator sees what the flags amounted to.
    const sc = server.scheduler!;
    io.out(`inferjit: scheduler: max batched tokens ${sc.maxBatchedTokens}, max running ${sc.maxRunning}, prefill chunk ${sc.prefillChunk}, `
      + `max decode slowdown ${sc.maxDecodeSlowdown === 0 ? 'off' : sc.maxDecodeSlowdown}, prefill floor ${sc.prefillFloor}, `
      + `max waiting ${sc.maxWaiting} requests / ${sc.maxWaitingTokens} tokens${server.queue ? `; queue ${server.queue.prefix} as ${server.queue.instanceId}` : ''}`);
    await (stop ?? new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    }));
    await close();
    return 0;
  } catch (e) {
    if (e instanceof UsageError) { io.err(`inferjit serve: ${e.message}\n\n${SERVE_USAGE}`); return 2; }
    io.err(`inferjit serve: ${(e as Error).message}`);
    await close?.().catch(() => undefined);
    return 1;
  }
}
