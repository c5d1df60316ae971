// What the server serves: an engine, the tokenizer, and the name clients ask for.
import * as path from 'node:path';
import { readGguf } from '../io/gguf/index.js';
import { LlamaEngine, type EngineOptions } from '../llm/engine.js';
import { tokenizerFromGguf, type Tokenizer } from '../llm/tokenizer/index.js';
import { SequentialLlamaEngine, type ServeEngine } from './engine.js';

export interface ServedModel {
  engine: ServeEngine;
  tokenizer: Tokenizer;
  /** The `model` value requests must name (and GET /v1/models lists). */
  name: string;
  /** The model file's chat template (tokenizer.chat_template), when it has one. */
  chatTemplateSource?: string;
}

/** Loads a .gguf file for serving (one LlamaEngine behind the sequential adapter). */
export function loadServedModel(file: string, options: EngineOptions = {}, name?: string): ServedModel {
  const llama = LlamaEngine.load(file, options);
  const gguf = llama.gguf ?? readGguf(file);
  const tokenizer = tokenizerFromGguf(gguf);
  const template = gguf.metadata.get('tokenizer.chat_template');
  return {
    engine: new SequentialLlamaEngine(llama),
    tokenizer,
    name: name ?? path.basename(file),
    chatTemplateSource: typeof template === 'string' ? template : undefined,
  };
}
