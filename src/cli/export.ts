// `inferjit export <model.ts> --out <model.onnx>`: loads a model file, traces it on the example
// inputs the file provides and writes the ONNX model (see USAGE for what the file must export).
import { resolve } from 'node:path';
import { ArgReader, UsageError } from './args.js';
import { pathToFileURL } from 'node:url';
import { Tensor } from '../tensor/tensor.js';
import type { InputSpec } from '../trace/index.js';
import { exportModel, type ModelLike } from '../onnx/model.js';
import { ONNX_OPSET } from '../onnx/export.js';

export interface ExportIo { out(line: string): void; err(line: string): void }
const stdio: ExportIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

export const EXPORT_USAGE = `usage: inferjit export <model.ts> --out <model.onnx> [options]

The model file's default export (or its export named "onnxExport") is an object, or a function
(possibly async) returning one:
  { model, args, inputSpec?, inputNames?, outputNames? }
    model        an nn.Module (or any object with forward), or a plain function
    args         example arguments for forward (tensors, nested arrays/objects of tensors, numbers)
    inputSpec    per tensor input, e.g. [{ shape: ['batch', 'seq', 384] }]: named dims stay dynamic
    inputNames   model input names (default: forward's parameter names)
    outputNames  model output names
The file is loaded as an ES module: inside an ESM package ("type": "module") or named .mts, so it
shares inferjit's modules with the CLI (a CommonJS .ts file would load its own copy).

options:
  --out PATH                 where to write the model (required)
  --input-spec JSON          overrides the file's inputSpec, e.g. '[{"shape":["batch",16]}]'
  --external-data            always store weights in <out>.data (default: only above 2 GiB)
  --external-threshold N     bytes of weights above which weights go to <out>.data
  --contrib-ops              allow ONNX Runtime contrib ops (com.microsoft domain)
  --json                     print the result as JSON

Writes ONNX opset ${ONNX_OPSET} with standard operators.`;


interface ExportSpec {
  model: ModelLike | ((...args: any[]) => unknown);
  args: unknown[];
  inputSpec?: (InputSpec | null)[];
  inputNames?: string[];
  outputNames?: string[];
}

async function loadSpec(file: string): Promise<ExportSpec> {
  const mod = await import(pathToFileURL(resolve(file)).href) as Record<string, unknown>;
  let spec = mod.onnxExport ?? mod.default;
  if (spec === undefined) throw new UsageError(`${file} has no default export and no export named "onnxExport"`);
  if (typeof spec === 'function' && !('forward' in spec)) spec = await (spec as () => unknown)();
  const s = spec as Partial<ExportSpec>;
  if (!s || typeof s !== 'object' || !('model' in s)) {
    throw new UsageError(`${file}: the export must be { model, args, ... } (or a function returning it), got ${typeof spec}`);
  }
  const m = s.model as unknown;
  if (typeof m !== 'function' && (typeof m !== 'object' || m === null || typeof (m as ModelLike).forward !== 'function')) {
    throw new UsageError(`${file}: "model" must be an object with a forward method or a function`);
  }
  if (!Array.isArray(s.args)) throw new UsageError(`${file}: "args" must be an array of example arguments for forward`);
  if (!s.args.some(function hasTensor(a: unknown): boolean {
    return a instanceof Tensor || (Array.isArray(a) && a.some(hasTensor)) || (typeof a === 'object' && a !== null && Object.values(a).some(hasTensor));
  })) throw new UsageError(`${file}: "args" holds no tensor; the model needs at least one tensor input`);
  return s as ExportSpec;
}

/** Runs `inferjit export` with the arguments after "export"; resolves to the exit code. */
export async function runExportCommand(argv: readonly string[], io: ExportIo = stdio): Promise<number> {
  const reader = new ArgReader(argv);
  const args = reader.rest;
  const flag = (name: string): boolean => reader.flag(name);
  const option = (name: string): string | undefined => reader.option(name);
  try {
    if (flag('--help') || flag('-h')) { io.out(EXPORT_USAGE); return 0; }
    const json = flag('--json');
    const external = flag('--external-data');
    const contribOps = flag('--contrib-ops');
    const out = option('--out') ?? option('-o');
    const specText = option('--input-spec');
    const thresholdText = option('--external-threshold');
    const unknown = args.filter((a) => a.startsWith('-'));
    if (unknown.length) throw new UsageError(`unknown option ${unknown[0]}`);
    if (args.length !== 1) throw new UsageError(args.length === 0 ? 'missing the model file' : `expected one model file, got ${args.join(' ')}`);
    if (!out) throw new UsageError('missing --out <model.onnx>');
    let inputSpec: (InputSpec | null)[] | undefined;
    if (specText !== undefined) {
      try { inputSpec = JSON.parse(specText); } catch (e) { throw new UsageError(`--input-spec is not JSON: ${(e as Error).message}`); }
      if (!Array.isArray(inputSpec)) throw new UsageError('--input-spec must be a JSON array with one entry per tensor input');
    }
    let externalDataThreshold: number | undefined;
    if (thresholdText !== undefined) {
      externalDataThreshold = Number(thresholdText);
      if (!Number.isInteger(externalDataThreshold) || externalDataThreshold < 0) throw new UsageError(`--external-threshold must be a non-negative integer, got ${thresholdText}`);
    }
    const spec = await loadSpec(args[0]);
    const file = exportModel(spec.model, spec.args, resolve(out), {
      inputSpec: inputSpec ?? spec.inputSpec,
      inputNames: spec.inputNames,
      outputNames: spec.outputNames,
      contribOps,
      externalData: external ? true : 'auto',
      externalDataThreshold,
    });
    if (json) io.out(JSON.stringify(file));
    else {
      io.out(`wrote ${file.path} (${file.bytes} bytes, ONNX opset ${ONNX_OPSET})${file.dataPath ? ` and weights ${file.dataPath}` : ''}`);
      io.out(`inputs: ${file.inputNames.join(', ')}; outputs: ${file.outputNames.join(', ')}`);
    }
    return 0;
  } catch (e) {
    if (e instanceof UsageError) { io.err(`inferjit export: ${e.message}\n\n${EXPORT_USAGE}`); return 2; }
    io.err(`inferjit export: ${(e as Error).message}`);
    return 1;
  }
}
