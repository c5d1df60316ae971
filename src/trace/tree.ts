// Argument and result structures of traced functions: tensors nested in arrays and plain objects are
// flattened into graph inputs/outputs, everything else is kept as a value, and a JSON-able canonical
// form of the non-tensor parts serves as a guard (same form -> same graph). This is the one argument
// flattener: the JIT's call signature (src/jit/signature.ts) is computed from the same trees.
import { Tensor } from '../tensor/tensor.js';
import { encodeNumber } from '../ir/graph.js';

/** The shape of a nested argument or result: where each tensor goes, and the other values. */
export type TreeNode =
  | { t: 'tensor'; i: number }
  | { t: 'array'; items: TreeNode[] }
  | { t: 'object'; entries: [string, TreeNode][] }
  | { t: 'value'; v: unknown };

const isPlainObject = (x: unknown): x is Record<string, unknown> => {
  if (typeof x !== 'object' || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
};

export interface FlatArgs {
  /** The tensors, depth first, in argument order: these become the graph inputs. */
  tensors: Tensor[];
  /** A path-like name per tensor ("arg0", "arg1[0]", "arg2.mask"). */
  names: string[];
  /** One tree per argument (canonicalTree gives each one's JSON-able guard form). */
  trees: TreeNode[];
}

/** Splits call arguments into tensors and a canonical description of everything else. */
export function flattenArgs(args: readonly unknown[]): FlatArgs {
  const tensors: Tensor[] = [];
  const names: string[] = [];
  const walk = (x: unknown, path: string, seen: Set<object>): TreeNode => {
    if (x instanceof Tensor) {
      tensors.push(x);
      names.push(path);
      return { t: 'tensor', i: tensors.length - 1 };
    }
    if (Array.isArray(x) || isPlainObject(x)) {
      if (seen.has(x)) throw new TypeError(`trace: argument ${path} contains a reference cycle; pass tree-shaped arguments`);
      seen.add(x);
      const node: TreeNode = Array.isArray(x)
        ? { t: 'array', items: x.map((v, i) => walk(v, `${path}[${i}]`, seen)) }
        : { t: 'object', entries: Object.keys(x).map((k) => [k, walk(x[k], `${path}.${k}`, seen)] as [string, TreeNode]) };
      seen.delete(x);
      return node;
    }
    if (containsTensor(x, new Set())) {
      throw new TypeError(`trace: argument ${path} is a ${className(x)} holding tensors; pass tensors directly or inside arrays and plain objects, so they become graph inputs`);
    }
    return { t: 'value', v: x };
  };
  const trees = args.map((a, i) => walk(a, `arg${i}`, new Set()));
  return { tensors, names, trees };
}

/** Rebuilds arguments with replacement tensors (the symbolic ones while tracing). */
export function rebuildTree(node: TreeNode, tensors: readonly Tensor[]): unknown {
  switch (node.t) {
    case 'tensor': return tensors[node.i];
    case 'array': return node.items.map((n) => rebuildTree(n, tensors));
    case 'object': return Object.fromEntries(node.entries.map(([k, n]) => [k, rebuildTree(n, tensors)]));
    case 'value': return node.v;
  }
}

/** Reconstructs a traced function's return structure from the graph's output tensors. */
export function rebuildOutput(outputTree: unknown, outputs: readonly Tensor[]): unknown {
  return rebuildTree(outputTree as TreeNode, outputs);
}

/** A JSON-able canonical form of a tree: equal forms mean equal non-tensor content. */
export function canonicalTree(node: TreeNode): unknown {
  switch (node.t) {
    case 'tensor': return { $tensor: node.i };
    case 'array': return node.items.map(canonicalTree);
    case 'object': return Object.fromEntries([...node.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, n]) => [k, canonicalTree(n)]));
    case 'value': return canonicalValue(node.v, new Set());
  }
}

/** Canonical JSON-able form of a non-tensor value: numbers that JSON cannot hold are spelled out,
 *  object keys sorted, functions and class instances described by name and content. */
export function canonicalValue(x: unknown, seen: Set<object>): unknown {
  switch (typeof x) {
    case 'number': return encodeNumber(x);
    case 'string': case 'boolean': return x;
    case 'undefined': return { $undefined: true };
    case 'bigint': return { $bigint: x.toString() };
    case 'symbol': return { $symbol: x.description ?? '' };
    case 'function': return { $function: x.name || '(anonymous)', source: hashText(x.toString()) };
  }
  if (x === null) return null;
  const o = x as object;
  if (seen.has(o)) return { $cycle: true };
  seen.add(o);
  let out: unknown;
  if (Array.isArray(o)) out = o.map((v) => canonicalValue(v, seen));
  else if (o instanceof Map) out = { $map: [...o.entries()].map(([k, v]) => [canonicalValue(k, seen), canonicalValue(v, seen)]) };
  else if (o instanceof Set) out = { $set: [...o].map((v) => canonicalValue(v, seen)) };
  else if (ArrayBuffer.isView(o)) out = { $typedArray: o.constructor.name, values: Array.from(o as unknown as ArrayLike<number | bigint>, (v) => canonicalValue(v, seen)) };
  else {
    const rec = o as Record<string, unknown>;
    const props = Object.fromEntries(Object.keys(rec).sort().map((k) => [k, canonicalValue(rec[k], seen)]));
    out = isPlainObject(o) ? props : { $class: className(o), props };
  }
  seen.delete(o);
  return out;
}

function containsTensor(x: unknown, seen: Set<object>): boolean {
  if (x instanceof Tensor) return true;
  if (typeof x !== 'object' || x === null || seen.has(x) || ArrayBuffer.isView(x)) return false;
  seen.add(x);
  const items = x instanceof Map ? [...x.values()] : x instanceof Set ? [...x] : Object.values(x);
  return items.some((v) => containsTensor(v, seen));
}

const className = (x: unknown): string => (x as object)?.constructor?.name ?? typeof x;

/** A short stable fingerprint of a function's text (FNV-1a), so two different functions passed as
 *  arguments do not look alike. */
function hashText(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h.toString(16).padStart(8, '0');
}
