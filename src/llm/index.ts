// LLM inference: decoder families as model code compiled by the JIT (src/llm/models), configs and
// weights (GGUF, safetensors, quantized formats), the paged step engine, sampling, generation, tokenizers.
export { type LlamaConfig, type RopeScaling, type Llama3RopeScaling, type LinearRopeScaling, llamaConfigFromGguf, llamaConfigFromHuggingFace, ropeInverseFrequencies } from './config.js';
export {
  type WeightFormat, type WeightMatrix, type LlamaWeights, type LoadOptions, type LlamaLayerWeights, type LoadedLlama,
  WEIGHT_FORMAT_CODES, loadLlama, loadLlamaGguf, loadLlamaSafetensors, dequantizeMatrix, quantizeMatrix, weightBytes,
  packMatrix, packedKernelsFast,
} from './weights.js';
export { PagedKvCache, KvCacheFullError, type KvDType, type PagedKvCacheOptions } from './kv-cache.js';
export { Sampler, type SamplingOptions, SAMPLING_OPTION_NAMES, argmax, topIndices, logSoftmax, klDivergence } from './sampling.js';
export { NonFiniteLogitsError, InvalidTokenIdError, UnknownOptionError } from './errors.js';
export { ModelFileError, ModelConfigError, TokenizerFileError, GgufError, SafetensorsError } from '../io/errors.js';
export { generate, greedyTokens, Generation, GENERATE_OPTION_NAMES, type GenerateOptions, type GenerationChunk, type GenerationStats, type FinishReason } from './generate.js';
export * from './tokenizer/index.js';
export { StepEngine, EngineCapacityError, type StepInputs, type StepDecoder, type StepEngineOptions, type SequenceOptions, type StepFinishReason } from './step-engine.js';
export { PagedStepRunner, type PagedRunnerOptions, type PagedSequence, type StepEntry, type KvCacheDtype } from './paged-runner.js';
export { chat, applyChatTemplate, renderChatTemplate, encodeChatPrompt, specialTokenVariables, type ChatMessage, type ChatOptions, type ChatTemplateOptions } from './chat.js';
export { type LoadPrecision, LOAD_PRECISIONS } from './models/weight-params.js';
export { PagedMixtral, loadPagedMixtral, type MixtralConfig } from './models/index.js';
export { PagedLlama, loadPagedLlama, loadCausalLM, architectureOf, registerModelFamily, supportedArchitectures, type PagedLlamaOptions, type LoadPagedOptions, type LoadedCausalLM, type LoadCausalLMOptions } from './models/index.js';
export {
  Qwen2, loadQwen2, Gemma, loadGemma, Phi3, loadPhi3, Gpt2, loadGpt2,
  WeightSource, pagedSelfAttention, ropeTables, type DecoderConfig, type AttentionShape, type LoadFamilyOptions,
} from './models/index.js';
// post-training quantization of these decoders (src/quant): calibration, smoothing, GPTQ/AWQ, artifacts
export { quantize, QuantizedDecoder, type SiteReport, type QuantizeOptions, QUANTIZE_OPTION_NAMES, saveQuantized, loadQuantized, QuantArtifactError } from '../quant/index.js';
// LLaVA: CLIP vision encoder + projector, CLIP preprocessing, image rows spliced into the decoder step
export * from './vision/index.js';
