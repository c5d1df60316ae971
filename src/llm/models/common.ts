// Pieces every model family shares: the hyper-parameters a decoder computes with (read from a GGUF
// file's `<arch>.*` keys or a Hugging Face config.json), a weight source over either file kind that
// checks shapes and refuses tensors nobody read, rotary tables, the attention core over the paged
// KV cache, and the loader that returns model + tokenizer + StepEngine. A family file (qwen2.ts,
// gemma.ts, phi3.ts, gpt2.ts) is then only its blocks and its tensor names.
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../../ops/index.js';
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import * as ops from '../../ops/index.js';
import { Tensor } from '../../tensor/tensor.js';
import { fromArray } from '../../tensor/creation.js';
import { readGguf, type GgufFile } from '../../io/gguf/index.js';
import { readSafetensors, type SafetensorsFile } from '../../io/safetensors.js';
import { GgufError, ModelConfigError, SafetensorsError } from '../../io/errors.js';
import { GGUF_QUANT_FORMATS, quantBlockValues, quantizedTensor } from '../../tensor/quantized.js';
import { type StepInputs, type StepEngineOptions, StepEngine } from '../step-engine.js';
import { type Tokenizer, tokenizerFromGguf, tokenizerFromHuggingFace } from '../tokenizer/index.js';

