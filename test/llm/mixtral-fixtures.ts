// Small Mixtral-shaped models with seeded weights written as GGUF files the way llama.cpp's
// converter writes Mixtral: general.architecture "llama", llama.expert_count / expert_used_count,
// per block a router ffn_gate_inp [E, D] (kept F32, as llama.cpp's quantizer keeps it) and the
// experts stacked as 3-D tensors ffn_gate_exps / ffn_up_exps [E, F, D] and ffn_down_exps [E, D, F].
import { writeGguf, gguf, type GgufWriteTensor } from '../../src/io/gguf/index.js';
import { CORPUS, trainSpmVocab } from './tokenizer-fixtures.js';
import { tinyLlamaTensors, type TinyLlamaSpec } from './llama-fixtures.js';

export interface TinyMixtralSpec extends Omit<TinyLlamaSpec, 'type' | 'embedType' | 'ropeFreqs'> {
  experts?: number;
  expertsPerToken?: number;
  type?: 'F32' | 'F16' | 'Q8_0' | 'Q4_0';
  /** Std of the router weights (larger: more decisive routing). */
  routerScale?: number;
}

const FILE_TYPES = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 } as const;

export function writeTinyMixtralGguf(file: string, spec: TinyMixtralSpec = {}): { vocab: number } {
  const v = trainSpmVocab(CORPUS, spec.vocab ?? 300);
  const V = v.tokens.length;
  const { D, L, H, Hkv, Fh, w, ones } = tinyLlamaTensors(spec);
  const E = spec.experts ?? 8, K = spec.expertsPerToken ?? 2;
  const type = spec.type ?? 'F32';
  const hd = D / H;
  const tensors: GgufWriteTensor[] = [
    { name: 'token_embd.weight', type: 'F32', data: w([V, D], 0.5) },
    { name: 'output_norm.weight', type: 'F32', data: ones(D) },
  ];
  if (!spec.tied) tensors.push({ name: 'output.weight', type, data: w([V, D]) });
  for (let l = 0; l < L; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, type: 'F32', data: ones(D) },
      { name: `${p}attn_q.weight`, type, data: w([H * hd, D]) },
      { name: `${p}attn_k.weight`, type, data: w([Hkv * hd, D]) },
      { name: `${p}attn_v.weight`, type, data: w([Hkv * hd, D]) },
      { name: `${p}attn_output.weight`, type, data: w([D, H * hd]) },
      { name: `${p}ffn_norm.weight`, type: 'F32', data: ones(D) },
      { name: `${p}ffn_gate_inp.weight`, type: 'F32', data: w([E, D], spec.routerScale ?? 0.5) },
      { name: `${p}ffn_gate_exps.weight`, type, data: w([E, Fh, D]) },
      { name: `${p}ffn_up_exps.weight`, type, data: w([E, Fh, D]) },
      { name: `${p}ffn_down_exps.weight`, type, data: w([E, D, Fh]) },
    );
  }
  writeGguf(file, {
    metadata: {
      'general.architecture': 'llama',
      'general.name': 'inferjit-test-mixtral',
      'general.file_type': gguf.u32(FILE_TYPES[type]),
      'general.quantization_version': gguf.u32(2),
      'llama.context_length': gguf.u32(512),
      'llama.embedding_length': gguf.u32(D),
      'llama.block_count': gguf.u32(L),
      'llama.feed_forward_length': gguf.u32(Fh),
      'llama.expert_count': gguf.u32(E),
      'llama.expert_used_count': gguf.u32(K),
      'llama.rope.dimension_count': gguf.u32(hd),
      'llama.rope.freq_base': gguf.f32(spec.ropeBase ?? 10000),
      'llama.attention.head_count': gguf.u32(H),
      'llama.attention.head_count_kv': gguf.u32(Hkv),
      'llama.attention.layer_norm_rms_epsilon': gguf.f32(1e-5),
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.tokens': v.tokens,
      'tokenizer.ggml.scores': v.scores,
      'tokenizer.ggml.token_type': v.types,
      'tokenizer.ggml.bos_token_id': gguf.u32(1),
      'tokenizer.ggml.eos_token_id': gguf.u32(2),
      'tokenizer.ggml.unknown_token_id': gguf.u32(0),
      'tokenizer.ggml.add_bos_token': true,
      'tokenizer.ggml.add_eos_token': false,
      ...spec.metadata,
    },
    tensors,
  });
  return { vocab: V };
}
