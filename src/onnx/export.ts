// ONNX export: turns an inferjit Graph (plus the live parameter tensors) into an ONNX model — one
// or more standard nodes per graph node through each op's mapping, parameters as initializers
// (moved to an external-data file when the model would pass protobuf's 2 GiB limit), symbolic dims
// as dim_params, and the graph's input/output names as the model's.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { endianness } from 'node:os';
import { Graph, type Node } from '../ir/index.js';
import { DIM_NAME } from '../ir/dims.js';
import { Tensor } from '../tensor/tensor.js';
import { fromNumbers, type DType } from '../tensor/dtype.js';
import { formatShape, type Dim } from '../tensor/shape.js';
import { getOp, type TensorMeta } from '../ops/registry.js';
import { normalizeAttrs } from '../ops/attrs.js';
import { checkInputs } from '../ops/dispatch.js';
import { getOnnxMapping } from './mapping.js';
import { inputNamesFromParameters } from './names.js';
import { OnnxBuilder, storageBytes, tensorProto } from './context.js';
import { encodeModel, onnxDataType, type ModelProtoObject, type TensorProtoObject, type ValueInfoProtoObject } from './proto.js';
import './ops/index.js';
import { liftSubgraphConstants, exportControlNode } from './ops/control.js';

/** The default-domain opset every mapping is written for. 18 brings axes-as-input for all
 *  reductions and Split's num_outputs; LayerNormalization (17) is standard there. */
export const ONNX_OPSET = 18;
/** The IR version released with opset 18 (ONNX 1.13), readable by every runtime that knows opset 18. */
export const ONNX_IR_VERSION = 8;
/** Bumped whenever a mapping changes what it emits, so cached .onnx files are not reused. */
export const ONNX_EXPORTER_VERSION = 1;
/** Protobuf messages cannot exceed 2 GiB; above this many bytes of initializers, 'auto' moves
 *  them to an external-data file (the margin leaves room for the graph itself). */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 2 ** 31 - 64 * 2 ** 20;

export interface OnnxExportOptions {
  /** Allow ONNX Runtime contrib ops (com.microsoft domain) where a mapping has one; default false. */
  contribOps?: boolean;
  /** Store initializers in a separate '<model>.data' file: true, false, or 'auto' (the default:
   *  only when the initializers exceed externalDataThreshold bytes). */
  externalData?: boolean | 'auto';
  /** Initializer bytes above which 'auto' switches to external data (default just under 2 GiB). */
  externalDataThreshold?: number;
  /** Initializers smaller than this stay inside the model even with external data (default 1024). */
  externalDataMinBytes?: number;
  /** Names for the model's inputs/outputs, replacing the graph's (same count and order). */
  inputNames?: readonly string[];
  outputNames?: readonly string[];
  /** Declare bf16 graph inputs/outputs as float32 and cast inside the model (onnxruntime-node
   *  cannot pass bf16 tensors across its JS boundary). */
  bf16AsFloat32?: boolean;
  graphName?: string;
  docString?: string;
  /** Extra key/value pairs stored in the model's metadata_props. */
  metadata?: Record<string, string>;
}

/** An exported model in memory: the protobuf bytes and, when external data is used, the file
 *  name the model refers to and the tensors to write there (at their offsets). */
export interface OnnxModelBytes {
  bytes: Uint8Array;
  external: { fileName: string; size: number; chunks: { offset: number; data: Uint8Array }[] } | null;
  inputNames: string[];
  outputNames: string[];
  /** Symbolic dims of the inputs, by input name (dim_param per axis, null when static). */
  dynamicDims: Record<string, (string | null)[]>;
}

/** What exportOnnx accepts: a graph with its parameter tensors (a trace result has this shape). */
export interface ExportSource {
  graph: Graph;
  constants?: ReadonlyMap<string, Tensor>;
}

export interface ExportedFile {
  path: string;
  dataPath: string | null;
  inputNames: string[];
  outputNames: string[];
  /** Size of the .onnx file (the external-data file not included). */
  bytes: number;
}

