// Phi-3 (mini / medium, 4k context) as user code: Llama-shaped (RMSNorm, NeoX rotary, SwiGLU) with
// the projections fused as the checkpoint stores them — one QKV matrix [(H + 2·Hkv)·hd, D] split
// after the matmul, and one gate_up matrix [2·F, D] whose first half is the gate (F.swiglu). GGUF
// keeps both fused (attn_qkv, ffn_up with 2·F rows), so both files load into the same model.
// Not covered: LongRoPE (the 128k variants' rope_factors_long/short) and Phi-3's sliding window,
// which llama.cpp also turns off.
import * as nn from '../../nn/index.js';
import * as F from '../../nn/functional.js';
import * as ops from '../../ops/index.js';
import { type Tensor } from '../../tensor/tensor.js';
import { ModelConfigError } from '../../io/errors.js';
import { type StepInputs } from '../step-engine.js';
import {
  type DecoderConfig, type LoadFamilyOptions, type ModelFile, type WeightSource,
  LLAMA_STYLE_HF_KEYS, configFromGguf, configFromHf, lastTokens, loadFamily, pagedSelfAttention, ropeTables, rmsNormOf,
} from './common.js';

class Phi3Block extends nn.Module {
  attnNorm: nn.RMSNorm; ffnNorm: nn.RMSNorm;
  qkv: Tensor; wo: Tensor; gateUp: Tensor; down: Tensor;
  constructor(readonly config: DecoderConfig, w: WeightSource, l: number, hf: boolean) {
    super();
    const { hiddenSize: D, intermediateSize: Fh, numHeads: H, numKvHeads: Hkv, headDim: hd, normEps } = config;
    const p = hf ? `model.layers.${l}.` : `blk.${l}.`;
    const n = (g: string, h: string) => p + (hf ? h : g);
    this.attnNorm = rmsNormOf(w.tensor(n('attn_norm.weight', 'input_layernorm.weight'), [D]), normEps);
    this.qkv = w.linear(n('attn_qkv.weight', 'self_attn.qkv_proj.weight'), [(H + 2 * Hkv) * hd, D]);
    this.wo = w.linear(n('attn_output.weight', 'self_attn.o_proj.weight'), [D, H * hd]);
    this.ffnNorm = rmsNormOf(w.tensor(n('ffn_norm.weight', 'post_attention_layernorm.weight'), [D]), normEps);
    this.gateUp = w.linear(n('ffn_up.weight', 'mlp.gate_up_proj.weight'), [2 * Fh, D]);
    this.down = w.linear(n('ffn_down.weight', 'mlp.down_proj.weight'), [D, Fh]);
  }

  forward(x: Tensor, cos: Tensor, sin: Tensor, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const { numHeads: H, numKvHeads: Hkv, headDim: hd } = this.config;
    const [q, k, v] = ops.split(F.linear(this.attnNorm.forward(x), this.qkv), [H * hd, Hkv * hd, Hkv * hd], 1);
    const r = x.add(F.linear(pagedSelfAttention(q, k, v, cos, sin, this.config, step, kPool, vPool), this.wo));
    return r.add(F.linear(F.swiglu(F.linear(this.ffnNorm.forward(r), this.gateUp)), this.down));
  }
}

export class Phi3 extends nn.Module {
  embed: Tensor;
  layers: nn.ModuleList<Phi3Block>;
  norm: nn.RMSNorm;
  lmHead: Tensor;
  ropeCos: Tensor;
  ropeSin: Tensor;

  constructor(readonly config: DecoderConfig, w: WeightSource, hf: boolean, readonly maxPositions: number) {
    super();
    const { vocabSize: V, hiddenSize: D } = config;
    const embedName = hf ? 'model.embed_tokens.weight' : 'token_embd.weight';
    this.embed = w.tensor(embedName, [V, D]);
    this.layers = new nn.ModuleList(Array.from({ length: config.numLayers }, (_, l) => new Phi3Block(config, w, l, hf)));
    this.norm = rmsNormOf(w.tensor(hf ? 'model.norm.weight' : 'output_norm.weight', [D]), config.normEps);
    this.lmHead = config.tieWordEmbeddings ? w.tiedHead(embedName, this.embed) : w.linear(hf ? 'lm_head.weight' : 'output.weight', [V, D]);
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

function phi3Config(file: ModelFile): DecoderConfig {
  if (file.gguf) {
    if (file.gguf.hasTensor('rope_factors_long.weight') || file.gguf.hasTensor('blk.0.rope_factors_long.weight')) {
      throw new ModelConfigError(file.configPath, 'phi3: LongRoPE (rope_factors_long / rope_factors_short, the 128k-context Phi-3 variants) is not supported; use a 4k-context Phi-3 file');
    }
    return configFromGguf(file.gguf, 'phi3', { epsKey: 'attention.layer_norm_rms_epsilon', rotary: true });
  }
  const json = file.hf!;
  const rs = json.rope_scaling as { type?: string; rope_type?: string } | null | undefined;
  if (rs && (rs.rope_type ?? rs.type) !== 'default') {
    throw new ModelConfigError(file.configPath, `phi3: rope_scaling ${JSON.stringify(rs.rope_type ?? rs.type)} (LongRoPE, the 128k-context variants) is not supported; use a 4k-context Phi-3 checkpoint`);
  }
  const c = configFromHf(json, file.configPath, LLAMA_STYLE_HF_KEYS, { rotary: true, normEpsDefault: 1e-5 });
  // Phi-3.5/4-mini rotate only part of each head (GGUF carries the result as rope.dimension_count)
  const partial = json.partial_rotary_factor;
  return typeof partial === 'number' ? { ...c, ropeDim: Math.round(c.headDim * partial) } : c;
}

/** Loads a Phi-3 GGUF file (general.architecture "phi3") or HF directory (model_type "phi3"). */
export function loadPhi3(source: string, options: LoadFamilyOptions = {}) {
  return loadFamily(source, options, phi3Config, ({ file, config, maxPositions }) => {
    if (config.tieWordEmbeddings) file.weights.ignore(/^lm_head\.weight$/);
    file.weights.ignore(/\.rotary_emb\.inv_freq$/);
    return new Phi3(config, file.weights, !file.gguf, maxPositions);
  });
}
