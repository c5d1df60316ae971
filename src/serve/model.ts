// What the server serves: an engine, the tokenizer, and the name clients ask for. A model file
// loads through loadCausalLM (its architecture picks the model code, compiled by inferenceJit), and
// the server drives the loaded runner's pools through PagedServeEngine.
import * as path from 'node:path';
import { loadCausalLM } from '../llm/models/index.js';
import { pow2 } from '../llm/paged-runner.js';
import { type Tokenizer } from '../llm/tokenizer/index.js';
import { checkThreadCount, setNumThreads } from '../backends/cpu/index.js';
import { type JitOptions } from '../jit/options.js';
import { PagedServeEngine, type ServeEngine } from './engine.js';

export interface ServedModel {
  engine: ServeEngine;
  tokenizer: Tokenizer;
  /** The `model` value requests must name (and GET /v1/models lists). */
  name: string;
  /** The model file's chat template (tokenizer.chat_template), when it has one. */
  chatTemplateSource?: string;
}

/** How the served model's engine is built. */
export interface ServeModelOptions {
  /** Native thread pool size (default: physical cores). */
  threads?: number;
  /** Positions per KV block (default 16). */
  blockSize?: number;
  /** Positions the KV pool holds across all sequences (default 16384). */
  cacheTokens?: number;
  /** KV cache storage (default 'f32'; 'int8': a scale per row, dequantized inside paged attention). */
  kvDtype?: 'f32' | 'f16' | 'int8';
  /** Longest context of one sequence (default: the model's, at most 2048; and at most the pool). */
  maxContext?: number;
  /** Most sequences one step carries (default 64; the scheduler runs at most this many). */
  maxSeqs?: number;
  /** Most tokens one step carries, rounded up to a power of two (default 512). */
  maxStepTokens?: number;
  /** Reuse the KV blocks of prompt prefixes seen before (default true). */
  prefixCaching?: boolean;
  /** false: run the model code eagerly (slow; the oracle). Default: compiled by inferenceJit. */
  compile?: boolean;
  /** Extra inferenceJit options. */
  jit?: JitOptions;
}

export const DEFAULT_CACHE_TOKENS = 16384;

/** Loads a model file (.gguf or a Hugging Face directory) for serving. */
export function loadServedModel(file: string, options: ServeModelOptions = {}, name?: string): ServedModel {
  if (options.threads !== undefined) { checkThreadCount(options.threads, 'serve: options.threads'); setNumThreads(options.threads); }
  const blockSize = options.blockSize ?? 16;
  const cacheTokens = options.cacheTokens ?? DEFAULT_CACHE_TOKENS;
  if (!Number.isInteger(cacheTokens) || cacheTokens <= 0) throw new RangeError(`serve: cacheTokens must be a positive integer, got ${cacheTokens}`);
  const loaded = loadCausalLM(file, {
    blockSize, numBlocks: Math.ceil(cacheTokens / blockSize), kvDtype: options.kvDtype, maxContext: options.maxContext,
    maxSeqs: options.maxSeqs ?? 64, maxStepTokens: pow2(options.maxStepTokens ?? 512),
    prefixCaching: options.prefixCaching, compile: options.compile, jit: options.jit,
  });
  if (!loaded.tokenizer) throw new Error(`serve: ${file} has no tokenizer (a Hugging Face directory needs tokenizer.json); the server needs one to read prompts`);
  const template = loaded.tokenizer.chatTemplate;
  return {
    engine: new PagedServeEngine(loaded.engine.runner),
    tokenizer: loaded.tokenizer,
    name: name ?? path.basename(file),
    chatTemplateSource: typeof template === 'string' ? template : undefined,
  };
}
