// The ONNX graph builder behind OnnxEmitContext: unique value names, nodes, shared constants, dtype
// casts, and run-time values of symbolic dims (computed from the Shape of the graph input that
// carries each symbol, so dynamic dims stay dynamic in the exported model).
import { fromNumbers, type DType } from '../tensor/dtype.js';
import type { Dim } from '../tensor/shape.js';
import { parseDim } from '../ir/dims.js';
import {
  AttributeType, onnxDataType,
  type AttributeProtoObject, type NodeProtoObject, type TensorProtoObject,
} from './proto.js';
import { OnnxFloat, type OnnxAttrs, type OnnxAttrValue, type OnnxEmitContext, type NodeOptions } from './mapping.js';

/** Raw little-endian bytes of a storage array (the ONNX raw_data layout on little-endian hosts). */
export function storageBytes(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function tensorProto(name: string, dtype: DType, shape: readonly number[], raw: Uint8Array): TensorProtoObject {
  return { name, dims: [...shape], data_type: onnxDataType(dtype), raw_data: raw };
}

const utf8 = new TextEncoder();

function attributeProto(name: string, v: OnnxAttrValue): AttributeProtoObject {
  if (v instanceof OnnxFloat) return { name, type: AttributeType.FLOAT, f: v.value };
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { name, type: AttributeType.INT, i: v } : { name, type: AttributeType.FLOAT, f: v };
  }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: utf8.encode(v) };
  if (Array.isArray(v)) {
    const ints = v as readonly number[];
    if (!ints.every(Number.isInteger)) throw new TypeError(`onnx: attribute "${name}" [${ints.join(', ')}] must be integers (use {floats} for floats)`);
    return { name, type: AttributeType.INTS, ints: [...ints] };
  }
  if ('floats' in v) return { name, type: AttributeType.FLOATS, floats: [...v.floats] };
  if (!('tensor' in v)) throw new TypeError(`onnx: attribute "${name}" has an unsupported value ${JSON.stringify(v)}`);
  const t = v.tensor;
  return { name, type: AttributeType.TENSOR, t: tensorProto('', t.dtype, t.shape, storageBytes(fromNumbers(t.dtype, t.values))) };
}

/** Where a symbol's run-time value can be read: axis `axis` of value `name`. */
interface DimSource { name: string; axis: number }

interface BuilderOptions {
  opset: number;
  contribOps: boolean;
}

export class OnnxBuilder implements OnnxEmitContext {
  readonly opset: number;
  readonly contribOps: boolean;
  readonly nodes: NodeProtoObject[] = [];
  readonly initializers: TensorProtoObject[] = [];
  /** Domains (other than the default) that emitted nodes use. */
  readonly domains = new Set<string>();
  /** Prefix for node names and doc string for nodes emitted by the op being mapped now. */
  scope = '';
  doc: string | undefined;

  private readonly used = new Set<string>();
  private readonly constants = new Map<string, string>();
  private readonly dims = new Map<string, string>();
  private readonly symbols = new Map<string, DimSource>();
  private nodeCount = 0;

  constructor(options: BuilderOptions) {
    this.opset = options.opset;
    this.contribOps = options.contribOps;
  }

  /** Marks a name as taken (graph inputs, outputs, parameters) so generated names avoid it. */
  reserve(name: string): void { this.used.add(name); }
  isUsed(name: string): boolean { return this.used.has(name); }

  /** A new unique name starting with `hint`. */
  fresh(hint: string): string {
    const base = hint.replace(/[^A-Za-z0-9_.:/-]/g, '_') || 'v';
    if (!this.used.has(base)) { this.used.add(base); return base; }
    for (let i = 1; ; i++) {
      const n = `${base}_${i}`;
      if (!this.used.has(n)) { this.used.add(n); return n; }
    }
  }

  /** Records that symbol `symbol` can be read from axis `axis` of value `name` (first one wins). */
  bindSymbol(symbol: string, source: DimSource): void {
    if (!this.symbols.has(symbol)) this.symbols.set(symbol, source);
  }

  addInitializer(t: TensorProtoObject): void { this.initializers.push(t); }

