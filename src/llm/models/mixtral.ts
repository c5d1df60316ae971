// Mixtral (sparse mixture of experts) as user code: the Llama decoder of llama.ts (its attention is
// common.ts's ProjectedAttention, as Llama's) with every
// block's MLP replaced by a mixture of SwiGLU experts. A router (a linear layer, [experts, hidden])
// scores each token, the token goes to its top-k experts (Mixtral: 2 of 8) with weights softmax over
// the chosen logits, and `moe` (src/ops/moe.ts) runs the experts as grouped GEMMs over the tokens
// routed to each, in one native kernel. The forward is one paged serving step, exactly as PagedLlama's.
//
// GGUF files: llama.cpp writes Mixtral with general.architecture "llama" plus llama.expert_count /
// llama.expert_used_count, and per block ffn_gate_inp [E, H] (router) and the experts stacked into
// 3-D tensors ffn_gate_exps / ffn_up_exps [E, F, H] and ffn_down_exps [E, H, F]. Quantized GGUF
// matrices (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) stay in their blocks: linears record quant_linear (the
// plan's qgemm) and the expert stacks are quantized weights over their E·F rows (the moe kernel
// reads each expert's rows in place).
import * as fs from 'node:fs';
import '../../ops/index.js';
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import * as ops from '../../ops/index.js';
import { Tensor } from '../../tensor/tensor.js';
import { fromArray } from '../../tensor/creation.js';
import { readGguf, type GgufFile } from '../../io/gguf/index.js';
import { GgufError, ModelConfigError } from '../../io/errors.js';
import { GGUF_QUANT_FORMATS, ggufParameter, isQuantized, quantBlockValues, quantizedTensor } from '../../tensor/quantized.js';
import { type LlamaConfig, llamaConfigFromGguf, ropeInverseFrequencies } from '../config.js';
import { type StepInputs, StepEngine } from '../step-engine.js';
import { type Tokenizer, tokenizerFromGguf } from '../tokenizer/index.js';
import type { LoadPagedOptions, PagedLlamaOptions } from './llama.js';
import { ProjectedAttention } from './common.js';

export interface MixtralConfig extends LlamaConfig {
  /** Experts per block (GGUF llama.expert_count). */
  numExperts: number;
  /** Experts each token is routed to (GGUF llama.expert_used_count; Mixtral: 2). */
  expertsPerToken: number;
}

/** One block's tensors: f32 or quantized matrices [out, in], expert stacks, norm vectors. */
export interface MixtralLayerWeights {
  attnNorm: Tensor; wq: Tensor; wk: Tensor; wv: Tensor; wo: Tensor;
  ffnNorm: Tensor;
  /** Router [E, H] (f32 or quantized). */
  router: Tensor;
  /** Expert stacks: f32 [E, F, H] / [E, H, F] or quantized weights over the stacked rows. */
  gate: Tensor; up: Tensor; down: Tensor;
}
export interface MixtralWeights {
  embed: Tensor;
  outNorm: Tensor;
  output: Tensor;
  layers: MixtralLayerWeights[];
  ropeFreqFactors?: Float32Array;
}

/** The sparse MoE FFN: router logits, then the top-k experts of every token in one `moe` op. */
export class SparseMoe extends nn.Module {
  constructor(public router: Tensor, public gate: Tensor, public up: Tensor, public down: Tensor, readonly topK: number) { super(); }
  forward(x: Tensor): Tensor {
    return ops.moe(x, F.linear(x, this.router), this.gate, this.up, this.down, { topK: this.topK });
  }
}

function rmsNorm(w: Tensor, eps: number): nn.RMSNorm {
  const norm = new nn.RMSNorm(w.shape[0], { eps });
  norm.weight = w;
  return norm;
}

class Block extends nn.Module {
  attnNorm: nn.RMSNorm; attn: ProjectedAttention; ffnNorm: nn.RMSNorm; moe: SparseMoe;
  constructor(config: MixtralConfig, w: MixtralLayerWeights, window: number) {
    super();
    this.attnNorm = rmsNorm(w.attnNorm, config.rmsNormEps);
    this.attn = new ProjectedAttention({ ...config, window }, w.wq, w.wk, w.wv, w.wo);
    this.ffnNorm = rmsNorm(w.ffnNorm, config.rmsNormEps);
    this.moe = new SparseMoe(w.router, w.gate, w.up, w.down, config.expertsPerToken);
  }
  forward(x: Tensor, cos: Tensor, sin: Tensor, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.attnNorm.forward(x), cos, sin, step, kPool, vPool));
    return h.add(this.moe.forward(this.ffnNorm.forward(h)));
  }
}

