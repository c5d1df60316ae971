// Tiny Qwen2 / Gemma / Phi-3 / GPT-2 models with seeded weights, written as GGUF files in
// llama.cpp's layout for each architecture (tensor names, fused tensors, the `<arch>.*` keys its
// loader reads) and as Hugging Face checkpoints holding the same model (transformers' names, GPT-2's
// Conv1D [in, out] matrices, Gemma's norm weights without llama.cpp's +1).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeGguf, gguf, type GgufWriteTensor, type GgufWriteValue } from '../../src/io/gguf/index.js';
import { writeSafetensors } from '../../src/io/safetensors-writer.js';
import { randn } from '../../src/index.js';
import { type Tensor } from '../../src/tensor/tensor.js';
import { CORPUS, trainSpmVocab, spmTokenizerJson, withAddedTokens, trainByteBpeVocab } from './tokenizer-fixtures.js';
import { TokenType } from '../../src/llm/index.js';

export type Family = 'qwen2' | 'gemma' | 'phi3' | 'gpt2';

export interface TinyFamilySpec {
  dim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  ffn?: number;
  /** Gemma: head size other than dim / heads (written as key_length / value_length). */
  headDim?: number;
  /** Rotary dims per head below the head size (partial rotary; GGUF rope.dimension_count, HF partial_rotary_factor). */
  ropeDim?: number;
  seed?: number;
  /** GGUF storage of the 2-D weight matrices (embeddings included); vectors stay F32. K-quant
   *  types need every row length (dim, ffn, heads·headDim) a multiple of 256. */
  type?: 'F32' | 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q5_K' | 'Q6_K';
  scale?: number;
  /** Write an untied output head (Qwen2, Phi-3; Gemma is always tied, GPT-2 tied by default). */
  untied?: boolean;
  contextLength?: number;
}

/** One tensor under its GGUF name and its HF name (hfData: the HF layout when it differs). */
interface Entry { gguf: string; hf: string; data: Tensor; hfData?: Tensor }

/**
 * The family's kind of vocabulary, in a form llama.cpp accepts. Gemma and Phi-3 ship SentencePiece
 * vocabularies (Phi-3's chat tokens come after the pieces as control tokens: llama.cpp's vocabulary
 * loader looks them up by text for phi3 files and fails without them); Qwen2 and GPT-2 ship
 * byte-level BPE (GGUF tokenizer.ggml.model "gpt2", pre-tokenizer "qwen2" / "gpt-2"), with
 * <|endoftext|> as BOS and EOS and no BOS added.
 */
type Vocab = { kind: 'spm'; v: ReturnType<typeof trainSpmVocab> } | { kind: 'bpe'; v: ReturnType<typeof trainByteBpeVocab> };
const vocab = (family: Family): Vocab => {
  if (family === 'qwen2' || family === 'gpt2') return { kind: 'bpe', v: trainByteBpeVocab(CORPUS, 300, ['<|endoftext|>']) };
  const v = trainSpmVocab(CORPUS, 300);
  return { kind: 'spm', v: family === 'phi3' ? withAddedTokens(v, ['<|endoftext|>', '<|assistant|>', '<|system|>', '<|end|>', '<|user|>'], []) : v };
};

const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function tokenizerMetadata(family: Family, voc: Vocab): Record<string, GgufWriteValue> {
  if (voc.kind === 'spm') {
    const v = voc.v;
    return {
      'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': v.tokens, 'tokenizer.ggml.scores': v.scores, 'tokenizer.ggml.token_type': v.types,
      'tokenizer.ggml.bos_token_id': gguf.u32(1), 'tokenizer.ggml.eos_token_id': gguf.u32(2), 'tokenizer.ggml.unknown_token_id': gguf.u32(0),
      'tokenizer.ggml.add_bos_token': true, 'tokenizer.ggml.add_eos_token': false,
    };
  }
  const v = voc.v, end = v.tokens.indexOf('<|endoftext|>');
  return {
    'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': family === 'qwen2' ? 'qwen2' : 'gpt-2',
    'tokenizer.ggml.tokens': v.tokens, 'tokenizer.ggml.token_type': v.types, 'tokenizer.ggml.merges': v.merges,
    'tokenizer.ggml.bos_token_id': gguf.u32(end), 'tokenizer.ggml.eos_token_id': gguf.u32(end), 'tokenizer.ggml.add_bos_token': false,
  };
}

function tokenizerJson(family: Family, voc: Vocab): Record<string, unknown> {
  if (voc.kind === 'spm') return spmTokenizerJson(voc.v);
  const v = voc.v;
  const normal = v.tokens.map((t, i) => [t, i] as const).filter(([, i]) => v.types[i] === TokenType.Normal);
  return {
    version: '1.0',
    added_tokens: v.tokens.map((t, i) => ({ t, i })).filter(({ i }) => v.types[i] === TokenType.Control).map(({ t, i }) => ({ id: i, content: t, special: true })),
    pre_tokenizer: family === 'qwen2'
      ? { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_SPLIT }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] }
      : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel' },
    model: { type: 'BPE', vocab: Object.fromEntries(normal), merges: v.merges },
  };
}

