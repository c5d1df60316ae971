// The graph IR: a plain SSA graph of typed, shaped values and op nodes, with named inputs, outputs
// and constants (parameters by module path, literals by value). It verifies itself, prints as
// readable text, round-trips through JSON exactly and hashes canonically.
import { createHash } from 'node:crypto';
import { type DType, isDType } from '../tensor/dtype.js';
import type { Dim } from '../tensor/shape.js';
import { type AttrValue, type AttrValues, normalizeAttrs } from '../ops/attrs.js';
import { hasOp, getOp, type TensorMeta, type GraphSignature } from '../ops/registry.js';
import { canonicalDim, shapesEqual } from './dims.js';

export interface Value {
  readonly id: number;
  dtype: DType;
  shape: Dim[];
}

export interface Node {
  op: string;
  /** Value ids; null for an absent optional input. */
  inputs: (number | null)[];
  attrs: AttrValues;
  outputs: number[];
  /** Where the user's code called the op (file:line:col); not part of the hash. */
  source?: string;
  /** Sub-graphs of a control-flow op (cond: then/else; while_loop: cond/body), by role name.
   *  Each is a closed graph: it reads only its own inputs and constants, never outer values, so
   *  passes and executors treat it as an ordinary graph (src/ops/control.ts has the op rules). */
  graphs?: Record<string, Graph>;
}

/** A graph input. `state` marks persistent storage owned by a compiled session (an LLM's KV page
 *  pools): ops that write in place (OpDef.writesInto, e.g. kv_write) may only write into state, and
 *  the lowering binds it to the caller's tensor instead of copying it. */
export interface GraphInput { name: string; value: number; state?: boolean }
export interface GraphOutput { name: string; value: number }

export type ConstantKind = 'param' | 'literal';
export interface Constant {
  /** Parameters: the module path ("blocks.0.ln1.weight"); literals: a generated name ("lit0"). */
  name: string;
  value: number;
  kind: ConstantKind;
  dtype: DType;
  shape: Dim[];
  /** Literal values only (small tensors created inside forward), element order row-major;
   *  bool as 0/1, i64 as numbers. Parameters are looked up by name at run time. */
  data?: number[];
}

export const IR_FORMAT = 'inferjit.ir';
export const IR_VERSION = 1;

/** The JSON form of a graph. Numbers JSON cannot hold (NaN, ±Infinity, -0) are written as
 *  {"$f": "NaN" | "Infinity" | "-Infinity" | "-0"}. */
export interface GraphJSON {
  format: typeof IR_FORMAT;
  version: number;
  values: { id: number; dtype: DType; shape: Dim[] }[];
  inputs: GraphInput[];
  outputs: GraphOutput[];
  constants: { name: string; value: number; kind: ConstantKind; dtype: DType; shape: Dim[]; data?: JSONNumber[] }[];
  nodes: { op: string; inputs: (number | null)[]; attrs: Record<string, JSONAttr>; outputs: number[]; source?: string; graphs?: Record<string, GraphJSON> }[];
}
export type JSONNumber = number | { $f: string };
export type JSONAttr = JSONNumber | boolean | string | (JSONNumber | string)[];

export class GraphVerifyError extends Error {
  constructor(message: string) {
    super(`Graph.verify: ${message}`);
    this.name = 'GraphVerifyError';
  }
}

export class Graph {
  readonly values = new Map<number, Value>();
  nodes: Node[] = [];
  inputs: GraphInput[] = [];
  outputs: GraphOutput[] = [];
  constants: Constant[] = [];
  private nextId = 0;

  // ---- building ----

  /** Adds a value (not yet defined by anything) and returns its id. */
  addValue(dtype: DType, shape: readonly Dim[]): number {
    while (this.values.has(this.nextId)) this.nextId++;
    const id = this.nextId++;
    this.values.set(id, { id, dtype, shape: [...shape] });
    return id;
  }

  /** The value with this id; throws when there is none. */
  value(id: number): Value {
    const v = this.values.get(id);
    if (!v) throw new RangeError(`Graph: no value %${id}`);
    return v;
  }

  meta(id: number): TensorMeta {
    const v = this.value(id);
    return { dtype: v.dtype, shape: v.shape };
  }

  addInput(name: string, dtype: DType, shape: readonly Dim[]): number {
    const value = this.addValue(dtype, shape);
    this.inputs.push({ name, value });
    return value;
  }

