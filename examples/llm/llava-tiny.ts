// A seeded tiny LLaVA checkpoint in llava-hf's layout (config.json with vision_config / text_config,
// model.safetensors under llava-hf's tensor names, a byte-level tokenizer.json with <image>), so the
// example and the tests load it through the same path as a downloaded llava-1.5 directory.
// Every tensor is random (norm weights and biases too), so a tensor read under the wrong name or
// wired to the wrong place changes the output.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randn } from '../../src/tensor/creation.js';
import { type Tensor } from '../../src/tensor/tensor.js';
import { writeSafetensors } from '../../src/io/safetensors-writer.js';
import { BYTE_TO_UNICODE } from '../../src/llm/tokenizer/index.js';
import { LlavaImageEncoder } from '../../src/llm/vision/clip.js';
import { llavaConfigFromHf, visionOptionsOf } from '../../src/llm/vision/llava.js';

export interface TinyLlavaSpec {
  seed?: number;
  visionHidden?: number; visionLayers?: number; visionHeads?: number; imageSize?: number; patchSize?: number;
  textHidden?: number; textLayers?: number; textHeads?: number; textKvHeads?: number; maxPositions?: number;
}

/** Byte tokens 0..255, then these; the vocabulary is padded to TINY_VOCAB as llava-hf pads to 32064. */
export const TINY_SPECIALS = { bos: 256, eos: 257, image: 258 } as const;
export const TINY_VOCAB = 264;

/** A byte-level BPE tokenizer.json (no merges: one token per byte) with <s>, </s>, <image>. */
export function tinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  BYTE_TO_UNICODE.forEach((c, b) => { vocab[c] = b; });
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    added_tokens: [special(TINY_SPECIALS.bos, '<s>'), special(TINY_SPECIALS.eos, '</s>'), special(TINY_SPECIALS.image, '<image>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

/** Writes the checkpoint into `dir` (created if needed); returns its config.json object. */
export function writeTinyLlava(dir: string, spec: TinyLlavaSpec = {}): Record<string, unknown> {
  const seed = spec.seed ?? 7;
  const textHidden = spec.textHidden ?? 48, textHeads = spec.textHeads ?? 4;
  const json: Record<string, unknown> = {
    model_type: 'llava', architectures: ['LlavaForConditionalGeneration'], image_token_index: TINY_SPECIALS.image,
    vision_feature_layer: -2, vision_feature_select_strategy: 'default', projector_hidden_act: 'gelu',
    vision_config: {
      model_type: 'clip_vision_model', hidden_size: spec.visionHidden ?? 32, intermediate_size: 2 * (spec.visionHidden ?? 32),
      num_hidden_layers: spec.visionLayers ?? 3, num_attention_heads: spec.visionHeads ?? 4, image_size: spec.imageSize ?? 28,
      patch_size: spec.patchSize ?? 7, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu',
    },
    text_config: {
      model_type: 'llama', vocab_size: TINY_VOCAB, hidden_size: textHidden, intermediate_size: 2 * textHidden,
      num_hidden_layers: spec.textLayers ?? 2, num_attention_heads: textHeads, num_key_value_heads: spec.textKvHeads ?? 2,
      max_position_embeddings: spec.maxPositions ?? 256, rms_norm_eps: 1e-5, rope_theta: 10000, bos_token_id: TINY_SPECIALS.bos, eos_token_id: TINY_SPECIALS.eos,
    },
  };
  const config = llavaConfigFromHf(json);
  let s = seed * 1000;
  const rnd = (shape: number[], scale: number, offset = 0): Tensor => { const t = randn(shape, { seed: s++ }).mul(scale); return offset ? t.add(offset) : t; };
  const tensors = new Map<string, Tensor>();
  // vision tower + projector: the module's own names; every tensor redrawn (norms around 1, biases small)
  const encoder = new LlavaImageEncoder(config.vision, visionOptionsOf(config), { seed });
  for (const [name, t] of encoder.stateDict()) {
    const norm = /layer_?norm|layrnorm/.test(name);
    const isBias = name.endsWith('.bias');
    const fanIn = t.rank >= 2 ? t.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    tensors.set(name, norm ? rnd([...t.shape], 0.1, isBias ? 0 : 1) : isBias ? rnd([...t.shape], 0.05) : t.rank >= 2 && !name.includes('position') ? rnd([...t.shape], 1 / Math.sqrt(fanIn)) : rnd([...t.shape], 0.1));
  }
  const { hiddenSize: D, intermediateSize: Fi, numHeads, numKvHeads, headDim: hd, numLayers } = config.text;
  const p = 'language_model.model.';
  tensors.set(`${p}embed_tokens.weight`, rnd([TINY_VOCAB, D], 0.5));
  for (let l = 0; l < numLayers; l++) {
    const q = `${p}layers.${l}.`;
    tensors.set(`${q}input_layernorm.weight`, rnd([D], 0.1, 1));
    tensors.set(`${q}self_attn.q_proj.weight`, rnd([numHeads * hd, D], 1 / Math.sqrt(D)));
    tensors.set(`${q}self_attn.k_proj.weight`, rnd([numKvHeads * hd, D], 1 / Math.sqrt(D)));
    tensors.set(`${q}self_attn.v_proj.weight`, rnd([numKvHeads * hd, D], 1 / Math.sqrt(D)));
    tensors.set(`${q}self_attn.o_proj.weight`, rnd([D, numHeads * hd], 1 / Math.sqrt(D)));
    tensors.set(`${q}post_attention_layernorm.weight`, rnd([D], 0.1, 1));
    tensors.set(`${q}mlp.gate_proj.weight`, rnd([Fi, D], 1 / Math.sqrt(D)));
    tensors.set(`${q}mlp.up_proj.weight`, rnd([Fi, D], 1 / Math.sqrt(D)));
    tensors.set(`${q}mlp.down_proj.weight`, rnd([D, Fi], 1 / Math.sqrt(Fi)));
  }
  tensors.set(`${p}norm.weight`, rnd([D], 0.1, 1));
  tensors.set('language_model.lm_head.weight', rnd([TINY_VOCAB, D], 1 / Math.sqrt(D)));
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  const write = (name: string, v: unknown) => { const f = path.join(dir, name); fs.writeFileSync(f + '.tmp', JSON.stringify(v, null, 1)); fs.renameSync(f + '.tmp', f); };
  write('config.json', json);
  write('tokenizer.json', tinyTokenizerJson());
  return json;
}
