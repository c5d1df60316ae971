// The tracer's public surface: trace(fn, args, options) captures a function's tensor ops as an IR
// graph (parameters as named constants, non-tensor arguments folded in and reported as guards,
// dynamic dims symbolic); rebuildOutput() restores the function's return structure. Running a
// graph is the reference backend's job (src/backends/reference).
import { Tensor, GraphBreakError } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import { type Dim, formatShape } from '../tensor/shape.js';
import { Graph } from '../ir/graph.js';
import { DIM_NAME } from '../ir/dims.js';
import { TraceRun } from './tracer.js';
import { flattenArgs, canonicalTree } from './tree.js';
import { generalize, DIM_PRIMES, DynamicDimError, type DynamicDim } from './dynamic.js';

export { rebuildOutput, flattenArgs, canonicalTree, type TreeNode, type FlatArgs } from './tree.js';
export { DynamicDimError, solveDim } from './dynamic.js';
export { userSourceLine } from './source.js';
export { GraphBreakError } from '../tensor/tensor.js';

/** Shape (and optionally dtype) of one tensor input. A number is a static dim and must match the
 *  example; a name ("batch") or -1 (named automatically) marks the dim dynamic; equal names across
 *  inputs must have equal sizes. The one input spec type: trace(), inferenceJit's `inputSpec` and
 *  the ONNX exporters all take it. */
export interface InputSpec { shape: (number | string)[]; dtype?: DType }

export interface TraceOptions {
  /** One entry per tensor input (depth-first order of the arguments); null or absent = static. */
  inputSpec?: (InputSpec | null)[];
  /** Whose tensors become named parameter constants instead of literals. Buffers count too when
   *  the module has namedBuffers(). */
  module?: { namedParameters(): Iterable<[string, Tensor]>; namedBuffers?(): Iterable<[string, Tensor]> };
}

export interface TraceResult {
  graph: Graph;
  /** Parameter name -> the module's live tensor, for every parameter the graph uses. */
  constants: Map<string, Tensor>;
  guards: {
    /** Canonical JSON-able form of each argument (tensors as {"$tensor": i}); calls whose
     *  canonical forms (flattenArgs(args).trees.map(canonicalTree)) differ need another trace. */
    nonTensorArgs: unknown[];
    /** Names of the dynamic dims (in the order they were first met in the inputs). */
    dynamicDims: string[];
  };
  /** The function's return structure, for rebuildOutput(). */
  outputTree: unknown;
}

/** Traces `fn(...args)` into a graph. Tensor arguments (also nested in arrays and plain objects)
 *  become graph inputs in depth-first order; other arguments are folded in as constants. */
