// Llama weights as they are stored: each matrix keeps its file encoding (f32/f16/bf16 values, GGUF
// Q8_0/Q4_0 blocks) or inferjit's weight-only INT8 per-channel / INT4 group-wise formats, so the
// native kernels read them in place and every weight lives in memory once. Loaders for GGUF and
// Hugging Face safetensors map the two naming schemes onto one layout.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readGguf, type GgufFile, dequantize } from '../io/gguf/index.js';
import { GgufError, ModelConfigError, SafetensorsError } from '../io/errors.js';
import { readSafetensors } from '../io/safetensors.js';
import { f16BitsToFloat, bf16BitsToFloat } from '../tensor/half.js';
import { type Tensor } from '../tensor/tensor.js';
import { addon, loadFailure } from '../backends/cpu/addon.js';
import { type LlamaConfig, llamaConfigFromGguf, llamaConfigFromHuggingFace } from './config.js';

/**
 * Storage formats. 'q8_0x16' / 'q4_0x16' are GGUF Q8_0 / Q4_0 with the blocks of 16 consecutive rows
 * interleaved (rows padded to a multiple of 16), made at load by packMatrix so the AVX-512 VNNI
 * kernels serve 16 rows per instruction; the byte layout is in native/quant/qmatmul.h.
 */
export type WeightFormat = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'int8' | 'int4' | 'q8_0x16' | 'q4_0x16' | 'q4_k' | 'q5_k' | 'q6_k';
/** Codes shared with native/quant/qmatmul.h (enum WeightFormat). */
export const WEIGHT_FORMAT_CODES: Record<WeightFormat, number> = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4, int8: 5, int4: 6, q8_0x16: 7, q4_0x16: 8, q4_k: 9, q5_k: 10, q6_k: 11 };

/** A [rows, cols] weight matrix (rows = output features) in its storage format (native/quant/qmatmul.h). */
export interface WeightMatrix {
  format: WeightFormat;
  rows: number;
  cols: number;
  /** f32: Float32Array; f16/bf16: Uint16Array bits; q8_0/q4_0/int4 and the x16 formats: Uint8Array blocks; int8: Int8Array. */
  data: Float32Array | Uint16Array | Uint8Array | Int8Array;
  /** int8: one per row; int4: [rows, cols/groupSize]; otherwise null. */
  scales: Float32Array | null;
  /** int4 group size (32, 64 or 128); 32 for the other formats. */
  groupSize: number;
}

export interface LlamaLayerWeights {
  attnNorm: Float32Array;
  wq: WeightMatrix;
  wk: WeightMatrix;
  wv: WeightMatrix;
  wo: WeightMatrix;
  ffnNorm: Float32Array;
  gate: WeightMatrix;
  up: WeightMatrix;
  down: WeightMatrix;
}

export interface LlamaWeights {
  embed: WeightMatrix;
  outNorm: Float32Array;
  /** The output head; the same object as `embed` when the embeddings are tied. */
  output: WeightMatrix;
  layers: LlamaLayerWeights[];
  /** Per-pair rotary frequency divisors (GGUF rope_freqs, Llama 3). */
  ropeFreqFactors?: Float32Array;
}

export interface LoadedLlama {
  config: LlamaConfig;
  weights: LlamaWeights;
  /** The GGUF file, when loaded from one (its tokenizer metadata builds the tokenizer). */
  gguf?: GgufFile;
}

const GGUF_FORMATS: Partial<Record<string, WeightFormat>> = {
  F32: 'f32', F16: 'f16', BF16: 'bf16', Q8_0: 'q8_0', Q4_0: 'q4_0', Q4_K: 'q4_k', Q5_K: 'q5_k', Q6_K: 'q6_k',
};

function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

