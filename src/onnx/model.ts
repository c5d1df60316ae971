// Exporting a model object (an nn.Module or any object with forward) or a function straight to
// ONNX: trace it on example inputs, name the model's inputs after forward's parameters, export.
import type { Tensor } from '../tensor/tensor.js';
import { trace, type InputSpec } from '../trace/index.js';
import { exportOnnx, type ExportedFile, type OnnxExportOptions } from './export.js';
import { inputNamesFromParameters } from './names.js';

export interface ModelLike {
  forward(...args: any[]): unknown;
  namedParameters?(): Iterable<[string, Tensor]>;
  namedBuffers?(): Iterable<[string, Tensor]>;
}

export interface ExportModelOptions extends OnnxExportOptions {
  /** Per tensor input: dynamic dims by name ('batch') or -1; see trace's InputSpec. */
  inputSpec?: (InputSpec | null)[];
}

/** Traces `model.forward` (or `fn`) on `args` and writes the ONNX model to `path`. Inputs are named
 *  as src/onnx/names.ts says (forward's parameters when each is one tensor). */
export function exportModel(model: ModelLike | ((...args: any[]) => unknown), args: unknown[], path: string, options: ExportModelOptions = {}): ExportedFile {
  const isFn = typeof model === 'function';
  const forward = isFn ? model : model.forward.bind(model);
  const module = !isFn && typeof model.namedParameters === 'function' ? (model as Required<Pick<ModelLike, 'namedParameters'>> & ModelLike) : undefined;
  const traced = trace(forward, args, { inputSpec: options.inputSpec, module: module as never });
  const inputNames = options.inputNames ?? inputNamesFromParameters(traced.graph, isFn ? model : model.forward);
  const { inputSpec: _spec, ...exportOptions } = options;
  return exportOnnx(traced, path, { ...exportOptions, inputNames });
}
