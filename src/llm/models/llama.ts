// A Llama-family decoder (Llama 2/3 with rope scaling, TinyLlama, Mistral's sliding window) written
// as plain user code whose forward is one serving step over a paged KV cache, vLLM style: the
// tokens of many sequences flattened to [tokens], with the attention metadata as ordinary int32
// tensors. It is the source of truth: eager calls run it op by op, and `inferenceJit` (see
// src/llm/step-engine.ts) traces it once and runs it as a native plan per token-count bucket. The KV page
// pools are arguments the step writes in place (kv_write), so the graph marks them session state.
//
//   forward(step, kPools, vPools) -> logits [seqs, vocab] for the last token of each sequence
//   step: ids [T], positions [T], slots [T] (pool slot per token, -1 = padding),
//         blockTables [seqs, maxBlocks], seqLens [seqs] (context incl. new tokens),
//         queryStart [seqs + 1], lastIndex [seqs] (row of each sequence's last token)
//   pools: per layer [numBlocks, kvHeads, blockSize, headDim] f32
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../../ops/index.js';
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import * as ops from '../../ops/index.js';
import { Tensor } from '../../tensor/tensor.js';
import { fromArray } from '../../tensor/creation.js';
import { type LlamaConfig, ropeInverseFrequencies } from '../config.js';
import { type LlamaWeights, loadLlama } from '../weights.js';
import { type WeightParamOptions, checkWeightParamOptions, linearParam, linearStaysF32, embeddingParam } from './weight-params.js';
import { type StepInputs, type StepEngineOptions, StepEngine } from '../step-engine.js';
import { ProjectedAttention } from './common.js';
import { type Tokenizer, tokenizerFromGguf, tokenizerFromHuggingFace } from '../tokenizer/index.js';

export interface PagedLlamaOptions extends WeightParamOptions {
  /** Mistral: attend to the last `slidingWindow` positions only (0: full causal). */
  slidingWindow?: number;
  /** Rotary tables cover positions 0..maxPositions-1 (default: the config's maxPositionEmbeddings). */
  maxPositions?: number;
}

class Mlp extends nn.Module {
  gate: Tensor; up: Tensor; down: Tensor;
  constructor(w: LlamaWeights['layers'][number], p: WeightParamOptions) {
    super();
    this.gate = linearParam(w.gate, p); this.up = linearParam(w.up, p); this.down = linearParam(w.down, p);
  }
  forward(x: Tensor): Tensor { return F.linear(F.silu(F.linear(x, this.gate)).mul(F.linear(x, this.up)), this.down); }
}

function normFrom(values: Float32Array, eps: number): nn.RMSNorm {
  const norm = new nn.RMSNorm(values.length, { eps });
  norm.weight = fromArray(values, [values.length], 'f32');
  return norm;
}

class Block extends nn.Module {
  attnNorm: nn.RMSNorm; attn: ProjectedAttention; ffnNorm: nn.RMSNorm; mlp: Mlp;
  constructor(config: LlamaConfig, w: LlamaWeights['layers'][number], window: number, p: WeightParamOptions) {
    super();
    this.attnNorm = normFrom(w.attnNorm, config.rmsNormEps);
    this.attn = new ProjectedAttention({ ...config, window }, linearParam(w.wq, p), linearParam(w.wk, p), linearParam(w.wv, p), linearParam(w.wo, p));
    this.ffnNorm = normFrom(w.ffnNorm, config.rmsNormEps);
    this.mlp = new Mlp(w, p);
  }
  forward(x: Tensor, cos: Tensor, sin: Tensor, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.attnNorm.forward(x), cos, sin, step, kPool, vPool));
    return h.add(this.mlp.forward(this.ffnNorm.forward(h)));
  }
}

export class PagedLlama extends nn.Module {
  embed: Tensor;
  layers: nn.ModuleList<Block>;
  norm: nn.RMSNorm;
  lmHead: Tensor;
  /** cos / sin of every position's rotary angles [maxPositions, ropeDim/2] (float64 angles, rounded once). */
  ropeCos: Tensor;
  ropeSin: Tensor;
  readonly slidingWindow: number;
  readonly maxPositions: number;