function entries(family: Family, V: number, spec: TinyFamilySpec): { list: Entry[]; D: number; H: number; Hkv: number; hd: number; Fh: number; L: number; P: number } {
  const D = spec.dim ?? 64, L = spec.layers ?? 2, H = spec.heads ?? 4, Hkv = family === 'gpt2' ? H : spec.kvHeads ?? 2, Fh = spec.ffn ?? 128;
  const hd = spec.headDim ?? D / H, P = spec.contextLength ?? 256;
  let s = (spec.seed ?? 1) * 1000;
  const std = spec.scale ?? 0.15;
  const w = (shape: number[], k = std): Tensor => randn(shape, { seed: s++ }).mul(k);
  const near1 = (n: number): Tensor => randn([n], { seed: s++ }).mul(0.1).add(1);
  const list: Entry[] = [];
  const add = (g: string, h: string, data: Tensor, hfData?: Tensor) => list.push({ gguf: g, hf: h, data, hfData });
  const T = (t: Tensor) => t.transpose(0, 1);
  const m = family === 'gpt2' ? '' : 'model.';
  if (family === 'gpt2') {
    add('token_embd.weight', 'transformer.wte.weight', w([V, D], 0.5));
    add('position_embd.weight', 'transformer.wpe.weight', w([P, D], 0.2));
  } else {
    add('token_embd.weight', `${m}embed_tokens.weight`, w([V, D], family === 'gemma' ? 0.5 / Math.sqrt(D) * 4 : 0.5));
  }
  for (let l = 0; l < L; l++) {
    const g = `blk.${l}.`, h = family === 'gpt2' ? `transformer.h.${l}.` : `model.layers.${l}.`;
    if (family === 'gpt2') {
      add(`${g}attn_norm.weight`, `${h}ln_1.weight`, near1(D));
      add(`${g}attn_norm.bias`, `${h}ln_1.bias`, w([D], 0.05));
      const qkv = w([3 * D, D]);
      add(`${g}attn_qkv.weight`, `${h}attn.c_attn.weight`, qkv, T(qkv));
      add(`${g}attn_qkv.bias`, `${h}attn.c_attn.bias`, w([3 * D], 0.05));
      const o = w([D, D]);
      add(`${g}attn_output.weight`, `${h}attn.c_proj.weight`, o, T(o));
      add(`${g}attn_output.bias`, `${h}attn.c_proj.bias`, w([D], 0.05));
      add(`${g}ffn_norm.weight`, `${h}ln_2.weight`, near1(D));
      add(`${g}ffn_norm.bias`, `${h}ln_2.bias`, w([D], 0.05));
      const up = w([Fh, D]), down = w([D, Fh]);
      add(`${g}ffn_up.weight`, `${h}mlp.c_fc.weight`, up, T(up));
      add(`${g}ffn_up.bias`, `${h}mlp.c_fc.bias`, w([Fh], 0.05));
      add(`${g}ffn_down.weight`, `${h}mlp.c_proj.weight`, down, T(down));
      add(`${g}ffn_down.bias`, `${h}mlp.c_proj.bias`, w([D], 0.05));
      continue;
    }
    // Gemma: llama.cpp's converter stores norm weights + 1 (HF keeps w and computes (1 + w))
    const norm = (gname: string, hname: string) => { const n = near1(D); add(gname, hname, n, family === 'gemma' ? n.sub(1) : undefined); };
    norm(`${g}attn_norm.weight`, `${h}input_layernorm.weight`);
    if (family === 'phi3') {
      add(`${g}attn_qkv.weight`, `${h}self_attn.qkv_proj.weight`, w([(H + 2 * Hkv) * hd, D]));
    } else {
      add(`${g}attn_q.weight`, `${h}self_attn.q_proj.weight`, w([H * hd, D]));
      add(`${g}attn_k.weight`, `${h}self_attn.k_proj.weight`, w([Hkv * hd, D]));
      add(`${g}attn_v.weight`, `${h}self_attn.v_proj.weight`, w([Hkv * hd, D]));
      if (family === 'qwen2') {
        add(`${g}attn_q.bias`, `${h}self_attn.q_proj.bias`, w([H * hd], 0.3));
        add(`${g}attn_k.bias`, `${h}self_attn.k_proj.bias`, w([Hkv * hd], 0.3));
        add(`${g}attn_v.bias`, `${h}self_attn.v_proj.bias`, w([Hkv * hd], 0.3));
      }
    }
    add(`${g}attn_output.weight`, `${h}self_attn.o_proj.weight`, w([D, H * hd]));
    norm(`${g}ffn_norm.weight`, `${h}post_attention_layernorm.weight`);
    if (family === 'phi3') {
      add(`${g}ffn_up.weight`, `${h}mlp.gate_up_proj.weight`, w([2 * Fh, D]));
    } else {
      add(`${g}ffn_gate.weight`, `${h}mlp.gate_proj.weight`, w([Fh, D]));
      add(`${g}ffn_up.weight`, `${h}mlp.up_proj.weight`, w([Fh, D]));
    }
    add(`${g}ffn_down.weight`, `${h}mlp.down_proj.weight`, w([D, Fh]));
  }
  if (family === 'gpt2') {
    add('output_norm.weight', 'transformer.ln_f.weight', near1(D));
    add('output_norm.bias', 'transformer.ln_f.bias', w([D], 0.05));
  } else {
    const n = near1(D);
    add('output_norm.weight', 'model.norm.weight', n, family === 'gemma' ? n.sub(1) : undefined);
  }
  if (spec.untied && family !== 'gemma') add('output.weight', 'lm_head.weight', w([V, D]));
  return { list, D, H, Hkv, hd, Fh, L, P };
}

