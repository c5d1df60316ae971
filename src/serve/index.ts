// OpenAI-compatible serving: the HTTP server, the continuous-batching scheduler and the engine
// interface it drives (PagedServeEngine: one batched step of the compiled decoder per iteration).
export { createServer, type ServerOptions, type InferjitServer, type ChatMessage } from './server.js';
export { Scheduler, QueueFullError, type SchedulerOptions, type SchedulerHooks, type StepInfo, type SequenceRequest, type SequenceEvents, type FinishReason } from './scheduler.js';
export { PagedServeEngine, blocksFor, stepBuckets, tokenLogprob, type ServeEngine, type StepChunk, type StepOutput, type TokenLogprob, type WarmupReport } from './engine.js';
export { loadServedModel, DEFAULT_CACHE_TOKENS, type ServedModel, type ServeModelOptions } from './model.js';
export { ServeMetrics } from './metrics.js';
export { ApiError } from './openai-schema.js';
export { createGrpcServer, loadInferjitProto, PROTO_FILE, type InferjitGrpcServer } from './grpc.js';
export { RedisQueue, type QueueOptions, type RequestSink } from './queue.js';
