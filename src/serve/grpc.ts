// The gRPC API (proto/inferjit.proto) over the HTTP server's own handlers: each call is translated
// into the matching OpenAI request and run in-process through fastify's inject (no socket), so the
// validation (schemas and the handlers' checks), the error messages, the scheduler, the metrics and
// request pulling (--queue) are the HTTP API's, with nothing restated here. Generation always runs
// as an internal event stream, so both Generate and GenerateStream can cancel the request the moment
// the client cancels or its deadline passes (the sequence leaves the batch and frees its KV blocks
// at the next step, as an HTTP client that disconnects).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { type InferjitServer } from './server.js';

/** The .proto the service implements (shipped with the package; clients load the same file). */
export const PROTO_FILE = fileURLToPath(new URL('../../proto/inferjit.proto', import.meta.url));

/** How the proto is loaded here and in clients: field names as written, unset optional fields absent. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: false, oneofs: true };

/** Loads the service definition (for servers and for clients: `new def.inferjit.v1.Inference(addr, creds)`). */
export function loadInferjitProto(): grpc.GrpcObject {
  return grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILE, PROTO_LOADER_OPTIONS));
}

export interface InferjitGrpcServer {
  readonly server: grpc.Server;
  /** Binds and starts serving; resolves to the port (0 picks a free one). Plaintext: put TLS in front, or bind to loopback. */
  listen(port?: number, host?: string): Promise<number>;
  /** Stops taking calls and waits for those in flight (cancels them after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

interface ChatMessage { role: string; content: string }
interface GenerateRequest {
  model?: string;
  input?: 'prompt' | 'prompt_tokens' | 'messages';
  prompt?: string;
  prompt_tokens?: { ids?: number[] };
  messages?: { messages?: ChatMessage[] };
  stop?: string[];
  logit_bias?: Record<string, number>;
  [field: string]: unknown;
}
interface TokenizeRequest { model?: string; input?: 'prompt' | 'messages'; prompt?: string; messages?: { messages?: ChatMessage[] }; add_special_tokens?: boolean }
interface Usage { prompt_tokens: number; completion_tokens: number; total_tokens: number }
interface Chunk { id: string; index: number; text: string; finish_reason: string; usage?: Usage }

/** Optional scalar fields passed through under the same name (validated by the HTTP schema). */
const SCALARS = ['max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'seed', 'n', 'presence_penalty',
  'frequency_penalty', 'repetition_penalty', 'ignore_eos', 'priority'] as const;

/** HTTP statuses of the API's errors and the gRPC codes that mean the same. */
function codeFor(status: number): grpc.status {
  switch (status) {
    case 400: return grpc.status.INVALID_ARGUMENT;
    case 404: return grpc.status.NOT_FOUND;
    case 429: return grpc.status.RESOURCE_EXHAUSTED;
    case 503: return grpc.status.UNAVAILABLE;
    case 500: return grpc.status.INTERNAL;
    default: return status >= 400 && status < 500 ? grpc.status.FAILED_PRECONDITION : grpc.status.UNKNOWN;
  }
}

/** A gRPC error from the API's OpenAI-shaped error body: the message as is, the field in metadata. */
function grpcError(status: number, body: string, retryAfter?: string): grpc.ServiceError {
  let message = body, param: string | null = null;
  try {
    const e = JSON.parse(body).error;
    if (e && typeof e.message === 'string') { message = e.message; param = e.param ?? null; }
  } catch { /* not JSON: keep the text */ }
  const metadata = new grpc.Metadata();
  if (param) metadata.set('inferjit-param', param);
  if (retryAfter) metadata.set('retry-after', retryAfter);
  return Object.assign(new Error(message), { code: codeFor(status), details: message, metadata }) as grpc.ServiceError;
}

/** The OpenAI request a GenerateRequest stands for, and the route that serves it. */
function toHttp(r: GenerateRequest): { url: string; body: Record<string, unknown> } {
  const body: Record<string, unknown> = {};
  if (r.model) body.model = r.model;
  let url = '/v1/completions';
  if (r.input === 'prompt') body.prompt = r.prompt ?? '';
  else if (r.input === 'prompt_tokens') body.prompt = r.prompt_tokens?.ids ?? [];
  else if (r.input === 'messages') { url = '/v1/chat/completions'; body.messages = r.messages?.messages ?? []; }
  for (const f of SCALARS) if (r[f] !== undefined && r[f] !== null) body[f] = r[f];
  if (r.stop && r.stop.length > 0) body.stop = r.stop;
  if (r.logit_bias && Object.keys(r.logit_bias).length > 0) body.logit_bias = r.logit_bias;
  body.stream = true;
  body.stream_options = { include_usage: true };
  return { url, body };
}

/**
 * Runs one generation through the HTTP handler as an event stream, calling `onChunk` per chunk.
 * Resolves when it ends; rejects with a gRPC error. `cancel` stops it (the handler sees a disconnect).
 */
function runGeneration(http: InferjitServer, r: GenerateRequest, onChunk: (c: Chunk) => void): { done: Promise<void>; cancel(): void } {
  let cancelled = false;
  let destroy: (() => void) | null = null;
  const { url, body } = toHttp(r);
  const done = (async () => {
    const res = await http.app.inject({ method: 'POST', url, payload: body, payloadAsStream: true });
    destroy = () => (res.raw as { res: { destroy(): void } }).res.destroy();
    if (cancelled) { destroy(); throw Object.assign(new Error('cancelled'), { code: grpc.status.CANCELLED }); }
    const stream = res.stream();
    if (res.statusCode !== 200) {
      let text = '';
      for await (const part of stream) text += part;
      const retry = res.headers['retry-after'];
      throw grpcError(res.statusCode, text, typeof retry === 'string' ? retry : undefined);
    }
    let buffered = '';
    let id = '';
    for await (const part of stream) {
      buffered += part;
      let cut: number;
      while ((cut = buffered.indexOf('\n\n')) >= 0) {
        const event = buffered.slice(0, cut).replace(/^data: /, '');
        buffered = buffered.slice(cut + 2);
        if (event === '[DONE]') return;
        const data = JSON.parse(event);
        // An error after the stream started (the engine failed): the call fails with it.
        if (data.error) throw grpcError(data.error.type === 'server_error' ? 500 : 400, event);
        id ||= data.id;
        if (data.usage) { onChunk({ id, index: 0, text: '', finish_reason: '', usage: data.usage }); continue; }
        for (const c of data.choices) {
          const text = c.text ?? c.delta?.content ?? '';
          // Chat streams open with an empty role-only delta: nothing to send.
          if (text === '' && !c.finish_reason) continue;
          onChunk({ id, index: c.index, text, finish_reason: c.finish_reason ?? '' });
        }
      }
    }
    // The stream ended without [DONE]: the handler was cut off (the server is closing).
    throw Object.assign(new Error('the server closed the request before it finished'), { code: grpc.status.UNAVAILABLE });
  })();
  return { done, cancel() { cancelled = true; destroy?.(); } };
}

function asServiceError(e: unknown): grpc.ServiceError {
  const err = e as Partial<grpc.ServiceError> & Error;
  if (typeof err.code === 'number') return err as grpc.ServiceError;
  return Object.assign(new Error(err.message), { code: grpc.status.INTERNAL, details: err.message, metadata: new grpc.Metadata() }) as grpc.ServiceError;
}

/** The gRPC service over an InferjitServer (which must be created first; the model may still be loading). */
export function createGrpcServer(http: InferjitServer, options: grpc.ServerOptions = {}): InferjitGrpcServer {
  const server = new grpc.Server(options);
  const proto = loadInferjitProto() as unknown as { inferjit: { v1: { Inference: grpc.ServiceClientConstructor } } };

  const generate: grpc.handleUnaryCall<GenerateRequest, unknown> = (call, callback) => {
    const choices = new Map<number, { index: number; text: string; finish_reason: string }>();
    let id = '', usage: Usage | undefined;
    const run = runGeneration(http, call.request, (c) => {
      id ||= c.id;
      if (c.usage) { usage = c.usage; return; }
      const choice = choices.get(c.index) ?? { index: c.index, text: '', finish_reason: '' };
      choice.text += c.text;
      if (c.finish_reason) choice.finish_reason = c.finish_reason;
      choices.set(c.index, choice);
    });
    call.on('cancelled', () => run.cancel());
    run.done.then(
      () => callback(null, { id, model: call.request.model, choices: [...choices.values()].sort((a, b) => a.index - b.index), usage }),
      (e) => { if (!call.cancelled) callback(asServiceError(e)); },
    );
  };

  const generateStream: grpc.handleServerStreamingCall<GenerateRequest, unknown> = (call) => {
    const run = runGeneration(http, call.request, (c) => { if (!call.cancelled) call.write(c); });
    call.on('cancelled', () => run.cancel());
    run.done.then(
      () => call.end(),
      // grpc-js turns an 'error' event on a server stream into the call's status.
      (e) => { if (!call.cancelled) call.emit('error', asServiceError(e)); },
    );
  };

  const tokenize: grpc.handleUnaryCall<TokenizeRequest, unknown> = (call, callback) => {
    const r = call.request;
    const body: Record<string, unknown> = {};
    if (r.model) body.model = r.model;
    if (r.input === 'prompt') body.prompt = r.prompt ?? '';
    else if (r.input === 'messages') body.messages = r.messages?.messages ?? [];
    if (r.add_special_tokens !== undefined) body.add_special_tokens = r.add_special_tokens;
    http.app.inject({ method: 'POST', url: '/tokenize', payload: body }).then((res) => {
      if (res.statusCode !== 200) return callback(grpcError(res.statusCode, res.body));
      callback(null, res.json());
    }, (e) => callback(asServiceError(e)));
  };

  server.addService(proto.inferjit.v1.Inference.service, { Generate: generate, GenerateStream: generateStream, Tokenize: tokenize });

  return {
    server,
    listen(port = 50051, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
          if (err) reject(new Error(`gRPC: cannot listen on ${host}:${port}: ${err.message}`)); else resolve(bound);
        });
      });
    },
    close(graceMs = 5000) {
      return new Promise((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => { clearTimeout(force); resolve(); });
      });
    },
  };
}
