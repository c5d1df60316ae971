// Seeded GGUF files for the LLM benchmarks (bench/llm.ts, bench/step-overhead.ts), written once
// into bench/out/ (gitignored) by our own GGUF writer, and the seeded prompts both engines get.
//   110m: Llama, dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000
//   1.1b: TinyLlama shape, dim 2048, 22 layers, 32 heads (4 kv), ffn 5632, vocab 32000
//   1.1b-4l: the same shape with 4 layers (bench/quant.ts)
//   qwen2-160m: Qwen2 (general.architecture "qwen2": Q/K/V biases, NeoX rotary, rope base 1e6),
//         dim 896, 12 layers, 14 heads (2 kv, head 64), ffn 2432, vocab 32000 (Qwen2.5-0.5B's
//         width and GQA at half the depth, a Llama-sized vocabulary)
//   moe-170m: Mixtral (architecture "llama" + expert_count): dim 512, 8 layers, 8 heads (2 kv),
//         8 experts of ffn 1408, top-2, vocab 32000; the router F32 as llama.cpp's quantizer leaves it
//   tiny: smoke runs only (checks the scripts work; its numbers mean nothing)
// Types: F16, Q8_0, Q4_0 (every matrix in that type), and Q4_K_M, laid out as llama.cpp's
// Q4_K_M recipe does: Q4_K everywhere except output.weight (Q6_K) and attn_v / ffn_down in the
// "more bits" layers (the first and last eighth, and every third one between) in Q6_K.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const benchOutDir = path.resolve(here, '..', 'out');

/** A benchmark model's shape; `arch` defaults to llama, `experts` > 0 makes it a Mixtral. */
export interface ModelShape {
  arch?: 'llama' | 'qwen2';
  dim: number; layers: number; heads: number; kvHeads: number; ffn: number; vocab: number;
  /** Mixtral: experts per block and experts each token uses. */
  experts?: number; used?: number;
}

export const MODELS = {
  '110m': { dim: 768, layers: 12, heads: 12, kvHeads: 12, ffn: 2048, vocab: 32000 },
  '1.1b': { dim: 2048, layers: 22, heads: 32, kvHeads: 4, ffn: 5632, vocab: 32000 },
  // the 1.1B shape with 4 of its 22 layers (bench/quant.ts: f32 source weights for quantize() stay short to load)
  '1.1b-4l': { dim: 2048, layers: 4, heads: 32, kvHeads: 4, ffn: 5632, vocab: 32000 },
  'qwen2-160m': { arch: 'qwen2', dim: 896, layers: 12, heads: 14, kvHeads: 2, ffn: 2432, vocab: 32000 },
  'moe-170m': { dim: 512, layers: 8, heads: 8, kvHeads: 2, ffn: 1408, vocab: 32000, experts: 8, used: 2 },
  // K-quant rows are 256 wide: dim and ffn are multiples of 256 so every type can be written
  tiny: { dim: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 256, vocab: 512 },
} as const satisfies Record<string, ModelShape>;
export type ModelName = keyof typeof MODELS;
const shapeOf = (name: ModelName): ModelShape => MODELS[name];
export const FILE_TYPES = ['F16', 'Q8_0', 'Q4_0', 'Q4_K_M'] as const;
export type FileType = (typeof FILE_TYPES)[number];

/** GGUF general.file_type (llama_ftype) of each file type. */
const FTYPE: Record<FileType, number> = { F16: 1, Q8_0: 7, Q4_0: 2, Q4_K_M: 15 };

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

/** llama.cpp's use_more_bits(i, n): the layers Q4_K_M gives Q6_K attn_v and ffn_down. */
const moreBits = (i: number, n: number): boolean => i < n / 8 || i >= (7 * n) / 8 || (i - Math.floor(n / 8)) % 3 === 2;

