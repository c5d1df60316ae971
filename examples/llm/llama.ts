// A Llama-family causal LM (Llama 2/3, TinyLlama, Mistral shapes) written as plain user code with
// inferjit's nn modules: RMSNorm, rotary embeddings (base, linear and Llama-3 frequency scaling),
// grouped-query attention, SwiGLU MLP, tied or untied output head. Configs and weights come from a
// GGUF file or a Hugging Face checkpoint (src/llm loaders).
//
// This is the eager model: every op goes through dispatch, so it runs on the reference kernels or
// the native CPU kernels, and `forward(ids)` (no cache) is what `@inferenceJit` traces. The fast
// generation path is `compile()`: the same weights in the paged-step form of this model
// (src/llm/models/llama.ts), compiled by the JIT and served by StepEngine (batched steps over a
// paged KV cache, quantized file weights kept quantized).
import { nn, F, ops, Tensor, fromArray, inferenceJit } from '../../src/index.js';
import {
  type LlamaConfig, type LlamaWeights, type WeightMatrix, type StepEngineOptions, type PagedLlamaOptions,
  StepEngine, PagedLlama, loadLlama, dequantizeMatrix, ropeInverseFrequencies,
} from '../../src/llm/index.js';

/** A linear layer (no bias) whose weight is a stored matrix, expanded to fp32 for the eager ops. */
class LlamaLinear extends nn.Module {
  weight: Tensor;
  constructor(readonly source: WeightMatrix) {
    super();
    this.weight = fromArray(dequantizeMatrix(source), [source.rows, source.cols], 'f32');
  }
  forward(x: Tensor): Tensor { return F.linear(x, this.weight); }
}

function normFrom(values: Float32Array, eps: number): nn.RMSNorm {
  const norm = new nn.RMSNorm(values.length, { eps });
  norm.weight = fromArray(values, [values.length], 'f32');
  return norm;
}

/** Per-layer key/value tensors [batch, kvHeads, positions, headDim] of a running sequence. */
export interface EagerKvCache { k: (Tensor | null)[]; v: (Tensor | null)[]; length: number }

class Attention extends nn.Module {
  wq: LlamaLinear; wk: LlamaLinear; wv: LlamaLinear; wo: LlamaLinear;
  constructor(readonly config: LlamaConfig, w: LlamaWeights['layers'][number]) {
    super();
    this.wq = new LlamaLinear(w.wq); this.wk = new LlamaLinear(w.wk);
    this.wv = new LlamaLinear(w.wv); this.wo = new LlamaLinear(w.wo);
  }

  forward(x: Tensor, cos: Tensor, sin: Tensor, cache: EagerKvCache | null, layer: number): Tensor {
    const { numHeads: H, numKvHeads: Hkv, headDim: hd, ropeInterleaved } = this.config;
    const [B, T] = x.shape;
    const heads = (t: Tensor, n: number) => t.reshape([B, T, n, hd]).transpose(1, 2);
    const q = F.rotaryEmbedding(heads(this.wq.forward(x), H), cos, sin, ropeInterleaved);
    let k = F.rotaryEmbedding(heads(this.wk.forward(x), Hkv), cos, sin, ropeInterleaved);
    let v = heads(this.wv.forward(x), Hkv);
    if (cache) {
      const pk = cache.k[layer], pv = cache.v[layer];
      if (pk && pv) { k = ops.concat([pk, k], 2); v = ops.concat([pv, v], 2); }
      cache.k[layer] = k; cache.v[layer] = v;
    }
    // Grouped-query attention: the op pairs query head h with kv head h / (H / Hkv); causal aligns
    // the last query with the last cached key.
    const a = F.scaledDotProductAttention(q, k, v, { causal: true });
    return this.wo.forward(a.transpose(1, 2).reshape([B, T, H * hd]));
  }
}

class Mlp extends nn.Module {
  gate: LlamaLinear; up: LlamaLinear; down: LlamaLinear;
  constructor(w: LlamaWeights['layers'][number]) {
    super();
    this.gate = new LlamaLinear(w.gate); this.up = new LlamaLinear(w.up); this.down = new LlamaLinear(w.down);
  }
  forward(x: Tensor): Tensor { return this.down.forward(F.silu(this.gate.forward(x)).mul(this.up.forward(x))); }
}