function matrixFromGguf(file: GgufFile, name: string, rows: number, cols: number): WeightMatrix {
  const info = file.tensorInfo(name);
  const format = GGUF_FORMATS[info.type];
  if (!format) {
    throw new GgufError(file.path, `tensor ${JSON.stringify(name)} has type ${info.type}; the Llama runtime executes F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K ` +
      '(re-quantize the file with llama-quantize to one of them)');
  }
  if (info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== cols) {
    throw new GgufError(file.path, `tensor ${JSON.stringify(name)} has shape [${info.shape.join(', ')}], expected [${rows}, ${cols}]`);
  }
  const raw = file.tensorData(name);
  let data: WeightMatrix['data'];
  if (format === 'f32') { const b = aligned(raw, 4); data = new Float32Array(b.buffer, b.byteOffset, rows * cols); }
  else if (format === 'f16' || format === 'bf16') { const b = aligned(raw, 2); data = new Uint16Array(b.buffer, b.byteOffset, rows * cols); }
  else data = raw;
  return { format, rows, cols, data, scales: null, groupSize: 32 };
}

function vectorFromGguf(file: GgufFile, name: string, n: number): Float32Array {
  const info = file.tensorInfo(name);
  // Norm weights and rope factors are float vectors (llama.cpp keeps them F32); an integer or
  // quantized type here means a damaged type id, not a model.
  if (info.type !== 'F32' && info.type !== 'F16' && info.type !== 'BF16') {
    throw new GgufError(file.path, `tensor ${JSON.stringify(name)} has type ${info.type}; a norm or rope-factor vector must be F32, F16 or BF16`);
  }
  if (info.numElements !== n) throw new GgufError(file.path, `tensor ${JSON.stringify(name)} has ${info.numElements} values, expected ${n}`);
  const t = file.toTensor(name, { dtype: 'f32' });
  return t.data as Float32Array;
}

export interface LoadOptions {
  /**
   * Applied to each linear-layer matrix (and an untied output head) right after it is read, e.g.
   * packMatrix: the file's layout is then garbage as soon as the next tensor is read, so loading
   * never holds the whole model twice.
   */
  transform?: (w: WeightMatrix) => WeightMatrix;
}

/**
 * Which tensors a loader read, so it can tell the file's leftovers apart: llama.cpp refuses a file
 * whose tensor count differs from what the architecture creates, because a tensor nobody reads is
 * usually a sign that the metadata (block_count, a tied head) does not describe the file.
 */
class TensorUse {
  readonly used = new Set<string>();
  constructor(private readonly names: readonly string[], private readonly file: string, private readonly layerPrefix: RegExp,
    private readonly fail: (detail: string) => Error) {}
  take(name: string, exists: boolean, numLayers: number): string {
    if (!exists) {
      const layer = this.layerPrefix.exec(name);
      throw this.fail(layer
        ? `tensor ${JSON.stringify(name)} of layer ${layer[1]} is missing (block_count / num_hidden_layers says ${numLayers} layers; the file has ${this.names.length} tensors)`
        : `tensor ${JSON.stringify(name)} is missing (the file has ${this.names.length} tensors)`);
    }
    this.used.add(name);
    return name;
  }
  /** Throws naming the tensors nobody read: layers beyond the configured count, or names the loader does not know. */
  checkAllUsed(numLayers: number, layerKey: string): void {
    const left = this.names.filter((n) => !this.used.has(n));
    if (left.length === 0) return;
    const beyond = left.filter((n) => { const m = this.layerPrefix.exec(n); return m !== null && Number(m[1]) >= numLayers; });
    const list = (xs: string[]) => xs.slice(0, 6).map((x) => JSON.stringify(x)).join(', ') + (xs.length > 6 ? `, ... (${xs.length} in all)` : '');
    if (beyond.length > 0) {
      throw this.fail(`${layerKey} is ${numLayers} but the file holds tensors of later layers: ${list(beyond)}; the metadata does not match the weights`);
    }
    throw this.fail(`the file holds tensors a Llama model does not use: ${list(left)} (a different architecture, or metadata that does not match the weights)`);
  }
}

