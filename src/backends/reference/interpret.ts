// Runs a graph on concrete tensors, node by node through dispatch (so eager kernels compute it):
// the reference executor every compiled backend is checked against. Symbolic dims are bound from
// the inputs' shapes, and shape attributes are evaluated under those bindings.
import { Tensor } from '../../tensor/tensor.js';
import { fromNumbers } from '../../tensor/dtype.js';
import { formatShape } from '../../tensor/shape.js';
import { dispatch } from '../../ops/dispatch.js';
import { getOp } from '../../ops/registry.js';
import type { AttrValues } from '../../ops/attrs.js';
import { type Graph, type Constant, formatType } from '../../ir/graph.js';
import { DIM_NAME, evalDim, type DimBindings } from '../../ir/dims.js';

/** Checks inputs against the graph's inputs (count, dtype, rank, static dims) and binds every
 *  symbolic dim to one consistent value; throws naming the input and dim that disagree. */
export function bindInputs(graph: Graph, inputs: readonly Tensor[]): Map<string, number> {
  if (inputs.length !== graph.inputs.length) {
    throw new TypeError(`interpret: the graph takes ${graph.inputs.length} inputs (${graph.inputs.map((i) => i.name).join(', ')}), got ${inputs.length}`);
  }
  const bindings = new Map<string, number>();
  const boundAt = new Map<string, string>();
  const compound: [number, number][] = [];
  graph.inputs.forEach((inp, i) => {
    const t = inputs[i];
    const v = graph.value(inp.value);
    const what = `input ${i} ("${inp.name}")`;
    if (!(t instanceof Tensor)) throw new TypeError(`interpret: ${what} must be a Tensor, got ${typeof t}`);
    const expected = formatType(v.dtype, v.shape);
    if (t.dtype !== v.dtype) throw new TypeError(`interpret: ${what} has dtype ${t.dtype}; the graph expects ${expected}`);
    if (t.rank !== v.shape.length) throw new RangeError(`interpret: ${what} has shape ${formatShape(t.shape)} (rank ${t.rank}); the graph expects ${expected} (rank ${v.shape.length})`);
    v.shape.forEach((d, k) => {
      const got = t.shape[k];
      if (typeof d === 'number') {
        if (got !== d) throw new RangeError(`interpret: ${what} has shape ${formatShape(t.shape)}; the graph expects ${expected}: dim ${k} must be ${d}`);
      } else if (DIM_NAME.test(d)) {
        const prev = bindings.get(d);
        if (prev === undefined) { bindings.set(d, got); boundAt.set(d, `${what} dim ${k}`); }
        else if (prev !== got) {
          throw new RangeError(`interpret: ${what} has shape ${formatShape(t.shape)}; dim ${k} ("${d}") is ${got} but "${d}" is ${prev} from ${boundAt.get(d)}`);
        }
      } else compound.push([i, k]);
    });
  });
  // Dims like "2*seq" are checked once their symbols are bound by plain dims.
  for (const [i, k] of compound) {
    const d = graph.value(graph.inputs[i].value).shape[k];
    const want = evalDim(d, bindings);
    const got = inputs[i].shape[k];
    if (want !== got) throw new RangeError(`interpret: input ${i} ("${graph.inputs[i].name}") has shape ${formatShape(inputs[i].shape)}; dim ${k} ("${d}") must be ${want}`);
  }
  return bindings;
}

const literalTensors = new WeakMap<Constant, Tensor>();

/** The tensor of a literal constant (built once per constant). */
export function literalTensor(c: Constant): Tensor {
  let t = literalTensors.get(c);
  if (!t) {
    t = Tensor.fromStorage(c.dtype, c.shape as number[], fromNumbers(c.dtype, c.data ?? []));
    literalTensors.set(c, t);
  }
  return t;
}

/** Shape attributes ('dims') with their symbolic dims replaced by values. */
export function concreteAttrs(op: string, attrs: AttrValues, bindings: DimBindings): AttrValues {
  const schema = getOp(op).attrs;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(attrs)) {
    if (schema[k]?.type === 'dims' && Array.isArray(v) && v.some((d) => typeof d === 'string')) {
      out ??= { ...attrs };
      out[k] = v.map((d) => evalDim(d, bindings));
    }
  }
  return (out ?? attrs) as AttrValues;
}

/** Each constant's tensor by value id: literals from the graph, parameters from `constants`
 *  (checked against the type the graph was traced with). */