class Block extends nn.Module {
  attnNorm: nn.RMSNorm; attn: Attention; ffnNorm: nn.RMSNorm; mlp: Mlp;
  constructor(config: LlamaConfig, w: LlamaWeights['layers'][number]) {
    super();
    this.attnNorm = normFrom(w.attnNorm, config.rmsNormEps);
    this.attn = new Attention(config, w);
    this.ffnNorm = normFrom(w.ffnNorm, config.rmsNormEps);
    this.mlp = new Mlp(w);
  }
  forward(x: Tensor, cos: Tensor, sin: Tensor, cache: EagerKvCache | null, layer: number): Tensor {
    const h = x.add(this.attn.forward(this.attnNorm.forward(x), cos, sin, cache, layer));
    return h.add(this.mlp.forward(this.ffnNorm.forward(h)));
  }
}

export class LlamaForCausalLM extends nn.Module {
  embed: Tensor;
  layers: nn.ModuleList<Block>;
  norm: nn.RMSNorm;
  /** The output head; the embedding tensor itself when tied. */
  lmHead: Tensor;
  private readonly invFreq: Float64Array;

  constructor(readonly config: LlamaConfig, readonly weights: LlamaWeights) {
    super();
    this.embed = fromArray(dequantizeMatrix(weights.embed), [config.vocabSize, config.hiddenSize], 'f32');
    this.layers = new nn.ModuleList(weights.layers.map((w) => new Block(config, w)));
    this.norm = normFrom(weights.outNorm, config.rmsNormEps);
    this.lmHead = weights.output === weights.embed
      ? this.embed
      : fromArray(dequantizeMatrix(weights.output), [config.vocabSize, config.hiddenSize], 'f32');
    this.invFreq = ropeInverseFrequencies(config, weights.ropeFreqFactors);
  }

  static load(source: string): LlamaForCausalLM {
    const { config, weights } = loadLlama(source);
    return new LlamaForCausalLM(config, weights);
  }

  /** cos/sin [T, ropeDim/2] for positions offset..offset+T-1 (angles in float64, rounded once). */
  rotaryTables(T: number, offset: number): { cos: Tensor; sin: Tensor } {
    const half = this.invFreq.length;
    const cos = new Float64Array(T * half), sin = new Float64Array(T * half);
    for (let p = 0; p < T; p++) {
      for (let i = 0; i < half; i++) {
        const a = (offset + p) * this.invFreq[i];
        cos[p * half + i] = Math.cos(a);
        sin[p * half + i] = Math.sin(a);
      }
    }
    return { cos: fromArray(cos, [T, half], 'f32'), sin: fromArray(sin, [T, half], 'f32') };
  }

  /** Logits [B, T, vocab] for token ids [B, T]; with a cache, continues the cached sequence. */
  forward(ids: Tensor, cache: EagerKvCache | null = null): Tensor {
    const T = ids.shape[1];
    const { cos, sin } = this.rotaryTables(T, cache?.length ?? 0);
    let x = F.embedding(ids, this.embed);
    let l = 0;
    for (const block of this.layers) x = block.forward(x, cos, sin, cache, l++);
    if (cache) cache.length += T;
    return F.linear(this.norm.forward(x), this.lmHead);
  }

  newCache(): EagerKvCache {
    return { k: new Array(this.config.numLayers).fill(null), v: new Array(this.config.numLayers).fill(null), length: 0 };
  }

  /** The fast path: the same weights as a compiled paged step served by StepEngine (generate() / chat() take it). */
  compile(options: StepEngineOptions & PagedLlamaOptions = {}): StepEngine {
    const { slidingWindow, maxPositions, precision, groupSize, ...engine } = options;
    const maxContext = engine.maxContext ?? Math.min(this.config.maxPositionEmbeddings, 2048);
    const paged = new PagedLlama(this.config, this.weights, { slidingWindow, maxPositions: maxPositions ?? maxContext, precision, groupSize });
    return new StepEngine(paged, { ...engine, maxContext });
  }
}

/** forward(ids) compiled by the JIT (traced once per shape signature, run as a native plan). */
export function jitLlama(model: LlamaForCausalLM) {
  return inferenceJit(model, { device: 'cpu' });
}