  addConstant(c: Omit<Constant, 'value' | 'shape' | 'data'> & { shape: readonly Dim[]; data?: readonly number[] }): number {
    const value = this.addValue(c.dtype, c.shape);
    const constant: Constant = { name: c.name, value, kind: c.kind, dtype: c.dtype, shape: [...c.shape] };
    if (c.data) constant.data = [...c.data];
    this.constants.push(constant);
    return value;
  }

  /** Appends a node whose outputs are new values of the given metas; returns their ids. */
  addNode(op: string, inputs: readonly (number | null)[], attrs: AttrValues, outputs: readonly TensorMeta[], source?: string): number[] {
    const outs = outputs.map((m) => this.addValue(m.dtype, m.shape));
    const node: Node = { op, inputs: [...inputs], attrs, outputs: outs };
    if (source !== undefined) node.source = source;
    this.nodes.push(node);
    // An in-place write straight into a graph input makes that input session state.
    const w = hasOp(op) ? getOp(op).writesInto : undefined;
    const target = w === undefined ? null : inputs[w];
    if (target !== null && target !== undefined) {
      const inp = this.inputs.find((i) => i.value === target);
      if (inp) inp.state = true;
    }
    return outs;
  }

  addOutput(name: string, value: number): void {
    this.outputs.push({ name, value });
  }

  /** Makes every use of `from` (node inputs and graph outputs) use `to` instead; returns the count. */
  replaceAllUsesWith(from: number, to: number): number {
    let n = 0;
    for (const node of this.nodes) {
      node.inputs = node.inputs.map((v) => (v === from ? (n++, to) : v));
    }
    for (const o of this.outputs) if (o.value === from) { o.value = to; n++; }
    return n;
  }

  /** For every value, the nodes that read it (in node order). */
  users(): Map<number, Node[]> {
    const m = new Map<number, Node[]>();
    for (const node of this.nodes) {
      for (const v of node.inputs) {
        if (v === null) continue;
        let list = m.get(v);
        if (!list) m.set(v, (list = []));
        if (!list.includes(node)) list.push(node);
      }
    }
    return m;
  }

  /** The node defining each value (values defined by inputs and constants are absent). */
  producers(): Map<number, Node> {
    const m = new Map<number, Node>();
    for (const node of this.nodes) for (const v of node.outputs) m.set(v, node);
    return m;
  }

  constantByValue(): Map<number, Constant> {
    return new Map(this.constants.map((c) => [c.value, c]));
  }

  clone(): Graph { return Graph.fromJSON(this.toJSON()); }

  // ---- verification ----

