// ONNX export of the control-flow ops (src/ops/control.ts): cond -> If, while_loop -> Loop.
// Our sub-graphs are closed (explicit inputs), ONNX's see the outer scope instead, so a branch's
// inputs are simply bound to the outer names of the node's operands. Before export, constants of
// sub-graphs are lifted into the outer graph as extra operands (liftSubgraphConstants), so every
// initializer lives at the top level where parameters are written once.
//  - If: then_branch/else_branch graphs with no inputs; outputs go through Identity so each branch
//    produces its own names.
//  - Loop(M = none, cond = the condition on the initial values, carried...): the body graph takes
//    (iteration, cond_in, carried...), runs our body, then our condition on the new values, and
//    returns (cond_out, new carried...). ONNX's Loop re-checks cond_out before each next iteration,
//    which is exactly `while (cond) body`.
import { Graph, type Node } from '../../ir/graph.js';
import { DIM_NAME } from '../../ir/dims.js';
import type { DType } from '../../tensor/dtype.js';
import type { Dim } from '../../tensor/shape.js';
import { getOnnxMapping } from '../mapping.js';
import type { OnnxBuilder } from '../context.js';
import { AttributeType, onnxDataType, type GraphProtoObject, type NodeProtoObject, type ValueInfoProtoObject } from '../proto.js';

function valueInfo(name: string, dtype: DType, shape: readonly Dim[]): ValueInfoProtoObject {
  return {
    name,
    type: { tensor_type: { elem_type: onnxDataType(dtype), shape: { dim: shape.map((d) => (typeof d === 'number' ? { dim_value: d } : DIM_NAME.test(d) ? { dim_param: d } : {})) } } },
  };
}

// ---- lifting sub-graph constants ----

/** A copy of `graph` in which no sub-graph (at any depth) holds constants: each one becomes an
 *  extra operand of its control node, read from a constant of the enclosing graph (parameters by
 *  name, literals by value). The graph computes the same thing. */
export function liftSubgraphConstants(graph: Graph): Graph {
  const g = graph.clone();
  liftInPlace(g);
  return g;
}

function liftInPlace(g: Graph): void {
  for (const node of g.nodes) {
    if (!node.graphs) continue;
    const subs = Object.values(node.graphs);
    for (const s of subs) liftInPlace(s);
    // one extra operand per distinct constant across the node's sub-graphs
    const keyOf = (c: Graph['constants'][number]): string => (c.kind === 'param' ? `param:${c.name}` : `lit:${c.dtype}[${c.shape.join(',')}]${JSON.stringify(c.data)}`);
    const extra = new Map<string, number>(); // key -> outer value id
    for (const s of subs) {
      for (const c of s.constants) {
        const key = keyOf(c);
        if (extra.has(key)) continue;
        const existing = g.constants.find((o) => keyOf(o) === key);
        let id = existing?.value;
        if (id === undefined) {
          const taken = new Set(g.constants.map((o) => o.name));
          let name = c.name;
          for (let i = 1; taken.has(name); i++) name = `${c.name}_${i}`;
          id = g.addConstant({ name, kind: c.kind, dtype: c.dtype, shape: c.shape, ...(c.data ? { data: c.data } : {}) });
        }
        extra.set(key, id);
      }
    }
    if (extra.size === 0) continue;
    const keys = [...extra.keys()];
    const base = node.inputs.length - (node.op === 'cond' ? 1 : 0);
    for (const s of subs) {
      const mine = new Map(s.constants.map((c) => [keyOf(c), c.value]));
      keys.forEach((key, k) => {
        const outer = g.meta(extra.get(key)!);
        const v = mine.get(key) ?? s.addValue(outer.dtype, outer.shape);
        s.inputs.push({ name: `lifted${base + k}`, value: v });
      });
      s.constants = [];
    }
    node.inputs.push(...keys.map((k) => extra.get(k)!));
  }
}

// ---- emitting ----

/** Emits the nodes of closed graph `s` into the builder, its inputs bound to `inputNames`;
 *  returns the ONNX names of its outputs. `s` must hold no constants (lift them first). */
