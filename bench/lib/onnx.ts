// A minimal ONNX ModelProto writer for benchmark peers: just enough protobuf (varints and
// length-delimited fields) to describe small graphs with float inputs and constant initializers.
// Field numbers follow onnx/onnx.proto (IR version 8, default opset 17).

class Writer {
  // Chunks, not single bytes: initializers can be hundreds of MB.
  private chunks: Uint8Array[] = [];
  private small: number[] = [];
  private flush(): void {
    if (this.small.length) { this.chunks.push(Uint8Array.from(this.small)); this.small = []; }
  }
  varint(v: number | bigint): this {
    let x = BigInt(v);
    if (x < 0n) x += 1n << 64n; // two's complement, as protobuf encodes negative int64
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) byte |= 0x80;
      this.small.push(byte);
    } while (x !== 0n);
    return this;
  }
  tag(field: number, wire: number): this { return this.varint((field << 3) | wire); }
  int(field: number, v: number): this { return this.tag(field, 0).varint(v); }
  raw(b: Uint8Array): this {
    this.flush();
    this.chunks.push(b);
    return this;
  }
  bytes(field: number, b: Uint8Array): this { return this.tag(field, 2).varint(b.length).raw(b); }
  string(field: number, s: string): this { return this.bytes(field, new TextEncoder().encode(s)); }
  message(field: number, w: Writer): this { return this.bytes(field, w.finish()); }
  finish(): Uint8Array {
    this.flush();
    const total = this.chunks.reduce((n, c) => n + c.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of this.chunks) { out.set(c, at); at += c.length; }
    return out;
  }
}

const FLOAT = 1; // TensorProto.DataType.FLOAT

export interface OnnxNode { op: string; inputs: string[]; outputs: string[]; attrs?: Record<string, number | number[]> }
export interface OnnxValue { name: string; shape: (number | string)[] }
export interface OnnxInitializer { name: string; shape: number[]; data: Float32Array }

function valueInfo(v: OnnxValue): Writer {
  const shape = new Writer();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().int(1, FLOAT).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

function attribute(name: string, v: number | number[]): Writer {
  const w = new Writer().string(1, name);
  if (Array.isArray(v)) {
    for (const x of v) w.int(8, x); // ints
    return w.int(20, 7); // AttributeType.INTS
  }
  if (Number.isInteger(v)) return w.int(3, v).int(20, 2); // i, INT
  const f = new Uint8Array(new Float32Array([v]).buffer);
  return w.tag(2, 5).raw(f).int(20, 1); // f (fixed32), FLOAT
}

/** Serializes a one-graph ONNX model. */
export function onnxModel(graph: { nodes: OnnxNode[]; inputs: OnnxValue[]; outputs: OnnxValue[]; initializers?: OnnxInitializer[] }, opset = 17): Uint8Array {
  const g = new Writer();
  graph.nodes.forEach((n, i) => {
    const node = new Writer();
    for (const x of n.inputs) node.string(1, x);
    for (const x of n.outputs) node.string(2, x);
    node.string(3, `${n.op}_${i}`).string(4, n.op);
    for (const [k, v] of Object.entries(n.attrs ?? {})) node.message(5, attribute(k, v));
    g.message(1, node);
  });
  g.string(2, 'bench');
  for (const init of graph.initializers ?? []) {
    const t = new Writer();
    for (const d of init.shape) t.int(1, d);
    t.int(2, FLOAT).string(8, init.name).bytes(9, new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength));
    g.message(5, t);
  }
  for (const v of graph.inputs) g.message(11, valueInfo(v));
  for (const v of graph.outputs) g.message(12, valueInfo(v));
  return new Writer().int(1, 8).string(2, 'inferjit-bench').message(7, g).message(8, new Writer().string(1, '').int(2, opset)).finish();
}