  /** Checks the graph is well formed; throws a GraphVerifyError naming the first problem. */
  verify(): void {
    const fail = (msg: string): never => { throw new GraphVerifyError(msg); };
    for (const [id, v] of this.values) {
      if (v.id !== id) fail(`value stored under %${id} says its id is ${v.id}`);
      if (!isDType(v.dtype)) fail(`value %${id} has unknown dtype ${JSON.stringify(v.dtype)}`);
      checkShape(v.shape, `value %${id}`, fail);
    }
    const definedBy = new Map<number, string>();
    const define = (id: number, by: string): void => {
      if (!this.values.has(id)) fail(`${by} defines %${id}, which is not a value of the graph (dangling)`);
      const prev = definedBy.get(id);
      if (prev !== undefined) fail(`value %${id} is defined twice: by ${prev} and by ${by} (SSA allows one definition)`);
      definedBy.set(id, by);
    };
    const inputNames = new Set<string>();
    this.inputs.forEach((inp, i) => {
      if (inputNames.has(inp.name)) fail(`two inputs are named "${inp.name}"`);
      inputNames.add(inp.name);
      define(inp.value, `input ${i} ("${inp.name}")`);
    });
    const constNames = new Set<string>();
    for (const c of this.constants) {
      const what = `constant @${c.name}`;
      if (constNames.has(c.name)) fail(`two constants are named "${c.name}"`);
      constNames.add(c.name);
      define(c.value, what);
      const v = this.values.get(c.value)!;
      if (v.dtype !== c.dtype || !shapesEqual(v.shape, c.shape)) {
        fail(`${what} is ${c.dtype}[${c.shape.join(', ')}] but its value %${c.value} is ${v.dtype}[${v.shape.join(', ')}]`);
      }
      if (c.kind === 'literal') {
        if (!c.data) fail(`literal ${what} has no data`);
        if (!c.shape.every((d) => typeof d === 'number')) fail(`literal ${what} has a symbolic shape [${c.shape.join(', ')}]`);
        const n = (c.shape as number[]).reduce((a, b) => a * b, 1);
        if (c.data!.length !== n) fail(`literal ${what} holds ${c.data!.length} values but its shape [${c.shape.join(', ')}] needs ${n}`);
      } else if (c.kind === 'param') {
        if (c.data !== undefined) fail(`parameter ${what} carries data; parameters are referenced by name, never stored in the graph`);
      } else fail(`${what} has unknown kind ${JSON.stringify(c.kind)}`);
    }
    this.nodes.forEach((node, i) => {
      const where = `node ${i} (${node.op}${node.source ? ` at ${node.source}` : ''})`;
      if (!hasOp(node.op)) fail(`${where}: unknown op "${node.op}"`);
      const def = getOp(node.op);
      node.inputs.forEach((v, j) => {
        if (v === null) return;
        if (!this.values.has(v)) fail(`${where}: input ${j} refers to %${v}, which is not a value of the graph (dangling)`);
        if (!definedBy.has(v)) {
          const later = this.nodes.findIndex((n) => n.outputs.includes(v));
          fail(later >= 0
            ? `${where}: input ${j} uses %${v} before it is defined (by node ${later}, ${this.nodes[later].op}); nodes must be in topological order`
            : `${where}: input ${j} uses %${v}, which nothing defines`);
        }
      });
      checkArity(def.inputs, node.inputs, where, fail);
      if (node.outputs.length === 0) fail(`${where}: has no outputs`);
      node.outputs.forEach((v) => define(v, where));
      let attrs: AttrValues;
      try { attrs = normalizeAttrs(def.name, def.attrs, node.attrs as Record<string, unknown>); }
      catch (e) { return fail(`${where}: bad attributes: ${(e as Error).message}`); }
      const expected = def.graphNames ?? [];
      const got = Object.keys(node.graphs ?? {});
      if (expected.length !== got.length || expected.some((n) => !got.includes(n))) {
        fail(`${where}: has sub-graphs [${got.join(', ')}] but the op takes [${expected.join(', ')}]`);
      }
      const signatures: Record<string, GraphSignature> = {};
      for (const name of expected) {
        const sub = node.graphs![name];
        if (!(sub instanceof Graph)) fail(`${where}: sub-graph "${name}" is not a Graph`);
        try { sub.verify(); } catch (e) { return fail(`${where}: sub-graph "${name}": ${(e as Error).message.replace(/^Graph\.verify: /, '')}`); }
        signatures[name] = signatureOf(sub);
      }
      let metas: TensorMeta[];
      try {
        const ins = node.inputs.map((v) => (v === null ? null : this.meta(v)));
        metas = def.inferGraphs ? def.inferGraphs(ins, attrs, signatures) : def.infer(ins, attrs);
      } catch (e) { return fail(`${where}: shape inference fails on the recorded inputs: ${(e as Error).message}`); }
      if (metas.length !== node.outputs.length) fail(`${where}: records ${node.outputs.length} outputs but inference gives ${metas.length}`);
      metas.forEach((m, j) => {
        const v = this.values.get(node.outputs[j])!;
        if (m.dtype !== v.dtype || !shapesEqual(m.shape, v.shape)) {
          fail(`${where}: output ${j} (%${v.id}) is recorded as ${v.dtype}[${v.shape.join(', ')}] but inference gives ${m.dtype}[${m.shape.join(', ')}]`);
        }
      });
    });
    this.verifyInPlaceWrites(fail);
    const outNames = new Set<string>();
    for (const o of this.outputs) {
      if (outNames.has(o.name)) fail(`two outputs are named "${o.name}"`);
      outNames.add(o.name);
      if (!this.values.has(o.value)) fail(`output "${o.name}" refers to %${o.value}, which is not a value of the graph (dangling)`);
      if (!definedBy.has(o.value)) fail(`output "${o.name}" refers to %${o.value}, which nothing defines`);
    }
    for (const id of this.values.keys()) {
      if (!definedBy.has(id)) fail(`value %${id} is never defined (dangling: no input, constant or node produces it)`);
    }
  }

