// Exporting a model object (an nn.Module or any object with forward) or a function straight to
// ONNX: trace it on example inputs, name the model's inputs after forward's parameters, export.
import type { Tensor } from '../tensor/tensor.js';
import { trace, type InputSpec } from '../trace/index.js';
import { exportOnnx, type ExportedFile, type OnnxExportOptions } from './export.js';

export interface ModelLike {
  forward(...args: any[]): unknown;
  namedParameters?(): Iterable<[string, Tensor]>;
  namedBuffers?(): Iterable<[string, Tensor]>;
}

export interface ExportModelOptions extends OnnxExportOptions {
  /** Per tensor input: dynamic dims by name ('batch') or -1; see trace's InputSpec. */
  inputSpec?: (InputSpec | null)[];
}

/** Parameter names of a function from its source (`forward(x, mask)` -> ['x', 'mask']); null when
 *  the list is not plain identifiers (destructuring, rest parameters). */
export function parameterNames(fn: (...args: any[]) => unknown): string[] | null {
  const src = Function.prototype.toString.call(fn);
  const m = /^[^(]*\(([^)]*)\)/.exec(src) ?? /^\s*(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(src);
  if (!m) return null;
  const names = m[1].split(',').map((p) => p.replace(/\/\*.*?\*\//g, '').split('=')[0].split(':')[0].trim()).filter((p) => p.length > 0);
  return names.every((n) => /^[A-Za-z_$][\w$]*$/.test(n)) ? names : null;
}

/** Traces `model.forward` (or `fn`) on `args` and writes the ONNX model to `path`. Inputs are named
 *  after forward's parameters when each parameter is one tensor; otherwise the tracer's names. */
export function exportModel(model: ModelLike | ((...args: any[]) => unknown), args: unknown[], path: string, options: ExportModelOptions = {}): ExportedFile {
  const isFn = typeof model === 'function';
  const forward = isFn ? model : model.forward.bind(model);
  const module = !isFn && typeof model.namedParameters === 'function' ? (model as Required<Pick<ModelLike, 'namedParameters'>> & ModelLike) : undefined;
  const traced = trace(forward, args, { inputSpec: options.inputSpec, module: module as never });
  let inputNames = options.inputNames;
  if (!inputNames) {
    const names = parameterNames(isFn ? model : model.forward);
    if (names && names.length === traced.graph.inputs.length && names.length === args.length) inputNames = names;
  }
  const { inputSpec: _spec, ...exportOptions } = options;
  return exportOnnx(traced, path, { ...exportOptions, inputNames });
}