/** Loads a llama-architecture GGUF file (config from its metadata, tensors kept in their encoding). */
export function loadLlamaGguf(source: string | GgufFile, options: LoadOptions = {}): LoadedLlama {
  const file = typeof source === 'string' ? readGguf(source) : source;
  const config = llamaConfigFromGguf(file);
  const { hiddenSize: D, intermediateSize: F, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const use = new TensorUse(file.tensors.map((x) => x.name), file.path, /^blk\.(\d+)\./, (d) => new GgufError(file.path, d));
  const n = (name: string) => use.take(name, file.hasTensor(name), config.numLayers);
  const embed = matrixFromGguf(file, n('token_embd.weight'), V, D);
  const t = options.transform ?? ((w: WeightMatrix) => w);
  const mat = (name: string, rows: number, cols: number) => t(matrixFromGguf(file, n(name), rows, cols));
  const vec = (name: string, len: number) => vectorFromGguf(file, n(name), len);
  const layers: LlamaLayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      attnNorm: vec(`${p}attn_norm.weight`, D),
      wq: mat(`${p}attn_q.weight`, numHeads * headDim, D),
      wk: mat(`${p}attn_k.weight`, numKvHeads * headDim, D),
      wv: mat(`${p}attn_v.weight`, numKvHeads * headDim, D),
      wo: mat(`${p}attn_output.weight`, D, numHeads * headDim),
      ffnNorm: vec(`${p}ffn_norm.weight`, D),
      gate: mat(`${p}ffn_gate.weight`, F, D),
      up: mat(`${p}ffn_up.weight`, F, D),
      down: mat(`${p}ffn_down.weight`, D, F),
    });
  }
  const weights: LlamaWeights = {
    embed,
    outNorm: vec('output_norm.weight', D),
    // A tied head is the embedding table itself, which stays as read (the engine packs it once).
    output: config.tieWordEmbeddings ? embed : mat('output.weight', V, D),
    layers,
  };
  if (file.hasTensor('rope_freqs.weight')) weights.ropeFreqFactors = checkFreqFactors(vec('rope_freqs.weight', config.ropeDim / 2), file.path);
  use.checkAllUsed(config.numLayers, 'llama.block_count');
  return { config, weights, gguf: file };
}

/** rope_freqs divides each rotary frequency: a zero, negative or non-finite factor gives inf/NaN logits. */
function checkFreqFactors(f: Float32Array, file: string): Float32Array {
  const bad = f.findIndex((x) => !(Number.isFinite(x) && x > 0));
  if (bad >= 0) throw new ModelConfigError(file, `tensor "rope_freqs.weight" has factor ${f[bad]} at index ${bad}; every rope frequency factor must be a finite number > 0`);
  return f;
}

function matrixFromTensor(t: Tensor, name: string, rows: number, cols: number, file: string): WeightMatrix {
  if (t.rank !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
    throw new SafetensorsError(file, `tensor ${JSON.stringify(name)} has shape [${t.shape.join(', ')}], expected [${rows}, ${cols}]`);
  }
  if (t.dtype === 'f32') return { format: 'f32', rows, cols, data: t.data as Float32Array, scales: null, groupSize: 32 };
  if (t.dtype === 'f16' || t.dtype === 'bf16') return { format: t.dtype, rows, cols, data: t.data as Uint16Array, scales: null, groupSize: 32 };
  throw new SafetensorsError(file, `tensor ${JSON.stringify(name)} has dtype ${t.dtype}; Llama weights must be f32, f16 or bf16`);
}

function vectorFromTensor(t: Tensor, name: string, n: number, file: string): Float32Array {
  if (t.size !== n) throw new SafetensorsError(file, `tensor ${JSON.stringify(name)} has ${t.size} values, expected ${n}`);
  return t.dtype === 'f32' ? (t.data as Float32Array) : (t.cast('f32').data as Float32Array);
}