/** The hyper-parameters of a decoder-only transformer. */
export interface DecoderConfig {
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Dims of each head that rotary rotates (0: no rotary, e.g. GPT-2's learned positions). */
  ropeDim: number;
  ropeTheta: number;
  /** RMSNorm or LayerNorm epsilon, whichever the family uses. */
  normEps: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
}

/** Where each DecoderConfig field comes from in a config.json (absent: the family does not read it). */
export interface HfConfigKeys {
  vocabSize: string; hiddenSize: string; intermediateSize: string; numLayers: string; numHeads: string;
  numKvHeads?: string; headDim?: string; ropeTheta?: string; normEps: string; maxPositionEmbeddings: string;
}

export const LLAMA_STYLE_HF_KEYS: HfConfigKeys = {
  vocabSize: 'vocab_size', hiddenSize: 'hidden_size', intermediateSize: 'intermediate_size', numLayers: 'num_hidden_layers',
  numHeads: 'num_attention_heads', numKvHeads: 'num_key_value_heads', headDim: 'head_dim', ropeTheta: 'rope_theta',
  normEps: 'rms_norm_eps', maxPositionEmbeddings: 'max_position_embeddings',
};

function validate(c: DecoderConfig, source: string): DecoderConfig {
  const fail = (d: string): never => { throw new ModelConfigError(source, `${c.architecture}: ${d}`); };
  for (const k of ['vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'maxPositionEmbeddings'] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] <= 0) fail(`${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.numHeads % c.numKvHeads !== 0) fail(`the head count ${c.numHeads} must be a multiple of the KV head count ${c.numKvHeads}`);
  if (c.ropeDim % 2 !== 0 || c.ropeDim > c.headDim || c.ropeDim < 0) fail(`the rotary dims ${c.ropeDim} must be even and at most the head size ${c.headDim}`);
  if (c.ropeDim > 0 && !(Number.isFinite(c.ropeTheta) && c.ropeTheta > 0)) fail(`the rope base must be a finite number > 0, got ${c.ropeTheta}`);
  if (!(Number.isFinite(c.normEps) && c.normEps > 0)) fail(`the norm epsilon must be a finite number > 0, got ${c.normEps}`);
  return c;
}

/**
 * A family's config from GGUF metadata, llama.cpp's key names: `<arch>.embedding_length`,
 * `.feed_forward_length`, `.block_count`, `.attention.head_count(_kv)`, `.attention.key_length`,
 * `.rope.dimension_count`, `.rope.freq_base`, `.context_length`, and the norm epsilon under `epsKey`
 * (`attention.layer_norm_rms_epsilon` for RMSNorm families, `attention.layer_norm_epsilon` for LayerNorm).
 */
export function configFromGguf(file: GgufFile, arch: string, o: { epsKey: string; rotary: boolean; tied?: boolean }): DecoderConfig {
  const k = (s: string) => `${arch}.${s}`;
  const hidden = file.getNumber(k('embedding_length'));
  const numHeads = file.getNumber(k('attention.head_count'));
  const headDim = file.getNumber(k('attention.key_length'), hidden / numHeads);
  return validate({
    architecture: arch,
    vocabSize: file.getNumber(k('vocab_size'), file.tensorInfo('token_embd.weight').shape[0]),
    hiddenSize: hidden,
    intermediateSize: file.getNumber(k('feed_forward_length')),
    numLayers: file.getNumber(k('block_count')),
    numHeads,
    numKvHeads: file.getNumber(k('attention.head_count_kv'), numHeads),
    headDim,
    ropeDim: o.rotary ? file.getNumber(k('rope.dimension_count'), headDim) : 0,
    ropeTheta: file.getNumber(k('rope.freq_base'), 10000),
    normEps: file.getNumber(k(o.epsKey)),
    maxPositionEmbeddings: file.getNumber(k('context_length'), 2048),
    tieWordEmbeddings: o.tied ?? !file.hasTensor('output.weight'),
  }, file.path);
}

/** A family's config from a config.json object, with the family's key names. */
export function configFromHf(json: Record<string, unknown>, source: string, keys: HfConfigKeys,
  o: { rotary: boolean; intermediateFallback?: (hidden: number) => number; tied?: boolean; normEpsDefault?: number }): DecoderConfig {
  const num = (key: string | undefined, fallback?: number): number => {
    const v = key === undefined ? undefined : json[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) throw new ModelConfigError(source, `"${key}" is missing`);
      return fallback;
    }
    if (typeof v !== 'number') throw new ModelConfigError(source, `"${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const hidden = num(keys.hiddenSize), numHeads = num(keys.numHeads);
  const headDim = num(keys.headDim, hidden / numHeads);
  return validate({
    architecture: String(json.model_type),
    vocabSize: num(keys.vocabSize),
    hiddenSize: hidden,
    intermediateSize: num(keys.intermediateSize, o.intermediateFallback?.(hidden)),
    numLayers: num(keys.numLayers),
    numHeads,
    numKvHeads: num(keys.numKvHeads, numHeads),
    headDim,
    ropeDim: o.rotary ? headDim : 0,
    ropeTheta: num(keys.ropeTheta, 10000),
    normEps: num(keys.normEps, o.normEpsDefault),
    maxPositionEmbeddings: num(keys.maxPositionEmbeddings, 2048),
    tieWordEmbeddings: o.tied ?? json.tie_word_embeddings === true,
  }, source);
}

/**
 * The tensors of one file (GGUF or a safetensors checkpoint) as f32 Tensors of checked shapes.
 * Every name read is recorded: `finish()` then refuses a file holding tensors the family never read
 * (llama.cpp refuses those too: they mean metadata that does not describe the weights).
 */
export class WeightSource {
  private readonly used = new Set<string>();
  private constructor(readonly path: string, private readonly gguf: GgufFile | null, private readonly st: SafetensorsFile | null) {}

  static gguf(file: GgufFile): WeightSource { return new WeightSource(file.path, file, null); }
  static safetensors(st: SafetensorsFile): WeightSource { return new WeightSource(st.path, null, st); }

  get names(): string[] { return this.gguf ? this.gguf.tensors.map((t) => t.name) : this.st!.names; }
  has(name: string): boolean { return this.gguf ? this.gguf.hasTensor(name) : this.st!.hasTensor(name); }
  private fail(detail: string): Error { return this.gguf ? new GgufError(this.path, detail) : new SafetensorsError(this.path, detail); }

  /** The tensor as f32 with exactly `shape` (any stored float or GGUF quantized type is expanded). */
  tensor(name: string, shape: readonly number[]): Tensor {
    if (!this.has(name)) throw this.fail(`tensor ${JSON.stringify(name)} is missing (the file has ${this.names.length} tensors)`);
    this.used.add(name);
    let t = this.gguf ? this.gguf.toTensor(name, { dtype: 'f32' }) : this.st!.toTensor(name);
    const n = shape.reduce((a, b) => a * b, 1);
    // 1-D vectors may be stored with any shape of n values; matrices must match exactly
    const ok = shape.length === 1 ? t.size === n : t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    if (!ok) throw this.fail(`tensor ${JSON.stringify(name)} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    if (t.dtype !== 'f32') t = t.cast('f32');
    return shape.length === 1 && t.rank !== 1 ? t.reshape([n]) : t;
  }
  /**
   * A linear layer's weight [out, in]: a GGUF Q8_0/Q4_0/Q4_K/Q5_K/Q6_K matrix stays in its blocks as
   * stored (a quantized tensor: `F.linear` on it records quant_linear, the plan runs qgemm on those
   * bytes, no f32 copy exists); anything else is tensor()'s f32.
   */
  linear(name: string, shape: readonly [number, number]): Tensor {
    const q = this.quantized(name, shape);
    return q ?? this.tensor(name, shape);
  }

  /**
   * The output head of a tied model: the embedding table `embed` (already read as f32 from `name`)
   * when the file stores it as floats, else the file's quantized blocks of that table, as llama.cpp
   * runs a tied head (the f32 table then serves the row lookups only).
   */
  tiedHead(name: string, embed: Tensor): Tensor {
    return this.quantized(name, [embed.shape[0], embed.shape[1]]) ?? embed;
  }

  /** The GGUF tensor as a quantized weight, or null when it is not stored in a quantized format the kernels run. */
  private quantized(name: string, shape: readonly [number, number]): Tensor | null {
    if (!this.gguf || !this.gguf.hasTensor(name)) return null;
    const info = this.gguf.tensorInfo(name);
    const format = GGUF_QUANT_FORMATS[info.type];
    if (!format) return null;
    if (info.shape.length !== 2 || info.shape[0] !== shape[0] || info.shape[1] !== shape[1]) {
      throw this.fail(`tensor ${JSON.stringify(name)} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    // K-quant rows are 256 values: a row length the format cannot tile is expanded to f32 instead
    if (shape[1] % quantBlockValues(format) !== 0) return null;
    this.used.add(name);
    return quantizedTensor({ format, N: shape[0], K: shape[1], group: 32 }, this.gguf.tensorData(name));
  }

  /** Like tensor(), or null when the file does not hold it. */
  optional(name: string, shape: readonly number[]): Tensor | null { return this.has(name) ? this.tensor(name, shape) : null; }
  /** Marks tensors as known but unused (saved buffers such as rotary inv_freq or causal masks). */
  ignore(pattern: RegExp): void { for (const n of this.names) if (pattern.test(n)) this.used.add(n); }

  finish(): void {
    const left = this.names.filter((n) => !this.used.has(n));
    if (left.length === 0) return;
    const list = left.slice(0, 6).map((x) => JSON.stringify(x)).join(', ') + (left.length > 6 ? `, ... (${left.length} in all)` : '');
    throw this.fail(`the file holds tensors this model does not use: ${list} (more layers than the config says, or a different architecture)`);
  }
}

/** An opened model file: a GGUF file, or an HF directory's config.json and safetensors. */
export interface ModelFile {
  weights: WeightSource;
  gguf: GgufFile | null;
  /** config.json (HF directories only). */
  hf: Record<string, unknown> | null;
  configPath: string;
  dir: string | null;
}

export function openModelFile(source: string): ModelFile {
  if (fs.existsSync(source) && fs.statSync(source).isDirectory()) {
    const configPath = path.join(source, 'config.json');
    let json: unknown;
    try { json = JSON.parse(fs.readFileSync(configPath, 'utf8')); } catch (e) { throw new ModelConfigError(configPath, `cannot read the model config: ${(e as Error).message}`); }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelConfigError(configPath, 'the model config must be a JSON object');
    return { weights: WeightSource.safetensors(readSafetensors(source)), gguf: null, hf: json as Record<string, unknown>, configPath, dir: source };
  }
  const file = readGguf(source);
  return { weights: WeightSource.gguf(file), gguf: file, hf: null, configPath: source, dir: null };
}

/** cos / sin of every position's rotary angles [positions, ropeDim/2] (float64 angles, rounded once). */
export function ropeTables(ropeDim: number, theta: number, positions: number): { cos: Tensor; sin: Tensor } {
  const half = ropeDim / 2;
  const cos = new Float32Array(positions * half), sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * Math.pow(theta, (-2 * i) / ropeDim);
      cos[p * half + i] = Math.cos(a); sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos: fromArray(cos, [positions, half], 'f32'), sin: fromArray(sin, [positions, half], 'f32') };
}

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Rotary dims per head (0: none). Only the first ropeDim dims rotate; the rest pass through. */
  ropeDim: number;
  /** Rotate adjacent pairs (GGUF llama's permuted Q/K) instead of halves (NeoX / HF rotate_half). */
  ropeInterleaved?: boolean;
  /** Attend to the last `window` positions only (0: full causal). */
  window?: number;
}

/**
 * Causal attention of one paged step on projected q [T, H·hd], k, v [T, Hkv·hd]: rotary at each
 * token's position (cos/sin rows gathered by position, null without rotary), this step's K/V written
 * into the layer's pools, attention over each sequence's pages. Returns [T, H·hd].
 */
export function pagedSelfAttention(q: Tensor, k: Tensor, v: Tensor, cos: Tensor | null, sin: Tensor | null, s: AttentionShape,
  step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
  const { numHeads: H, numKvHeads: Hkv, headDim: hd, ropeDim } = s;
  const T = q.shape[0];
  const heads = (t: Tensor, n: number) => t.reshape([T, n, hd]);
  const rope = (t: Tensor): Tensor => {
    if (!cos || !sin || ropeDim === 0) return t;
    // the op rotates [heads, T, d] rows at the per-token cos/sin rows
    const rot = (x: Tensor) => F.rotaryEmbedding(x.transpose(0, 1), cos, sin, s.ropeInterleaved ?? false).transpose(0, 1);
    if (ropeDim === hd) return rot(t);
    const [a, b] = ops.split(t, [ropeDim, hd - ropeDim], 2);
    return ops.concat([rot(a), b], 2);
  };
  const qh = rope(heads(q, H));
  const kh = rope(heads(k, Hkv));
  const kp = ops.kvWrite(kPool, kh, step.slots);
  const vp = ops.kvWrite(vPool, heads(v, Hkv), step.slots);
  const a = ops.pagedAttention(qh, kp, vp, step.blockTables, step.seqLens, step.queryStart, { numKvHeads: Hkv, window: s.window ?? 0 });
  return a.reshape([T, H * hd]);
}

/**
 * The attention sub-layer of a Llama-shaped block as a module: Q/K/V projections (each with an
 * optional bias: Qwen2's), pagedSelfAttention, the output projection. Llama, Mistral and Mixtral
 * (llama.ts, mixtral.ts) share it; the weights may be f32 or quantized (quant_linear).
 */
export class ProjectedAttention extends nn.Module {
  constructor(readonly shape: AttentionShape, public wq: Tensor, public wk: Tensor, public wv: Tensor, public wo: Tensor) { super(); }

  forward(x: Tensor, cos: Tensor | null, sin: Tensor | null, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const a = pagedSelfAttention(F.linear(x, this.wq), F.linear(x, this.wk), F.linear(x, this.wv), cos, sin, this.shape, step, kPool, vPool);
    return F.linear(a, this.wo);
  }
}

/** Rows of x at each sequence's last token [seqs, D]. */
export const lastTokens = (x: Tensor, step: StepInputs): Tensor => ops.gather(x, step.lastIndex, 0);

export interface LoadFamilyOptions extends Omit<StepEngineOptions, 'maxContext'> {
  /** Longest context of one sequence (default: the model's, at most 2048). */
  maxContext?: number;
  /** Rotary tables / position embeddings cover positions 0..maxPositions-1 (default: maxContext). */
  maxPositions?: number;
}

/** What a family's builder needs: the opened file, its config, and how many positions to embed. */
export interface FamilyBuild { file: ModelFile; config: DecoderConfig; maxPositions: number }

/**
 * The loader every family shares: opens the file, reads the config (the family's `configOf`),
 * builds the model, checks every tensor was read, and returns the tokenizer (GGUF metadata or
 * tokenizer.json; null for an HF directory without one) and a StepEngine running the compiled step.
 */
export function loadFamily<M extends { config: { numLayers: number; numKvHeads: number; headDim: number; vocabSize: number }; maxPositions?: number; forward: StepEngine['model']['forward'] }>(
  source: string, options: LoadFamilyOptions, configOf: (file: ModelFile) => DecoderConfig, build: (b: FamilyBuild) => M,
): { model: M; tokenizer: Tokenizer | null; engine: StepEngine } {
  const file = openModelFile(source);
  const config = configOf(file);
  const maxContext = options.maxContext ?? Math.min(config.maxPositionEmbeddings, 2048);
  const model = build({ file, config, maxPositions: options.maxPositions ?? maxContext });
  file.weights.finish();
  const tokenizerJson = file.dir ? path.join(file.dir, 'tokenizer.json') : null;
  const tokenizer = file.gguf
    ? tokenizerFromGguf(file.gguf)
    : fs.existsSync(tokenizerJson!) ? tokenizerFromHuggingFace(JSON.parse(fs.readFileSync(tokenizerJson!, 'utf8'))) : null;
  const engine = new StepEngine(model, { ...options, maxContext });
  return { model, tokenizer, engine };
}

/** An RMSNorm holding the given weight vector. */
export function rmsNormOf(weight: Tensor, eps: number): nn.RMSNorm {
  const n = new nn.RMSNorm(weight.shape[0], { eps });
  n.weight = weight;
  return n;
}

/** A LayerNorm holding the given weight and bias vectors. */
export function layerNormOf(weight: Tensor, bias: Tensor, eps: number): nn.LayerNorm {
  const n = new nn.LayerNorm(weight.shape[0], { eps });
  n.weight = weight;
  n.bias = bias;
  return n;
}