if (endianness() !== 'LE') {
  // raw_data must be little-endian; typed arrays use the host's byte order
  throw new Error('onnx export: this host is big-endian; ONNX raw_data is little-endian and byte swapping is not implemented');
}

const ALIGN = 4096; // external tensors start on page boundaries so runtimes can mmap them

function valueInfo(name: string, dtype: DType, shape: readonly Dim[]): ValueInfoProtoObject {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: onnxDataType(dtype),
        // a derived expression ("2*seq") is not a name ONNX can relate to the inputs' dims:
        // such dims are left unnamed rather than declared as a new, unrelated symbol
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dim_value: d } : DIM_NAME.test(d) ? { dim_param: d } : {})) },
      },
    },
  };
}

function constantTensor(name: string, c: Graph['constants'][number], constants: ReadonlyMap<string, Tensor> | undefined): { dtype: DType; shape: number[]; raw: Uint8Array } {
  const shape = c.shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`onnx export: constant "${c.name}" has symbolic shape ${formatShape(c.shape)}; initializers need concrete shapes`);
    return d;
  });
  if (c.kind === 'literal') {
    if (!c.data) throw new Error(`onnx export: literal constant "${c.name}" has no data`);
    return { dtype: c.dtype, shape, raw: storageBytes(fromNumbers(c.dtype, c.data)) };
  }
  const t = constants?.get(c.name);
  if (!t) {
    throw new Error(`onnx export: parameter "${c.name}" (${c.dtype}${formatShape(c.shape)}) was not given; pass the module's tensors as constants (a Map from parameter name to Tensor)`);
  }
  if (t.dtype !== c.dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`onnx export: parameter "${c.name}" is ${t.dtype}${formatShape(t.shape)} but the graph expects ${c.dtype}${formatShape(c.shape)}`);
  }
  return { dtype: c.dtype, shape, raw: storageBytes(t.data) };
}

/** Builds the ONNX model for a graph. `modelFileName` names the model file (for the external-data
 *  file name); it is only needed when external data may be used. */