/**
 * Loads a Hugging Face Llama checkpoint: a directory with config.json and model.safetensors (or a
 * sharded model.safetensors.index.json). Parameter names are transformers' LlamaForCausalLM names.
 */
export function loadLlamaSafetensors(dir: string): LoadedLlama {
  const cfgPath = path.join(dir, 'config.json');
  let json: unknown;
  try { json = JSON.parse(fs.readFileSync(cfgPath, 'utf8')); } catch (e) { throw new ModelConfigError(cfgPath, `cannot read the model config: ${(e as Error).message}`); }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(cfgPath, `the model config must be a JSON object, got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`);
  }
  const config = llamaConfigFromHuggingFace(json as Record<string, unknown>, cfgPath);
  const st = readSafetensors(dir);
  const { hiddenSize: D, intermediateSize: F, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const use = new TensorUse(st.names, st.path, /^model\.layers\.(\d+)\./, (d) => new SafetensorsError(st.path, d));
  const n = (name: string) => use.take(name, st.hasTensor(name), config.numLayers);
  const mat = (name: string, r: number, c: number) => matrixFromTensor(st.toTensor(n(name)), name, r, c, st.path);
  const vec = (name: string, len: number) => vectorFromTensor(st.toTensor(n(name)), name, len, st.path);
  const embed = mat('model.embed_tokens.weight', V, D);
  const layers: LlamaLayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push({
      attnNorm: vec(`${p}input_layernorm.weight`, D),
      wq: mat(`${p}self_attn.q_proj.weight`, numHeads * headDim, D),
      wk: mat(`${p}self_attn.k_proj.weight`, numKvHeads * headDim, D),
      wv: mat(`${p}self_attn.v_proj.weight`, numKvHeads * headDim, D),
      wo: mat(`${p}self_attn.o_proj.weight`, D, numHeads * headDim),
      ffnNorm: vec(`${p}post_attention_layernorm.weight`, D),
      gate: mat(`${p}mlp.gate_proj.weight`, F, D),
      up: mat(`${p}mlp.up_proj.weight`, F, D),
      down: mat(`${p}mlp.down_proj.weight`, D, F),
    });
  }
  // transformers gives an untied model without lm_head a freshly initialized (random) head; running
  // the embedding table as the head instead would be just as wrong, and silent. Say what is missing.
  if (!config.tieWordEmbeddings && !st.hasTensor('lm_head.weight')) {
    throw new SafetensorsError(st.path, `tensor "lm_head.weight" is missing and ${cfgPath} does not set "tie_word_embeddings": true ` +
      '(set it if the output head shares the embedding table)');
  }
  const tied = config.tieWordEmbeddings;
  const outNorm = vec('model.norm.weight', D);
  const output = tied ? embed : mat('lm_head.weight', V, D);
  // transformers stores these non-persistent buffers in some checkpoints; they are recomputed, not weights.
  for (const name of st.names) if (/\.rotary_emb\.inv_freq$/.test(name)) use.used.add(name);
  // With tie_word_embeddings a saved lm_head is the embedding table again (transformers ties over it).
  if (tied && st.hasTensor('lm_head.weight')) use.used.add('lm_head.weight');
  use.checkAllUsed(config.numLayers, 'num_hidden_layers');
  return { config: { ...config, tieWordEmbeddings: tied }, weights: { embed, outNorm, output, layers } };
}

/** Loads a model from a .gguf file or a Hugging Face checkpoint directory. */
export function loadLlama(source: string, options: LoadOptions = {}): LoadedLlama {
  if (fs.existsSync(source) && fs.statSync(source).isDirectory()) return loadLlamaSafetensors(source);
  return loadLlamaGguf(source, options);
}