function emitGraphNodes(b: OnnxBuilder, s: Graph, inputNames: readonly string[]): string[] {
  if (s.constants.length > 0) throw new Error('onnx export: a sub-graph still holds constants (liftSubgraphConstants first; internal error)');
  const names = new Map<number, string>();
  s.inputs.forEach((inp, i) => names.set(inp.value, inputNames[i]));
  const savedScope = b.scope, savedDoc = b.doc;
  s.nodes.forEach((node, index) => {
    const inNames = node.inputs.map((id) => (id === null ? null : names.get(id)!));
    const ins = node.inputs.map((id) => (id === null ? null : s.meta(id)));
    const outs = node.outputs.map((id) => s.meta(id));
    b.scope = `${savedScope}/${node.op}_${index}`;
    b.doc = node.source;
    const result = node.graphs ? exportControlNode(b, node, inNames as string[], s) : getOnnxMapping(node.op)(b, inNames, node.attrs, outs, ins);
    node.outputs.forEach((id, k) => names.set(id, result[k]));
  });
  b.scope = savedScope;
  b.doc = savedDoc;
  return s.outputs.map((o) => names.get(o.value)!);
}

/** A GraphProto for sub-graph `s`, its inputs bound to outer names; outputs through Identity. */
function branchGraph(b: OnnxBuilder, s: Graph, inputNames: readonly string[], label: string): GraphProtoObject {
  const { value: outputs, nodes } = b.nested(() => {
    const inner = emitGraphNodes(b, s, inputNames);
    return inner.map((n, i) => b.node1('Identity', [n]));
  });
  return {
    name: b.fresh(label),
    node: nodes,
    initializer: [],
    input: [],
    output: outputs.map((n, i) => { const m = s.meta(s.outputs[i].value); return valueInfo(n, m.dtype, m.shape); }),
  };
}

function attachGraph(node: NodeProtoObject, name: string, g: GraphProtoObject): void {
  (node.attribute ??= []).push({ name, type: AttributeType.GRAPH, g });
}

/** Emits a cond / while_loop node (operand names `inNames`); returns its output names. */
export function exportControlNode(b: OnnxBuilder, node: Node, inNames: readonly string[], graph: Graph): string[] {
  const graphs = node.graphs!;
  if (node.op === 'cond') {
    const operands = inNames.slice(1);
    const thenG = branchGraph(b, graphs.then, operands, 'then_branch');
    const elseG = branchGraph(b, graphs.else, operands, 'else_branch');
    const outs = b.node('If', [inNames[0]], {}, { outputs: node.outputs.length });
    const ifNode = b.nodes[b.nodes.length - 1];
    attachGraph(ifNode, 'then_branch', thenG);
    attachGraph(ifNode, 'else_branch', elseG);
    return outs;
  }
  if (node.op === 'while_loop') {
    const k = node.attrs.carried as number;
    const carried = inNames.slice(0, k), invariants = inNames.slice(k);
    const [first] = emitGraphNodes(b, graphs.cond, [...carried, ...invariants]);
    const iter = b.fresh('iter'), condIn = b.fresh('cond_in');
    const carriedIn = carried.map((_, i) => b.fresh(`carried_in${i}`));
    const { value: outputs, nodes } = b.nested(() => {
      const next = emitGraphNodes(b, graphs.body, [...carriedIn, ...invariants]);
      const [again] = emitGraphNodes(b, graphs.cond, [...next, ...invariants]);
      return [again, ...next].map((n) => b.node1('Identity', [n]));
    });
    const types = node.outputs.map((id) => graph.meta(id));
    const body: GraphProtoObject = {
      name: b.fresh('loop_body'),
      node: nodes,
      initializer: [],
      input: [valueInfo(iter, 'i64', []), valueInfo(condIn, 'bool', []), ...carriedIn.map((n, i) => valueInfo(n, types[i].dtype, types[i].shape))],
      output: [valueInfo(outputs[0], 'bool', []), ...outputs.slice(1).map((n, i) => valueInfo(n, types[i].dtype, types[i].shape))],
    };
    const outs = b.node('Loop', ['', first, ...carried], {}, { outputs: k });
    attachGraph(b.nodes[b.nodes.length - 1], 'body', body);
    return outs;
  }
  throw new Error(`onnx export: node ${node.op} has sub-graphs but no ONNX control-flow mapping`);
}
