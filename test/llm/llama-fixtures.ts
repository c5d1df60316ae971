// Small Llama models with seeded weights, written as GGUF files (with a SentencePiece vocabulary
// llama.cpp accepts) or as Hugging Face checkpoints, for the LLM tests.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeGguf, gguf, type GgufWriteTensor, type GgufWriteValue } from '../../src/io/gguf/index.js';
import { writeSafetensors } from '../../src/io/safetensors-writer.js';
import { randn } from '../../src/index.js';
import { type Tensor } from '../../src/tensor/tensor.js';
import { CORPUS, trainSpmVocab } from './tokenizer-fixtures.js';

export interface TinyLlamaSpec {
  dim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  ffn?: number;
  vocab?: number;
  /** Storage type of the linear weights (norms stay F32, embeddings F32 unless embedType). */
  type?: LinearType;
  embedType?: 'F32' | 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K';
  /** Per-role overrides of `type` (a Q4_K_M-style file keeps attn_v, ffn_down and output in Q6_K). */
  types?: Partial<Record<'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_gate' | 'ffn_up' | 'ffn_down' | 'output', LinearType>>;
  tied?: boolean;
  seed?: number;
  ropeBase?: number;
  /** Weight scale (std of the seeded normal values). */
  scale?: number;
  /** Llama-3 style rope_freqs factors (one per rotated pair). */
  ropeFreqs?: number[];
  /** Extra GGUF metadata (e.g. tokenizer.chat_template), written after the standard keys. */
  metadata?: Record<string, GgufWriteValue>;
}

type LinearType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q5_K' | 'Q6_K';
// general.file_type (llama_ftype): Q4_K/Q5_K/Q6_K name the _M / plain variants
const FILE_TYPES: Record<LinearType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32, Q4_K: 15, Q5_K: 17, Q6_K: 18 };

/** The weights of a tiny Llama as HF-named tensors [out, in] (f32), with GGUF-order Q/K rows for GGUF. */
export function tinyLlamaTensors(spec: TinyLlamaSpec = {}) {
  const D = spec.dim ?? 64, L = spec.layers ?? 2, H = spec.heads ?? 4, Hkv = spec.kvHeads ?? 2, Fh = spec.ffn ?? 128;
  const seed = spec.seed ?? 1, scale = spec.scale ?? 0.15;
  let s = seed * 1000;
  const w = (shape: number[], std = scale): Tensor => randn(shape, { seed: s++ }).mul(std);
  const ones = (n: number): Tensor => randn([n], { seed: s++ }).mul(0.1).add(1);
  return { D, L, H, Hkv, Fh, w, ones };
}

/**
 * Writes a tiny llama GGUF file (SentencePiece vocabulary trained on the tokenizer corpus) and returns
 * its vocabulary size. Q/K weights are seeded directly in GGUF's (rotary-permuted) row order.
 */
export function writeTinyLlamaGguf(file: string, spec: TinyLlamaSpec = {}): { vocab: number } {
  const v = trainSpmVocab(CORPUS, spec.vocab ?? 300);
  const V = v.tokens.length;
  const { D, L, H, Hkv, Fh, w, ones } = tinyLlamaTensors(spec);
  const type = spec.type ?? 'F32';
  const t = (role: keyof NonNullable<TinyLlamaSpec['types']>): LinearType => spec.types?.[role] ?? type;
  const hd = D / H;
  const tensors: GgufWriteTensor[] = [
    { name: 'token_embd.weight', type: spec.embedType ?? 'F32', data: w([V, D], 0.5) },
    { name: 'output_norm.weight', type: 'F32', data: ones(D) },
  ];
  if (!spec.tied) tensors.push({ name: 'output.weight', type: t('output'), data: w([V, D]) });
  if (spec.ropeFreqs) tensors.push({ name: 'rope_freqs.weight', type: 'F32', data: spec.ropeFreqs, shape: [spec.ropeFreqs.length] });
  for (let l = 0; l < L; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, type: 'F32', data: ones(D) },
      { name: `${p}attn_q.weight`, type: t('attn_q'), data: w([H * hd, D]) },
      { name: `${p}attn_k.weight`, type: t('attn_k'), data: w([Hkv * hd, D]) },
      { name: `${p}attn_v.weight`, type: t('attn_v'), data: w([Hkv * hd, D]) },
      { name: `${p}attn_output.weight`, type: t('attn_output'), data: w([D, H * hd]) },
      { name: `${p}ffn_norm.weight`, type: 'F32', data: ones(D) },
      { name: `${p}ffn_gate.weight`, type: t('ffn_gate'), data: w([Fh, D]) },
      { name: `${p}ffn_up.weight`, type: t('ffn_up'), data: w([Fh, D]) },
      { name: `${p}ffn_down.weight`, type: t('ffn_down'), data: w([D, Fh]) },
    );
  }
  writeGguf(file, {
    metadata: {
      'general.architecture': 'llama',
      'general.name': 'inferjit-test-llama',
      'general.file_type': gguf.u32(FILE_TYPES[type]),
      'general.quantization_version': gguf.u32(2),
      'llama.context_length': gguf.u32(512),
      'llama.embedding_length': gguf.u32(D),
      'llama.block_count': gguf.u32(L),
      'llama.feed_forward_length': gguf.u32(Fh),
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

/**
 * Inverse of convert_hf_to_gguf.py's LlamaModel.permute for one Q or K matrix [heads·hd, D]: GGUF rows
 * (pairs (2i, 2i+1) within each head) back to HF rows (halves i, i + hd/2).
 */
export function unpermuteRows(values: Float32Array, heads: number, hd: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      for (const part of [0, 1]) {
        // GGUF row h·hd + 2i + part holds HF row h·hd + part·hd/2 + i.
        const src = (h * hd + 2 * i + part) * cols, dst = (h * hd + part * (hd / 2) + i) * cols;
        out.set(values.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** Writes an HF checkpoint directory (config.json + model.safetensors) holding the same model as a GGUF file. */
export function writeHfFromGguf(dir: string, tensors: Map<string, Tensor>, config: Record<string, unknown>): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
}
