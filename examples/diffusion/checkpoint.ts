// Loading DiT weights by the original checkpoint's parameter names, with a report that says what
// was missing, unexpected or mis-shaped, and which model the checkpoint looks like when it does not
// fit. Files are safetensors (convert the original .pt with safetensors.torch.save_file on its
// state dict, or on the "ema" entry of a train.py checkpoint).
import { type Tensor, type nn } from '../../src/index.js';
import { loadSafetensors } from '../../src/io/safetensors.js';
import { type DiT, type DiTConfig } from './dit.js';

export interface CheckpointReport extends nn.LoadReport {
  /** Tensors copied into the model. */
  loaded: number;
  /** Tensors whose dtype was converted to the model's (e.g. f16 checkpoints into an f32 model). */
  converted: number;
  /** A prefix removed from every name ('module.', 'ema.', 'model.'), if one was. */
  strippedPrefix: string;
  /** What the checkpoint's shapes say about its config (null fields where it cannot tell). */
  inferred: Partial<Pick<DiTConfig, 'hiddenSize' | 'patchSize' | 'inChannels' | 'depth' | 'numClasses' | 'inputSize'>>;
  /** One paragraph for a human: counts, every problem, and hints. */
  summary: string;
}

const WRAPPER_PREFIXES = ['module.', 'ema.', 'model.'];

/**
 * Copies `state` (name -> tensor, original DiT names) into `model`. Float tensors are converted to
 * the model's dtype. A prefix shared by every name ('module.' from DDP, 'ema.', 'model.') is removed.
 * With `strict` (default) any missing, unexpected or mis-shaped tensor throws one Error carrying the
 * full report and nothing is copied; otherwise what fits is copied and the report lists the rest.
 */
export function loadDiTState(model: DiT, state: Map<string, Tensor> | Record<string, Tensor>, options: { strict?: boolean; source?: string } = {}): CheckpointReport {
  const strict = options.strict ?? true, source = options.source ?? 'checkpoint';
  let entries = state instanceof Map ? [...state] : Object.entries(state);
  const strippedPrefix = WRAPPER_PREFIXES.find((p) => entries.length > 0 && entries.every(([n]) => n.startsWith(p))) ?? '';
  if (strippedPrefix) entries = entries.map(([n, t]) => [n.slice(strippedPrefix.length), t]);
  const own = model.stateDict();
  let converted = 0;
  const given = new Map<string, Tensor>();
  for (const [name, t] of entries) {
    const dst = own.get(name);
    if (dst && t.dtype !== dst.dtype && isFloat(t.dtype) && isFloat(dst.dtype)) { given.set(name, t.cast(dst.dtype)); converted++; }
    else given.set(name, t);
  }
  const report: nn.LoadReport = { missing: [], unexpected: [], mismatched: [] };
  for (const [name, dst] of own) {
    const src = given.get(name);
    if (!src) report.missing.push(name);
    else if (src.dtype !== dst.dtype || src.shape.length !== dst.shape.length || src.shape.some((d, i) => d !== dst.shape[i])) {
      report.mismatched.push({ name, expected: { dtype: dst.dtype, shape: [...dst.shape] }, got: { dtype: src.dtype, shape: [...src.shape] } });
    }
  }
  for (const name of given.keys()) if (!own.has(name)) report.unexpected.push(name);
  const inferred = inferConfig(given);
  const problems = report.missing.length + report.unexpected.length + report.mismatched.length;
  const loaded = own.size - report.missing.length - report.mismatched.length;
  const result = { ...report, loaded: strict && problems > 0 ? 0 : loaded, converted, strippedPrefix, inferred, summary: '' };
  result.summary = summarize(model, source, result, problems, strict);
  if (strict && problems > 0) throw new Error(result.summary);
  const fitting = new Map([...given].filter(([n]) => own.has(n) && !report.mismatched.some((m) => m.name === n)));
  model.loadStateDict(fitting, { strict: false });
  return result;
}

/**
 * Reads a safetensors checkpoint (a file, a shard index or a directory) and loads it with
 * loadDiTState (see there). The report's `summary` is meant to be printed.
 */
