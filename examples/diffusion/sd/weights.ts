// Loading real Stable Diffusion weights by name: diffusers' unet/ and vae/ safetensors and
// transformers' text_encoder/ safetensors, into the models of this folder, with one report of what
// was loaded, converted, renamed, ignored, missing, unexpected or mis-shaped.
import { nn, type Tensor } from '../../../src/index.js';
import { loadSafetensors } from '../../../src/io/safetensors.js';
import { UNet2DConditionModel } from './unet.js';
import { VaeDecoder } from './vae.js';
import { ClipTextModel } from './clip.js';

export type SdModel = UNet2DConditionModel | VaeDecoder | ClipTextModel;

export interface SdLoadReport extends nn.LoadReport {
  /** Tensors copied into the model. */
  loaded: number;
  /** Tensors whose float dtype was converted to the model's (f16 / bf16 files into f32 models). */
  converted: number;
  /** Legacy names read under their current name ([file name, model name]): old diffusers VAE
   *  attention (query/key/value/proj_attn) -> to_q/to_k/to_v/to_out.0. */
  renamed: [string, string][];
  /** Tensors in the file this model deliberately does not use (the VAE encoder half when only
   *  decoding; CLIP's position_ids buffer, which is arange(77)). Not problems. */
  ignored: string[];
  /** One paragraph for a human: counts, every problem, hints. */
  summary: string;
}

interface Rules {
  label: string;
  ignore: (name: string) => boolean;
  rename: (name: string) => string;
}

const LEGACY_VAE_ATTENTION: [RegExp, string][] = [
  [/\.attentions\.(\d+)\.query\./, '.attentions.$1.to_q.'],
  [/\.attentions\.(\d+)\.key\./, '.attentions.$1.to_k.'],
  [/\.attentions\.(\d+)\.value\./, '.attentions.$1.to_v.'],
  [/\.attentions\.(\d+)\.proj_attn\./, '.attentions.$1.to_out.0.'],
];

function rulesFor(model: SdModel): Rules {
  if (model instanceof VaeDecoder) {
    return {
      label: 'VAE decoder',
      ignore: (n) => n.startsWith('encoder.') || n.startsWith('quant_conv.'),
      rename: (n) => LEGACY_VAE_ATTENTION.reduce((s, [re, to]) => s.replace(re, to), n),
    };
  }
  if (model instanceof ClipTextModel) {
    return { label: 'CLIP text encoder', ignore: (n) => n === 'text_model.embeddings.position_ids', rename: (n) => n };
  }
  return { label: 'UNet', ignore: () => false, rename: (n) => n };
}

const isFloat = (dtype: string): boolean => dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Copies `state` (diffusers / transformers names) into `model`. Float tensors are converted to the
 * model's dtype; legacy VAE attention names are renamed, and their 1×1-conv-shaped weights
 * [C, C, 1, 1] (old conversions) are read as the [C, C] matrices they are. With `strict` (default)
 * any missing, unexpected or mis-shaped tensor throws one Error carrying the full report and nothing
 * is copied; otherwise what fits is copied and the report lists the rest.
 */
