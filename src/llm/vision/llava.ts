// LLaVA-1.5 as model code: the image encoder (clip.ts: CLIP tower + projector, compiled with the JIT)
// and a Llama decoder step whose prompt embeddings take image rows where the prompt holds images.
//
// Splicing. The engine's step carries token ids only; an image position carries the id
// `vocabSize + row`, where `row` indexes the decoder's image table [imageRows, hidden], a persistent
// tensor the step reads as an input (StepDecoder.stepState), not a weight: the host writes an image's
// projected features into free rows before its prompt runs and frees them when the sequence ends.
// The step embeds text ids from the vocabulary table, image ids from the image table, and picks per
// row (a `where` over [T, hidden]); the rest is PagedLlama.forwardEmbeddings unchanged. Text-only
// decoders (PagedLlama and the families) do not carry this and their steps are unchanged.
// Prefix caching is off for LLaVA engines: placeholder ids name table rows, not image contents, so
// two images using the same rows at different times would share cached pages.
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../../ops/index.js';
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import * as ops from '../../ops/index.js';
import { Tensor } from '../../tensor/tensor.js';
import { inferenceJit } from '../../jit/index.js';
import { readSafetensors } from '../../io/safetensors.js';
import { ModelConfigError, SafetensorsError } from '../../io/errors.js';
import { type LlamaConfig, llamaConfigFromHuggingFace } from '../config.js';
import { type LlamaWeights, type WeightMatrix } from '../weights.js';
import { PagedLlama } from '../models/llama.js';
import { type StepInputs, type StepEngineOptions, type SequenceOptions, type StepFinishReason, StepEngine, EngineCapacityError } from '../step-engine.js';
import { type Tokenizer, tokenizerFromHuggingFace } from '../tokenizer/index.js';
import { type ClipVisionConfig, LlavaImageEncoder, clipVisionConfigFromHf, type LlavaVisionOptions } from './clip.js';

/** A llava config.json, resolved. */
export interface LlavaConfig {
  vision: ClipVisionConfig;
  text: LlamaConfig;
  /** The id of `<image>` in the tokenizer (llava-hf: 32000). */
  imageTokenIndex: number;
  featureLayer: number;
  selectStrategy: 'default' | 'full';
  projectorAct: 'gelu' | 'gelu_tanh';
}

/** transformers' LlamaConfig defaults: llava-hf's text_config lists only what differs from them. */
const LLAMA_DEFAULTS: Record<string, unknown> = {
  vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32,
  max_position_embeddings: 2048, rms_norm_eps: 1e-6, rope_theta: 10000, model_type: 'llama',
};

export function llavaConfigFromHf(json: Record<string, unknown>, source = 'config.json'): LlavaConfig {
  const obj = (k: string): Record<string, unknown> => {
    const v = json[k];
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) throw new ModelConfigError(source, `"${k}" must be an object`);
    return v as Record<string, unknown>;
  };
  if (json.model_type !== undefined && json.model_type !== 'llava') {
    throw new ModelConfigError(source, `model_type ${JSON.stringify(json.model_type)} is not a LLaVA model (llava)`);
  }
  const vision = clipVisionConfigFromHf(obj('vision_config'), `${source}: vision_config`);
  const text = llamaConfigFromHuggingFace({ ...LLAMA_DEFAULTS, ...obj('text_config') }, `${source}: text_config`);
  const imageTokenIndex = json.image_token_index ?? json.image_token_id ?? 32000;
  if (!Number.isInteger(imageTokenIndex)) throw new ModelConfigError(source, `image_token_index must be an integer, got ${JSON.stringify(imageTokenIndex)}`);
  const featureLayer = json.vision_feature_layer ?? -2;
  if (!Number.isInteger(featureLayer)) throw new ModelConfigError(source, `vision_feature_layer must be one integer (a list of layers is not supported), got ${JSON.stringify(featureLayer)}`);
  const selectStrategy = json.vision_feature_select_strategy ?? 'default';
  if (selectStrategy !== 'default' && selectStrategy !== 'full') throw new ModelConfigError(source, `vision_feature_select_strategy ${JSON.stringify(selectStrategy)} is not supported (default, full)`);
  const act = json.projector_hidden_act ?? 'gelu';
  const projectorAct = act === 'gelu' ? 'gelu' : act === 'gelu_pytorch_tanh' || act === 'gelu_new' ? 'gelu_tanh' : null;
  if (!projectorAct) throw new ModelConfigError(source, `projector_hidden_act ${JSON.stringify(act)} is not supported (gelu, gelu_pytorch_tanh)`);
  if (json.multimodal_projector_bias === false) throw new ModelConfigError(source, 'multimodal_projector_bias = false is not supported (LLaVA-1.5 projectors have biases)');
  return { vision, text, imageTokenIndex: imageTokenIndex as number, featureLayer: featureLayer as number, selectStrategy, projectorAct };
}

