// GPT-2 as user code: learned absolute position embeddings (no rotary), pre-LayerNorm blocks with
// biases everywhere, one fused c_attn projection [3·D, D] split into Q, K, V after the matmul, a
// tanh-GELU MLP, a final LayerNorm and the embedding table as the head.
//
// Layouts: transformers stores GPT-2's Conv1D weights as [in, out] (c_attn [D, 3D], c_proj, c_fc),
// transposed here to the [out, in] of F.linear; llama.cpp's converter already transposes them
// (attn_qkv [3D, D], ffn_up [F, D], ffn_down [D, F]). A GGUF output.weight, when present, is an
// untied head (llama.cpp falls back to token_embd otherwise).
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import * as ops from '../../ops/index.js';
import { type Tensor } from '../../tensor/tensor.js';
import { ModelConfigError } from '../../io/errors.js';
import { type StepInputs } from '../step-engine.js';
import {
  type DecoderConfig, type HfConfigKeys, type LoadFamilyOptions, type ModelFile, type WeightSource,
  configFromGguf, configFromHf, lastTokens, layerNormOf, loadFamily, pagedSelfAttention,
} from './common.js';

const HF_KEYS: HfConfigKeys = {
  vocabSize: 'vocab_size', hiddenSize: 'n_embd', intermediateSize: 'n_inner', numLayers: 'n_layer', numHeads: 'n_head',
  normEps: 'layer_norm_epsilon', maxPositionEmbeddings: 'n_positions',
};

/** Reads one tensor under its GGUF name, or its HF name (Conv1D [in, out], transposed). A GGUF
 *  linear weight (`linear`) in a quantized format stays in its blocks (see WeightSource.linear). */
function reader(w: WeightSource, hf: boolean, prefix: string) {
  return (g: string, h: string, shape: number[], linear = false): Tensor => {
    if (!hf) return linear && shape.length === 2 ? w.linear(g, [shape[0], shape[1]]) : w.tensor(g, shape);
    const name = prefix + h;
    return shape.length === 2 && /\.(c_attn|c_proj|c_fc)\.weight$/.test(name) ? w.tensor(name, [shape[1], shape[0]]).transpose(0, 1) : w.tensor(name, shape);
  };
}

class Gpt2Block extends nn.Module {
  ln1: nn.LayerNorm; ln2: nn.LayerNorm;
  qkv: Tensor; qkvBias: Tensor; wo: Tensor; bo: Tensor; up: Tensor; upBias: Tensor; down: Tensor; downBias: Tensor;
  constructor(readonly config: DecoderConfig, t: ReturnType<typeof reader>, l: number) {
    super();
    const { hiddenSize: D, intermediateSize: Fh, normEps } = config;
    const g = `blk.${l}.`, h = `h.${l}.`;
    this.ln1 = layerNormOf(t(`${g}attn_norm.weight`, `${h}ln_1.weight`, [D]), t(`${g}attn_norm.bias`, `${h}ln_1.bias`, [D]), normEps);
    this.qkv = t(`${g}attn_qkv.weight`, `${h}attn.c_attn.weight`, [3 * D, D], true);
    this.qkvBias = t(`${g}attn_qkv.bias`, `${h}attn.c_attn.bias`, [3 * D]);
    this.wo = t(`${g}attn_output.weight`, `${h}attn.c_proj.weight`, [D, D], true);
    this.bo = t(`${g}attn_output.bias`, `${h}attn.c_proj.bias`, [D]);
    this.ln2 = layerNormOf(t(`${g}ffn_norm.weight`, `${h}ln_2.weight`, [D]), t(`${g}ffn_norm.bias`, `${h}ln_2.bias`, [D]), normEps);
    this.up = t(`${g}ffn_up.weight`, `${h}mlp.c_fc.weight`, [Fh, D], true);
    this.upBias = t(`${g}ffn_up.bias`, `${h}mlp.c_fc.bias`, [Fh]);
    this.down = t(`${g}ffn_down.weight`, `${h}mlp.c_proj.weight`, [D, Fh], true);
    this.downBias = t(`${g}ffn_down.bias`, `${h}mlp.c_proj.bias`, [D]);
  }

