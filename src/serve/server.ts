// The OpenAI-compatible HTTP server on fastify: /v1/completions, /v1/chat/completions (streaming as
// server-sent events), /v1/models, /health, /metrics, /tokenize, /detokenize. Requests become
// sequences of the Scheduler (continuous batching over a ServeEngine).
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyError } from 'fastify';
import { randomUUID } from 'node:crypto';
import { type SamplingOptions } from '../llm/sampling.js';
import { applyChatTemplate, encodeChatPrompt } from '../llm/chat.js';
import { Scheduler, QueueFullError, type SchedulerOptions, type FinishReason, type SequenceRequest } from './scheduler.js';
import { ServeMetrics } from './metrics.js';
import { loadServedModel, type ServedModel, type ServeModelOptions } from './model.js';
import { type TokenLogprob } from './engine.js';
import { RedisQueue, type QueueOptions, type RequestSink } from './queue.js';
import { ApiError, completionBodySchema, chatBodySchema, tokenizeBodySchema, detokenizeBodySchema } from './openai-schema.js';

export interface ChatMessage { role: string; content: string }

export interface ServerOptions {
  /** A .gguf file, or a function that loads the model (the server answers /health with 503 until it resolves). */
  model: string | (() => Promise<ServedModel>);
  /** The name clients send as `model` (default: the file's base name). */
  modelName?: string;
  /** How the engine is built (threads, KV pool, step sizes; see ServeModelOptions). */
  engine?: ServeModelOptions;
  scheduler?: SchedulerOptions;
  /**
   * Turns chat messages into the prompt text (control tokens in it are parsed as such). Default: the
   * model file's chat template (tokenizer.chat_template, rendered by src/llm/chat.ts); without either,
   * /v1/chat/completions answers 400.
   */
  chatTemplate?: (messages: ChatMessage[]) => string;
  /** fastify's logger (default off). */
  logger?: boolean;
  /** Request pulling across instances through Redis (src/serve/queue.ts); without it requests run here. */
  queue?: QueueOptions;
  /** Compile every step shape before serving (default true; false: each on first use, while serving). */
  warmup?: boolean;
}

export interface InferjitServer {
  app: FastifyInstance;
  /** Resolves when the model is loaded (rejects if loading failed). */
  ready: Promise<void>;
  /** Starts listening; resolves to the address (e.g. http://127.0.0.1:8000). */
  listen(port?: number, host?: string): Promise<string>;
  close(): Promise<void>;
  readonly scheduler: Scheduler | null;
  readonly metrics: ServeMetrics;
  /** The shared queue, when `queue` was given. */
  readonly queue: RedisQueue | null;
}

/** `sink` takes the requests: the scheduler, or the shared queue that feeds the schedulers of all instances. */
interface Loaded { model: ServedModel; scheduler: Scheduler; sink: RequestSink; queue: RedisQueue | null }

/** What the fields with alternatives accept, for validation messages. */
const ALTERNATIVES: Record<string, string> = {
  prompt: 'a string, an array of strings, an array of token ids, or an array of arrays of token ids',
  stop: 'a string or an array of at most 4 non-empty strings',
  'messages.content': 'a string, an array of content parts ({"type": "text", "text": ...}), or null',
};