/** The matrix as fp32 values [rows·cols] (for the reference path and for re-quantization). */
export function dequantizeMatrix(w: WeightMatrix): Float32Array {
  const n = w.rows * w.cols;
  switch (w.format) {
    case 'f32': return w.data as Float32Array;
    case 'f16': { const s = w.data as Uint16Array, o = new Float32Array(n); for (let i = 0; i < n; i++) o[i] = f16BitsToFloat(s[i]); return o; }
    case 'bf16': { const s = w.data as Uint16Array, o = new Float32Array(n); for (let i = 0; i < n; i++) o[i] = bf16BitsToFloat(s[i]); return o; }
    case 'q8_0': return dequantize('Q8_0', w.data as Uint8Array, n);
    case 'q4_0': return dequantize('Q4_0', w.data as Uint8Array, n);
    case 'q4_k': return dequantize('Q4_K', w.data as Uint8Array, n);
    case 'q5_k': return dequantize('Q5_K', w.data as Uint8Array, n);
    case 'q6_k': return dequantize('Q6_K', w.data as Uint8Array, n);
    case 'int8': {
      const q = w.data as Int8Array, s = w.scales!, o = new Float32Array(n);
      for (let r = 0; r < w.rows; r++) for (let c = 0; c < w.cols; c++) o[r * w.cols + c] = s[r] * q[r * w.cols + c];
      return o;
    }
    case 'q8_0x16': case 'q4_0x16': {
      // Group g (16 rows), block b: f16 d[16], then 64-byte chunks whose byte 4r+i is row r's k-group value.
      const q8 = w.format === 'q8_0x16', S = q8 ? 544 : 288, K = w.cols, nb = K / 32, bytes = w.data as Uint8Array;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const o = new Float32Array(n);
      for (let r = 0; r < w.rows; r++) {
        const g = Math.floor(r / 16), rr = r % 16;
        for (let b = 0; b < nb; b++) {
          const at = (g * nb + b) * S;
          const d = f16BitsToFloat(view.getUint16(at + 2 * rr, true));
          for (let j = 0; j < (q8 ? 8 : 4); j++) {
            for (let i = 0; i < 4; i++) {
              const byte = bytes[at + 32 + 64 * j + 4 * rr + i];
              if (q8) o[r * K + b * 32 + 4 * j + i] = d * (byte - 128);
              else {
                o[r * K + b * 32 + 4 * j + i] = d * ((byte & 15) - 8);
                o[r * K + b * 32 + 16 + 4 * j + i] = d * ((byte >> 4) - 8);
              }
            }
          }
        }
      }
      return o;
    }
    case 'int4': {
      const q = w.data as Uint8Array, s = w.scales!, o = new Float32Array(n), g = w.groupSize, K = w.cols;
      for (let r = 0; r < w.rows; r++) {
        for (let b = 0; b < K / 32; b++) {
          const d = s[r * (K / g) + Math.floor((b * 32) / g)];
          for (let j = 0; j < 16; j++) {
            const byte = q[r * (K / 2) + b * 16 + j];
            o[r * K + b * 32 + j] = d * ((byte & 15) - 8);
            o[r * K + b * 32 + j + 16] = d * ((byte >> 4) - 8);
          }
        }
      }
      return o;
    }
  }
}

function requireAddon(what: string) {
  if (!addon) throw new Error(`${what} needs the native CPU backend: ${loadFailure ?? 'not loaded'}`);
  return addon as unknown as LlmAddon;
}

/** The quantized-weight entry points of the native addon (native/quant/quant_napi.cc). */
export interface LlmAddon {
  quantMatmul(weight: NativeWeightSpec, x: Float32Array, M: number, y: Float32Array): void;
  quantizeWeight(format: number, src: ArrayBufferView, srcFormat: number, N: number, K: number, group: number, data: Uint8Array, scales: Float32Array | null): void;
  packWeight(weight: NativeWeightSpec): Uint8Array | null;
  /** Whether the packed (x16) kernels are this build's fast path (AVX-512 VNNI). */
  llmPackedFast: boolean;
}
export type NativeWeightSpec = [number, ArrayBufferView, Float32Array | null, number, number, number];

