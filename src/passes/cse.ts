// Common-subexpression elimination: two nodes with the same op, attributes and inputs compute the
// same values, so later ones are replaced by the first (commutative binary ops compare their
// inputs as a set); identical literal constants are merged too. Safe because ops are pure and
// deterministic: equal inputs give equal outputs. Runs in one topological sweep, so chains of
// duplicates collapse in a single run.
import type { Graph } from '../ir/graph.js';
import { encodeNumber } from '../ir/graph.js';
import type { AttrValue } from '../ops/attrs.js';
import type { Pass } from './manager.js';
import { removeDeadNodes } from './rewrite.js';

const COMMUTATIVE = new Set(['add', 'mul', 'maximum', 'minimum', 'equal']);

function attrKey(attrs: Record<string, AttrValue>): string {
  return Object.keys(attrs).sort().map((k) => {
    const v = attrs[k];
    return `${k}=${JSON.stringify(Array.isArray(v) ? v.map((x) => (typeof x === 'number' ? encodeNumber(x) : x)) : typeof v === 'number' ? encodeNumber(v) : v)}`;
  }).join(';');
}

export function eliminateCommonSubexpressions(graph: Graph): number {
  const rename = new Map<number, number>();
  const resolve = (v: number): number => rename.get(v) ?? v;
  let merged = 0;
  // identical literals (the tracer only deduplicates small ones, and rewrites add more)
  const literalKeys = new Map<string, number>();
  for (const c of graph.constants) {
    if (c.kind !== 'literal') continue;
    const key = `${c.dtype}[${c.shape.join(',')}]${JSON.stringify((c.data ?? []).map(encodeNumber))}`;
    const first = literalKeys.get(key);
    if (first === undefined) literalKeys.set(key, c.value);
    else { rename.set(c.value, first); merged++; }
  }
  const seen = new Map<string, number[]>();
  for (const node of graph.nodes) {
    node.inputs = node.inputs.map((v) => (v === null ? null : resolve(v)));
    let ins = node.inputs.map((v) => (v === null ? '-' : String(v)));
    if (COMMUTATIVE.has(node.op) && ins.length === 2) ins = [...ins].sort();
    // control-flow nodes are equal only when their sub-graphs are too (canonical hash)
    const subs = node.graphs ? Object.keys(node.graphs).sort().map((k) => `${k}:${node.graphs![k].hash()}`).join(';') : '';
    const key = `${node.op}(${ins.join(',')}){${attrKey(node.attrs)}}${subs}`;
    const first = seen.get(key);
    if (first === undefined) { seen.set(key, node.outputs); continue; }
    node.outputs.forEach((v, i) => rename.set(v, first[i]));
    merged++;
  }
  for (const o of graph.outputs) o.value = resolve(o.value);
  if (merged > 0) removeDeadNodes(graph);
  return merged;
}

export const csePass: Pass = {
  name: 'cse',
  description: 'merge nodes that compute the same op on the same inputs, and identical literals',
  run: eliminateCommonSubexpressions,
};