  /** In-place writes (ops with OpDef.writesInto): the written value must be session state (a graph
   *  input flagged state, or the result of an earlier in-place write into state), the result aliases
   *  it (same dtype and shape), and nothing reads the overwritten value after the write. */
  private verifyInPlaceWrites(fail: (m: string) => never): void {
    const stateInputs = new Set(this.inputs.filter((i) => i.state).map((i) => i.value));
    const aliasOfState = new Set(stateInputs);
    const readAt = new Map<number, number[]>();
    this.nodes.forEach((n, i) => { for (const v of n.inputs) if (v !== null) readAt.set(v, [...(readAt.get(v) ?? []), i]); });
    this.nodes.forEach((node, i) => {
      const w = getOp(node.op).writesInto;
      if (w === undefined) return;
      const where = `node ${i} (${node.op}${node.source ? ` at ${node.source}` : ''})`;
      const target = node.inputs[w];
      if (target === null || target === undefined) return fail(`${where}: writes in place into input ${w}, which is absent`);
      if (!aliasOfState.has(target)) {
        fail(`${where}: writes in place into %${target}, which is not session state; pass the storage as a graph input `
          + '(it is flagged state when an in-place op writes into it) or as the result of an earlier in-place write');
      }
      const src = this.value(target), out = this.value(node.outputs[0]);
      if (src.dtype !== out.dtype || !shapesEqual(src.shape, out.shape)) {
        fail(`${where}: result %${out.id} ${out.dtype}[${out.shape.join(', ')}] must alias the state it writes, %${src.id} ${src.dtype}[${src.shape.join(', ')}]`);
      }
      const later = (readAt.get(target) ?? []).find((j) => j > i);
      if (later !== undefined) {
        fail(`${where}: node ${later} (${this.nodes[later].op}) reads %${target} after this node overwrote it in place; read the write's result %${out.id} instead`);
      }
      if (this.outputs.some((o) => o.value === target)) fail(`${where}: %${target} is a graph output but is overwritten in place; return the write's result instead`);
      aliasOfState.add(node.outputs[0]);
    });
  }

  // ---- printing ----

  /** Readable text, one line per input, constant, node and output. Deterministic: the same graph
   *  always prints the same text. `source: false` leaves out the `# file:line` comments. */
  print(options: { source?: boolean } = {}): string {
    const withSource = options.source ?? true;
    const constOf = this.constantByValue();
    const ref = (v: number | null): string => {
      if (v === null) return 'none';
      const c = constOf.get(v);
      return c ? `@${c.name}` : `%${v}`;
    };
    const typed = (id: number): string => {
      const v = this.values.get(id);
      return v ? `%${id}: ${formatType(v.dtype, v.shape)}` : `%${id}: ?`;
    };
    const lines: string[] = ['graph {'];
    for (const inp of this.inputs) lines.push(`  input ${typed(inp.value)}  "${inp.name}"${inp.state ? ' state' : ''}`);
    for (const c of this.constants) {
      const data = c.kind === 'literal' && c.data ? ` = ${formatData(c.data, c.shape)}` : '';
      lines.push(`  ${c.kind} @${c.name} ${typed(c.value)}${data}`);
    }
    for (const node of this.nodes) {
      const attrs = Object.entries(node.attrs);
      const attrText = attrs.length ? ` {${attrs.map(([k, v]) => `${k}=${formatAttr(v)}`).join(', ')}}` : '';
      const src = withSource && node.source ? `  # ${node.source}` : '';
      lines.push(`  ${node.outputs.map(typed).join(', ')} = ${node.op}(${node.inputs.map(ref).join(', ')})${attrText}${src}`);
      // sub-graphs print nested under their node, indented, each introduced by its role name
      for (const [name, sub] of Object.entries(node.graphs ?? {})) {
        const body = sub.print(options).split('\n');
        lines.push(`    ${name}: ${body[0]}`, ...body.slice(1).map((l) => `    ${l}`));
      }
    }
    lines.push(`  return ${this.outputs.map((o) => `${ref(o.value)} "${o.name}"`).join(', ')}`);
    lines.push('}');
    return lines.join('\n');
  }

  toString(): string { return this.print(); }

  // ---- serialization ----