/** The path of the seeded file; generated on first use. */
export async function ensureModel(name: ModelName, type: FileType): Promise<string> {
  if (!(name in MODELS)) throw new RangeError(`unknown model ${JSON.stringify(name)}; choose from ${Object.keys(MODELS).join(', ')}`);
  if (!FILE_TYPES.includes(type)) throw new RangeError(`unknown file type ${JSON.stringify(type)}; choose from ${FILE_TYPES.join(', ')}`);
  // (tiny was 64 wide before the K-quant rows: its own name keeps a stale file from being reused)
  const m = shapeOf(name);
  const arch = m.arch ?? 'llama', moe = (m.experts ?? 0) > 0;
  // (K-quant rows are 256 wide: qwen2-160m and moe-170m have rows of 896 / 1408 values, Q8_0 / Q4_0 / F16 only)
  if (type === 'Q4_K_M' && (m.dim % 256 !== 0 || m.ffn % 256 !== 0)) throw new RangeError(`${name}: Q4_K_M needs dim and ffn multiples of 256; use Q4_0, Q8_0 or F16`);
  const file = path.join(benchOutDir, `${moe || arch !== 'llama' ? '' : 'llama-'}${name === 'tiny' ? 'tiny256' : name}-${type}.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(benchOutDir, { recursive: true });
  const { writeGguf, gguf, quantizeQ4_K, quantizeQ6_K } = await import('../../src/io/gguf/index.js');
  const { llmAddon, WEIGHT_FORMAT_CODES } = await import('../../src/llm/weights.js');
  const hd = m.dim / m.heads;
  const t0 = performance.now();
  let seed = 1;
  type Stored = 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K';
  const encode = (stored: Stored, rows: number, cols: number, scale: number): Uint8Array => {
    const v = new Float32Array(rows * cols);
    fillUniform(v, seed++, scale);
    if (stored === 'F16') return toF16(v);
    if (stored === 'Q4_K') return quantizeQ4_K(v);
    if (stored === 'Q6_K') return quantizeQ6_K(v);
    // ggml's reference Q8_0 / Q4_0 rounding, natively (the TS encoders are slow for a 1.1B file)
    const bytes = new Uint8Array((rows * cols / 32) * (stored === 'Q8_0' ? 34 : 18));
    llmAddon('bench model generation').quantizeWeight(WEIGHT_FORMAT_CODES[stored === 'Q8_0' ? 'q8_0' : 'q4_0'], v, 0, rows, cols, 32, bytes, null);
    return bytes;
  };
  const k = type === 'Q4_K_M';
  const base: Stored = k ? 'Q4_K' : type as Stored;
  const more = (l: number): Stored => (k && moreBits(l, m.layers) ? 'Q6_K' : base);
  const norm = (n: number) => { const v = new Float32Array(n); fillUniform(v, seed++, 0.1); for (let i = 0; i < n; i++) v[i] += 1; return v; };
  // Uniform(-a, a) with a = sqrt(3)·std keeps activations of a deep random net bounded (std ~ 1/sqrt(fan-in)).
  const a = (fanIn: number) => Math.sqrt(3 / fanIn);
  const mat = (tensorName: string, stored: Stored, rows: number, cols: number, scale: number) =>
    ({ name: tensorName, type: stored as string, shape: [rows, cols], data: encode(stored, rows, cols, scale) as Uint8Array | Float32Array });
  const vec = (tensorName: string, v: Float32Array) => ({ name: tensorName, type: 'F32', shape: [v.length], data: v as Uint8Array | Float32Array });
  const bias = (n: number) => { const v = new Float32Array(n); fillUniform(v, seed++, 0.1); return v; };
  const tensors = [
    mat('token_embd.weight', base, m.vocab, m.dim, 1),
    { name: 'output_norm.weight', type: 'F32', shape: [m.dim], data: norm(m.dim) as Uint8Array | Float32Array },
    mat('output.weight', k ? 'Q6_K' : base, m.vocab, m.dim, a(m.dim)),
  ];
  for (let l = 0; l < m.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, type: 'F32', shape: [m.dim], data: norm(m.dim) },
      mat(`${p}attn_q.weight`, base, m.heads * hd, m.dim, a(m.dim)),
      mat(`${p}attn_k.weight`, base, m.kvHeads * hd, m.dim, a(m.dim)),
      mat(`${p}attn_v.weight`, more(l), m.kvHeads * hd, m.dim, a(m.dim)),
      mat(`${p}attn_output.weight`, base, m.dim, m.heads * hd, a(m.dim)),
      { name: `${p}ffn_norm.weight`, type: 'F32', shape: [m.dim], data: norm(m.dim) },
    );
    if (arch === 'qwen2') {
      tensors.push(vec(`${p}attn_q.bias`, bias(m.heads * hd)), vec(`${p}attn_k.bias`, bias(m.kvHeads * hd)), vec(`${p}attn_v.bias`, bias(m.kvHeads * hd)));
    }
    if (moe) {
      // the experts stacked [E, rows, cols]: encoded as one [E·rows, cols] matrix (rows are independent blocks)
      const E = m.experts!;
      const stack = (tensorName: string, rows: number, cols: number, scale: number) => ({ ...mat(tensorName, base, E * rows, cols, scale), shape: [E, rows, cols] });
      const router = new Float32Array(E * m.dim);
      fillUniform(router, seed++, 4 * a(m.dim));
      tensors.push(
        { name: `${p}ffn_gate_inp.weight`, type: 'F32', shape: [E, m.dim], data: router },
        stack(`${p}ffn_gate_exps.weight`, m.ffn, m.dim, a(m.dim)),
        stack(`${p}ffn_up_exps.weight`, m.ffn, m.dim, a(m.dim)),
        stack(`${p}ffn_down_exps.weight`, m.dim, m.ffn, a(m.ffn)),
      );
    } else {
      tensors.push(
        mat(`${p}ffn_gate.weight`, base, m.ffn, m.dim, a(m.dim)),
        mat(`${p}ffn_up.weight`, base, m.ffn, m.dim, a(m.dim)),
        mat(`${p}ffn_down.weight`, more(l), m.dim, m.ffn, a(m.ffn)),
      );
    }
  }
  // A SentencePiece-style vocabulary llama.cpp accepts: unk, bos, eos, 256 byte tokens, then plain pieces.
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); }
  while (tokens.length < m.vocab) { tokens.push(`\u2581w${tokens.length}`); types.push(1); }
  const scores = new Float32Array(m.vocab).map((_, i) => -i);
  const ak = (key: string) => `${arch}.${key}`;
  writeGguf(file, {
    metadata: {
      'general.architecture': arch,
      'general.name': `inferjit-bench-${name}`,
      'general.file_type': gguf.u32(FTYPE[type]),
      'general.quantization_version': gguf.u32(2),
      [ak('context_length')]: gguf.u32(2048),
      [ak('embedding_length')]: gguf.u32(m.dim),
      [ak('block_count')]: gguf.u32(m.layers),
      [ak('feed_forward_length')]: gguf.u32(m.ffn),
      ...(moe ? { 'llama.expert_count': gguf.u32(m.experts!), 'llama.expert_used_count': gguf.u32(m.used!) } : {}),
      [ak('rope.dimension_count')]: gguf.u32(hd),
      [ak('rope.freq_base')]: gguf.f32(arch === 'qwen2' || moe ? 1e6 : 10000),
      [ak('attention.head_count')]: gguf.u32(m.heads),
      [ak('attention.head_count_kv')]: gguf.u32(m.kvHeads),
      [ak('attention.layer_norm_rms_epsilon')]: gguf.f32(arch === 'qwen2' ? 1e-6 : 1e-5),
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.tokens': tokens,
      'tokenizer.ggml.scores': scores,
      'tokenizer.ggml.token_type': new Int32Array(types),
      'tokenizer.ggml.bos_token_id': gguf.u32(1),
      'tokenizer.ggml.eos_token_id': gguf.u32(2),
      'tokenizer.ggml.unknown_token_id': gguf.u32(0),
    },
    tensors: tensors.map((t) => ({ name: t.name, type: t.type as never, shape: t.shape, data: t.data })),
  });
  console.error(`generated ${path.relative(process.cwd(), file)} (${(fs.statSync(file).size / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return file;
}

/** Seeded prompt ids past the byte tokens, identical for every engine; `seed` picks the prompt. */
export function promptIds(n: number, vocab: number, seed = 12345): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) >>> 0; return 259 + (s % (vocab - 259)); });
}

/** Bytes a decode step reads from a file of `fileBytes`: every weight once except the embedding
 *  table (one row) and, for a mixture of experts, the experts the token is not routed to. */
export function decodeStepBytes(name: ModelName, fileBytes: number): number {
  const m = shapeOf(name);
  const attn = 2 * m.dim * m.dim * (1 + m.kvHeads / m.heads), ffn = 3 * m.dim * m.ffn;
  const total = 2 * m.vocab * m.dim + m.layers * (attn + ffn * (m.experts ?? 1));
  const read = m.vocab * m.dim + m.layers * (attn + ffn * (m.used ?? 1));
  return fileBytes * (read / total);
}
