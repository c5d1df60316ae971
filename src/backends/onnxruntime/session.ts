// ONNX Runtime sessions for inferjit: loading onnxruntime-node, converting tensors across its JS
// boundary, and a session with both a synchronous and a Promise-returning run. onnxruntime-node's
// own InferenceSession.run is synchronous native work wrapped in setImmediate (it does not leave
// the JS thread), so the synchronous form costs nothing extra and lets the JIT's synchronous
// Executable.run call it directly.
import { createRequire } from 'node:module';
import { Tensor } from '../../tensor/tensor.js';
import type { DType, Storage } from '../../tensor/dtype.js';
import { formatShape, type Dim } from '../../tensor/shape.js';
import { bf16BitsToFloat, floatToBf16Bits } from '../../tensor/half.js';
import type * as OrtTypes from 'onnxruntime-node';

const require = createRequire(import.meta.url);

type Ort = typeof OrtTypes;
export type OrtSessionOptions = OrtTypes.InferenceSession.SessionOptions;
export type OrtTensor = OrtTypes.Tensor;

interface BindingSession {
  loadModel(path: string, options: OrtSessionOptions): void;
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: OrtSessionOptions): void;
  readonly inputMetadata: { name: string; isTensor: boolean; symbolicDimensions: string[]; shape: number[]; type: number }[];
  readonly outputMetadata: { name: string; isTensor: boolean; symbolicDimensions: string[]; shape: number[]; type: number }[];
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, null>, options: object): Record<string, OrtTensor>;
  dispose(): void;
}
interface BindingModule {
  binding: { InferenceSession: new () => BindingSession; listSupportedBackends(): { name: string; bundled: boolean }[] };
  initOrt(): void;
}

let ort: Ort | undefined;
let binding: BindingModule | undefined;

/** onnxruntime-node, or an error saying how to install it. */
export function loadOrt(): Ort {
  if (!ort) {
    try { ort = require('onnxruntime-node') as Ort; } catch (e) {
      throw new Error(`onnxruntime backend: onnxruntime-node could not be loaded (${(e as Error).message}); install it with \`npm install onnxruntime-node\``);
    }
  }
  return ort;
}

/** The version of onnxruntime-node in use. */
export function ortVersion(): string {
  return String((require('onnxruntime-node/package.json') as { version: string }).version);
}

// The synchronous session object onnxruntime-node's InferenceSession wraps. It is internal to the
// package (dist/binding.js), so its shape is checked and a clear error names the problem if a
// future version changes it.
function loadBinding(): BindingModule {
  if (!binding) {
    loadOrt();
    let b: BindingModule;
    try { b = require('onnxruntime-node/dist/binding') as BindingModule; } catch (e) {
      throw new Error(`onnxruntime backend: onnxruntime-node ${ortVersion()} has no dist/binding module (${(e as Error).message}); inferjit needs onnxruntime-node 1.x (tested with 1.30)`);
    }
    if (typeof b.initOrt !== 'function' || typeof b.binding?.InferenceSession !== 'function') {
      throw new Error(`onnxruntime backend: onnxruntime-node ${ortVersion()}'s native binding has an unexpected shape; inferjit needs onnxruntime-node 1.x (tested with 1.30)`);
    }
    binding = b;
  }
  return binding;
}

/** Execution providers this onnxruntime-node build knows (bundled or installable). */
export function listOrtBackends(): { name: string; bundled: boolean }[] {
  return loadBinding().binding.listSupportedBackends();
}

// ---- tensors across the boundary ----

const ORT_TYPE: Record<DType, OrtTypes.Tensor.Type | null> = {
  f32: 'float32', f16: 'float16', bf16: null, i8: 'int8', u8: 'uint8', i32: 'int32', i64: 'int64', bool: 'bool',
};
const FROM_ORT: Record<string, DType> = { float32: 'f32', float16: 'f16', int8: 'i8', uint8: 'u8', int32: 'i32', int64: 'i64', bool: 'bool' };

/** An ORT tensor viewing t's storage (no copy). bf16, which onnxruntime-node cannot carry, is sent
 *  as float32 when `bf16AsFloat32` (the model then casts it back inside). */
export function toOrtTensor(t: Tensor, bf16AsFloat32 = false): OrtTensor {
  const o = loadOrt();
  if (t.dtype === 'bf16') {
    if (!bf16AsFloat32) throw new TypeError('onnxruntime: bf16 tensors cannot cross onnxruntime-node\'s JS boundary; export with bf16AsFloat32');
    const src = t.data as Uint16Array, f = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) f[i] = bf16BitsToFloat(src[i]);
    return new o.Tensor('float32', f, [...t.shape]);
  }
  return new o.Tensor(ORT_TYPE[t.dtype]!, t.data as never, [...t.shape]);
}