export class PagedMixtral extends nn.Module {
  embed: Tensor;
  layers: nn.ModuleList<Block>;
  norm: nn.RMSNorm;
  lmHead: Tensor;
  ropeCos: Tensor;
  ropeSin: Tensor;
  readonly slidingWindow: number;
  readonly maxPositions: number;

  constructor(readonly config: MixtralConfig, weights: MixtralWeights, options: PagedLlamaOptions = {}) {
    super();
    this.slidingWindow = options.slidingWindow ?? 0;
    this.maxPositions = options.maxPositions ?? config.maxPositionEmbeddings;
    this.embed = weights.embed;
    this.layers = new nn.ModuleList(weights.layers.map((w) => new Block(config, w, this.slidingWindow)));
    this.norm = rmsNorm(weights.outNorm, config.rmsNormEps);
    this.lmHead = weights.output;
    const inv = ropeInverseFrequencies(config, weights.ropeFreqFactors);
    const half = inv.length, P = this.maxPositions;
    const cos = new Float32Array(P * half), sin = new Float32Array(P * half);
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < half; i++) { const a = p * inv[i]; cos[p * half + i] = Math.cos(a); sin[p * half + i] = Math.sin(a); }
    }
    this.ropeCos = fromArray(cos, [P, half], 'f32');
    this.ropeSin = fromArray(sin, [P, half], 'f32');
  }

  static load(source: string, options: PagedLlamaOptions = {}): PagedMixtral {
    const { config, weights } = loadMixtralGguf(source);
    return new PagedMixtral(config, weights, options);
  }

  /** Logits [seqs, vocab] of each sequence's last token in this step; writes the step's K/V into the pools. */
  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    const cos = F.embedding(step.positions, this.ropeCos), sin = F.embedding(step.positions, this.ropeSin);
    let x = F.embedding(step.ids, this.embed);
    let l = 0;
    for (const block of this.layers) { x = block.forward(x, cos, sin, step, kPools[l], vPools[l]); l++; }
    const last = ops.gather(x, step.lastIndex, 0);
    return F.linear(this.norm.forward(last), this.lmHead);
  }
}

/** Whether a GGUF file is a mixture-of-experts Llama (llama.cpp's Mixtral: llama.expert_count > 0). */
export function isMixtralGguf(file: GgufFile): boolean {
  return file.architecture === 'llama' && file.getNumber('llama.expert_count', 0) > 0;
}

/** The config of a Mixtral GGUF file: the Llama keys plus the expert counts. */
export function mixtralConfigFromGguf(file: GgufFile): MixtralConfig {
  const base = llamaConfigFromGguf(file);
  const numExperts = file.getNumber('llama.expert_count', 0);
  const expertsPerToken = file.getNumber('llama.expert_used_count', 0);
  if (!Number.isInteger(numExperts) || numExperts < 1) throw new ModelConfigError(file.path, `llama.expert_count must be a positive integer for a mixture-of-experts model, got ${numExperts}`);
  if (!Number.isInteger(expertsPerToken) || expertsPerToken < 1 || expertsPerToken > numExperts) {
    throw new ModelConfigError(file.path, `llama.expert_used_count must be an integer from 1 to llama.expert_count (${numExperts}), got ${expertsPerToken}`);
  }
  return { ...base, numExperts, expertsPerToken };
}