export function trace(fn: (...args: any[]) => unknown, args: unknown[], options: TraceOptions = {}): TraceResult {
  const flat = flattenArgs(args);
  const { symbolicShapes, dims } = resolveInputSpec(flat.tensors, flat.names, options.inputSpec);
  const params = collectParams(options.module);

  const exampleShapes = flat.tensors.map((t) => t.shape);
  const first = new TraceRun(params).run(fn, flat, exampleShapes);
  let graph = first.graph;
  if (dims.length === 0) {
    graph.inputs.forEach((inp, i) => { graph.value(inp.value).shape = [...symbolicShapes[i]]; });
  } else {
    const v2 = new Map(dims.map((d) => [d.name, d.v2]));
    const scaled = symbolicShapes.map((s) => s.map((d) => (typeof d === 'number' ? d : v2.get(d)!)));
    let second;
    try {
      second = new TraceRun(params).run(fn, flat, scaled);
    } catch (e) {
      if (e instanceof GraphBreakError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw new DynamicDimError(
        `trace: to make dims ${dims.map((d) => `"${d.name}"`).join(', ')} symbolic, the function is traced a second time with ${dims.map((d) => `${d.name}=${d.v2}`).join(', ')} ` +
        `(the example's ${dims.map((d) => `${d.name}=${d.v1}`).join(', ')} times a prime), and that failed: ${msg}. ` +
        `If the model only accepts some sizes (e.g. a position table of fixed length), mark the dim static.`);
    }
    graph = generalize(first, second, symbolicShapes, dims);
  }
  graph.verify();
  return {
    graph,
    constants: first.constants,
    guards: { nonTensorArgs: flat.trees.map(canonicalTree), dynamicDims: dims.map((d) => d.name) },
    outputTree: first.outputTree,
  };
}

function collectParams(module: TraceOptions['module']): Map<Tensor, string> {
  const params = new Map<Tensor, string>();
  if (!module) return params;
  const add = (entries: Iterable<[string, Tensor]>): void => {
    for (const [name, t] of entries) {
      if (!(t instanceof Tensor)) throw new TypeError(`trace: module parameter "${name}" is not a Tensor`);
      if (t.isSymbolic) throw new TypeError(`trace: module parameter "${name}" is a symbolic tensor (a traced value was stored on the module)`);
      if (!params.has(t)) params.set(t, name); // tied weights keep their first name
    }
  };
  add(module.namedParameters());
  if (typeof module.namedBuffers === 'function') add(module.namedBuffers());
  return params;
}

function resolveInputSpec(tensors: readonly Tensor[], names: readonly string[], spec: TraceOptions['inputSpec']):
  { symbolicShapes: Dim[][]; dims: DynamicDim[] } {
  if (spec !== undefined && !Array.isArray(spec)) throw new TypeError('trace: inputSpec must be an array with one entry per tensor input');
  if (spec && spec.length > tensors.length) {
    throw new RangeError(`trace: inputSpec has ${spec.length} entries but the call has ${tensors.length} tensor inputs (${names.join(', ') || 'none'})`);
  }
  const dims: DynamicDim[] = [];
  const firstSeen = new Map<string, string>();
  const symbolicShapes = tensors.map((t, i) => {
    const s = spec?.[i];
    const what = `inputSpec[${i}] (input "${names[i]}", ${t.dtype}${formatShape(t.shape)})`;
    if (s === null || s === undefined) return [...t.shape];
    if (s.dtype !== undefined && s.dtype !== t.dtype) throw new TypeError(`trace: ${what} asks for dtype ${s.dtype}`);
    if (!Array.isArray(s.shape) || s.shape.length !== t.rank) {
      throw new RangeError(`trace: ${what} has shape [${Array.isArray(s.shape) ? s.shape.join(', ') : s.shape}]: it must list ${t.rank} dims`);
    }
    return s.shape.map((d, k): Dim => {
      const got = t.shape[k];
      if (typeof d === 'number' && d !== -1) {
        if (d !== got) throw new RangeError(`trace: ${what}: dim ${k} is static ${d} in the spec but ${got} in the example`);
        return d;
      }
      let name: string;
      if (d === -1) {
        name = `${names[i].replace(/[^A-Za-z0-9_]/g, '_')}_dim${k}`;
      } else {
        if (typeof d !== 'string' || !DIM_NAME.test(d)) throw new TypeError(`trace: ${what}: dim ${k} is ${JSON.stringify(d)}; use a number (static), -1 or a name like "batch" (letters, digits, _)`);
        name = d;
      }
      const where = `input "${names[i]}" dim ${k}`;
      const known = dims.find((x) => x.name === name);
      if (known) {
        if (known.v1 !== got) throw new RangeError(`trace: dynamic dim "${name}" is ${known.v1} at ${firstSeen.get(name)} but ${got} at ${where} in the example inputs`);
      } else {
        if (got < 1) throw new RangeError(`trace: dynamic dim "${name}" (${where}) is ${got} in the example; trace with an example of size >= 1`);
        if (dims.length >= DIM_PRIMES.length) throw new RangeError(`trace: at most ${DIM_PRIMES.length} distinct dynamic dims are supported`);
        const prime = DIM_PRIMES[dims.length];
        dims.push({ name, v1: got, v2: got * prime, prime });
        firstSeen.set(name, where);
      }
      return name;
    });
  });
  return { symbolicShapes, dims };
}