  forward(x: Tensor, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const D = this.config.hiddenSize;
    const [q, k, v] = ops.split(F.linear(this.ln1.forward(x), this.qkv, this.qkvBias), [D, D, D], 1);
    const r = x.add(F.linear(pagedSelfAttention(q, k, v, null, null, this.config, step, kPool, vPool), this.wo, this.bo));
    return r.add(F.linear(F.gelu(F.linear(this.ln2.forward(r), this.up, this.upBias), 'tanh'), this.down, this.downBias));
  }
}

export class Gpt2 extends nn.Module {
  embed: Tensor;
  positions: Tensor;
  layers: nn.ModuleList<Gpt2Block>;
  lnF: nn.LayerNorm;
  lmHead: Tensor;
  /** Positions the learned table covers (n_positions / context_length). */
  readonly maxPositions: number;

  constructor(readonly config: DecoderConfig, w: WeightSource, hf: boolean) {
    super();
    const { vocabSize: V, hiddenSize: D, maxPositionEmbeddings: P } = config;
    // the original gpt2 checkpoints name tensors without the "transformer." prefix
    const prefix = hf && w.has('transformer.wte.weight') ? 'transformer.' : '';
    const t = reader(w, hf, prefix);
    this.maxPositions = P;
    this.embed = t('token_embd.weight', 'wte.weight', [V, D]);
    this.positions = t('position_embd.weight', 'wpe.weight', [P, D]);
    this.layers = new nn.ModuleList(Array.from({ length: config.numLayers }, (_, l) => new Gpt2Block(config, t, l)));
    this.lnF = layerNormOf(t('output_norm.weight', 'ln_f.weight', [D]), t('output_norm.bias', 'ln_f.bias', [D]), config.normEps);
    this.lmHead = config.tieWordEmbeddings ? (hf ? this.embed : w.tiedHead('token_embd.weight', this.embed)) : w.linear('output.weight', [V, D]);
  }

  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    let x = F.embedding(step.ids, this.embed).add(F.embedding(step.positions, this.positions));
    let l = 0;
    for (const block of this.layers) { x = block.forward(x, step, kPools[l], vPools[l]); l++; }
    return F.linear(this.lnF.forward(lastTokens(x, step)), this.lmHead);
  }
}

function gpt2Config(file: ModelFile): DecoderConfig {
  if (file.gguf) return configFromGguf(file.gguf, 'gpt2', { epsKey: 'attention.layer_norm_epsilon', rotary: false });
  const json = file.hf!;
  const act = json.activation_function;
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new ModelConfigError(file.configPath, `gpt2: activation_function ${JSON.stringify(act)} is not supported (GPT-2 uses "gelu_new", the tanh GELU)`);
  }
  return configFromHf(json, file.configPath, HF_KEYS, { rotary: false, tied: true, intermediateFallback: (d) => 4 * d, normEpsDefault: 1e-5 });
}

/** Loads a GPT-2 GGUF file (general.architecture "gpt2") or HF directory (model_type "gpt2"). */
export function loadGpt2(source: string, options: LoadFamilyOptions = {}) {
  return loadFamily(source, options, gpt2Config, ({ file, config, maxPositions }) => {
    if (maxPositions > config.maxPositionEmbeddings) {
      throw new ModelConfigError(file.configPath, `gpt2: maxPositions ${maxPositions} exceeds the ${config.maxPositionEmbeddings} positions the model's learned table embeds`);
    }
    // saved causal-mask buffers (attn.bias, attn.masked_bias) and a tied lm_head are not weights
    file.weights.ignore(/\.attn\.(masked_)?bias$|^lm_head\.weight$/);
    return new Gpt2(config, file.weights, !file.gguf);
  });
}
