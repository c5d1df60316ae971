// Gemma (1) as user code: Llama-shaped (RMSNorm, GQA/MQA, NeoX rotary) with four differences —
// the embedding is scaled by sqrt(hidden) before layer 0, the MLP is GeGLU with tanh-approximated
// GELU (gelu(gate) · up), every RMSNorm multiplies by (1 + w), and the output head is the (unscaled)
// embedding table. The head size is its own hyper-parameter (256 in the released models).
//
// `(1 + w)`: transformers stores w and computes x̂ · (1 + w); llama.cpp's converter stores w + 1 in
// the GGUF file and runs a plain RMSNorm. This model holds the effective scale (1 + w), so a GGUF
// norm weight is used as stored and an HF one gets its 1 added at load.
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import { type Tensor } from '../../tensor/tensor.js';
import { type StepInputs } from '../step-engine.js';
import {
  type DecoderConfig, type LoadFamilyOptions, type ModelFile, type WeightSource,
  LLAMA_STYLE_HF_KEYS, configFromGguf, configFromHf, lastTokens, loadFamily, pagedSelfAttention, ropeTables, rmsNormOf,
} from './common.js';

class GemmaBlock extends nn.Module {
  attnNorm: nn.RMSNorm; ffnNorm: nn.RMSNorm;
  wq: Tensor; wk: Tensor; wv: Tensor; wo: Tensor; gate: Tensor; up: Tensor; down: Tensor;
  constructor(readonly config: DecoderConfig, w: WeightSource, l: number, hf: boolean) {
    super();
    const { hiddenSize: D, intermediateSize: Fh, numHeads: H, numKvHeads: Hkv, headDim: hd, normEps } = config;
    const p = hf ? `model.layers.${l}.` : `blk.${l}.`;
    const n = (g: string, h: string) => p + (hf ? h : g);
    const norm = (name: string) => { const v = w.tensor(name, [D]); return rmsNormOf(hf ? v.add(1) : v, normEps); };
    this.attnNorm = norm(n('attn_norm.weight', 'input_layernorm.weight'));
    this.wq = w.linear(n('attn_q.weight', 'self_attn.q_proj.weight'), [H * hd, D]);
    this.wk = w.linear(n('attn_k.weight', 'self_attn.k_proj.weight'), [Hkv * hd, D]);
    this.wv = w.linear(n('attn_v.weight', 'self_attn.v_proj.weight'), [Hkv * hd, D]);
    this.wo = w.linear(n('attn_output.weight', 'self_attn.o_proj.weight'), [D, H * hd]);
    this.ffnNorm = norm(n('ffn_norm.weight', 'post_attention_layernorm.weight'));
    this.gate = w.linear(n('ffn_gate.weight', 'mlp.gate_proj.weight'), [Fh, D]);
    this.up = w.linear(n('ffn_up.weight', 'mlp.up_proj.weight'), [Fh, D]);
    this.down = w.linear(n('ffn_down.weight', 'mlp.down_proj.weight'), [D, Fh]);
  }

  forward(x: Tensor, cos: Tensor, sin: Tensor, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const h = this.attnNorm.forward(x);
    const a = pagedSelfAttention(F.linear(h, this.wq), F.linear(h, this.wk), F.linear(h, this.wv), cos, sin, this.config, step, kPool, vPool);
    const r = x.add(F.linear(a, this.wo));
    const m = this.ffnNorm.forward(r);
    return r.add(F.linear(F.gelu(F.linear(m, this.gate), 'tanh').mul(F.linear(m, this.up)), this.down));
  }
}

export class Gemma extends nn.Module {
  embed: Tensor;
  /** The tied head: the embedding table, or the file's quantized blocks of it. */
  lmHead: Tensor;
  layers: nn.ModuleList<GemmaBlock>;
  norm: nn.RMSNorm;
  ropeCos: Tensor;
  ropeSin: Tensor;
  /** sqrt(hidden), rounded to f32 as both transformers and llama.cpp do. */
  readonly embedScale: number;

  constructor(readonly config: DecoderConfig, w: WeightSource, hf: boolean, readonly maxPositions: number) {
    super();
    const { vocabSize: V, hiddenSize: D } = config;
    const embedName = hf ? 'model.embed_tokens.weight' : 'token_embd.weight';
    this.embed = w.tensor(embedName, [V, D]);
    this.lmHead = w.tiedHead(embedName, this.embed);
    this.embedScale = Math.fround(Math.sqrt(D));
    this.layers = new nn.ModuleList(Array.from({ length: config.numLayers }, (_, l) => new GemmaBlock(config, w, l, hf)));
    const out = w.tensor(hf ? 'model.norm.weight' : 'output_norm.weight', [D]);
    this.norm = rmsNormOf(hf ? out.add(1) : out, config.normEps);
    ({ cos: this.ropeCos, sin: this.ropeSin } = ropeTables(config.ropeDim, config.ropeTheta, maxPositions));
  }

  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    const cos = F.embedding(step.positions, this.ropeCos), sin = F.embedding(step.positions, this.ropeSin);
    let x = F.embedding(step.ids, this.embed).mul(this.embedScale);
    let l = 0;
    for (const block of this.layers) { x = block.forward(x, cos, sin, step, kPools[l], vPools[l]); l++; }
    // the head is the embedding table, unscaled
    return F.linear(this.norm.forward(lastTokens(x, step)), this.lmHead);
  }
}

function gemmaConfig(file: ModelFile): DecoderConfig {
  if (file.gguf) return configFromGguf(file.gguf, 'gemma', { epsKey: 'attention.layer_norm_rms_epsilon', rotary: true, tied: true });
  return configFromHf(file.hf!, file.configPath, LLAMA_STYLE_HF_KEYS, { rotary: true, tied: true, normEpsDefault: 1e-6 });
}

/** Loads a Gemma GGUF file (general.architecture "gemma") or HF directory (model_type "gemma"). */
export function loadGemma(source: string, options: LoadFamilyOptions = {}) {
  return loadFamily(source, options, gemmaConfig, ({ file, config, maxPositions }) => {
    // the head is tied: a saved lm_head (some exports carry one) is the embedding table again, and llama.cpp skips it too
    file.weights.ignore(/^lm_head\.weight$|\.rotary_emb\.inv_freq$/);
    return new Gemma(config, file.weights, !file.gguf, maxPositions);
  });
}
