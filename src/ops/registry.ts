// The op registry: every op is defined once here (name, inputs, attribute schema, shape/dtype
// inference, reference kernel), and backends register kernels for op names.
import type { DType } from '../tensor/dtype.js';
import type { Shape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { type AttrSchema, type AttrValues } from './attrs.js';
import type { OnnxMapping } from '../onnx/mapping.js';
import type { Graph } from '../ir/graph.js';

/** What shape inference sees of a tensor: no data, dims may be symbolic. */
export interface TensorMeta { readonly dtype: DType; readonly shape: Shape }

/** How fusion passes and exporters classify an op. */
export type OpKind = 'elementwise' | 'reduction' | 'movement' | 'linalg' | 'norm' | 'model' | 'other';

/** A kernel computes outputs from concrete inputs; `outs` holds the inferred output metadata
 *  (shapes are concrete at this point). Absent optional inputs are `null`. */
export type Kernel<A = AttrValues> = (inputs: (Tensor | null)[], attrs: A, outs: TensorMeta[]) => Tensor[];

export interface OpDef<A = AttrValues> {
  name: string;
  kind: OpKind;
  /** Input names; a trailing `?` marks an optional input (may be null), a leading `...` a variadic tail. */
  inputs: string[];
  attrs: AttrSchema;
  /** Pure shape and dtype inference; throws a specific error for invalid inputs. */
  infer(inputs: (TensorMeta | null)[], attrs: A): TensorMeta[];
  /** The pure TypeScript kernel: the oracle every other backend is tested against. */
  reference: Kernel<A>;
  doc?: string;
  /** The op writes its result into this input's storage in place (the result aliases it, as an
   *  LLM's kv_write writes KV rows into the session's page pool). Graph.verify requires the input
   *  to be session state and unread after the write; the reference kernel mutates that tensor and
   *  returns a tensor over the same storage, so eager and compiled runs share one pool. */
  writesInto?: number;
  /** How the op is written in ONNX. Mappings live in src/onnx/ops/<same file name as the op's
   *  src/ops file>.ts and are attached with registerOnnxMapping (src/onnx/mapping.ts). */
  onnx?: OnnxMapping<A>;
  /** Control-flow ops only (src/ops/control.ts): the role names of the node's sub-graphs... */
  graphNames?: readonly string[];
  /** ...the output types from the inputs and the sub-graphs' signatures, checking the op's rules
   *  (replaces `infer` for nodes with sub-graphs)... */
  inferGraphs?(inputs: (TensorMeta | null)[], attrs: A, graphs: Readonly<Record<string, GraphSignature>>): TensorMeta[];
  /** ...and how to execute the node: `run` executes one sub-graph on concrete tensors. */
  execute?(inputs: (Tensor | null)[], attrs: A, graphs: Readonly<Record<string, Graph>>, run: RunSubgraph): Tensor[];
}

export type BackendName = 'reference' | 'cpu';

/** A sub-graph as a control-flow op's shape inference sees it: its input and output types. */
export interface GraphSignature { inputs: TensorMeta[]; outputs: TensorMeta[] }

/** How an executor runs one sub-graph on concrete tensors (the graph interpreter passes itself). */
export type RunSubgraph = (graph: Graph, inputs: Tensor[]) => Tensor[];

interface KernelEntry { kernel: Kernel<any>; supports?: (inputs: (Tensor | null)[], attrs: any) => boolean }

const ops = new Map<string, OpDef<any>>();
const kernels = new Map<string, Map<BackendName, KernelEntry>>();

export function defineOp<A extends object>(def: OpDef<A>): OpDef<A> {
  if (ops.has(def.name)) throw new Error(`defineOp: op "${def.name}" is already defined`);
  ops.set(def.name, def);
  registerKernel(def.name, 'reference', def.reference);
  return def;
}

export function getOp(name: string): OpDef<any> {
  const def = ops.get(name);
  if (!def) throw new Error(`unknown op "${name}"; registered ops: ${[...ops.keys()].sort().join(', ')}`);
  return def;
}

export const hasOp = (name: string): boolean => ops.has(name);
export const listOps = (): OpDef<any>[] => [...ops.values()];

/** Registers a backend kernel. `supports` lets a kernel decline inputs it does not handle (e.g. a
 *  dtype), in which case dispatch uses the next backend in priority order. */
export function registerKernel<A>(op: string, backend: BackendName, kernel: Kernel<A>, supports?: (inputs: (Tensor | null)[], attrs: A) => boolean): void {
  let m = kernels.get(op);
  if (!m) kernels.set(op, (m = new Map()));
  m.set(backend, { kernel, supports });
}

// Backends with native code register their kernels lazily: a backend module installs a loader
// (setKernelLoader) and the first lookup of that backend's kernels runs it, so which kernels exist
// never depends on which modules happened to be imported before the first op ran.
const loaders = new Map<BackendName, () => boolean>();
const loaded = new Map<BackendName, boolean>();

/** Installs how `backend` registers its kernels (returning whether it could); nothing runs yet. */
export function setKernelLoader(backend: BackendName, load: () => boolean): void {
  loaders.set(backend, load);
  loaded.delete(backend);
}

/** Runs `backend`'s kernel loader once; whether its kernels are available. Null while no loader is
 *  installed (the backend module is not linked in yet: ask again later). */
export function loadKernels(backend: BackendName): boolean | null {
  const done = loaded.get(backend);
  if (done !== undefined) return done;
  const load = loaders.get(backend);
  if (!load) return null;
  loaded.set(backend, false); // a loader that looks kernels up must not recurse
  const ok = load();
  loaded.set(backend, ok);
  return ok;
}

export function getKernel(op: string, backend: BackendName, inputs: (Tensor | null)[], attrs: unknown): Kernel<any> | undefined {
  if (!loaded.has(backend) && loaders.has(backend)) loadKernels(backend);
  const e = kernels.get(op)?.get(backend);
  if (!e) return undefined;
  if (e.supports && !e.supports(inputs, attrs)) return undefined;
  return e.kernel;
}

export function kernelBackends(op: string): BackendName[] {
  for (const b of loaders.keys()) if (!loaded.has(b)) loadKernels(b);
  return [...(kernels.get(op)?.keys() ?? [])];
}
