// Native kernel for quant_linear (src/ops/quantized.ts): the weight-only matmul of
// native/quant/qmatmul.cc (GGUF Q8_0/Q4_0 integer dots with activations quantized per 32 values,
// Q4_K/Q5_K/Q6_K, int8/int4 with VNNI where the CPU has it) through the addon's quantMatmul,
// then bias, activation and residual as the ordinary native elementwise ops.
import { registerKernel } from '../../../ops/registry.js';
import { Tensor } from '../../../tensor/tensor.js';
import { numel } from '../../../tensor/shape.js';
import { QUANT_FORMAT_CODES, quantLayout } from '../../../tensor/quantized.js';
import { specOfAttrs, type QuantLinearAttrs } from '../../../ops/quantized.js';
import * as ops from '../../../ops/api.js';
import type { NativeAddon } from '../addon.js';

interface QuantMatmulAddon {
  quantMatmul(weight: [number, ArrayBufferView, Float32Array | null, number, number, number], x: Float32Array, M: number, y: Float32Array): void;
}

export function registerQuantizedKernels(addon: NativeAddon): void {
  const q = addon as unknown as Partial<QuantMatmulAddon>;
  if (typeof q.quantMatmul !== 'function') return;
  const quantMatmul = q.quantMatmul.bind(addon);
  registerKernel<QuantLinearAttrs>('quant_linear', 'cpu', ([x, weight, bias, residual], a, [out]) => {
    const spec = specOfAttrs(a);
    const bytes = weight!.data as Uint8Array;
    const { dataBytes, scaleCount } = quantLayout(spec);
    const scales = scaleCount > 0 ? new Float32Array(bytes.buffer, bytes.byteOffset + dataBytes, scaleCount) : null;
    const shape = out.shape as number[];
    const y = Tensor.empty('f32', shape);
    quantMatmul([QUANT_FORMAT_CODES[a.format], bytes.subarray(0, dataBytes), scales, a.N, a.K, spec.group], x!.data as Float32Array, numel(shape) / a.N, y.data as Float32Array);
    let r = bias ? ops.add(y, bias) : y;
    if (a.activation === 'relu') r = ops.relu(r);
    else if (a.activation === 'silu') r = ops.silu(r);
    else if (a.activation === 'gelu') r = ops.gelu(r, 'none');
    else if (a.activation === 'gelu_tanh') r = ops.gelu(r, 'tanh');
    if (residual) r = ops.add(r, residual);
    return [r];
  }, ([x]) => x !== null && x.dtype === 'f32');
}
