// The quantized model as files that load without calibration: a directory holding
//   model.safetensors   every parameter the quantized graph reads: f32 tensors (folded norms,
//                       embeddings, rotary tables, LM head, shift / smoothing / activation-scale /
//                       KV-scale vectors) and each quantized linear as `<name>.qweight` + `<name>.scales`
//                       (int8: i8 [N, K]; int4: u8 [N, K/2] nibbles in inferjit's int4 layout, the
//                       one src/tensor/quantized.ts and the qgemm kernel read; fp8: u8 E4M3 bits [N, K])
//   quant_config.json   format/version, the resolved options, the graph rewrite plan, each
//                       quantized weight's format and shape, the per-site report, the decoder's
//                       config, and the size and SHA-256 of model.safetensors (checked on load).
// Both files are written atomically (temp file + rename), the weights first, so a config on disk
// always describes a complete weights file. Loading needs the decoder's code (a module of the same
// architecture, whatever its weights): every parameter comes from the file, so the loaded model
// computes the same logits as the one that was saved.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Tensor } from '../tensor/tensor.js';
import { fromArray } from '../tensor/creation.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import { loadSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../io/gguf/file-source.js';
import { roundE4M3 } from './numerics.js';
import { encodeCodes, decodeCodes, packedWeight } from './packing.js';
import { dequantMatrix, type QuantizedMatrix } from './gptq.js';
import { QuantizedDecoder, type ResolvedOptions, type SiteReport } from './decoder.js';
import type { QuantizableDecoder } from './calibrate.js';
import type { QuantPlan } from './graph-passes.js';

export const QUANT_ARTIFACT_FORMAT = 'inferjit.quant';
export const QUANT_ARTIFACT_VERSION = 1;
const WEIGHTS_FILE = 'model.safetensors';
const CONFIG_FILE = 'quant_config.json';

export class QuantArtifactError extends Error {
  constructor(where: string, detail: string) { super(`loadQuantized: ${where}: ${detail}`); this.name = 'QuantArtifactError'; }
}

interface ArtifactConfig {
  format: string;
  version: number;
  options: ResolvedOptions;
  plan: QuantPlan;
  weights: Record<string, { format: QuantizedMatrix['format']; N: number; K: number; group: number }>;
  report: SiteReport[];
  architecture: unknown;
  weightsFile: { name: string; bytes: number; sha256: string };
}

/** Writes the quantized model into directory `dir` (created if needed). */
export function saveQuantized(decoder: QuantizedDecoder, dir: string): void {
  const tensors = new Map<string, Tensor>();
  const weights: ArtifactConfig['weights'] = {};
  for (const [name, t] of decoder.model.namedParameters()) {
    if (decoder.weights.has(name)) continue;
    tensors.set(name, decoder.params.get(name) ?? t);
  }
  // packed quant_linear weights (kernel 'qgemm') and w8_linear codes / scales (kernel 'w8a8') are
  // rebuilt from the codes on load
  const packed = new Set([
    ...Object.values(decoder.plan.quantLinear ?? {}).map((q) => q.param),
    ...Object.values(decoder.plan.w8Linear ?? {}).flatMap((q) => [q.codes, q.scales]),
  ]);
  for (const [name, t] of decoder.params) if (!decoder.weights.has(name) && !tensors.has(name) && !packed.has(name)) tensors.set(name, t);
  for (const [name, q] of decoder.weights) {
    // fp8 codes are E4M3 values; anything else would not survive the 8-bit encoding
    if (q.format === 'fp8' && !q.codes.every((c) => roundE4M3(c) === c)) throw new Error(`saveQuantized: fp8 weight "${name}" holds values that are not E4M3`);
    tensors.set(`${name}.qweight`, encodeCodes(q));
    tensors.set(`${name}.scales`, fromArray(q.scales, [q.scales.length], 'f32'));
    weights[name] = { format: q.format, N: q.N, K: q.K, group: q.group };
  }
  for (const [name, t] of tensors) if (t.dtype !== 'f32' && !name.endsWith('.qweight')) throw new Error(`saveQuantized: parameter "${name}" is ${t.dtype}; quantized models are saved from f32 decoders`);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, WEIGHTS_FILE);
  writeSafetensors(file, tensors, { metadata: { format: QUANT_ARTIFACT_FORMAT } });
  const bytes = fs.readFileSync(file);
  const config: ArtifactConfig = {
    format: QUANT_ARTIFACT_FORMAT, version: QUANT_ARTIFACT_VERSION, options: decoder.options, plan: decoder.plan, weights,
    report: decoder.report, architecture: decoder.model.config,
    weightsFile: { name: WEIGHTS_FILE, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') },
  };
  const json = new TextEncoder().encode(JSON.stringify(config, null, 1));
  writeFileAtomic(path.join(dir, CONFIG_FILE), (append) => append(json));
}