/** Loads a Mixtral GGUF file: quantized matrices and expert stacks stay in their blocks, the rest as f32. */
export function loadMixtralGguf(source: string | GgufFile): { config: MixtralConfig; weights: MixtralWeights; gguf: GgufFile } {
  const file = typeof source === 'string' ? readGguf(source) : source;
  const config = mixtralConfigFromGguf(file);
  const { hiddenSize: H, intermediateSize: Fh, numHeads, numKvHeads, headDim, vocabSize: V, numExperts: E } = config;
  const used = new Set<string>();
  const take = (name: string, shape: readonly number[]): string => {
    if (!file.hasTensor(name)) throw new GgufError(file.path, `tensor ${JSON.stringify(name)} is missing (a Mixtral file with llama.block_count = ${config.numLayers} and llama.expert_count = ${E} needs it)`);
    const got = file.tensorInfo(name).shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new GgufError(file.path, `tensor ${JSON.stringify(name)} has shape [${got.join(', ')}], expected [${shape.join(', ')}]`);
    }
    used.add(name);
    return name;
  };
  // f32 unless a 2-D GGUF quantized matrix (read in place by quant_linear)
  const matrix = (name: string, rows: number, cols: number): Tensor => {
    const t = ggufParameter(file, take(name, [rows, cols]));
    return isQuantized(t) || t.dtype === 'f32' ? t : t.cast('f32');
  };
  const f32 = (name: string, shape: readonly number[]): Tensor => {
    const t = file.toTensor(take(name, shape));
    return t.dtype === 'f32' ? t : t.cast('f32');
  };
  const experts = (name: string, N: number, K: number): Tensor => {
    take(name, [E, N, K]);
    const format = GGUF_QUANT_FORMATS[file.tensorInfo(name).type];
    if (format && K % quantBlockValues(format) === 0) return quantizedTensor({ format, N: E * N, K, group: 32 }, file.tensorData(name));
    const t = file.toTensor(name);
    return t.dtype === 'f32' ? t : t.cast('f32');
  };
  const layers: MixtralLayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      attnNorm: f32(`${p}attn_norm.weight`, [H]),
      wq: matrix(`${p}attn_q.weight`, numHeads * headDim, H),
      wk: matrix(`${p}attn_k.weight`, numKvHeads * headDim, H),
      wv: matrix(`${p}attn_v.weight`, numKvHeads * headDim, H),
      wo: matrix(`${p}attn_output.weight`, H, numHeads * headDim),
      ffnNorm: f32(`${p}ffn_norm.weight`, [H]),
      router: matrix(`${p}ffn_gate_inp.weight`, E, H),
      gate: experts(`${p}ffn_gate_exps.weight`, Fh, H),
      up: experts(`${p}ffn_up_exps.weight`, Fh, H),
      down: experts(`${p}ffn_down_exps.weight`, H, Fh),
    });
  }
  // the embedding table is gathered from, so it is f32 (a quantized table is expanded once)
  const embed = f32('token_embd.weight', [V, H]);
  const weights: MixtralWeights = {
    embed,
    outNorm: f32('output_norm.weight', [H]),
    output: config.tieWordEmbeddings ? embed : matrix('output.weight', V, H),
    layers,
  };
  if (file.hasTensor('rope_freqs.weight')) weights.ropeFreqFactors = f32('rope_freqs.weight', [config.ropeDim / 2]).data as Float32Array;
  const left = file.tensors.map((t) => t.name).filter((n) => !used.has(n));
  if (left.length > 0) {
    throw new GgufError(file.path, `the file holds tensors a Mixtral model does not use: ${left.slice(0, 6).map((n) => JSON.stringify(n)).join(', ')}${left.length > 6 ? `, ... (${left.length} in all)` : ''} (per-expert ffn_*.N tensors of old files are not supported; re-convert with a current llama.cpp)`);
  }
  return { config, weights, gguf: file };
}

/** Reads a Mixtral GGUF file and returns the decoder, its tokenizer and a StepEngine running the compiled step. */
export function loadPagedMixtral(source: string, options: LoadPagedOptions = {}): { model: PagedMixtral; tokenizer: Tokenizer | null; engine: StepEngine } {
  if (fs.statSync(source).isDirectory()) {
    // a Hugging Face MixtralForCausalLM directory (model_type "mixtral")
    throw new ModelConfigError(source, 'Mixtral loads from GGUF files (llama.cpp\'s convert_hf_to_gguf.py writes one from a Hugging Face checkpoint); Hugging Face Mixtral directories are not supported yet');
  }
  const loaded = loadMixtralGguf(source);
  const maxContext = options.maxContext ?? Math.min(loaded.config.maxPositionEmbeddings, 2048);
  const model = new PagedMixtral(loaded.config, loaded.weights, { slidingWindow: options.slidingWindow, maxPositions: options.maxPositions ?? maxContext });
  const engine = new StepEngine(model, { ...options, maxContext });
  return { model, tokenizer: tokenizerFromGguf(loaded.gguf), engine };
}
