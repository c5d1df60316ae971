// Native eager kernel for w8_linear (src/quant/w8-linear-op.ts): the W8A8 / FP8 GEMM of
// native/quant/w8a8.cc through the addon's w8Gemm, on the weight packed once per weight version by
// the plan rule's packer (rules/w8a8.ts, shared cache), bias, activation and residual in its
// epilogue. Without it a quantized decoder run through the interpreter — quantize()'s PSS
// model-level selection and the teacher-forced accuracy metrics — multiplied in float64
// TypeScript loops (minutes per calibration pass on a 1B-scale layer stack).
import { registerKernel } from '../../../ops/registry.js';
import { Tensor } from '../../../tensor/tensor.js';
import { numel } from '../../../tensor/shape.js';
import { ACTIVATION_CODES } from '../plan/kernel-table.gen.js';
import { packedOf } from '../plan/rules/w8a8.js';
import type { NativeAddon } from '../addon.js';

interface W8GemmAddon {
  w8Gemm(fp8: boolean, a: Float32Array, M: number, K: number, N: number, weight: Uint8Array, colSum: Int32Array | null, scales: Float32Array,
    bias: Float32Array | null, residual: Float32Array | null, out: Float32Array, act: number, group: number, actFp8: boolean): void;
}

type Attrs = { weights: 'int8' | 'fp8'; activations: 'int8' | 'fp8' | 'none'; activation?: keyof typeof ACTIVATION_CODES; actGroup?: 0 | 32 };

export function registerW8a8Kernels(addon: NativeAddon): void {
  const n = addon as unknown as Partial<W8GemmAddon>;
  if (typeof n.w8Gemm !== 'function') return;
  const w8Gemm = n.w8Gemm.bind(addon);
  registerKernel<Attrs>('w8_linear', 'cpu', ([x, weight, scales, bias, residual], a, [out]) => {
    const [N, K] = weight!.shape as number[];
    const group = a.weights === 'int8' ? (a.actGroup ?? 0) : 0;
    const packed = packedOf(weight!, scales!, a.weights, N, K, group);
    const shape = out.shape as number[];
    const y = Tensor.empty('f32', shape);
    w8Gemm(a.weights === 'fp8', x!.data as Float32Array, numel(shape) / N, K, N, packed.weight, packed.colSum, packed.scales,
      bias ? (bias.data as Float32Array) : null, residual ? (residual.data as Float32Array) : null, y.data as Float32Array,
      ACTIVATION_CODES[a.activation ?? 'none'], group, a.activations === 'fp8');
    return [y];
  }, ([x, , , bias, residual]) => [x, bias, residual].every((t) => t === null || t === undefined || t.dtype === 'f32'));
}
