// Seeded Llama GGUF files for the benchmarks (bench/llm.ts, bench/serve.ts), generated once into
// bench/out/ (gitignored), and seeded prompts identical for every engine.
//   110m: dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000
//   1.1b: TinyLlama shape, dim 2048, 22 layers, 32 heads (4 kv), ffn 5632, vocab 32000
//   tiny: smoke runs only (checks a script works; its numbers mean nothing)
// Moved verbatim from bench/llm.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const outDir = path.join(here, '..', 'out');

export const MODELS = {
  '110m': { dim: 768, layers: 12, heads: 12, kvHeads: 12, ffn: 2048, vocab: 32000 },
  '1.1b': { dim: 2048, layers: 22, heads: 32, kvHeads: 4, ffn: 5632, vocab: 32000 },
  /** Smoke runs only (checks the script works; its numbers mean nothing). */
  tiny: { dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocab: 512 },
} as const;
export type ModelName = keyof typeof MODELS;
export type FileType = 'F16' | 'Q8_0' | 'Q4_0';


/** xorshift32 uniform in [-1, 1): fast enough to fill a billion weights. */
function fillUniform(out: Float32Array, seed: number, scale: number): void {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
}

function toF16(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    // Round to nearest even; the seeded values are normal and well inside f16's range.
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000, exp = ((x >>> 23) & 0xff) - 112, man = x & 0x7fffff;
    if (exp <= 0) { out[i] = sign; continue; }
    let h = sign | (exp << 10) | (man >>> 13);
    const rem = man & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    out[i] = h;
  }
  return new Uint8Array(out.buffer);
}

export async function ensureModel(name: ModelName, type: FileType): Promise<string> {
  const file = path.join(outDir, `llama-${name}-${type}.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(outDir, { recursive: true });
  const { writeGguf, gguf } = await import('../../src/io/gguf/index.js');
  const { llmAddon, WEIGHT_FORMAT_CODES } = await import('../../src/llm/weights.js');
  const native = llmAddon('bench model generation');
  const m = MODELS[name];
  const hd = m.dim / m.heads;
  const t0 = performance.now();
  let seed = 1;
  const encode = (rows: number, cols: number, scale: number): Uint8Array => {
    const v = new Float32Array(rows * cols);
    fillUniform(v, seed++, scale);
    if (type === 'F16') return toF16(v);
    const fmt = type === 'Q8_0' ? 'q8_0' : 'q4_0';
    const bytes = new Uint8Array((rows * cols / 32) * (type === 'Q8_0' ? 34 : 18));
    native.quantizeWeight(WEIGHT_FORMAT_CODES[fmt], v, 0, rows, cols, 32, bytes, null);
    return bytes;
  };
  const norm = (n: number) => { const v = new Float32Array(n); fillUniform(v, seed++, 0.1); for (let i = 0; i < n; i++) v[i] += 1; return v; };
  // Uniform(-a, a) with a = sqrt(3)·std keeps activations of a deep random net bounded (std ~ 1/sqrt(fan-in)).
  const a = (fanIn: number) => Math.sqrt(3 / fanIn);
  const tensors: { name: string; type: string; shape: number[]; data: Uint8Array | Float32Array }[] = [
    { name: 'token_embd.weight', type, shape: [m.vocab, m.dim], data: encode(m.vocab, m.dim, 1) },
    { name: 'output_norm.weight', type: 'F32', shape: [m.dim], data: norm(m.dim) },
    { name: 'output.weight', type, shape: [m.vocab, m.dim], data: encode(m.vocab, m.dim, a(m.dim)) },
  ];
  for (let l = 0; l < m.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, type: 'F32', shape: [m.dim], data: norm(m.dim) },
      { name: `${p}attn_q.weight`, type, shape: [m.heads * hd, m.dim], data: encode(m.heads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_k.weight`, type, shape: [m.kvHeads * hd, m.dim], data: encode(m.kvHeads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_v.weight`, type, shape: [m.kvHeads * hd, m.dim], data: encode(m.kvHeads * hd, m.dim, a(m.dim)) },
      { name: `${p}attn_output.weight`, type, shape: [m.dim, m.heads * hd], data: encode(m.dim, m.heads * hd, a(m.dim)) },
      { name: `${p}ffn_norm.weight`, type: 'F32', shape: [m.dim], data: norm(m.dim) },
      { name: `${p}ffn_gate.weight`, type, shape: [m.ffn, m.dim], data: encode(m.ffn, m.dim, a(m.dim)) },
      { name: `${p}ffn_up.weight`, type, shape: [m.ffn, m.dim], data: encode(m.ffn, m.dim, a(m.dim)) },
      { name: `${p}ffn_down.weight`, type, shape: [m.dim, m.ffn], data: encode(m.dim, m.ffn, a(m.ffn)) },
    );
  }
  // A SentencePiece-style vocabulary llama.cpp accepts: unk, bos, eos, 256 byte tokens, then plain pieces.
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); }
  while (tokens.length < m.vocab) { tokens.push(`\u2581w${tokens.length}`); types.push(1); }
  const scores = new Float32Array(m.vocab).map((_, i) => -i);
  writeGguf(file, {
    metadata: {
      'general.architecture': 'llama',
      'general.name': `inferjit-bench-${name}`,
      'general.file_type': gguf.u32({ F16: 1, Q8_0: 7, Q4_0: 2 }[type]),
      'general.quantization_version': gguf.u32(2),
      'llama.context_length': gguf.u32(2048),
      'llama.embedding_length': gguf.u32(m.dim),
      'llama.block_count': gguf.u32(m.layers),
      'llama.feed_forward_length': gguf.u32(m.ffn),
      'llama.rope.dimension_count': gguf.u32(hd),
      'llama.rope.freq_base': gguf.f32(10000),
      'llama.attention.head_count': gguf.u32(m.heads),
      'llama.attention.head_count_kv': gguf.u32(m.kvHeads),
      'llama.attention.layer_norm_rms_epsilon': gguf.f32(1e-5),
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.tokens': tokens,
      'tokenizer.ggml.scores': scores,
      'tokenizer.ggml.token_type': new Int32Array(types),
      'tokenizer.ggml.bos_token_id': gguf.u32(1),
      'tokenizer.ggml.eos_token_id': gguf.u32(2),
      'tokenizer.ggml.unknown_token_id': gguf.u32(0),
    },
    tensors: tensors.map((t) => ({ name: t.name, type: t.type as FileType, shape: t.shape, data: t.data instanceof Float32Array ? t.data : t.data })),
  });
  console.error(`generated ${path.relative(root, file)} (${(fs.statSync(file).size / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return file;
}

/** Seeded prompt ids, identical for both engines (ids past the byte tokens). */
export function promptIds(n: number, vocab: number): number[] {
  let s = 12345;
  return Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) >>> 0; return 259 + (s % (vocab - 259)); });
}