  toJSON(): GraphJSON {
    return {
      format: IR_FORMAT,
      version: IR_VERSION,
      values: [...this.values.values()].map((v) => ({ id: v.id, dtype: v.dtype, shape: [...v.shape] })),
      inputs: this.inputs.map((i) => (i.state ? { name: i.name, value: i.value, state: true } : { name: i.name, value: i.value })),
      outputs: this.outputs.map((o) => ({ name: o.name, value: o.value })),
      constants: this.constants.map((c) => {
        const out: GraphJSON['constants'][number] = { name: c.name, value: c.value, kind: c.kind, dtype: c.dtype, shape: [...c.shape] };
        if (c.data) out.data = c.data.map(encodeNumber);
        return out;
      }),
      nodes: this.nodes.map((n) => {
        const attrs: Record<string, JSONAttr> = {};
        for (const [k, v] of Object.entries(n.attrs)) attrs[k] = encodeAttr(v);
        const out: GraphJSON['nodes'][number] = { op: n.op, inputs: [...n.inputs], attrs, outputs: [...n.outputs] };
        if (n.source !== undefined) out.source = n.source;
        if (n.graphs) out.graphs = Object.fromEntries(Object.entries(n.graphs).map(([k, g]) => [k, g.toJSON()]));
        return out;
      }),
    };
  }

  /** Rebuilds a graph from toJSON()'s output (or its JSON.parse'd text). Checks the format and
   *  field types; call verify() for semantic checks. */
  static fromJSON(json: unknown): Graph {
    const fail = (msg: string): never => { throw new TypeError(`Graph.fromJSON: ${msg}`); };
    const obj = (x: unknown, what: string): Record<string, unknown> =>
      (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : fail(`${what} must be an object`));
    const arr = (x: unknown, what: string): unknown[] => (Array.isArray(x) ? x : fail(`${what} must be an array`));
    const int = (x: unknown, what: string): number => (Number.isInteger(x) ? (x as number) : fail(`${what} must be an integer, got ${JSON.stringify(x)}`));
    const str = (x: unknown, what: string): string => (typeof x === 'string' ? x : fail(`${what} must be a string, got ${JSON.stringify(x)}`));
    const dtype = (x: unknown, what: string): DType => (isDType(x) ? x : fail(`${what} must be a dtype name, got ${JSON.stringify(x)}`));
    const shape = (x: unknown, what: string): Dim[] =>
      arr(x, what).map((d, i) => (Number.isInteger(d) || (typeof d === 'string' && d.length > 0) ? (d as Dim) : fail(`${what}[${i}] must be an integer or a dim name, got ${JSON.stringify(d)}`)));
    const named = (x: unknown, what: string): { name: string; value: number } => {
      const o = obj(x, what);
      return { name: str(o.name, `${what}.name`), value: int(o.value, `${what}.value`) };
    };

    const root = obj(json, 'the graph');
    if (root.format !== IR_FORMAT) fail(`not an inferjit graph (format is ${JSON.stringify(root.format)}, expected "${IR_FORMAT}")`);
    if (root.version !== IR_VERSION) fail(`graph format version ${JSON.stringify(root.version)} is not supported (this build reads version ${IR_VERSION})`);
    const g = new Graph();
    let maxId = -1;
    arr(root.values, 'values').forEach((x, i) => {
      const o = obj(x, `values[${i}]`);
      const id = int(o.id, `values[${i}].id`);
      if (g.values.has(id)) fail(`values[${i}]: id ${id} appears twice`);
      g.values.set(id, { id, dtype: dtype(o.dtype, `values[${i}].dtype`), shape: shape(o.shape, `values[${i}].shape`) });
      maxId = Math.max(maxId, id);
    });
    g.nextId = maxId + 1;
    g.inputs = arr(root.inputs, 'inputs').map((x, i) => {
      const inp: GraphInput = named(x, `inputs[${i}]`);
      if ((x as { state?: unknown }).state === true) inp.state = true;
      return inp;
    });
    g.outputs = arr(root.outputs, 'outputs').map((x, i) => named(x, `outputs[${i}]`));
    g.constants = arr(root.constants, 'constants').map((x, i) => {
      const what = `constants[${i}]`;
      const o = obj(x, what);
      const kind = o.kind === 'param' || o.kind === 'literal' ? o.kind : fail(`${what}.kind must be "param" or "literal", got ${JSON.stringify(o.kind)}`);
      const c: Constant = { name: str(o.name, `${what}.name`), value: int(o.value, `${what}.value`), kind, dtype: dtype(o.dtype, `${what}.dtype`), shape: shape(o.shape, `${what}.shape`) };
      if (o.data !== undefined) c.data = arr(o.data, `${what}.data`).map((d, j) => decodeNumber(d, `${what}.data[${j}]`, fail));
      return c;
    });
    g.nodes = arr(root.nodes, 'nodes').map((x, i) => {
      const what = `nodes[${i}]`;
      const o = obj(x, what);
      const attrs: AttrValues = {};
      for (const [k, v] of Object.entries(obj(o.attrs, `${what}.attrs`))) attrs[k] = decodeAttr(v, `${what}.attrs.${k}`, fail);
      const node: Node = {
        op: str(o.op, `${what}.op`),
        inputs: arr(o.inputs, `${what}.inputs`).map((v, j) => (v === null ? null : int(v, `${what}.inputs[${j}]`))),
        attrs,
        outputs: arr(o.outputs, `${what}.outputs`).map((v, j) => int(v, `${what}.outputs[${j}]`)),
      };
      if (o.source !== undefined) node.source = str(o.source, `${what}.source`);
      if (o.graphs !== undefined) {
        node.graphs = {};
        for (const [k, sub] of Object.entries(obj(o.graphs, `${what}.graphs`))) {
          try { node.graphs[k] = Graph.fromJSON(sub); } catch (e) { fail(`${what}.graphs.${k}: ${(e as Error).message.replace(/^Graph\.fromJSON: /, '')}`); }
        }
      }
      return node;
    });
    return g;
  }

