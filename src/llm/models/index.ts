// Model families as user code, and the one loader that picks a family from a file.
//
// Every family is a decoder module whose forward is one paged serving step (see llama.ts and
// src/llm/step-engine.ts); `loadCausalLM` reads the architecture a GGUF file
// (general.architecture) or a Hugging Face directory (config.json model_type) declares, hands the
// file to that family's loader, and returns the model, its tokenizer and a StepEngine running the
// compiled step. Adding a family is one file here plus one registry entry.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readGguf } from '../../io/gguf/index.js';
import { ModelConfigError } from '../../io/errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { StepDecoder, StepEngine } from '../step-engine.js';
import { loadPagedLlama, type LoadPagedOptions } from './llama.js';
import { loadQwen2 } from './qwen2.js';
import { loadGemma } from './gemma.js';
import { loadPhi3 } from './phi3.js';
import { loadGpt2 } from './gpt2.js';

export { PagedLlama, loadPagedLlama, type PagedLlamaOptions, type LoadPagedOptions } from './llama.js';
export { Qwen2, loadQwen2 } from './qwen2.js';
export { Gemma, loadGemma } from './gemma.js';
export { Phi3, loadPhi3 } from './phi3.js';
export { Gpt2, loadGpt2 } from './gpt2.js';
export { type DecoderConfig, type LoadFamilyOptions, type AttentionShape, WeightSource, pagedSelfAttention, ropeTables } from './common.js';
import { isMixtralGguf, loadPagedMixtral } from './mixtral.js';

export { PagedMixtral, SparseMoe, loadPagedMixtral, loadMixtralGguf, mixtralConfigFromGguf, isMixtralGguf, type MixtralConfig, type MixtralWeights, type MixtralLayerWeights } from './mixtral.js';

/** What every family loader returns. */
export interface LoadedCausalLM<M extends StepDecoder = StepDecoder> {
  model: M;
  /** null for a Hugging Face directory without tokenizer.json (token ids in, token ids out). */
  tokenizer: Tokenizer | null;
  engine: StepEngine;
  /** The architecture name the file declared. */
  architecture: string;
}

export type LoadCausalLMOptions = LoadPagedOptions;

type FamilyLoader = (source: string, options: LoadCausalLMOptions) => { model: StepDecoder; tokenizer: Tokenizer | null; engine: StepEngine };

/** llama.cpp writes Mixtral as general.architecture "llama" with llama.expert_count > 0: the
 *  expert count, not the architecture name, picks the mixture-of-experts class. */
const loadLlamaOrMixtral: FamilyLoader = (source, options) =>
  (!fs.statSync(source).isDirectory() && isMixtralGguf(readGguf(source)) ? loadPagedMixtral(source, options) : loadPagedLlama(source, options));

/** Architecture name (GGUF general.architecture, or HF model_type) -> loader. */
const FAMILIES = new Map<string, FamilyLoader>([
  ['llama', loadLlamaOrMixtral],
  ['mistral', loadPagedLlama],
  ['qwen2', loadQwen2],
  ['gemma', loadGemma],
  ['phi3', loadPhi3],
  ['gpt2', loadGpt2],
  ['mixtral', loadPagedMixtral],
]);

/** Registers a model family under the architecture names its files declare. */
export function registerModelFamily(architectures: readonly string[], loader: FamilyLoader): void {
  for (const a of architectures) FAMILIES.set(a, loader);
}

/** Architectures `loadCausalLM` can load, sorted. */
export const supportedArchitectures = (): string[] => [...FAMILIES.keys()].sort();

/** The architecture a .gguf file or a Hugging Face checkpoint directory declares. */
export function architectureOf(source: string): string {
  if (!fs.existsSync(source)) throw new ModelConfigError(source, 'no such file or directory: pass a .gguf file or a Hugging Face checkpoint directory');
  if (fs.statSync(source).isDirectory()) {
    const configPath = path.join(source, 'config.json');
    if (!fs.existsSync(configPath)) throw new ModelConfigError(source, 'the directory has no config.json: pass a .gguf file or a Hugging Face checkpoint directory');
    const json = JSON.parse(fs.readFileSync(configPath, 'utf8')) as { model_type?: unknown };
    if (typeof json.model_type !== 'string') throw new ModelConfigError(configPath, 'config.json has no "model_type" string naming the architecture');
    return json.model_type;
  }
  const arch = readGguf(source).architecture;
  if (typeof arch !== 'string') throw new ModelConfigError(source, 'the GGUF file has no general.architecture string');
  return arch;
}

/**
 * Loads a causal LM from a .gguf file or a Hugging Face directory: the declared architecture picks
 * the model class (an unsupported one is an error naming it and the supported ones).
 */
export function loadCausalLM(source: string, options: LoadCausalLMOptions = {}): LoadedCausalLM {
  const architecture = architectureOf(source);
  const loader = FAMILIES.get(architecture);
  if (!loader) {
    throw new ModelConfigError(source, `architecture ${JSON.stringify(architecture)} is not supported; supported: ${supportedArchitectures().join(', ')}`);
  }
  return { ...loader(source, options), architecture };
}