export function loadSdState(model: SdModel, state: Map<string, Tensor> | Record<string, Tensor>, options: { strict?: boolean; source?: string } = {}): SdLoadReport {
  const strict = options.strict ?? true, source = options.source ?? 'state dict';
  const rules = rulesFor(model);
  const own = model.stateDict();
  const given = new Map<string, Tensor>();
  const renamed: [string, string][] = [], ignored: string[] = [];
  let converted = 0;
  for (const [fileName, tensor] of state instanceof Map ? state : Object.entries(state)) {
    if (rules.ignore(fileName)) { ignored.push(fileName); continue; }
    const name = rules.rename(fileName);
    if (name !== fileName) renamed.push([fileName, name]);
    let t = tensor;
    const dst = own.get(name);
    if (dst && t.rank === 4 && dst.rank === 2 && t.shape[2] === 1 && t.shape[3] === 1 && name.includes('.attentions.')) t = t.reshape([t.shape[0], t.shape[1]]);
    if (dst && t.dtype !== dst.dtype && isFloat(t.dtype) && isFloat(dst.dtype)) { t = t.cast(dst.dtype); converted++; }
    given.set(name, t);
  }
  const report: nn.LoadReport = { missing: [], unexpected: [], mismatched: [] };
  for (const [name, dst] of own) {
    const src = given.get(name);
    if (!src) report.missing.push(name);
    else if (src.dtype !== dst.dtype || !sameShape(src.shape, dst.shape)) {
      report.mismatched.push({ name, expected: { dtype: dst.dtype, shape: [...dst.shape] }, got: { dtype: src.dtype, shape: [...src.shape] } });
    }
  }
  for (const name of given.keys()) if (!own.has(name)) report.unexpected.push(name);
  const problems = report.missing.length + report.unexpected.length + report.mismatched.length;
  const loaded = strict && problems > 0 ? 0 : own.size - report.missing.length - report.mismatched.length;
  const result: SdLoadReport = { ...report, loaded, converted, renamed, ignored, summary: '' };
  result.summary = summarize(rules.label, own.size, source, result, problems, strict);
  if (strict && problems > 0) throw new Error(result.summary);
  const bad = new Set(report.mismatched.map((m) => m.name));
  model.loadStateDict(new Map([...given].filter(([n]) => own.has(n) && !bad.has(n))), { strict: false });
  return result;
}

/** Reads a safetensors file (or a sharded folder / index) and loads it with loadSdState. */
export function loadSdWeights(model: SdModel, path: string, options: { strict?: boolean } = {}): SdLoadReport {
  return loadSdState(model, loadSafetensors(path), { ...options, source: path });
}

function summarize(label: string, total: number, source: string, r: SdLoadReport, problems: number, strict: boolean): string {
  const head = problems === 0 ? `loaded all ${total} tensors`
    : `${strict ? 'refused (strict): ' : `loaded ${r.loaded} of ${total} tensors; `}${problems} problem${problems === 1 ? '' : 's'}`;
  const notes = [
    r.converted ? `${r.converted} converted to the model's dtype` : '',
    r.renamed.length ? `${r.renamed.length} legacy names renamed` : '',
    r.ignored.length ? `${r.ignored.length} not used by this model ignored` : '',
  ].filter(Boolean);
  const lines = [`loadSdWeights (${label}): ${source}: ${head}${notes.length ? `; ${notes.join(', ')}` : ''}`];
  const list = (what: string, names: string[]): void => {
    if (names.length === 0) return;
    lines.push(`  ${what} (${names.length}): ${names.slice(0, 12).join(', ')}${names.length > 12 ? `, ... (${names.length - 12} more)` : ''}`);
  };
  list('missing from the file', r.missing);
  list('unexpected in the file', r.unexpected);
  if (r.mismatched.length > 0) {
    lines.push(`  mis-shaped (${r.mismatched.length}):`);
    for (const m of r.mismatched.slice(0, 12)) lines.push(`    ${m.name}: model ${m.expected.dtype}[${m.expected.shape.join(', ')}], file ${m.got.dtype}[${m.got.shape.join(', ')}]`);
    if (r.mismatched.length > 12) lines.push(`    ... (${r.mismatched.length - 12} more)`);
  }
  if (r.unexpected.some((n) => n.startsWith('model.diffusion_model.') || n.startsWith('first_stage_model.') || n.startsWith('cond_stage_model.'))) {
    lines.push('  hint: this is an original (CompVis/LDM) single-file checkpoint; these models read the diffusers layout (unet/, vae/, text_encoder/ folders); convert it with diffusers\' convert_original_stable_diffusion_to_diffusers.py');
  } else if (problems > 0 && r.mismatched.length > 0) {
    lines.push('  hint: the shapes say the file was made for another config; pass the matching config (e.g. unetConfigFromDiffusers(config.json))');
  }
  return lines.join('\n');
}