export const llmAddon = (what: string): LlmAddon => requireAddon(what);

export function nativeWeightSpec(w: WeightMatrix): NativeWeightSpec {
  return [WEIGHT_FORMAT_CODES[w.format], w.data, w.scales, w.rows, w.cols, w.groupSize];
}

/**
 * Quantizes a matrix to a weight-only format: 'int8' (per output channel, symmetric), 'int4'
 * (group-wise, symmetric, groupSize 32/64/128), or GGUF 'q8_0'/'q4_0' blocks (ggml's reference
 * rounding). The source may be f32, f16 or bf16; already-quantized sources are dequantized first.
 */
export function quantizeMatrix(w: WeightMatrix, format: 'int8' | 'int4' | 'q8_0' | 'q4_0', groupSize = 32): WeightMatrix {
  const native = llmAddon('quantizeMatrix');
  let src: WeightMatrix = w;
  if (w.format !== 'f32' && w.format !== 'f16' && w.format !== 'bf16') src = { ...w, format: 'f32', data: dequantizeMatrix(w), scales: null };
  if (w.cols % 32 !== 0) throw new RangeError(`quantizeMatrix: cols ${w.cols} must be a multiple of 32`);
  if (format === 'int4' && (![32, 64, 128].includes(groupSize) || w.cols % groupSize !== 0)) {
    throw new RangeError(`quantizeMatrix: int4 groupSize must be 32, 64 or 128 and divide cols ${w.cols}, got ${groupSize}`);
  }
  const n = w.rows * w.cols;
  const bytes = format === 'int8' ? n : format === 'int4' ? n / 2 : format === 'q8_0' ? (n / 32) * 34 : (n / 32) * 18;
  const data = new Uint8Array(bytes);
  const scales = format === 'int8' ? new Float32Array(w.rows) : format === 'int4' ? new Float32Array((w.rows * w.cols) / groupSize) : null;
  native.quantizeWeight(WEIGHT_FORMAT_CODES[format], src.data, WEIGHT_FORMAT_CODES[src.format], w.rows, w.cols, groupSize, data, scales);
  return {
    format, rows: w.rows, cols: w.cols,
    data: format === 'int8' ? new Int8Array(data.buffer) : data,
    scales, groupSize: format === 'int4' ? groupSize : 32,
  };
}

const PACKED: Partial<Record<WeightFormat, WeightFormat>> = { q8_0: 'q8_0x16', q4_0: 'q4_0x16' };

/** The matrix in its 16-row interleaved layout ('q8_0' -> 'q8_0x16', 'q4_0' -> 'q4_0x16'); other formats as they are. */
export function packMatrix(w: WeightMatrix): WeightMatrix {
  const format = PACKED[w.format];
  if (!format) return w;
  const data = llmAddon('packMatrix').packWeight(nativeWeightSpec(w));
  if (!data) return w;
  return { format, rows: w.rows, cols: w.cols, data, scales: null, groupSize: 32 };
}

/** Whether the native build runs packed weights faster than the GGUF layout (AVX-512 VNNI). */
export function packedKernelsFast(): boolean {
  return Boolean(addon && (addon as unknown as LlmAddon).llmPackedFast);
}

/** Bytes the weights occupy (data + scales, a tied head counted once). */
export function weightBytes(weights: LlamaWeights): number {
  const seen = new Set<WeightMatrix>();
  let total = weights.outNorm.byteLength;
  const add = (w: WeightMatrix) => { if (!seen.has(w)) { seen.add(w); total += w.data.byteLength + (w.scales?.byteLength ?? 0); } };
  add(weights.embed); add(weights.output);
  for (const l of weights.layers) {
    total += l.attnNorm.byteLength + l.ffnNorm.byteLength;
    [l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down].forEach(add);
  }
  return total;
}