  // ---- hashing ----

  /** Canonical structural hash (sha256 hex). Each value gets a key from what computes it (op,
   *  attributes, the keys of its inputs, its type) rather than from its id, so renumbering values
   *  or reordering independent nodes and constants does not change the hash. Parameters count by
   *  name, dtype and shape only (never their values); literals count by value. Source locations
   *  do not count. */
  hash(): string {
    const h = (...parts: string[]): string => {
      const d = createHash('sha256');
      for (const p of parts) { d.update(p); d.update('\u0000'); }
      return d.digest('hex');
    };
    const typeKey = (v: Value): string => `${v.dtype}[${v.shape.map(canonicalDimSafe).join(',')}]`;
    const keys = new Map<number, string>();
    const keyOf = (id: number | null): string => {
      if (id === null) return 'none';
      const k = keys.get(id);
      if (k === undefined) throw new GraphVerifyError(`hash: %${id} is used before it is defined (verify() the graph)`);
      return k;
    };
    this.inputs.forEach((inp, i) => keys.set(inp.value, h('input', String(i), inp.name, typeKey(this.value(inp.value)), ...(inp.state ? ['state'] : []))));
    for (const c of this.constants) {
      const t = `${c.dtype}[${c.shape.map(canonicalDimSafe).join(',')}]`;
      keys.set(c.value, c.kind === 'param' ? h('param', c.name, t) : h('literal', t, JSON.stringify((c.data ?? []).map(encodeNumber))));
    }
    const nodeKeys: string[] = [];
    for (const node of this.nodes) {
      const attrs = Object.keys(node.attrs).sort().map((k) => `${k}=${JSON.stringify(canonicalAttr(node.attrs[k]))}`).join(';');
      // sub-graphs count by their own canonical hash, under their role name
      // (graphs without control flow hash exactly as before sub-graphs existed)
      const subs = node.graphs ? [Object.keys(node.graphs).sort().map((k) => `${k}:${node.graphs![k].hash()}`).join(';')] : [];
      const nk = h('node', node.op, attrs, node.inputs.map(keyOf).join(','), node.outputs.map((v) => typeKey(this.value(v))).join(','), ...subs);
      nodeKeys.push(nk);
      node.outputs.forEach((v, j) => keys.set(v, h(nk, String(j))));
    }
    return h(
      'graph',
      IR_FORMAT,
      String(IR_VERSION),
      this.inputs.map((i) => keyOf(i.value)).join(','),
      this.outputs.map((o) => `${o.name}=${keyOf(o.value)}`).join(','),
      nodeKeys.sort().join(','),
    );
  }
}

// ---- helpers ----

/** The input and output types of a graph, as a control-flow op's inference sees a sub-graph. */
export function signatureOf(g: Graph): GraphSignature {
  return { inputs: g.inputs.map((i) => g.meta(i.value)), outputs: g.outputs.map((o) => g.meta(o.value)) };
}

/** Every sub-graph below `g` (nested ones included), depth-first, each with a path naming where it
 *  sits ("node 3 (cond).then"). Passes use it to visit sub-graphs like the outer graph. */