/** Loads a directory written by saveQuantized onto `model` (a decoder of the same architecture;
 *  its own weights are not used). */
export function loadQuantized(dir: string, model: QuantizableDecoder): QuantizedDecoder {
  const cfgPath = path.join(dir, CONFIG_FILE);
  if (!fs.existsSync(cfgPath)) throw new QuantArtifactError(dir, `no ${CONFIG_FILE}; save the model with saveQuantized(decoder, dir)`);
  let config: ArtifactConfig;
  try { config = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as ArtifactConfig; } catch (e) { throw new QuantArtifactError(cfgPath, `not valid JSON (${(e as Error).message})`); }
  if (config.format !== QUANT_ARTIFACT_FORMAT) throw new QuantArtifactError(cfgPath, `format is ${JSON.stringify(config.format)}, expected "${QUANT_ARTIFACT_FORMAT}"`);
  if (config.version !== QUANT_ARTIFACT_VERSION) throw new QuantArtifactError(cfgPath, `version ${config.version}; this inferjit reads version ${QUANT_ARTIFACT_VERSION}`);
  const arch = config.architecture as Record<string, unknown>, have = model.config as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(arch)) {
    if (JSON.stringify(have[k]) !== JSON.stringify(v)) throw new QuantArtifactError(cfgPath, `the model's config.${k} is ${JSON.stringify(have[k])} but the artifact was made for ${JSON.stringify(v)}; pass a decoder of the same architecture`);
  }
  const file = path.join(dir, config.weightsFile.name);
  if (!fs.existsSync(file)) throw new QuantArtifactError(dir, `${config.weightsFile.name} is missing`);
  const bytes = fs.readFileSync(file);
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (bytes.byteLength !== config.weightsFile.bytes || sha !== config.weightsFile.sha256) {
    throw new QuantArtifactError(file, `size ${bytes.byteLength} / SHA-256 ${sha.slice(0, 12)}… do not match the config's ${config.weightsFile.bytes} / ${config.weightsFile.sha256.slice(0, 12)}…; the file is corrupt or from another save`);
  }
  const stored = loadSafetensors(file);
  const params = new Map<string, Tensor>();
  const weights = new Map<string, QuantizedMatrix>();
  for (const [name, spec] of Object.entries(config.weights)) {
    const qt = stored.get(`${name}.qweight`), st = stored.get(`${name}.scales`);
    if (!qt || !st) throw new QuantArtifactError(file, `quantized weight "${name}" lacks ${qt ? '.scales' : '.qweight'}`);
    const q: QuantizedMatrix = { ...spec, codes: decodeCodes(qt, spec), scales: Float32Array.from(st.data as Float32Array) };
    weights.set(name, q);
    params.set(name, fromArray(dequantMatrix(q), [spec.N, spec.K], 'f32'));
  }
  for (const [w, ql] of Object.entries(config.plan.quantLinear ?? {})) {
    const q = weights.get(w);
    if (!q) throw new QuantArtifactError(cfgPath, `the plan runs "${w}" on qgemm but the file holds no quantized weight for it`);
    params.set(ql.param, packedWeight(q));
  }
  for (const [w, w8] of Object.entries(config.plan.w8Linear ?? {})) {
    const q = weights.get(w);
    if (!q || q.format !== w8.weights) throw new QuantArtifactError(cfgPath, `the plan runs "${w}" on the ${w8.weights} w8a8 kernel but the file holds no ${w8.weights} weight for it`);
    params.set(w8.codes, encodeCodes(q));
    params.set(w8.scales, fromArray(q.scales, [q.N], 'f32'));
  }
  const codeNames = new Set(Object.keys(config.weights).flatMap((w) => [`${w}.qweight`, `${w}.scales`]));
  for (const [name, t] of stored) if (!codeNames.has(name)) params.set(name, t);
  for (const [name] of model.namedParameters()) {
    if (!params.has(name)) throw new QuantArtifactError(file, `has no tensor for the model's parameter "${name}"`);
  }
  return new QuantizedDecoder(model, config.plan, params, weights, config.options, config.report);
}