  node(opType: string, inputs: readonly (string | null)[], attrs: OnnxAttrs = {}, options: NodeOptions = {}): string[] {
    const count = options.outputs ?? 1;
    const prefix = this.scope ? `${this.scope}/` : '';
    const outputs = Array.from({ length: count }, (_, i) => this.fresh(`${prefix}${opType}${count > 1 ? `_out${i}` : ''}`));
    const attribute = Object.entries(attrs).filter(([, v]) => v !== undefined).map(([k, v]) => attributeProto(k, v!));
    const domain = options.domain ?? '';
    if (domain !== '') this.domains.add(domain);
    const node: NodeProtoObject = {
      input: inputs.map((n) => n ?? ''),
      output: outputs,
      name: `${prefix}${opType}_${this.nodeCount++}`,
      op_type: opType,
      domain,
      attribute,
    };
    if (this.doc) node.doc_string = this.doc;
    this.nodes.push(node);
    return outputs;
  }

  node1(opType: string, inputs: readonly (string | null)[], attrs?: OnnxAttrs, options?: NodeOptions): string {
    return this.node(opType, inputs, attrs, { ...options, outputs: 1 })[0];
  }

  constant(dtype: DType, shape: readonly number[], values: readonly number[]): string {
    const small = values.length <= 64;
    const key = small ? `${dtype}|${shape.join(',')}|${values.map((v) => (Object.is(v, -0) ? '-0' : String(v))).join(',')}` : '';
    if (small) {
      const hit = this.constants.get(key);
      if (hit) return hit;
    }
    const name = this.fresh(`const_${dtype}`);
    this.initializers.push(tensorProto(name, dtype, shape, storageBytes(fromNumbers(dtype, values))));
    if (small) this.constants.set(key, name);
    return name;
  }

  i64(values: readonly number[]): string { return this.constant('i64', [values.length], values); }
  scalar(value: number, dtype: DType): string { return this.constant(dtype, [], [value]); }

  cast(name: string, from: DType, to: DType): string {
    return from === to ? name : this.node1('Cast', [name], { to: onnxDataType(to) });
  }

  dim(d: Dim): string {
    if (typeof d === 'number') return this.i64([d]);
    const hit = this.dims.get(d);
    if (hit) return hit;
    // sum over the polynomial's monomials of coefficient × product of symbol values
    let total: string | null = null;
    for (const [monomial, coeff] of parseDim(d)) {
      let term: string | null = null;
      if (monomial !== '') {
        for (const symbol of monomial.split('*')) {
          const s = this.symbolValue(symbol, d);
          term = term ? this.node1('Mul', [term, s]) : s;
        }
      }
      if (term === null) term = this.i64([coeff]);
      else if (coeff !== 1) term = this.node1('Mul', [term, this.i64([coeff])]);
      total = total ? this.node1('Add', [total, term]) : term;
    }
    const result = total ?? this.i64([0]);
    this.dims.set(d, result);
    return result;
  }

  shape(dims: readonly Dim[]): string {
    if (dims.every((d) => typeof d === 'number')) return this.i64(dims as number[]);
    // runs of static dims become one constant; symbolic dims are read at run time
    const parts: string[] = [];
    let run: number[] = [];
    for (const d of dims) {
      if (typeof d === 'number') { run.push(d); continue; }
      if (run.length) { parts.push(this.i64(run)); run = []; }
      parts.push(this.dim(d));
    }
    if (run.length) parts.push(this.i64(run));
    return parts.length === 1 ? parts[0] : this.node1('Concat', parts, { axis: 0 });
  }

  /** Runs `fn`, which emits the nodes of a sub-graph (an If branch, a Loop body), and takes those
   *  nodes out of this graph's list. Values computed inside a sub-graph are not visible outside
   *  it, so run-time dims first computed there are forgotten afterwards. */
  nested<T>(fn: () => T): { value: T; nodes: NodeProtoObject[] } {
    const start = this.nodes.length;
    const dims = new Map(this.dims);
    try {
      const value = fn();
      return { value, nodes: this.nodes.splice(start) };
    } finally {
      this.nodes.splice(start);
      this.dims.clear();
      for (const [k, v] of dims) this.dims.set(k, v);
    }
  }

  private symbolValue(symbol: string, expression: string): string {
    const key = `sym:${symbol}`;
    const hit = this.dims.get(key);
    if (hit) return hit;
    const src = this.symbols.get(symbol);
    if (!src) {
      throw new Error(`onnx export: symbolic dim "${expression}" uses "${symbol}", which no graph input carries as a plain dim; `
        + `known symbols: ${[...this.symbols.keys()].join(', ') || 'none'}`);
    }
    const saved = this.scope;
    this.scope = `dim_${symbol}`;
    const value = this.node1('Shape', [src.name], { start: src.axis, end: src.axis + 1 });
    this.scope = saved;
    this.dims.set(key, value);
    return value;
  }
}