export const visionOptionsOf = (c: LlavaConfig): LlavaVisionOptions =>
  ({ featureLayer: c.featureLayer, selectStrategy: c.selectStrategy, textHiddenSize: c.text.hiddenSize, projectorAct: c.projectorAct });

/** The decoder step of LLaVA: PagedLlama fed spliced text + image embeddings. */
export class LlavaDecoder extends nn.Module {
  language_model: PagedLlama;
  /** Rows of image features the table holds (all images in flight together). */
  readonly imageRows: number;
  readonly inputIdLimit: number;
  readonly #table: Tensor;

  constructor(language: PagedLlama, imageRows: number) {
    super();
    if (!Number.isInteger(imageRows) || imageRows <= 0) throw new RangeError(`LlavaDecoder: imageRows must be a positive integer, got ${imageRows}`);
    this.language_model = language;
    this.imageRows = imageRows;
    this.inputIdLimit = language.config.vocabSize + imageRows;
    this.#table = Tensor.empty('f32', [imageRows, language.config.hiddenSize]);
  }

  get config(): LlamaConfig { return this.language_model.config; }
  get maxPositions(): number { return this.language_model.maxPositions; }
  /** The image table [imageRows, hidden] the host writes features into (see the header). */
  get imageTable(): Tensor { return this.#table; }
  get stepState(): Tensor[] { return [this.#table]; }

  /**
   * The step's input embeddings [T, hidden]: vocabulary rows for ids < vocabSize, image-table rows for
   * the others. The ids go through f32 (exact below 2^24) because the plan's elementwise kernels are
   * f32; each lookup clamps the other kind's ids into range, and `where` keeps the right one per row.
   */
  embed(ids: Tensor, table: Tensor): Tensor {
    const V = this.config.vocabSize;
    const idsF = ops.cast(ids, 'f32');
    const isImage = ops.greater(idsF, V - 0.5).unsqueeze(1);
    const text = F.embedding(ops.cast(ops.minimum(idsF, V - 1), 'i32'), this.language_model.embed);
    const image = F.embedding(ops.cast(ops.maximum(idsF.sub(V), 0), 'i32'), table);
    return ops.where(isImage, image, text);
  }

  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[], state: Tensor[] = [this.#table]): Tensor {
    return this.language_model.forwardEmbeddings(this.embed(step.ids, state[0]), step, kPools, vPools);
  }
}

// ---- loading ----

/** What a checkpoint held against what the model expects (names in llava-hf's scheme). */
export interface LlavaLoadReport { missing: string[]; unexpected: string[]; mismatched: string[] }

/** transformers >= 4.52 saves `model.language_model.*`, `model.vision_tower.*`, `lm_head.*`; map to the llava-hf names. */
export function canonicalLlavaName(name: string): string {
  if (name.startsWith('model.language_model.')) return 'language_model.model.' + name.slice('model.language_model.'.length);
  if (name.startsWith('model.vision_tower.')) return name.slice('model.'.length);
  if (name.startsWith('model.multi_modal_projector.')) return name.slice('model.'.length);
  if (name === 'lm_head.weight') return 'language_model.lm_head.weight';
  return name;
}

/** Names a checkpoint may hold that are not weights (transformers' saved buffers). */
const IGNORED = [/\.position_ids$/, /\.rotary_emb\.inv_freq$/];

function matrixOf(t: Tensor, name: string, rows: number, cols: number, file: string): WeightMatrix {
  if (t.rank !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) throw new SafetensorsError(file, `tensor ${JSON.stringify(name)} has shape [${t.shape.join(', ')}], expected [${rows}, ${cols}]`);
  if (t.dtype === 'f16' || t.dtype === 'bf16') return { format: t.dtype, rows, cols, data: t.data as Uint16Array, scales: null, groupSize: 32 };
  const f = t.dtype === 'f32' ? t : t.cast('f32');
  return { format: 'f32', rows, cols, data: f.data as Float32Array, scales: null, groupSize: 32 };
}

/** The language model's weights from llava names (`language_model.model.*`, `language_model.lm_head.weight`). */
function languageWeights(c: LlamaConfig, get: (name: string) => Tensor | null, report: LlavaLoadReport, file: string): LlamaWeights | null {
  const { hiddenSize: D, intermediateSize: Fi, numHeads, numKvHeads, headDim: hd, vocabSize: V } = c;
  const take = (name: string) => { const t = get(name); if (!t) report.missing.push(name); return t; };
  const mat = (name: string, r: number, k: number): WeightMatrix | null => {
    const t = take(name);
    if (!t) return null;
    if (t.rank !== 2 || t.shape[0] !== r || t.shape[1] !== k) { report.mismatched.push(`${name}: [${t.shape.join(', ')}], expected [${r}, ${k}]`); return null; }
    return matrixOf(t, name, r, k, file);
  };
  const vec = (name: string, n: number): Float32Array | null => {
    const t = take(name);
    if (!t) return null;
    if (t.size !== n) { report.mismatched.push(`${name}: ${t.size} values, expected ${n}`); return null; }
    return (t.dtype === 'f32' ? t : t.cast('f32')).data as Float32Array;
  };
  const p = 'language_model.model.';
  const embed = mat(`${p}embed_tokens.weight`, V, D);
  const layers = Array.from({ length: c.numLayers }, (_, l) => {
    const q = `${p}layers.${l}.`;
    return {
      attnNorm: vec(`${q}input_layernorm.weight`, D), wq: mat(`${q}self_attn.q_proj.weight`, numHeads * hd, D),
      wk: mat(`${q}self_attn.k_proj.weight`, numKvHeads * hd, D), wv: mat(`${q}self_attn.v_proj.weight`, numKvHeads * hd, D),
      wo: mat(`${q}self_attn.o_proj.weight`, D, numHeads * hd), ffnNorm: vec(`${q}post_attention_layernorm.weight`, D),
      gate: mat(`${q}mlp.gate_proj.weight`, Fi, D), up: mat(`${q}mlp.up_proj.weight`, Fi, D), down: mat(`${q}mlp.down_proj.weight`, D, Fi),
    };
  });
  const outNorm = vec(`${p}norm.weight`, D);
  const output = c.tieWordEmbeddings ? embed : mat('language_model.lm_head.weight', V, D);
  if (c.tieWordEmbeddings) get('language_model.lm_head.weight'); // a saved tied head is the table again
  const complete = embed && outNorm && output && layers.every((l) => Object.values(l).every((v) => v !== null));
  return complete ? { embed, outNorm, output, layers: layers as LlamaWeights['layers'] } : null;
}

export interface LoadLlavaOptions extends Omit<StepEngineOptions, 'maxContext' | 'prefixCaching'> {
  /** Longest context of one sequence (default: the text model's, at most 2048). */
  maxContext?: number;
  /** Images the decoder's table holds at once (default 4). */
  maxImages?: number;
  /** false: run the image encoder eagerly (the oracle); default: compiled with inferenceJit. */
  compileEncoder?: boolean;
  /** false: a checkpoint with missing or unexpected tensors loads what matches; default: it throws with the report. */
  strict?: boolean;
}

/**
 * Reads a llava-hf directory (config.json, model.safetensors or shards, tokenizer.json if present):
 * every tensor is matched by name; missing, unexpected or mis-shaped ones are reported together.
 */
export function loadLlava(dir: string, options: LoadLlavaOptions = {}): Llava {
  const configPath = path.join(dir, 'config.json');
  let json: unknown;
  try { json = JSON.parse(fs.readFileSync(configPath, 'utf8')); } catch (e) { throw new ModelConfigError(configPath, `cannot read the model config: ${(e as Error).message}`); }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelConfigError(configPath, 'the model config must be a JSON object');
  const config = llavaConfigFromHf(json as Record<string, unknown>, configPath);
  const st = readSafetensors(dir);
  const byName = new Map<string, string>();
  for (const n of st.names) byName.set(canonicalLlavaName(n), n);
  const used = new Set<string>();
  const get = (name: string): Tensor | null => {
    const stored = byName.get(name);
    if (stored === undefined) return null;
    used.add(name);
    return st.toTensor(stored);
  };
  const report: LlavaLoadReport = { missing: [], unexpected: [], mismatched: [] };
  // the encoder: its own stateDict names are the checkpoint's (clip.ts), loaded non-strictly to collect the report
  const encoder = new LlavaImageEncoder(config.vision, visionOptionsOf(config));
  const state = new Map<string, Tensor>();
  for (const name of encoder.stateDict().keys()) {
    const t = get(name);
    if (t) state.set(name, t.dtype === 'f32' ? t : t.cast('f32'));
  }
  const r = encoder.loadStateDict(state, { strict: false });
  report.missing.push(...r.missing);
  report.mismatched.push(...r.mismatched.map((m) => `${m.name}: [${m.got.shape.join(', ')}], expected [${m.expected.shape.join(', ')}]`));
  const lw = languageWeights(config.text, get, report, st.path);
  for (const name of byName.keys()) if (!used.has(name) && !IGNORED.some((re) => re.test(name))) report.unexpected.push(name);
  const problems = report.missing.length + report.unexpected.length + report.mismatched.length;
  if (problems > 0 && (options.strict ?? true)) {
    const list = (title: string, v: string[]) => v.length ? `${title} (${v.length}): ${v.slice(0, 6).join(', ')}${v.length > 6 ? ', ...' : ''}` : '';
    throw new SafetensorsError(st.path, `the checkpoint does not match the LLaVA model of ${configPath}: ` +
      [list('missing', report.missing), list('unexpected', report.unexpected), list('mismatched', report.mismatched)].filter(Boolean).join('; '));
  }
  if (!lw) throw new SafetensorsError(st.path, `the language model's weights are incomplete (missing: ${report.missing.slice(0, 6).join(', ')}); strict: false cannot run without them`);
  const maxContext = options.maxContext ?? Math.min(config.text.maxPositionEmbeddings, 2048);
  const language = new PagedLlama(config.text, lw, { maxPositions: maxContext });
  const tokenizerPath = path.join(dir, 'tokenizer.json');
  const tokenizer = fs.existsSync(tokenizerPath) ? tokenizerFromHuggingFace(tokenizerPath) : null;
  return new Llava(config, encoder, language, tokenizer, { ...options, maxContext }, report);
}

// ---- the pipeline ----

/**
 * Image-to-text: encodes images (compiled encoder), writes their rows into the decoder's image
 * table, and generates through a StepEngine running the compiled LLaVA step.
 */
export class Llava {
  readonly decoder: LlavaDecoder;
  readonly engine: StepEngine;
  /** The encoder as it runs: the inferenceJit-compiled module, or the module itself when compileEncoder is false. */
  readonly encode: (pixels: Tensor) => Tensor;
  /** Rows one image takes in the table (576 for ViT-L/14 at 336 with the 'default' strategy). */
  readonly rowsPerImage: number;
  private readonly freeSlots: number[] = [];

  constructor(readonly config: LlavaConfig, readonly encoder: LlavaImageEncoder, language: PagedLlama, readonly tokenizer: Tokenizer | null,
    options: LoadLlavaOptions = {}, readonly report: LlavaLoadReport = { missing: [], unexpected: [], mismatched: [] }) {
    this.rowsPerImage = encoder.rows;
    const maxImages = options.maxImages ?? 4;
    if (!Number.isInteger(maxImages) || maxImages <= 0) throw new RangeError(`Llava: maxImages must be a positive integer, got ${maxImages}`);
    for (let s = maxImages - 1; s >= 0; s--) this.freeSlots.push(s);
    this.decoder = new LlavaDecoder(language, maxImages * this.rowsPerImage);
    const { maxImages: _m, compileEncoder, strict: _s, ...engineOptions } = options;
    this.engine = new StepEngine(this.decoder, { ...engineOptions, prefixCaching: false });
    const S = config.vision.imageSize;
    this.encode = compileEncoder === false
      ? (x) => encoder.forward(x)
      : inferenceJit(encoder, { device: 'cpu', fallback: 'error', cache: 'memory', ...options.jit, inputSpec: [{ shape: ['batch', config.vision.numChannels, S, S] }] }) as unknown as (x: Tensor) => Tensor;
  }

  /**
   * The prompt's ids with each image's placeholder run replaced by its table rows. A run of
   * `<image>` ids is one image: either a single id (expanded here) or already rowsPerImage long
   * (as llava-hf's processor expands it).
   */
  spliceIds(prompt: readonly number[], slots: readonly number[]): number[] {
    const out: number[] = [];
    const img = this.config.imageTokenIndex, N = this.rowsPerImage, V = this.config.text.vocabSize;
    let image = 0;
    for (let i = 0; i < prompt.length;) {
      if (prompt[i] !== img) { out.push(prompt[i++]); continue; }
      let j = i;
      while (j < prompt.length && prompt[j] === img) j++;
      const run = j - i;
      if (run !== 1 && run !== N) throw new RangeError(`Llava: the prompt has a run of ${run} <image> tokens (id ${img}) at ${i}; give 1 per image or ${N} (the rows one image takes)`);
      if (image >= slots.length) throw new RangeError(`Llava: the prompt has more <image> runs than the ${slots.length} image(s) given`);
      for (let r = 0; r < N; r++) out.push(V + slots[image] * N + r);
      image++;
      i = j;
    }
    if (image !== slots.length) throw new RangeError(`Llava: ${slots.length} image(s) given but the prompt has ${image} <image> placeholder run(s) (id ${img})`);
    return out;
  }

  /** Image embeddings [images, rows, textHidden] of preprocessed pixels [images, 3, S, S]. */
  embedImages(pixels: Tensor): Tensor { return this.encode(pixels); }

  /**
   * Encodes the images into free table slots and returns the prompt's ids with their rows spliced
   * in; `release()` frees the slots (after the sequence has finished: its steps read those rows).
   */
  attachImages(prompt: readonly number[], images: readonly Tensor[]): { ids: number[]; release: () => void } {
    if (images.length > this.freeSlots.length) {
      throw new EngineCapacityError(`Llava: ${images.length} image(s) but ${this.freeSlots.length} free table slot(s); raise maxImages (or wait for running sequences)`);
    }
    const slots = images.map(() => this.freeSlots.pop()!);
    let released = false;
    const release = () => { if (!released) { released = true; for (const s of slots) this.freeSlots.push(s); } };
    try {
      const ids = this.spliceIds(prompt, slots);
      const D = this.config.text.hiddenSize, N = this.rowsPerImage;
      const table = this.decoder.imageTable.data as Float32Array;
      images.forEach((px, i) => {
        const feats = this.embedImages(px);
        if (feats.shape[0] !== 1 || feats.shape[1] !== N || feats.shape[2] !== D) throw new RangeError(`Llava: image ${i} gave features [${feats.shape.join(', ')}], expected [1, ${N}, ${D}] (one preprocessed image [1, 3, S, S] each)`);
        table.set(feats.toFlatArray(), slots[i] * N * D);
      });
      return { ids, release };
    } catch (e) { release(); throw e; }
  }

  /** Generates from a prompt holding one `<image>` run per image (pixels: clipPreprocess output, [1, 3, S, S] each). */
  async generate(prompt: readonly number[], images: readonly Tensor[], options: SequenceOptions = {}, onToken?: (t: number) => void): Promise<{ tokens: number[]; finishReason: StepFinishReason }> {
    const { ids, release } = this.attachImages(prompt, images);
    try { return await this.engine.generate(ids, options, onToken); } finally { release(); }
  }
}