export function subgraphsOf(g: Graph, prefix = ''): { path: string; graph: Graph }[] {
  const out: { path: string; graph: Graph }[] = [];
  g.nodes.forEach((n, i) => {
    for (const [k, sub] of Object.entries(n.graphs ?? {})) {
      const path = `${prefix}node ${i} (${n.op}).${k}`;
      out.push({ path, graph: sub }, ...subgraphsOf(sub, `${path} > `));
    }
  });
  return out;
}

function checkShape(shape: unknown, what: string, fail: (m: string) => never): void {
  if (!Array.isArray(shape)) fail(`${what} has no shape array`);
  (shape as unknown[]).forEach((d, i) => {
    if (typeof d === 'number' ? !(Number.isInteger(d) && d >= 0) : !(typeof d === 'string' && d.length > 0)) {
      fail(`${what}: dim ${i} is ${JSON.stringify(d)}; dims are non-negative integers or symbolic names`);
    }
  });
}

function checkArity(specs: readonly string[], inputs: readonly (number | null)[], where: string, fail: (m: string) => never): void {
  const variadic = specs.length > 0 && specs[specs.length - 1].startsWith('...');
  const fixed = variadic ? specs.length - 1 : specs.length;
  const required = specs.filter((s) => !s.endsWith('?') && !s.startsWith('...')).length;
  if (inputs.length < required || (!variadic && inputs.length > fixed)) {
    fail(`${where}: has ${inputs.length} inputs but the op takes (${specs.join(', ')})`);
  }
  inputs.forEach((v, i) => {
    const spec = i < fixed ? specs[i] : specs[specs.length - 1];
    if (v === null && !spec.endsWith('?')) fail(`${where}: input ${i} ("${spec.replace('...', '')}") is required but absent`);
  });
}

function canonicalDimSafe(d: Dim): string {
  try { return String(canonicalDim(d)); } catch { return String(d); }
}

/** Attribute value with dims in canonical spelling (for hashing). Only array elements can be
 *  dims; plain string attributes (modes, dtypes) are kept as written. */
function canonicalAttr(v: AttrValue): unknown {
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? canonicalDimSafe(x) : encodeNumber(x as number)));
  return typeof v === 'number' ? encodeNumber(v) : v;
}

export function encodeNumber(n: number): JSONNumber {
  if (Number.isFinite(n) && !Object.is(n, -0)) return n;
  return { $f: Object.is(n, -0) ? '-0' : String(n) };
}

const SPECIAL: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity, '-0': -0 };

function decodeNumber(x: unknown, what: string, fail: (m: string) => never): number {
  if (typeof x === 'number') return x;
  if (typeof x === 'object' && x !== null && typeof (x as { $f?: unknown }).$f === 'string' && (x as { $f: string }).$f in SPECIAL) {
    return SPECIAL[(x as { $f: string }).$f];
  }
  return fail(`${what} must be a number, got ${JSON.stringify(x)}`);
}

function encodeAttr(v: AttrValue): JSONAttr {
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : encodeNumber(x as number)));
  return typeof v === 'number' ? encodeNumber(v) : (v as boolean | string);
}

function decodeAttr(v: unknown, what: string, fail: (m: string) => never): AttrValue {
  if (typeof v === 'boolean' || typeof v === 'string') return v;
  if (Array.isArray(v)) return Object.freeze(v.map((x, i) => (typeof x === 'string' ? x : decodeNumber(x, `${what}[${i}]`, fail))));
  return decodeNumber(v, what, fail);
}

export function formatType(dtype: DType, shape: readonly Dim[]): string {
  return `${dtype}[${shape.join(', ')}]`;
}

function formatNumber(n: number): string {
  if (Number.isInteger(n) || !Number.isFinite(n)) return Object.is(n, -0) ? '-0' : String(n);
  const a = Math.abs(n);
  return a < 1e-3 || a >= 1e6 ? n.toExponential().replace('e+', 'e') : String(n);
}

function formatAttr(v: AttrValue): string {
  if (Array.isArray(v)) return `[${v.map((x) => (typeof x === 'number' ? formatNumber(x) : x)).join(', ')}]`;
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

function formatData(data: readonly number[], shape: readonly Dim[]): string {
  if (shape.length === 0 && data.length === 1) return formatNumber(data[0]);
  const shown = data.slice(0, 8).map(formatNumber).join(', ');
  return data.length <= 8 ? `[${shown}]` : `[${shown}, …] (${data.length} values)`;
}