export function constantTensors(graph: Graph, bindings: DimBindings, constants: ReadonlyMap<string, Tensor>): Map<number, Tensor> {
  const out = new Map<number, Tensor>();
  for (const c of graph.constants) {
    if (c.kind === 'literal') { out.set(c.value, literalTensor(c)); continue; }
    const t = constants.get(c.name);
    if (!t) throw new Error(`interpret: parameter @${c.name} is not in the constants map (it holds ${[...constants.keys()].slice(0, 8).join(', ') || 'nothing'}${constants.size > 8 ? ', ...' : ''})`);
    const want = c.shape.map((d) => evalDim(d, bindings));
    if (t.dtype !== c.dtype || t.rank !== want.length || t.shape.some((d, k) => d !== want[k])) {
      throw new TypeError(`interpret: parameter @${c.name} is ${t.dtype}${formatShape(t.shape)} but the graph was traced with ${formatType(c.dtype, c.shape)}`);
    }
    out.set(c.value, t);
  }
  return out;
}

/** Executes `graph` on concrete `inputs`; `constants` maps parameter names to tensors (literals
 *  come from the graph itself). Returns the outputs in graph.outputs order. */
export function interpret(graph: Graph, inputs: readonly Tensor[], constants: ReadonlyMap<string, Tensor>): Tensor[] {
  const bindings = bindInputs(graph, inputs);
  const env = new Map<number, Tensor>();
  graph.inputs.forEach((inp, i) => env.set(inp.value, inputs[i]));
  for (const [v, t] of constantTensors(graph, bindings, constants)) env.set(v, t);
  // Drop intermediates after their last use so peak memory follows liveness, not graph size.
  const lastUse = new Map<number, number>();
  graph.nodes.forEach((n, i) => { for (const v of n.inputs) if (v !== null) lastUse.set(v, i); });
  const keep = new Set(graph.outputs.map((o) => o.value));

  graph.nodes.forEach((node, i) => {
    const ins = node.inputs.map((v) => {
      if (v === null) return null;
      const t = env.get(v);
      if (!t) throw new Error(`interpret: ${nodeWhere(node, i)} reads %${v}, which has no value (verify() the graph)`);
      return t;
    });
    runNode(graph, i, ins, bindings, constants).forEach((t, j) => env.set(node.outputs[j], t));
    for (const v of node.inputs) if (v !== null && lastUse.get(v) === i && !keep.has(v)) env.delete(v);
  });
  return graph.outputs.map((o) => {
    const t = env.get(o.value);
    if (!t) throw new Error(`interpret: output "${o.name}" (%${o.value}) has no value (verify() the graph)`);
    return t;
  });
}

const nodeWhere = (node: Graph['nodes'][number], i: number): string => `node ${i} (${node.op}${node.source ? ` at ${node.source}` : ''})`;

/** Runs node `i` of `graph` on its input tensors through dispatch (control-flow nodes run their
 *  sub-graphs through interpret) and checks each output against the graph's recorded type. */
export function runNode(graph: Graph, i: number, ins: (Tensor | null)[], bindings: DimBindings, constants: ReadonlyMap<string, Tensor>): Tensor[] {
  const node = graph.nodes[i];
  const where = nodeWhere(node, i);
  let outs: Tensor[];
  try {
    // control-flow nodes (src/ops/control.ts) run their sub-graphs through this interpreter
    const control = node.graphs ? getOp(node.op).execute : undefined;
    outs = control
      ? control(ins, concreteAttrs(node.op, node.attrs, bindings), node.graphs!, (g, xs) => interpret(g, xs, constants))
      : dispatch(node.op, ins, concreteAttrs(node.op, node.attrs, bindings));
  } catch (e) {
    if (e instanceof Error) e.message = `interpret: ${where}: ${e.message}`;
    throw e;
  }
  if (outs.length !== node.outputs.length) throw new Error(`interpret: ${where} produced ${outs.length} outputs; the graph records ${node.outputs.length}`);
  node.outputs.forEach((id, j) => {
    const v = graph.value(id);
    const want = v.shape.map((d) => evalDim(d, bindings));
    const t = outs[j];
    if (t.dtype !== v.dtype || t.rank !== want.length || t.shape.some((d, k) => d !== want[k])) {
      throw new Error(`interpret: ${where} output ${j} is ${t.dtype}${formatShape(t.shape)}; the graph records ${formatType(v.dtype, v.shape)} = ${v.dtype}${formatShape(want)}`);
    }
  });
  return outs;
}