export function exportGraphToBytes(graph: Graph, constants: ReadonlyMap<string, Tensor> | undefined, options: OnnxExportOptions = {}, modelFileName = 'model.onnx'): OnnxModelBytes {
  graph.verify();
  // control flow: sub-graph constants become top-level initializers (src/onnx/ops/control.ts)
  if (graph.nodes.some((n) => n.graphs)) graph = liftSubgraphConstants(graph);
  const b = new OnnxBuilder({ opset: ONNX_OPSET, contribOps: options.contribOps ?? false });
  const inputNames = graph.inputs.map((inp, i) => options.inputNames?.[i] ?? inp.name);
  const outputNames = graph.outputs.map((out, i) => options.outputNames?.[i] ?? out.name);
  if (options.inputNames && options.inputNames.length !== graph.inputs.length) {
    throw new RangeError(`onnx export: inputNames has ${options.inputNames.length} names but the graph has ${graph.inputs.length} inputs`);
  }
  if (options.outputNames && options.outputNames.length !== graph.outputs.length) {
    throw new RangeError(`onnx export: outputNames has ${options.outputNames.length} names but the graph has ${graph.outputs.length} outputs`);
  }
  for (const [what, names] of [['input', inputNames], ['output', outputNames]] as const) {
    const seen = new Set<string>();
    for (const n of names) {
      if (seen.has(n)) throw new Error(`onnx export: two model ${what}s are named "${n}"; ONNX names must be unique`);
      seen.add(n);
    }
  }
  for (const n of [...inputNames, ...outputNames]) b.reserve(n);
  if (inputNames.some((n) => outputNames.includes(n))) {
    throw new Error(`onnx export: a model input and output share a name (${inputNames.find((n) => outputNames.includes(n))}); rename one with inputNames/outputNames`);
  }

  const names = new Map<number, string>(); // graph value id -> ONNX name
  const bf16Io = options.bf16AsFloat32 ?? false;

  // ---- inputs ----
  const inputInfos: ValueInfoProtoObject[] = [];
  const dynamicDims: Record<string, (string | null)[]> = {};
  graph.inputs.forEach((inp, i) => {
    const v = graph.value(inp.value);
    const name = inputNames[i];
    const boundary = bf16Io && v.dtype === 'bf16' ? 'f32' : v.dtype;
    inputInfos.push(valueInfo(name, boundary, v.shape));
    dynamicDims[name] = v.shape.map((d) => (typeof d === 'string' ? d : null));
    v.shape.forEach((d, axis) => { if (typeof d === 'string' && DIM_NAME.test(d)) b.bindSymbol(d, { name, axis }); });
    names.set(inp.value, boundary === v.dtype ? name : b.cast(name, boundary, v.dtype));
  });

  // ---- constants -> initializers ----
  let initializerBytes = 0;
  const params: TensorProtoObject[] = [];
  for (const c of graph.constants) {
    const name = b.isUsed(c.name) ? b.fresh(c.name) : (b.reserve(c.name), c.name);
    const { dtype, shape, raw } = constantTensor(name, c, constants);
    const t = tensorProto(name, dtype, shape, raw);
    params.push(t);
    b.addInitializer(t);
    initializerBytes += raw.byteLength;
    names.set(c.value, name);
  }

  // ---- nodes ----
  graph.nodes.forEach((node: Node, index) => {
    const mapping = node.graphs ? null : getOnnxMapping(node.op);
    const ins = node.inputs.map((id) => (id === null ? null : graph.meta(id)));
    const inNames = node.inputs.map((id) => {
      if (id === null) return null;
      const n = names.get(id);
      if (n === undefined) throw new Error(`onnx export: node ${index} (${node.op}) reads %${id} before it is defined`);
      return n;
    });
    const outs = node.outputs.map((id) => graph.meta(id));
    b.scope = `${node.op}_${index}`;
    b.doc = node.source;
    const result = mapping ? mapping(b, inNames, node.attrs, outs, ins) : exportControlNode(b, node, inNames as string[], graph);
    b.scope = '';
    b.doc = undefined;
    if (result.length !== outs.length) {
      throw new Error(`onnx export: the ONNX mapping of ${node.op} returned ${result.length} outputs, the op has ${outs.length}`);
    }
    node.outputs.forEach((id, k) => names.set(id, result[k]));
  });

  // ---- outputs: name the producing value after the output, or add an Identity ----
  const producedBy = new Map<string, { node: number; slot: number }>();
  b.nodes.forEach((n, i) => n.output.forEach((o, slot) => producedBy.set(o, { node: i, slot })));
  const claimed = new Set<string>();
  const outputInfos: ValueInfoProtoObject[] = [];
  graph.outputs.forEach((out, i) => {
    const v = graph.value(out.value);
    const want = outputNames[i];
    let internal = names.get(out.value)!;
    if (bf16Io && v.dtype === 'bf16') internal = b.cast(internal, 'bf16', 'f32');
    if (internal === want) {
      claimed.add(internal);
    } else if (producedBy.has(internal) && !claimed.has(internal)) {
      renameValue(b.nodes, internal, want);
      producedBy.set(want, producedBy.get(internal)!);
      producedBy.delete(internal);
      for (const [id, n] of names) if (n === internal) names.set(id, want);
      claimed.add(want);
    } else {
      // an input, an initializer, or a value already exported under another output's name
      b.nodes.push({ input: [internal], output: [want], name: `output_${i}/Identity`, op_type: 'Identity', domain: '', attribute: [] });
      claimed.add(want);
    }
    outputInfos.push(valueInfo(want, bf16Io && v.dtype === 'bf16' ? 'f32' : v.dtype, v.shape));
  });

  // ---- external data ----
  const mode = options.externalData ?? 'auto';
  const threshold = options.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
  const useExternal = mode === true || (mode === 'auto' && initializerBytes > threshold);
  let external: OnnxModelBytes['external'] = null;
  if (useExternal) {
    const fileName = `${basename(modelFileName)}.data`;
    const minBytes = options.externalDataMinBytes ?? 1024;
    const chunks: { offset: number; data: Uint8Array }[] = [];
    let offset = 0;
    for (const t of params) {
      const raw = t.raw_data!;
      if (raw.byteLength < minBytes) continue;
      offset = Math.ceil(offset / ALIGN) * ALIGN;
      chunks.push({ offset, data: raw });
      delete t.raw_data;
      t.data_location = 1;
      t.external_data = [
        { key: 'location', value: fileName },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(raw.byteLength) },
      ];
      offset += raw.byteLength;
    }
    external = { fileName, size: offset, chunks };
  } else if (initializerBytes > 2 ** 31 - 1) {
    throw new Error(`onnx export: the model's initializers take ${initializerBytes} bytes, over protobuf's 2 GiB limit; export with externalData: true or 'auto'`);
  }

  const opsetImport = [{ domain: '', version: ONNX_OPSET }];
  for (const d of b.domains) opsetImport.push({ domain: d, version: 1 });
  const model: ModelProtoObject = {
    ir_version: ONNX_IR_VERSION,
    opset_import: opsetImport,
    producer_name: 'inferjit',
    producer_version: `exporter-${ONNX_EXPORTER_VERSION}`,
    graph: {
      name: options.graphName ?? 'inferjit',
      node: b.nodes,
      initializer: b.initializers,
      input: inputInfos,
      output: outputInfos,
    },
  };
  if (options.docString) model.doc_string = options.docString;
  if (options.metadata) model.metadata_props = Object.entries(options.metadata).map(([key, value]) => ({ key, value }));
  return { bytes: encodeModel(model), external, inputNames, outputNames, dynamicDims };
}

