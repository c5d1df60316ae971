// How an op of ours becomes ONNX: the emit context a mapping writes nodes into, the mapping
// signature, and registerOnnxMapping, which attaches a mapping to the op's registry definition
// (OpDef.onnx) so the exporter, the per-op tests and readers all find it through the op itself.
import { getOp, type TensorMeta } from '../ops/registry.js';
import type { AttrValues } from '../ops/attrs.js';
import type { DType } from '../tensor/dtype.js';
import type { Dim } from '../tensor/shape.js';

/** A float attribute whose value happens to be integral (a plain integral number becomes an INT). */
export class OnnxFloat { constructor(readonly value: number) {} }
export const onnxFloat = (value: number): OnnxFloat => new OnnxFloat(value);

/** A tensor-valued attribute (e.g. ConstantOfShape's value). */
interface OnnxTensorAttr { tensor: { dtype: DType; shape: readonly number[]; values: readonly number[] } }

/** Attribute values: an integral number is INT, a fractional one FLOAT (wrap integral floats with
 *  onnxFloat), a string STRING, a number array INTS, {floats} FLOATS, {tensor} TENSOR. */
export type OnnxAttrValue = number | OnnxFloat | string | readonly number[] | { floats: readonly number[] } | OnnxTensorAttr;
export type OnnxAttrs = Record<string, OnnxAttrValue | undefined>;

export interface NodeOptions {
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Operator domain: '' (standard ONNX, the default) or 'com.microsoft' (ORT contrib ops). */
  domain?: string;
}

/** What a mapping may do: emit nodes and constants. Names are ONNX value names. */
export interface OnnxEmitContext {
  /** The default-domain opset the model imports. */
  readonly opset: number;
  /** True when the caller allowed ONNX Runtime contrib ops (com.microsoft domain). */
  readonly contribOps: boolean;
  /** Emits one node and returns its output names. `null` inputs are omitted optional inputs. */
  node(opType: string, inputs: readonly (string | null)[], attrs?: OnnxAttrs, options?: NodeOptions): string[];
  /** Emits a single-output node and returns its output name. */
  node1(opType: string, inputs: readonly (string | null)[], attrs?: OnnxAttrs, options?: NodeOptions): string;
  /** A constant tensor (an initializer); identical small constants are shared. */
  constant(dtype: DType, shape: readonly number[], values: readonly number[]): string;
  /** A 1-D int64 constant (axes, shapes, pads, starts). */
  i64(values: readonly number[]): string;
  /** A rank-0 constant of a dtype. */
  scalar(value: number, dtype: DType): string;
  /** `name` converted from dtype `from` to `to` (no node when they are equal). */
  cast(name: string, from: DType, to: DType): string;
  /** A 1-D int64 tensor of length 1 holding the run-time value of a (possibly symbolic) dim. */
  dim(d: Dim): string;
  /** A 1-D int64 tensor holding a (possibly symbolic) shape. */
  shape(dims: readonly Dim[]): string;
}

/** Emits the ONNX nodes computing one op: `inputs` are the op inputs' ONNX names (null when an
 *  optional input is absent), `ins`/`outs` their metadata; returns one name per op output. */
export type OnnxMapping<A = AttrValues> = (
  ctx: OnnxEmitContext,
  inputs: readonly (string | null)[],
  attrs: A,
  outs: readonly TensorMeta[],
  ins: readonly (TensorMeta | null)[],
) => string[];

/** Attaches the ONNX mapping to op `opName` (an op has at most one). */
export function registerOnnxMapping<A = AttrValues>(opName: string, mapping: OnnxMapping<A>): void {
  const def = getOp(opName);
  if (def.onnx) throw new Error(`registerOnnxMapping: op "${opName}" already has an ONNX mapping`);
  def.onnx = mapping as OnnxMapping<any>;
}

/** Op names in the registry that have no ONNX mapping (the exporter cannot handle them). */
export function getOnnxMapping(opName: string): OnnxMapping<any> {
  const def = getOp(opName);
  if (!def.onnx) {
    throw new Error(`onnx export: op "${opName}" has no ONNX mapping; add one with registerOnnxMapping in src/onnx/ops/ (or disable the pass that produced it)`);
  }
  return def.onnx;
}
