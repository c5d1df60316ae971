// `inferjit serve --model file.gguf [--port 8000]`: the OpenAI-compatible HTTP server
// (src/serve). Runs until SIGINT/SIGTERM, then stops taking requests and closes.
import { ArgReader, UsageError } from './args.js';
import { createServer } from '../serve/index.js';
import { type ServeModelOptions } from '../serve/model.js';
import { createGrpcServer } from '../serve/grpc.js';
import { type SchedulerOptions } from '../serve/scheduler.js';

export interface ServeIo { out(line: string): void; err(line: string): void }
const stdio: ServeIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

export const SERVE_USAGE = `usage: inferjit serve --model <file.gguf> [options]

Serves the model over HTTP with OpenAI's API: POST /v1/completions, POST /v1/chat/completions,
GET /v1/models, GET /health, GET /metrics (Prometheus, vLLM names), POST /tokenize, POST /detokenize.

options:
  --model PATH               the .gguf file to serve (required)
  --port N                   port to listen on (default 8000; 0 picks a free one)
  --host HOST                address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --grpc-port N              also serve gRPC (proto/inferjit.proto: Generate, GenerateStream, Tokenize) on this port
  --queue redis://HOST:PORT  pull requests through a Redis queue shared with other instances: accepted
                             requests are queued, each instance runs them while it has free capacity
  --queue-prefix P           Redis key prefix of the shared queue (default inferjit:<model name>)
  --queue-liveness-ms N      an instance silent this long has its requests re-queued (default 10000)
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
  --prefill-chunk N          most prompt tokens a step prefills while others decode (default: --max-batched-tokens);
                             smaller keeps inter-token latency low while long prompts arrive`;

/** Runs `inferjit serve`; resolves with the exit code once the server has stopped. */
export async function runServeCommand(argv: readonly string[], io: ServeIo = stdio, stop?: Promise<void>): Promise<number> {
  let close: (() => Promise<void>) | null = null;
  try {
    const r = new ArgReader(argv);
    if (r.flag('--help') || r.flag('-h')) { io.out(SERVE_USAGE); return 0; }
    const model = r.option('--model');
    if (model === undefined) throw new UsageError('--model is required');
    const int = (name: string, min: number): number | undefined => {
      const v = r.option(name);
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < min) throw new UsageError(`${name} must be an integer >= ${min}, got "${v}"`);
      return n;
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
    if (queueUrl === undefined && (queuePrefix !== undefined || livenessTtlMs !== undefined)) throw new UsageError('--queue-prefix and --queue-liveness-ms need --queue');
    const queue = queueUrl === undefined ? undefined : { url: queueUrl, prefix: queuePrefix, livenessTtlMs };
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
    };
    if (r.rest.length > 0) throw new UsageError(`unexpected arguments: ${r.rest.join(' ')}`);

    const server = createServer({ model, modelName, engine, scheduler, queue });
    const rpc = grpcPort === undefined ? null : createGrpcServer(server);
    // Both at once: closing the HTTP side aborts the sequences that in-flight gRPC calls wait on.
    close = async () => { await Promise.all([rpc?.close(), server.close()]); };
    const address = await server.listen(port, host);
    io.out(`inferjit: listening on ${address} (loading ${model})`);
    if (rpc) io.out(`inferjit: gRPC on ${host}:${await rpc.listen(grpcPort, host)}`);
    await server.ready;
    io.out(`inferjit: serving ${modelName ?? model.split(/[\\/]/).pop()} at ${address}/v1`);
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