/** An inferjit tensor from an ORT output; `want` is the dtype the graph says (bf16 comes back as
 *  float32 holding bf16 values, which converts exactly). */
export function fromOrtTensor(v: OrtTensor, want: DType): Tensor {
  const got = FROM_ORT[v.type];
  const shape = v.dims.map(Number);
  if (want === 'bf16' && got === 'f32') {
    const f = v.data as Float32Array, bits = new Uint16Array(f.length);
    for (let i = 0; i < f.length; i++) bits[i] = floatToBf16Bits(f[i]);
    return Tensor.fromStorage('bf16', shape, bits);
  }
  if (got !== want) throw new TypeError(`onnxruntime: an output came back as ${v.type}${formatShape(shape)} but the graph says ${want}`);
  return Tensor.fromStorage(want, shape, v.data as Storage);
}

// ---- sessions ----

export interface SessionIO { name: string; dtype: DType; shape: readonly Dim[] }

/** A loaded model: synchronous and Promise-returning runs over inferjit tensors. */
export class OrtSession {
  private session: BindingSession | null;
  readonly inputNames: string[];
  readonly outputNames: string[];

  /** Loads `model` (a file path, or bytes for models without external data) with session options.
   *  `inputs`/`outputs` describe the graph's side so inputs are checked and outputs typed. */
  constructor(model: string | Uint8Array, options: OrtSessionOptions, readonly inputs: readonly SessionIO[], readonly outputs: readonly SessionIO[], readonly bf16AsFloat32 = false) {
    const b = loadBinding();
    b.initOrt();
    const s = new b.binding.InferenceSession();
    if (typeof model === 'string') s.loadModel(model, options);
    else s.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, options);
    this.session = s;
    this.inputNames = s.inputMetadata.map((m) => m.name);
    this.outputNames = s.outputMetadata.map((m) => m.name);
    const sameNames = (a: readonly string[], b: readonly { name: string }[]) => a.length === b.length && a.every((n, i) => n === b[i].name);
    if (!sameNames(this.inputNames, inputs) || !sameNames(this.outputNames, outputs)) {
      s.dispose();
      this.session = null;
      throw new Error(`onnxruntime: the model's inputs (${this.inputNames.join(', ')}) and outputs (${this.outputNames.join(', ')}) do not match the graph's (${inputs.map((i) => i.name).join(', ')} -> ${outputs.map((o) => o.name).join(', ')})`);
    }
  }

  private check(inputs: readonly Tensor[]): void {
    if (inputs.length !== this.inputs.length) {
      throw new RangeError(`onnxruntime: expected ${this.inputs.length} inputs (${this.inputs.map((i) => i.name).join(', ')}), got ${inputs.length}`);
    }
    inputs.forEach((t, i) => {
      const want = this.inputs[i];
      const badShape = t.rank !== want.shape.length || want.shape.some((d, j) => typeof d === 'number' && d !== t.shape[j]);
      if (t.dtype !== want.dtype || badShape) {
        throw new TypeError(`onnxruntime: input ${i} ("${want.name}") is ${t.dtype}${formatShape(t.shape)} but the model expects ${want.dtype}${formatShape(want.shape)}`);
      }
    });
  }

  runSync(inputs: readonly Tensor[]): Tensor[] {
    if (!this.session) throw new Error('onnxruntime: the session was disposed');
    this.check(inputs);
    const feeds: Record<string, OrtTensor> = {};
    inputs.forEach((t, i) => { feeds[this.inputNames[i]] = toOrtTensor(t, this.bf16AsFloat32); });
    const fetches: Record<string, null> = {};
    for (const n of this.outputNames) fetches[n] = null;
    const result = this.session.run(feeds, fetches, {});
    return this.outputNames.map((n, i) => fromOrtTensor(result[n], this.outputs[i].dtype));
  }

  /** Same as runSync, resolved on a later turn of the event loop (what onnxruntime-node does). */
  run(inputs: readonly Tensor[]): Promise<Tensor[]> {
    return new Promise((resolve, reject) => setImmediate(() => {
      try { resolve(this.runSync(inputs)); } catch (e) { reject(e); }
    }));
  }

  dispose(): void {
    this.session?.dispose();
    this.session = null;
  }
}