function renameValue(nodes: { input: string[]; output: string[] }[], from: string, to: string): void {
  for (const n of nodes) {
    n.input = n.input.map((x) => (x === from ? to : x));
    n.output = n.output.map((x) => (x === from ? to : x));
  }
}

/** Writes an exported model (and its external data) to `path`, atomically: each file is written
 *  under a temporary name and renamed, the data file first, so a reader that sees the .onnx file
 *  also sees complete data. */
export function writeOnnxModel(model: OnnxModelBytes, path: string): ExportedFile {
  mkdirSync(dirname(path), { recursive: true });
  const tmpSuffix = `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  let dataPath: string | null = null;
  if (model.external) {
    dataPath = join(dirname(path), model.external.fileName);
    const tmp = dataPath + tmpSuffix;
    const fd = openSync(tmp, 'w');
    try {
      for (const { offset, data } of model.external.chunks) {
        let done = 0;
        while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done, offset + done);
      }
      fsyncSync(fd);
    } finally { closeSync(fd); }
    renameSync(tmp, dataPath);
  }
  const tmp = path + tmpSuffix;
  writeFileSync(tmp, model.bytes);
  renameSync(tmp, path);
  return { path, dataPath, inputNames: model.inputNames, outputNames: model.outputNames, bytes: model.bytes.byteLength };
}

/** What inferenceJit returns (function form): exportOnnx exports the graph traced for its most
 *  recent call. Typed structurally so onnx/ does not depend on jit/. */
export interface CompiledHandleLike {
  compiledEntries(): readonly { capture: { graph: Graph; constants: ReadonlyMap<string, Tensor> } }[];
  /** Present on a compiled module: its forward names the model's inputs. */
  readonly module?: { forward?: (...args: any[]) => unknown };
}

function isCompiledHandle(x: unknown): x is CompiledHandleLike {
  return (typeof x === 'function' || (typeof x === 'object' && x !== null)) && typeof (x as { compiledEntries?: unknown }).compiledEntries === 'function';
}

/** The graph, parameters and (when visible) traced function behind an export source. */
function resolveSource(source: unknown, constants: ReadonlyMap<string, Tensor> | undefined): { graph: Graph; constants?: ReadonlyMap<string, Tensor>; fn?: (...args: any[]) => unknown } {
  if (source instanceof Graph) return { graph: source, constants };
  if (isCompiledHandle(source)) {
    const entries = source.compiledEntries();
    if (entries.length === 0) {
      throw new TypeError('exportOnnx: this compiled handle has not compiled anything yet; call it once with example inputs (the call traces it), then export — or use exportModel(model, args, path) to trace and export in one step');
    }
    const { graph, constants: live } = entries[0].capture;
    const forward = source.module?.forward;
    return { graph, constants: live, fn: typeof forward === 'function' ? forward : undefined };
  }
  if (source && typeof source === 'object' && (source as ExportSource).graph instanceof Graph) {
    return { graph: (source as ExportSource).graph, constants: (source as ExportSource).constants ?? constants };
  }
  throw new TypeError('exportOnnx: expected a Graph, { graph, constants } (e.g. the result of trace()) or a compiled handle from inferenceJit(model | fn); to export a model object, use exportModel(model, args, path)');
}

/** Exports a graph (with its parameter tensors), a trace result or a compiled handle (the graph
 *  traced for its most recent call) to an ONNX file at `path`. Inputs are named as
 *  src/onnx/names.ts says; `inputNames` overrides. */
export function exportOnnx(source: Graph | ExportSource | CompiledHandleLike, path: string, options: OnnxExportOptions & { constants?: ReadonlyMap<string, Tensor> } = {}): ExportedFile {
  const { graph, constants, fn } = resolveSource(source, options.constants);
  const inputNames = options.inputNames ?? inputNamesFromParameters(graph, fn);
  return writeOnnxModel(exportGraphToBytes(graph, constants, { ...options, inputNames }, basename(path)), path);
}

// ---- one-op models ----

/** An op input for exportOp: a concrete tensor (its dtype and shape are used), or metadata whose
 *  string dims become dynamic model dims; null for an absent optional input. */
export type OpInputSpec = Tensor | TensorMeta | null;

export interface OneOpModel extends OnnxModelBytes {
  graph: Graph;
}

/** Builds a model holding the single op `opName`: each present input becomes a model input named
 *  after the op's input ("x", "weight", "tensors_1"...), outputs are "out" (or "out0", "out1"...).
 *  Used to test every op's mapping against eager execution. */
export function exportOp(opName: string, inputs: readonly OpInputSpec[], attrs: Record<string, unknown> = {}, options: OnnxExportOptions = {}): OneOpModel {
  const def = getOp(opName);
  const metas = inputs.map((t) => (t === null ? null : t instanceof Tensor ? { dtype: t.dtype, shape: t.metaShape } : t));
  // reuse dispatch's arity checks on placeholder tensors so errors read the same as in eager mode
  checkInputs(def, metas.map((m) => (m === null ? null : Tensor.empty(m.dtype, m.shape.map((d) => (typeof d === 'number' ? d : 1))))));
  const a = normalizeAttrs(def.name, def.attrs, attrs);
  const outs = def.infer(metas, a);
  const graph = new Graph();
  const specs = def.inputs;
  const variadic = specs.length > 0 && specs[specs.length - 1].startsWith('...');
  const ids = metas.map((m, i) => {
    if (m === null) return null;
    const spec = i < specs.length && !(variadic && i >= specs.length - 1) ? specs[i] : specs[specs.length - 1];
    const base = spec.replace(/^\.\.\.|\?$/g, '');
    return graph.addInput(variadic && spec.startsWith('...') ? `${base}_${i - (specs.length - 1)}` : base, m.dtype, m.shape);
  });
  const outIds = graph.addNode(def.name, ids, a, outs);
  outIds.forEach((id, k) => graph.addOutput(outIds.length === 1 ? 'out' : `out${k}`, id));
  return { ...exportGraphToBytes(graph, undefined, options), graph };
}