export function loadDiTCheckpoint(model: DiT, path: string, options: { strict?: boolean } = {}): CheckpointReport {
  return loadDiTState(model, loadSafetensors(path), { ...options, source: path });
}

function isFloat(dtype: string): boolean { return dtype === 'f32' || dtype === 'f16' || dtype === 'bf16'; }

/** The config a state dict was made for, read off its shapes. */
function inferConfig(state: Map<string, Tensor>): CheckpointReport['inferred'] {
  const out: CheckpointReport['inferred'] = {};
  const proj = state.get('x_embedder.proj.weight');
  if (proj?.rank === 4) { out.hiddenSize = proj.shape[0]; out.inChannels = proj.shape[1]; out.patchSize = proj.shape[2]; }
  const table = state.get('y_embedder.embedding_table.weight');
  if (table?.rank === 2) out.numClasses = table.shape[0] - 1; // with the null-class row (class_dropout_prob > 0)
  const pos = state.get('pos_embed');
  if (pos?.rank === 3 && out.patchSize) {
    const grid = Math.round(Math.sqrt(pos.shape[1]));
    if (grid * grid === pos.shape[1]) out.inputSize = grid * out.patchSize;
  }
  let depth = 0;
  for (const name of state.keys()) {
    const m = /^blocks\.(\d+)\./.exec(name);
    if (m) depth = Math.max(depth, Number(m[1]) + 1);
  }
  if (depth > 0) out.depth = depth;
  return out;
}

function summarize(model: DiT, source: string, r: Omit<CheckpointReport, 'summary'>, problems: number, strict: boolean): string {
  const own = model.stateDict().size;
  const lines = [`loadDiTCheckpoint: ${source}: ${problems === 0 ? `loaded all ${own} tensors` : `${strict ? 'refused (strict): ' : `loaded ${r.loaded} of ${own} tensors; `}${problems} problem${problems === 1 ? '' : 's'}`}` +
    (r.converted ? `, ${r.converted} converted to ${model.pos_embed.dtype}` : '') + (r.strippedPrefix ? `, prefix "${r.strippedPrefix}" removed` : '')];
  const list = (label: string, names: string[]): void => {
    if (names.length === 0) return;
    const shown = names.slice(0, 12).join(', ');
    lines.push(`  ${label} (${names.length}): ${shown}${names.length > 12 ? `, ... (${names.length - 12} more)` : ''}`);
  };
  list('missing from the checkpoint', r.missing);
  list('unexpected in the checkpoint', r.unexpected);
  if (r.mismatched.length > 0) {
    lines.push(`  mis-shaped (${r.mismatched.length}):`);
    for (const m of r.mismatched.slice(0, 12)) lines.push(`    ${m.name}: model ${m.expected.dtype}[${m.expected.shape.join(', ')}], checkpoint ${m.got.dtype}[${m.got.shape.join(', ')}]`);
    if (r.mismatched.length > 12) lines.push(`    ... (${r.mismatched.length - 12} more)`);
  }
  if (problems > 0) {
    const c = model.config, i = r.inferred;
    const differ = (Object.keys(i) as (keyof typeof i)[]).filter((k) => i[k] !== c[k]);
    if (differ.length > 0) {
      lines.push(`  the checkpoint looks like ${describeConfig(i)}; the model is ${describeConfig(c)}` +
        (differ.includes('inputSize') ? ` (latent size ${i.inputSize} is image size ${i.inputSize! * 8}: pass --image-size ${i.inputSize! * 8})` : ''));
    }
  }
  return lines.join('\n');
}

function describeConfig(c: CheckpointReport['inferred']): string {
  const sizes: Record<string, string> = { '12x384': 'S', '12x768': 'B', '24x1024': 'L', '28x1152': 'XL' };
  const size = sizes[`${c.depth}x${c.hiddenSize}`];
  const name = size && c.patchSize ? `DiT-${size}/${c.patchSize}` : `a DiT with depth ${c.depth ?? '?'}, hidden ${c.hiddenSize ?? '?'}, patch ${c.patchSize ?? '?'}`;
  return `${name} (${c.inputSize ?? '?'}×${c.inputSize ?? '?'} latents, ${c.numClasses ?? '?'} classes)`;
}
