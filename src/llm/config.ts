// Llama-family model configuration, read from GGUF metadata (llama.* keys) or a Hugging Face
// config.json, and the rotary frequencies it implies (base, linear scaling, Llama-3 scaling).
import { type GgufFile } from '../io/gguf/index.js';
import { ModelConfigError } from '../io/errors.js';

/** Llama-3 style frequency scaling (HF `rope_scaling` with rope_type "llama3"). */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}
/** Position interpolation: positions are divided by `factor`. */
export interface LinearRopeScaling { type: 'linear'; factor: number }
export type RopeScaling = Llama3RopeScaling | LinearRopeScaling;

export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Dims of each head that rotary rotates (the rest pass through). */
  ropeDim: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /**
   * Rotary pairing. GGUF llama files hold Q/K weights permuted by convert_hf_to_gguf.py so that
   * llama.cpp's "normal" rope rotates adjacent pairs (2i, 2i+1): interleaved = true. Hugging Face
   * checkpoints rotate halves (i, i + d/2) with rotate_half: interleaved = false.
   */
  ropeInterleaved: boolean;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId?: number;
  eosTokenId?: number | number[];
}

type NumericField = 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'ropeDim'
  | 'ropeTheta' | 'rmsNormEps' | 'maxPositionEmbeddings';
/** The key each field comes from in a file, so an error names what the user can look up and fix. */
type KeyNames = Record<NumericField | 'ropeScaling', string>;

const GGUF_KEYS: KeyNames = {
  vocabSize: 'llama.vocab_size (or token_embd.weight rows)', hiddenSize: 'llama.embedding_length', intermediateSize: 'llama.feed_forward_length',
  numLayers: 'llama.block_count', numHeads: 'llama.attention.head_count', numKvHeads: 'llama.attention.head_count_kv',
  headDim: 'llama.attention.key_length (or embedding_length / head_count)', ropeDim: 'llama.rope.dimension_count',
  ropeTheta: 'llama.rope.freq_base', rmsNormEps: 'llama.attention.layer_norm_rms_epsilon', maxPositionEmbeddings: 'llama.context_length',
  ropeScaling: 'llama.rope.scaling.factor',
};
const HF_KEYS: KeyNames = {
  vocabSize: 'vocab_size', hiddenSize: 'hidden_size', intermediateSize: 'intermediate_size', numLayers: 'num_hidden_layers',
  numHeads: 'num_attention_heads', numKvHeads: 'num_key_value_heads', headDim: 'head_dim (or hidden_size / num_attention_heads)',
  ropeDim: 'head_dim', ropeTheta: 'rope_theta', rmsNormEps: 'rms_norm_eps', maxPositionEmbeddings: 'max_position_embeddings',
  ropeScaling: 'rope_scaling',
};

/**
 * Every hyper-parameter the runtime computes with is checked here: a zero or NaN rope base, a
 * negative epsilon or a zero scaling factor does not fail anywhere else, it gives NaN logits.
 */
