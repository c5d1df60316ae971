// Qwen2 / Qwen2.5 as user code: a Llama-shaped decoder (RMSNorm, SwiGLU MLP, GQA, rotary) whose
// Q, K and V projections carry a bias. Rotary rotates halves (NeoX): llama.cpp's converter does not
// permute Qwen2's Q/K rows, unlike Llama's, so GGUF and HF weights are the same matrices.
// forward(step, kPools, vPools) is one paged serving step, as PagedLlama's (see llama.ts).
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import { type Tensor } from '../../tensor/tensor.js';
import { type StepInputs } from '../step-engine.js';
import {
  type DecoderConfig, type FamilyBuild, type LoadFamilyOptions, type ModelFile, type WeightSource,
  LLAMA_STYLE_HF_KEYS, configFromGguf, configFromHf, lastTokens, loadFamily, pagedSelfAttention, ropeTables, rmsNormOf,
} from './common.js';

/** GGUF (llama.cpp) and HF (transformers) names of one layer's tensors. */
const NAMES = {
  gguf: (l: number) => ({
    attnNorm: `blk.${l}.attn_norm.weight`, q: `blk.${l}.attn_q`, k: `blk.${l}.attn_k`, v: `blk.${l}.attn_v`, o: `blk.${l}.attn_output.weight`,
    ffnNorm: `blk.${l}.ffn_norm.weight`, gate: `blk.${l}.ffn_gate.weight`, up: `blk.${l}.ffn_up.weight`, down: `blk.${l}.ffn_down.weight`,
  }),
  hf: (l: number) => ({
    attnNorm: `model.layers.${l}.input_layernorm.weight`, q: `model.layers.${l}.self_attn.q_proj`, k: `model.layers.${l}.self_attn.k_proj`,
    v: `model.layers.${l}.self_attn.v_proj`, o: `model.layers.${l}.self_attn.o_proj.weight`, ffnNorm: `model.layers.${l}.post_attention_layernorm.weight`,
    gate: `model.layers.${l}.mlp.gate_proj.weight`, up: `model.layers.${l}.mlp.up_proj.weight`, down: `model.layers.${l}.mlp.down_proj.weight`,
  }),
};

class Qwen2Block extends nn.Module {
  attnNorm: nn.RMSNorm; ffnNorm: nn.RMSNorm;
  wq: Tensor; bq: Tensor; wk: Tensor; bk: Tensor; wv: Tensor; bv: Tensor; wo: Tensor;
  gate: Tensor; up: Tensor; down: Tensor;
  constructor(readonly config: DecoderConfig, w: WeightSource, n: ReturnType<typeof NAMES.gguf>, readonly window: number) {
    super();
    const { hiddenSize: D, intermediateSize: Fh, numHeads: H, numKvHeads: Hkv, headDim: hd, normEps } = config;
    this.attnNorm = rmsNormOf(w.tensor(n.attnNorm, [D]), normEps);
    this.wq = w.linear(`${n.q}.weight`, [H * hd, D]); this.bq = w.tensor(`${n.q}.bias`, [H * hd]);
    this.wk = w.linear(`${n.k}.weight`, [Hkv * hd, D]); this.bk = w.tensor(`${n.k}.bias`, [Hkv * hd]);
    this.wv = w.linear(`${n.v}.weight`, [Hkv * hd, D]); this.bv = w.tensor(`${n.v}.bias`, [Hkv * hd]);
    this.wo = w.linear(n.o, [D, H * hd]);
    this.ffnNorm = rmsNormOf(w.tensor(n.ffnNorm, [D]), normEps);
    this.gate = w.linear(n.gate, [Fh, D]); this.up = w.linear(n.up, [Fh, D]); this.down = w.linear(n.down, [D, Fh]);
  }

  forward(x: Tensor, cos: Tensor, sin: Tensor, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const h = this.attnNorm.forward(x);
    const a = pagedSelfAttention(F.linear(h, this.wq, this.bq), F.linear(h, this.wk, this.bk), F.linear(h, this.wv, this.bv), cos, sin,
      { ...this.config, window: this.window }, step, kPool, vPool);
    const r = x.add(F.linear(a, this.wo));
    const m = this.ffnNorm.forward(r);
    return r.add(F.linear(F.silu(F.linear(m, this.gate)).mul(F.linear(m, this.up)), this.down));
  }
}

export class Qwen2 extends nn.Module {
  embed: Tensor;
  layers: nn.ModuleList<Qwen2Block>;
  norm: nn.RMSNorm;
  lmHead: Tensor;
  ropeCos: Tensor;
  ropeSin: Tensor;

  constructor(readonly config: DecoderConfig, w: WeightSource, hf: boolean, readonly maxPositions: number, window = 0) {
    super();
    const { vocabSize: V, hiddenSize: D } = config;
    const embedName = hf ? 'model.embed_tokens.weight' : 'token_embd.weight';
    this.embed = w.tensor(embedName, [V, D]);
    this.layers = new nn.ModuleList(Array.from({ length: config.numLayers }, (_, l) => new Qwen2Block(config, w, (hf ? NAMES.hf : NAMES.gguf)(l), window)));
    this.norm = rmsNormOf(w.tensor(hf ? 'model.norm.weight' : 'output_norm.weight', [D]), config.normEps);
    const head = hf ? 'lm_head.weight' : 'output.weight';
    // a tied checkpoint may still carry the head (transformers saves it): it is the embedding again
    this.lmHead = config.tieWordEmbeddings ? w.tiedHead(embedName, this.embed) : w.linear(head, [V, D]);
    if (config.tieWordEmbeddings) w.ignore(new RegExp(`^${head.replace('.', '\\.')}$`));
    ({ cos: this.ropeCos, sin: this.ropeSin } = ropeTables(config.ropeDim, config.ropeTheta, maxPositions));
  }

  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    const cos = F.embedding(step.positions, this.ropeCos), sin = F.embedding(step.positions, this.ropeSin);
    let x = F.embedding(step.ids, this.embed);
    let l = 0;
    for (const block of this.layers) { x = block.forward(x, cos, sin, step, kPools[l], vPools[l]); l++; }
    return F.linear(this.norm.forward(lastTokens(x, step)), this.lmHead);
  }
}

function qwen2Config(file: ModelFile): DecoderConfig {
  if (file.gguf) return configFromGguf(file.gguf, 'qwen2', { epsKey: 'attention.layer_norm_rms_epsilon', rotary: true });
  return configFromHf(file.hf!, file.configPath, LLAMA_STYLE_HF_KEYS, { rotary: true, normEpsDefault: 1e-6 });
}

/** Loads a Qwen2 GGUF file (general.architecture "qwen2") or HF directory (model_type "qwen2"). */
export function loadQwen2(source: string, options: LoadFamilyOptions = {}) {
  return loadFamily(source, options, qwen2Config, ({ file, config, maxPositions }: FamilyBuild) => {
    // HF Qwen2 applies its sliding window only with use_sliding_window (off in the released models); llama.cpp never does
    const hf = file.hf;
    const window = hf && hf.use_sliding_window === true && typeof hf.sliding_window === 'number' ? hf.sliding_window : 0;
    file.weights.ignore(/\.rotary_emb\.inv_freq$/);
    return new Qwen2(config, file.weights, !file.gguf, maxPositions, window);
  });
}