/** Creates the server; the model loads in the background (GET /health says when it is ready). */
export function createServer(options: ServerOptions): InferjitServer {
  let loaded: Loaded | null = null;
  let loadError: Error | null = null;
  const fileName = typeof options.model === 'string' ? options.model.split(/[\\/]/).pop()! : undefined;
  const metricsName = options.modelName ?? fileName ?? 'model';
  const metrics = new ServeMetrics(metricsName, () => loaded && {
    numRunning: loaded.scheduler.numRunning, numWaiting: loaded.scheduler.numWaiting, kvUsage: loaded.scheduler.kvUsage, plansBuilt: loaded.model.engine.plansBuilt ?? 0,
  });

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: 16 * 1024 * 1024,
    // No coercion ("5" stays a string and is refused) and no silent removal of fields.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });

  const ready = (async () => {
    // Let listen() run first, so /health can answer 503 while a slow loader works.
    await new Promise((r) => setImmediate(r));
    // One step carries every running sequence and the step's token budget: size the engine to the scheduler.
    const engineOptions: ServeModelOptions = {
      maxSeqs: options.scheduler?.maxRunning ?? 64, maxStepTokens: options.scheduler?.maxBatchedTokens ?? 512, ...options.engine,
    };
    const model = typeof options.model === 'string'
      ? loadServedModel(options.model, engineOptions, options.modelName)
      : await options.model();
    if (options.modelName) model.name = options.modelName;
    metrics.modelName = model.name;
    const scheduler = new Scheduler(model.engine, model.tokenizer, options.scheduler, {
      onPreempt: () => metrics.preemptions.inc(metrics.labels),
      onPrefixLookup: (queried, hit) => { metrics.prefixQueries.inc(metrics.labels, queried); metrics.prefixHits.inc(metrics.labels, hit); },
      onStep: (s) => {
        const kind = s.prefillTokens === 0 ? 'decode' : s.decodes === 0 ? 'prefill' : 'mixed';
        metrics.stepDuration.observe({ ...metrics.labels, kind }, s.ms / 1000);
        metrics.stepPrefillTokens.observe(metrics.labels, s.prefillTokens);
      },
    });
    // Compile every step shape the scheduler can produce before serving (GET /health answers 503
    // meanwhile): a shape first met under load would stall every running stream while it compiles.
    if (options.warmup ?? true) await model.engine.warmup?.(scheduler.maxBatchedTokens, scheduler.maxRunning);
    const queue = options.queue ? await RedisQueue.connect(options.queue, scheduler, model.name, metrics.registry) : null;
    loaded = { model, scheduler, sink: queue ?? scheduler, queue };
  })();
  ready.catch((e) => { loadError = e as Error; });

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send(err.body());
    if (err.validation) {
      // For a field with alternatives (anyOf), ajv lists each branch's failure first, then the anyOf: report the anyOf.
      const v = err.validation.find((e) => e.keyword === 'anyOf') ?? err.validation[0];
      const param = v.instancePath ? v.instancePath.slice(1).replace(/\//g, '.') : (v.params as { missingProperty?: string }).missingProperty ?? null;
      const where = v.instancePath ? `'${param}'` : 'the body';
      const detail = v.keyword === 'anyOf' ? `must be ${ALTERNATIVES[param?.replace(/\.\d+\./g, '.') ?? ''] ?? 'of another type or shape'}` : v.message;
      return reply.code(400).send(new ApiError(400, `invalid request: ${where} ${detail}`, param).body());
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const message = err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError
      ? `the request body is not valid JSON: ${err.message}` : err.message;
    return reply.code(status).send(new ApiError(status, message, null, status >= 500 ? 'server_error' : 'invalid_request_error').body());
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(new ApiError(404, `no route ${req.method} ${req.url}`, null, 'invalid_request_error', 'not_found').body());
  });

  const need = (): Loaded => {
    if (loaded) return loaded;
    if (loadError) throw new ApiError(503, `the model failed to load: ${loadError.message}`, null, 'server_error');
    throw new ApiError(503, 'the model is still loading; retry when GET /health answers 200', null, 'server_error');
  };
  const checkModel = (l: Loaded, name: string | undefined) => {
    if (name !== undefined && name !== l.model.name) {
      throw new ApiError(404, `the model '${name}' does not exist; this server serves '${l.model.name}' (GET /v1/models)`, 'model', 'invalid_request_error', 'model_not_found');
    }
  };

  app.get('/health', async (_req, reply) => {
    if (loaded) return { status: 'ok' };
    return reply.code(503).send({ status: loadError ? 'failed' : 'loading', ...(loadError ? { error: loadError.message } : {}) });
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get('/v1/models', async () => {
    const l = need();
    return { object: 'list', data: [{ id: l.model.name, object: 'model', created: 0, owned_by: 'inferjit', max_model_len: l.model.engine.maxContext }] };
  });

  app.post('/tokenize', { schema: { body: tokenizeBodySchema } }, async (req) => {
    const l = need();
    const b = req.body as { model?: string; prompt?: string; messages?: RawMessage[]; add_special_tokens?: boolean };
    checkModel(l, b.model);
    if ((b.prompt === undefined) === (b.messages === undefined)) throw new ApiError(400, "give exactly one of 'prompt' or 'messages'", 'prompt');
    const tokens = b.prompt !== undefined
      ? l.model.tokenizer.encode(b.prompt, b.add_special_tokens === undefined ? {} : { addBos: b.add_special_tokens })
      : chatPromptIds(l, options, b.messages!);
    return { tokens, count: tokens.length, max_model_len: l.model.engine.maxContext };
  });

  app.post('/detokenize', { schema: { body: detokenizeBodySchema } }, async (req) => {
    const l = need();
    const b = req.body as { model?: string; tokens: number[] };
    checkModel(l, b.model);
    const V = l.model.tokenizer.tokens.length;
    const bad = b.tokens.findIndex((t) => t >= V);
    if (bad >= 0) throw new ApiError(400, `tokens[${bad}] = ${b.tokens[bad]} is not a token id (the vocabulary has ${V})`, `tokens[${bad}]`);
    return { prompt: l.model.tokenizer.decode(b.tokens) };
  });

  app.post('/v1/completions', { schema: { body: completionBodySchema } }, async (req, reply) => {
    const l = need();
    const b = req.body as CompletionBody;
    checkModel(l, b.model);
    if (b.echo) throw new ApiError(400, "'echo' is not supported yet; leave it out", 'echo');
    const prompts = completionPrompts(l, b.prompt);
    return runRequest(l, metrics, req, reply, b, prompts, b.max_tokens ?? 16, 'text_completion', b.logprobs ?? undefined);
  });

  app.post('/v1/chat/completions', { schema: { body: chatBodySchema } }, async (req, reply) => {
    const l = need();
    const b = req.body as ChatBody;
    checkModel(l, b.model);
    if (b.top_logprobs != null && !b.logprobs) throw new ApiError(400, "'top_logprobs' needs 'logprobs': true", 'top_logprobs');
    const prompt = chatPromptIds(l, options, b.messages);
    const maxTokens = b.max_completion_tokens ?? b.max_tokens ?? null;
    return runRequest(l, metrics, req, reply, b, [prompt], maxTokens, 'chat.completion', b.logprobs ? (b.top_logprobs ?? 0) : undefined);
  });

  let address = '';
  return {
    app, ready, metrics,
    get scheduler() { return loaded?.scheduler ?? null; },
    get queue() { return loaded?.queue ?? null; },
    async listen(port = 8000, host = '127.0.0.1') {
      address = await app.listen({ port, host });
      return address;
    },
    async close() {
      await loaded?.queue?.close();
      await loaded?.scheduler.close();
      await app.close();
    },
  };
}

type RawMessage = { role: string; content?: string | { type: string; text?: string }[] | null };

interface CommonBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  ignore_eos?: boolean | null;
  priority?: number | null;
}
interface CompletionBody extends CommonBody { prompt: string | string[] | number[] | number[][]; echo?: boolean | null; logprobs?: number | null }
interface ChatBody extends CommonBody { messages: RawMessage[]; max_completion_tokens?: number | null; logprobs?: boolean | null; top_logprobs?: number | null }

function completionPrompts(l: Loaded, prompt: CompletionBody['prompt']): number[][] {
  const V = l.model.engine.vocabSize;
  const list: (string | number[])[] = typeof prompt === 'string' ? [prompt]
    : typeof prompt[0] === 'number' ? [prompt as number[]] : prompt as (string | number[])[];
  return list.map((p, i) => {
    if (typeof p === 'string') {
      const ids = l.model.tokenizer.encode(p);
      if (ids.length === 0) throw new ApiError(400, `the prompt${list.length > 1 ? ` at index ${i}` : ''} is empty (it has no tokens)`, 'prompt');
      return ids;
    }
    const bad = p.findIndex((t) => t >= V);
    if (bad >= 0) throw new ApiError(400, `prompt token ${p[bad]} at index ${bad} is not a token id (the vocabulary has ${V})`, 'prompt');
    return p;
  });
}

function chatPromptIds(l: Loaded, options: ServerOptions, messages: RawMessage[]): number[] {
  if (!options.chatTemplate && !l.model.chatTemplateSource) {
    throw new ApiError(400, `the model '${l.model.name}' has no chat template (no tokenizer.chat_template in the file) and the server was given none, so chat completions are unavailable; use /v1/completions with a formatted prompt`, 'messages');
  }
  const flat = messages.map((m, i) => {
    const c = m.content;
    if (Array.isArray(c)) {
      const bad = c.findIndex((p) => p.type !== 'text');
      if (bad >= 0) throw new ApiError(400, `messages[${i}].content[${bad}] has type '${c[bad].type}'; only 'text' parts are supported`, `messages[${i}].content`);
      return { role: m.role, content: c.map((p) => p.text ?? '').join('') };
    }
    return { role: m.role, content: c ?? '' };
  });
  if (options.chatTemplate) return l.model.tokenizer.encode(options.chatTemplate(flat), { parseSpecial: true });
  let text: string;
  try {
    text = applyChatTemplate(l.model.tokenizer, flat, { template: l.model.chatTemplateSource });
  } catch (e) {
    // The template refused the conversation (raise_exception: e.g. roles that do not alternate).
    throw new ApiError(400, `the model's chat template refused these messages: ${(e as Error).message}`, 'messages');
  }
  return encodeChatPrompt(l.model.tokenizer, text);
}

interface Choice { index: number; text: string; finish: FinishReason | null; generated: number; logprobs: TokenLogprob[] }

async function runRequest(l: Loaded, metrics: ServeMetrics, req: FastifyRequest, reply: FastifyReply, b: CommonBody,
  prompts: number[][], maxTokensAsked: number | null, kind: 'text_completion' | 'chat.completion', logprobs?: number): Promise<unknown> {
  const engine = l.model.engine;
  const V = engine.vocabSize;
  const param = kind === 'chat.completion' ? 'messages' : 'prompt';
  let maxTokens = maxTokensAsked ?? 0;
  for (const p of prompts) {
    if (p.length >= engine.maxContext) {
      throw new ApiError(400, `this model's maximum context length is ${engine.maxContext} tokens; the ${param} has ${p.length} tokens (at most ${engine.maxContext - 1}, leaving room for one generated token)`, param, 'invalid_request_error', 'context_length_exceeded');
    }
    if (maxTokensAsked !== null && p.length + maxTokensAsked > engine.maxContext) {
      const name = kind === 'chat.completion' && b.max_tokens == null ? 'max_completion_tokens' : 'max_tokens';
      throw new ApiError(400, `this model's maximum context length is ${engine.maxContext} tokens; you asked for ${p.length + maxTokensAsked} (${p.length} in the ${param}, ${maxTokensAsked} for the completion); lower '${name}'`, name, 'invalid_request_error', 'context_length_exceeded');
    }
  }
  const bias: Record<number, number> = {};
  for (const [k, v] of Object.entries(b.logit_bias ?? {})) {
    if (Number(k) >= V) throw new ApiError(400, `logit_bias key ${k} is not a token id (the vocabulary has ${V})`, 'logit_bias');
    bias[Number(k)] = v;
  }
  const n = b.n ?? 1;
  // An empty stop string would match at once: it means no stop string (as OpenAI treats "stop": "").
  const stop = (b.stop == null ? [] : typeof b.stop === 'string' ? [b.stop] : b.stop).filter((x) => x.length > 0);
  const stopTokens = b.ignore_eos ? new Set<number>() : new Set(l.model.tokenizer.eogIds);
  const created = Math.floor(Date.now() / 1000);
  const id = `${kind === 'chat.completion' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
  const stream = b.stream === true;
  const includeUsage = stream && b.stream_options?.include_usage === true;
  const chunkObject = kind === 'chat.completion' ? 'chat.completion.chunk' : 'text_completion';

  const choices: Choice[] = [];
  const group: { req: SequenceRequest; events: import('./scheduler.js').SequenceEvents }[] = [];
  let promptTokens = 0;
  let remaining = prompts.length * n;
  let done!: () => void;
  const finished = new Promise<void>((r) => { done = r; });
  let failure: Error | null = null;
  let write: ((data: unknown) => void) | null = null;

  const start = performance.now();
  prompts.forEach((p, pi) => {
    promptTokens += p.length * n;
    for (let j = 0; j < n; j++) {
      const index = pi * n + j;
      const choice: Choice = { index, text: '', finish: null, generated: 0, logprobs: [] };
      choices.push(choice);
      const sampling: SamplingOptions = {
        temperature: b.temperature ?? 1,
        ...(b.top_p != null ? { topP: b.top_p } : {}),
        ...(b.top_k != null && b.top_k > 0 ? { topK: b.top_k } : {}),
        ...(b.min_p != null ? { minP: b.min_p } : {}),
        ...(b.presence_penalty != null ? { presencePenalty: b.presence_penalty } : {}),
        ...(b.frequency_penalty != null ? { frequencyPenalty: b.frequency_penalty } : {}),
        ...(b.repetition_penalty != null ? { repetitionPenalty: b.repetition_penalty } : {}),
        ...(Object.keys(bias).length ? { logitBias: bias } : {}),
        // Choices of one request differ: each draws from its own stream, seed + index.
        ...(b.seed != null ? { seed: (b.seed + index) % 0x100000000 } : {}),
      };
      let first = 0, last = 0;
      group.push({
        req: { promptIds: p, sampling, maxTokens: maxTokensAsked ?? engine.maxContext - p.length, stopTokens, stop, priority: b.priority ?? 0, logprobs },
        events: {
          onText(text, token, logprob) {
            const now = performance.now();
            if (token >= 0) {
              if (first === 0) { first = now; metrics.ttft.observe(metrics.labels, (now - start) / 1000); } else {
                metrics.interToken.observe(metrics.labels, (now - last) / 1000);
                metrics.timePerOutputToken.observe(metrics.labels, (now - last) / 1000);
              }
              last = now;
            }
            const at = choice.text.length;
            choice.text += text;
            if (logprob) choice.logprobs.push(logprob);
            if (write && (text || logprob)) write(chunkFor(index, text, null, logprob ? [logprob] : null, at));
          },
          onFinish(reason, info) {
            choice.finish = reason;
            choice.generated = info.generatedTokens;
            metrics.promptTokens.inc(metrics.labels, info.promptTokens);
            metrics.generationTokens.inc(metrics.labels, info.generatedTokens);
            metrics.success.inc({ ...metrics.labels, finished_reason: reason }, 1);
            metrics.e2e.observe(metrics.labels, (performance.now() - start) / 1000);
            if (reason === 'error' && !failure) failure = info.error ?? new Error('generation failed');
            if (write && reason !== 'error' && reason !== 'abort') write(chunkFor(index, '', reason));
            if (--remaining === 0) done();
          },
        },
      });
    }
  });

  const tokenizer = l.model.tokenizer;
  const lp = (list: TokenLogprob[] | null, textOffset: number) => list === null || logprobs === undefined ? null
    : kind === 'chat.completion' ? chatLogprobs(tokenizer, list) : completionLogprobs(tokenizer, list, textOffset);
  const chunkFor = (index: number, text: string, reason: FinishReason | null, logs: TokenLogprob[] | null = null, at = 0) => ({
    id, object: chunkObject, created, model: l.model.name,
    choices: [kind === 'chat.completion'
      ? { index, delta: reason ? {} : { content: text }, logprobs: lp(logs, at), finish_reason: reason }
      : { index, text, logprobs: lp(logs, at), finish_reason: reason }],
  });

  let ids: number[];
  try {
    ids = l.sink.submit(group);
  } catch (e) {
    if (e instanceof QueueFullError) {
      reply.header('retry-after', String(e.retryAfterSeconds));
      throw new ApiError(429, e.message, null, 'server_error', 'too_many_requests');
    }
    throw e;
  }
  // A client that goes away (disconnect, abort) frees its sequences at the next step.
  let complete = false;
  reply.raw.on('close', () => { if (!complete) for (const s of ids) l.sink.abort(s); });

  const usage = () => {
    const completion = choices.reduce((s, c) => s + c.generated, 0);
    return { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion };
  };

  if (stream) {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    write = (data) => { if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`); };
    if (kind === 'chat.completion') {
      for (const c of choices) write({ id, object: chunkObject, created, model: l.model.name, choices: [{ index: c.index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
    }
    await finished;
    if (failure) {
      write(new ApiError(500, `generation failed: ${(failure as Error).message}`, null, 'server_error').body());
    } else if (includeUsage) {
      write({ id, object: chunkObject, created, model: l.model.name, choices: [], usage: usage() });
    }
    if (!res.destroyed) res.end('data: [DONE]\n\n');
    complete = true;
    return reply;
  }

  await finished;
  complete = true;
  if (failure) throw new ApiError(500, `generation failed: ${(failure as Error).message}`, null, 'server_error');
  const finishReason = (c: Choice) => (c.finish === 'length' ? 'length' : 'stop');
  return {
    id, object: kind, created, model: l.model.name,
    choices: choices.map((c) => kind === 'chat.completion'
      ? { index: c.index, message: { role: 'assistant', content: c.text }, logprobs: lp(c.logprobs, 0), finish_reason: finishReason(c) }
      : { index: c.index, text: c.text, logprobs: lp(c.logprobs, 0), finish_reason: finishReason(c) }),
    usage: usage(),
  };
}

const utf8 = new TextDecoder();
const tokenBytes = (tokenizer: ServedModel['tokenizer'], id: number): Uint8Array => tokenizer.tokenBytes(id, { stripDummyPrefix: false });

/** Chat completions' logprobs: { content: [{ token, logprob, bytes, top_logprobs }] }. */
function chatLogprobs(tokenizer: ServedModel['tokenizer'], list: TokenLogprob[]) {
  const entry = (token: number, logprob: number) => { const b = tokenBytes(tokenizer, token); return { token: utf8.decode(b), logprob, bytes: [...b] }; };
  return { content: list.map((l) => ({ ...entry(l.token, l.logprob), top_logprobs: l.top.map((t) => entry(t.token, t.logprob)) })) };
}

/** Completions' logprobs: parallel lists of tokens, their logprobs, the top alternatives and text offsets. */
function completionLogprobs(tokenizer: ServedModel['tokenizer'], list: TokenLogprob[], textOffset: number) {
  const text = (id: number) => utf8.decode(tokenBytes(tokenizer, id));
  const offsets: number[] = [];
  let at = textOffset;
  for (const l of list) { offsets.push(at); at += text(l.token).length; }
  return {
    tokens: list.map((l) => text(l.token)),
    token_logprobs: list.map((l) => l.logprob),
    top_logprobs: list.map((l) => Object.fromEntries(l.top.map((t) => [text(t.token), t.logprob]))),
    text_offset: offsets,
  };
}