  constructor(readonly config: LlamaConfig, weights: LlamaWeights, options: PagedLlamaOptions = {}) {
    super();
    this.slidingWindow = options.slidingWindow ?? 0;
    this.maxPositions = options.maxPositions ?? config.maxPositionEmbeddings;
    checkWeightParamOptions(options, 'PagedLlama');
    const p: WeightParamOptions = { precision: options.precision, groupSize: options.groupSize };
    this.embed = embeddingParam(weights.embed);
    this.layers = new nn.ModuleList(weights.layers.map((w) => new Block(config, w, this.slidingWindow, p)));
    this.norm = normFrom(weights.outNorm, config.rmsNormEps);
    // a tied head shares the f32 table unless the head runs quantized (the file's blocks, or the
    // load's precision): then it is its own quantized parameter and the table serves lookups only
    const tiedF32 = weights.output === weights.embed && linearStaysF32(weights.output, p);
    this.lmHead = tiedF32 ? this.embed : linearParam(weights.output, p);
    const inv = ropeInverseFrequencies(config, weights.ropeFreqFactors);
    const half = inv.length, P = this.maxPositions;
    const cos = new Float32Array(P * half), sin = new Float32Array(P * half);
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < half; i++) { const a = p * inv[i]; cos[p * half + i] = Math.cos(a); sin[p * half + i] = Math.sin(a); }
    }
    this.ropeCos = fromArray(cos, [P, half], 'f32');
    this.ropeSin = fromArray(sin, [P, half], 'f32');
  }

  static load(source: string, options: PagedLlamaOptions = {}): PagedLlama {
    const { config, weights } = loadLlama(source);
    return new PagedLlama(config, weights, options);
  }

  /** Logits [seqs, vocab] of each sequence's last token in this step; writes the step's K/V into the pools. */
  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    return this.forwardEmbeddings(F.embedding(step.ids, this.embed), step, kPools, vPools);
  }

  /** forward() from the step's input embeddings x [T, hidden] (LLaVA splices image rows into them). */
  forwardEmbeddings(x: Tensor, step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    const cos = F.embedding(step.positions, this.ropeCos), sin = F.embedding(step.positions, this.ropeSin);
    let l = 0;
    for (const block of this.layers) { x = block.forward(x, cos, sin, step, kPools[l], vPools[l]); l++; }
    const last = ops.gather(x, step.lastIndex, 0);
    return F.linear(this.norm.forward(last), this.lmHead);
  }
}

export interface LoadPagedOptions extends PagedLlamaOptions, Omit<StepEngineOptions, 'maxContext'> {
  /** Longest context of one sequence (default: the model's, at most 2048). */
  maxContext?: number;
}

/** Reads a GGUF file or a Hugging Face directory (config.json + safetensors + tokenizer.json) and
 *  returns the decoder, its tokenizer (null for an HF directory without tokenizer.json) and a StepEngine running the compiled step.
 *  Quantized GGUF linear weights stay quantized (qgemm in the plan); `precision` quantizes f32/f16 ones at load. */
export function loadPagedLlama(source: string, options: LoadPagedOptions = {}): { model: PagedLlama; tokenizer: Tokenizer | null; engine: StepEngine } {
  const loaded = loadLlama(source);
  const maxContext = options.maxContext ?? Math.min(loaded.config.maxPositionEmbeddings, 2048);
  // Mistral checkpoints carry their window in config.json (LlamaConfig has no field for it)
  let slidingWindow = options.slidingWindow;
  if (slidingWindow === undefined && !loaded.gguf) {
    const hf = JSON.parse(fs.readFileSync(path.join(source, 'config.json'), 'utf8')) as { sliding_window?: number | null; use_sliding_window?: boolean };
    if (typeof hf.sliding_window === 'number' && hf.use_sliding_window !== false) slidingWindow = hf.sliding_window;
  }
  const model = new PagedLlama(loaded.config, loaded.weights, {
    slidingWindow, maxPositions: options.maxPositions ?? maxContext, precision: options.precision, groupSize: options.groupSize,
  });
  // an HF directory without tokenizer.json still loads (token ids in, token ids out)
  const tokenizerJson = loaded.gguf ? null : path.join(source, 'tokenizer.json');
  const tokenizer = loaded.gguf
    ? tokenizerFromGguf(loaded.gguf)
    : fs.existsSync(tokenizerJson!) ? tokenizerFromHuggingFace(tokenizerJson!) : null; // by path: tokenizer_config.json beside it adds BOS/EOS flags and the chat template
  const { precision: _p, groupSize: _g, slidingWindow: _w, maxPositions: _m, ...engineOptions } = options;
  const engine = new StepEngine(model, { ...engineOptions, maxContext });
  return { model, tokenizer, engine };
}
