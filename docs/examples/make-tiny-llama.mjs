// Writes a tiny Llama-shaped GGUF file with seeded random weights, to try inferjit's LLM path
// without downloading a model:   node make-tiny-llama.mjs tiny.gguf
// The vocabulary is a SentencePiece ("llama") one made of the 256 byte tokens plus a few letters, so
// any text can be tokenized (by byte fallback). The weights are random: the output is gibberish,
// but loading, prefill, decoding and sampling all run as they do for a real model. For real text,
// use a real GGUF file (Llama 2/3, TinyLlama or Mistral shaped; F32, F16, BF16, Q8_0 or Q4_0).
import { randn } from 'inferjit';
import { writeGguf, gguf } from 'inferjit/io';

const out = process.argv[2] ?? 'tiny-llama.gguf';
const dim = 64, layers = 2, heads = 4, kvHeads = 2, ffn = 128;
const headDim = dim / heads;

// Vocabulary: <unk> <s> </s>, the byte tokens <0x00>..<0xFF>, then "▁" (SentencePiece's space) and a-z.
const tokens = ['<unk>', '<s>', '</s>'];
const types = [2, 3, 3]; // unknown, control, control
for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); } // byte
for (const piece of ['\u2581', ...'abcdefghijklmnopqrstuvwxyz']) { tokens.push(piece); types.push(1); } // normal
const scores = tokens.map((_, i) => -i);
const vocab = tokens.length;

let seed = 1;
const weight = (shape, std = 0.15) => randn(shape, { seed: seed++ }).mul(std);
const norm = (n) => randn([n], { seed: seed++ }).mul(0.1).add(1);

const tensors = [
  { name: 'token_embd.weight', type: 'F32', data: weight([vocab, dim], 0.5) },
  { name: 'output_norm.weight', type: 'F32', data: norm(dim) },
  { name: 'output.weight', type: 'F32', data: weight([vocab, dim]) },
];
for (let l = 0; l < layers; l++) {
  const p = `blk.${l}.`;
  tensors.push(
    { name: `${p}attn_norm.weight`, type: 'F32', data: norm(dim) },
    { name: `${p}attn_q.weight`, type: 'F32', data: weight([heads * headDim, dim]) },
    { name: `${p}attn_k.weight`, type: 'F32', data: weight([kvHeads * headDim, dim]) },
    { name: `${p}attn_v.weight`, type: 'F32', data: weight([kvHeads * headDim, dim]) },
    { name: `${p}attn_output.weight`, type: 'F32', data: weight([dim, heads * headDim]) },
    { name: `${p}ffn_norm.weight`, type: 'F32', data: norm(dim) },
    { name: `${p}ffn_gate.weight`, type: 'F32', data: weight([ffn, dim]) },
    { name: `${p}ffn_up.weight`, type: 'F32', data: weight([ffn, dim]) },
    { name: `${p}ffn_down.weight`, type: 'F32', data: weight([dim, ffn]) },
  );
}

writeGguf(out, {
  metadata: {
    'general.architecture': 'llama',
    'general.name': 'tiny-random-llama',
    'general.file_type': gguf.u32(0), // all F32
    'llama.context_length': gguf.u32(256),
    'llama.embedding_length': gguf.u32(dim),
    'llama.block_count': gguf.u32(layers),
    'llama.feed_forward_length': gguf.u32(ffn),
    'llama.rope.dimension_count': gguf.u32(headDim),
    'llama.rope.freq_base': gguf.f32(10000),
    'llama.attention.head_count': gguf.u32(heads),
    'llama.attention.head_count_kv': gguf.u32(kvHeads),
    'llama.attention.layer_norm_rms_epsilon': gguf.f32(1e-5),
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.scores': scores,
    'tokenizer.ggml.token_type': types,
    'tokenizer.ggml.bos_token_id': gguf.u32(1),
    'tokenizer.ggml.eos_token_id': gguf.u32(2),
    'tokenizer.ggml.unknown_token_id': gguf.u32(0),
    'tokenizer.ggml.add_bos_token': true,
    'tokenizer.ggml.add_eos_token': false,
  },
  tensors,
});
console.log(`wrote ${out}: ${layers} layers, dim ${dim}, ${heads} heads (${kvHeads} kv), vocab ${vocab}`);