function validate(c: LlamaConfig, source: string, keys: KeyNames): LlamaConfig {
  const fail = (detail: string): never => { throw new ModelConfigError(source, detail); };
  for (const k of ['vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'ropeDim', 'maxPositionEmbeddings'] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] <= 0) fail(`${keys[k]} must be a positive integer, got ${c[k]}`);
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    fail(`${keys.numHeads} (${c.numHeads}) must be a multiple of ${keys.numKvHeads} (${c.numKvHeads})`);
  }
  if (c.ropeDim % 2 !== 0 || c.ropeDim > c.headDim) fail(`${keys.ropeDim} = ${c.ropeDim} must be even and at most the head size ${c.headDim}`);
  if (!(Number.isFinite(c.ropeTheta) && c.ropeTheta > 0)) fail(`${keys.ropeTheta} must be a finite number > 0, got ${c.ropeTheta}`);
  if (!(Number.isFinite(c.rmsNormEps) && c.rmsNormEps > 0)) fail(`${keys.rmsNormEps} must be a finite number > 0, got ${c.rmsNormEps}`);
  const s = c.ropeScaling;
  if (s) {
    const pos = (v: number, what: string) => { if (!(Number.isFinite(v) && v > 0)) fail(`${keys.ropeScaling}${what} must be a finite number > 0, got ${v}`); };
    pos(s.factor, keys.ropeScaling === 'rope_scaling' ? '.factor' : '');
    if (s.type === 'llama3') {
      pos(s.lowFreqFactor, '.low_freq_factor');
      pos(s.highFreqFactor, '.high_freq_factor');
      pos(s.originalMaxPositionEmbeddings, '.original_max_position_embeddings');
      // The smoothing interpolates over (low, high); equal factors divide by zero (transformers requires low < high).
      if (!(s.lowFreqFactor < s.highFreqFactor)) {
        fail(`${keys.ropeScaling}.low_freq_factor (${s.lowFreqFactor}) must be smaller than high_freq_factor (${s.highFreqFactor})`);
      }
    }
  }
  return c;
}

/** The config of a GGUF file with general.architecture "llama" (Llama 2/3, TinyLlama, Mistral). */
export function llamaConfigFromGguf(file: GgufFile): LlamaConfig {
  const arch = file.architecture;
  if (arch !== 'llama') {
    throw new ModelConfigError(file.path, `general.architecture is ${JSON.stringify(arch)}; only "llama" models are supported`);
  }
  const key = (k: string) => `llama.${k}`;
  const hidden = file.getNumber(key('embedding_length'));
  const numHeads = file.getNumber(key('attention.head_count'));
  const numKvHeads = file.getNumber(key('attention.head_count_kv'), numHeads);
  const headDim = file.getNumber(key('attention.key_length'), hidden / numHeads);
  const embd = file.tensorInfo('token_embd.weight');
  const vocabSize = file.getNumber(key('vocab_size'), embd.shape[0]);
  let ropeScaling: RopeScaling | null = null;
  const scalingType = file.getString(key('rope.scaling.type'), 'none');
  if (scalingType === 'linear') ropeScaling = { type: 'linear', factor: file.getNumber(key('rope.scaling.factor')) };
  else if (scalingType !== 'none') throw new ModelConfigError(file.path, `rope scaling type ${JSON.stringify(scalingType)} is not supported (supported: none, linear; Llama-3 scaling comes as a rope_freqs tensor)`);
  const eos = file.get('tokenizer.ggml.eos_token_id');
  const bos = file.get('tokenizer.ggml.bos_token_id');
  return validate({
    vocabSize,
    hiddenSize: hidden,
    intermediateSize: file.getNumber(key('feed_forward_length')),
    numLayers: file.getNumber(key('block_count')),
    numHeads,
    numKvHeads,
    headDim,
    ropeDim: file.getNumber(key('rope.dimension_count'), headDim),
    ropeTheta: file.getNumber(key('rope.freq_base'), 10000),
    ropeScaling,
    ropeInterleaved: true,
    rmsNormEps: file.getNumber(key('attention.layer_norm_rms_epsilon'), 1e-5),
    maxPositionEmbeddings: file.getNumber(key('context_length'), 2048),
    tieWordEmbeddings: !file.hasTensor('output.weight'),
    bosTokenId: typeof bos === 'number' ? bos : undefined,
    eosTokenId: typeof eos === 'number' ? eos : undefined,
  }, file.path, GGUF_KEYS);
}

/** The config of a Hugging Face LlamaForCausalLM / MistralForCausalLM config.json object. */
export function llamaConfigFromHuggingFace(json: Record<string, unknown>, source = 'config.json'): LlamaConfig {
  const num = (k: string, fallback?: number): number => {
    const v = json[k];
    if (v === undefined || v === null) {
      if (fallback === undefined) throw new ModelConfigError(source, `"${k}" is missing`);
      return fallback;
    }
    if (typeof v !== 'number') throw new ModelConfigError(source, `"${k}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const mt = json.model_type;
  if (mt !== undefined && mt !== 'llama' && mt !== 'mistral') {
    throw new ModelConfigError(source, `model_type ${JSON.stringify(mt)} is not a Llama-family model (llama, mistral)`);
  }
  const hidden = num('hidden_size');
  const numHeads = num('num_attention_heads');
  const headDim = num('head_dim', hidden / numHeads);
  let ropeScaling: RopeScaling | null = null;
  const rs = json.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object' || Array.isArray(rs)) throw new ModelConfigError(source, `rope_scaling must be an object or null, got ${JSON.stringify(rs)}`);
    const r = rs as Record<string, unknown>;
    const type = r.rope_type ?? r.type;
    // A missing field must not become NaN through Number(undefined): name it.
    const field = (k: string): number => {
      const v = r[k];
      if (v === undefined || v === null) throw new ModelConfigError(source, `rope_scaling.${k} is missing (rope_type ${JSON.stringify(type)} needs it)`);
      if (typeof v !== 'number') throw new ModelConfigError(source, `rope_scaling.${k} must be a number, got ${JSON.stringify(v)}`);
      return v;
    };
    if (type === 'llama3') {
      ropeScaling = {
        type: 'llama3',
        factor: field('factor'),
        lowFreqFactor: field('low_freq_factor'),
        highFreqFactor: field('high_freq_factor'),
        originalMaxPositionEmbeddings: field('original_max_position_embeddings'),
      };
    } else if (type === 'linear') {
      ropeScaling = { type: 'linear', factor: field('factor') };
    } else if (type !== 'default') {
      throw new ModelConfigError(source, `rope_scaling type ${JSON.stringify(type)} is not supported (supported: llama3, linear)`);
    }
  }
  return validate({
    vocabSize: num('vocab_size'),
    hiddenSize: hidden,
    intermediateSize: num('intermediate_size'),
    numLayers: num('num_hidden_layers'),
    numHeads,
    numKvHeads: num('num_key_value_heads', numHeads),
    headDim,
    ropeDim: headDim,
    ropeTheta: num('rope_theta', 10000),
    ropeScaling,
    ropeInterleaved: false,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    maxPositionEmbeddings: num('max_position_embeddings', 2048),
    tieWordEmbeddings: json.tie_word_embeddings === true,
    bosTokenId: typeof json.bos_token_id === 'number' ? json.bos_token_id : undefined,
    eosTokenId: (typeof json.eos_token_id === 'number' || Array.isArray(json.eos_token_id)) ? json.eos_token_id as number | number[] : undefined,
  }, source, HF_KEYS);
}

/**
 * Inverse rotary frequencies, one per rotated pair: base^(-2i/ropeDim), divided by the per-pair
 * factors (a GGUF `rope_freqs` tensor, or Llama-3 scaling computed as transformers does) and by a
 * linear scaling factor. angle(pos, i) = pos · invFreq[i].
 */
export function ropeInverseFrequencies(config: LlamaConfig, freqFactors?: ArrayLike<number>): Float64Array {
  const half = config.ropeDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.pow(config.ropeTheta, (-2 * i) / config.ropeDim);
  const s = config.ropeScaling;
  if (freqFactors) {
    if (freqFactors.length !== half) throw new RangeError(`rope_freqs has ${freqFactors.length} factors, expected ropeDim/2 = ${half}`);
    for (let i = 0; i < half; i++) inv[i] /= freqFactors[i];
  } else if (s?.type === 'llama3') {
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] /= s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
    }
  }
  if (s?.type === 'linear') for (let i = 0; i < half; i++) inv[i] /= s.factor;
  return inv;
}
