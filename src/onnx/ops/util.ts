// Helpers shared by the ONNX mappings: choosing a dtype to compute in where ONNX Runtime's CPU
// kernels do not cover ours (only when the round trip is exact), and small node recipes.
import type { DType } from '../../tensor/dtype.js';
import type { OnnxEmitContext } from '../mapping.js';

/** The dtype to compute an op in, given the dtypes the target kernels accept: the dtype itself when
 *  accepted, else a wider one that holds every value exactly (i8/u8/bool -> i32, f16/bf16 -> f32). */
export function computeDType(dtype: DType, accepted: readonly DType[]): DType {
  if (accepted.includes(dtype)) return dtype;
  const wider: DType = dtype === 'f16' || dtype === 'bf16' ? 'f32' : dtype === 'i64' ? 'i64' : 'i32';
  if (!accepted.includes(wider)) throw new Error(`onnx export: no exact compute dtype for ${dtype} among ${accepted.join(', ')}`);
  return wider;
}

/** Casts each input to `compute`, runs `body` and casts the result to `out`. */
export function inDType(ctx: OnnxEmitContext, inputs: readonly { name: string; dtype: DType }[], compute: DType, out: DType, body: (names: string[]) => string): string {
  const names = inputs.map((i) => ctx.cast(i.name, i.dtype, compute));
  return ctx.cast(body(names), compute, out);
}

/** A rank-0 int64 scalar holding a dim (for Range and the like). */
export function dimScalar(ctx: OnnxEmitContext, d: number | string): string {
  if (typeof d === 'number') return ctx.constant('i64', [], [d]);
  return ctx.node1('Squeeze', [ctx.dim(d), ctx.i64([0])]);
}

// Kernel type lists of ONNX Runtime's CPU provider for the ops whose coverage is narrower than ours.
export const ARITH_TYPES: readonly DType[] = ['f32', 'f16', 'i32', 'i64'];
export const COMPARE_TYPES: readonly DType[] = ['f32', 'i32', 'i64'];