/** llama_ftype of each storage type (a file whose matrices are all that type). */
const FILE_TYPES = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, Q4_K: 15, Q5_K: 17, Q6_K: 18 } as const;

/** Writes a tiny model of the family as a GGUF file (SentencePiece vocabulary llama.cpp accepts). */
export function writeFamilyGguf(file: string, family: Family, spec: TinyFamilySpec = {}): { vocab: number } {
  const voc = vocab(family);
  const { list, D, H, Hkv, hd, Fh, L, P } = entries(family, voc.v.tokens.length, spec);
  const k = (s: string) => `${family}.${s}`;
  const metadata: Record<string, GgufWriteValue> = {
    'general.architecture': family,
    'general.name': `inferjit-test-${family}`,
    'general.file_type': gguf.u32(FILE_TYPES[spec.type ?? 'F32']),
    'general.quantization_version': gguf.u32(2),
    [k('context_length')]: gguf.u32(P),
    [k('embedding_length')]: gguf.u32(D),
    [k('block_count')]: gguf.u32(L),
    [k('feed_forward_length')]: gguf.u32(Fh),
    [k('attention.head_count')]: gguf.u32(H),
  };
  if (family === 'gpt2') {
    metadata[k('attention.layer_norm_epsilon')] = gguf.f32(1e-5);
  } else {
    metadata[k('attention.head_count_kv')] = gguf.u32(Hkv);
    metadata[k('attention.layer_norm_rms_epsilon')] = gguf.f32(1e-6);
    metadata[k('rope.freq_base')] = gguf.f32(10000);
    metadata[k('rope.dimension_count')] = gguf.u32(spec.ropeDim ?? hd);
    if (family === 'gemma') { metadata[k('attention.key_length')] = gguf.u32(hd); metadata[k('attention.value_length')] = gguf.u32(hd); }
  }
  Object.assign(metadata, tokenizerMetadata(family, voc));
  const tensors: GgufWriteTensor[] = list.map((e) => ({ name: e.gguf, type: e.data.rank === 2 ? spec.type ?? 'F32' : 'F32', data: e.data }));
  writeGguf(file, { metadata, tensors });
  return { vocab: voc.v.tokens.length };
}

/** Writes the same model as a Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer.json). */
export function writeFamilyHf(dir: string, family: Family, spec: TinyFamilySpec = {}): void {
  const voc = vocab(family);
  const V = voc.v.tokens.length;
  const { list, D, H, Hkv, hd, Fh, L, P } = entries(family, V, spec);
  fs.mkdirSync(dir, { recursive: true });
  const config: Record<string, unknown> = family === 'gpt2'
    ? { model_type: 'gpt2', vocab_size: V, n_embd: D, n_layer: L, n_head: H, n_inner: Fh, n_positions: P, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new' }
    : {
      model_type: family, vocab_size: V, hidden_size: D, num_hidden_layers: L, num_attention_heads: H, num_key_value_heads: Hkv,
      intermediate_size: Fh, max_position_embeddings: P, rms_norm_eps: 1e-6, rope_theta: 10000, head_dim: hd,
      tie_word_embeddings: !spec.untied || family === 'gemma',
      ...(family === 'gemma' ? { hidden_activation: 'gelu_pytorch_tanh' } : {}),
      ...(spec.ropeDim ? { partial_rotary_factor: spec.ropeDim / hd } : {}),
    };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(path.join(dir, 'model.safetensors'), new Map(list.map((e) => [e.hf, e.hfData ?? e.data])));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(family, voc)));
}
