// Native kernels for matmul, linear, linear_fused and conv2d: all run on the packed fp32 GEMM,
// with bias/activation/residual applied in the GEMM epilogue and reused weights pre-packed.
import { registerKernel } from '../../../ops/registry.js';
import { broadcastIndex } from '../../../ops/kernel-utils.js';
import { numel } from '../../../tensor/shape.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { ACTIVATIONS, BINARY_CODES, type Activation, type NativeAddon } from '../addon.js';
import { packedWeight } from '../packed.js';
import { allF32, empty, f32, f32OrNull, broadcastStrides } from './util.js';

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** y = act(x · weightᵀ + bias) (+ residual), x [..., K], weight [N, K]. */
function linearInto(addon: NativeAddon, y: Tensor, x: Tensor, weight: Tensor, bias: Tensor | null, act: Activation, residual: Tensor | null): void {
  const [N, K] = weight.shape;
  const M = numel(x.shape.slice(0, -1));
  const fuseResidual = residual !== null && sameShape(residual.shape, y.shape);
  const b = packedWeight(addon, weight, K, N, true) ?? f32(weight);
  addon.gemm(M, N, K, f32(x), null, false, b, null, true, f32(y), null, f32OrNull(bias), false, ACTIVATIONS[act],
    fuseResidual ? f32(residual!) : null, null, 1, 1);
  if (residual && !fuseResidual) {
    // A broadcast residual (e.g. [N]) is added afterwards, in place.
    addon.binary(BINARY_CODES.add, f32(y), f32(residual), f32(y), [...y.shape], broadcastStrides(y.shape, y.shape), broadcastStrides(y.shape, residual.shape));
  }
}

export function registerLinalgKernels(addon: NativeAddon): void {
  registerKernel('matmul', 'cpu', ([a, b], _attrs, [out]) => {
    const as = a!.shape, bs = b!.shape;
    const M = as.length === 1 ? 1 : as[as.length - 2], K = as[as.length - 1];
    const N = bs.length === 1 ? 1 : bs[bs.length - 1];
    const aBatch = as.length <= 2 ? [] : as.slice(0, -2), bBatch = bs.length <= 2 ? [] : bs.slice(0, -2);
    const y = empty(out);
    const yBatch = y.shape.slice(0, y.rank - (as.length > 1 ? 1 : 0) - (bs.length > 1 ? 1 : 0));
    const count = numel(yBatch);
    if (numel(bBatch) === 1) {
      // One B for every batch: the batches of A are consecutive rows of one [count·M, K] matrix.
      const packed = packedWeight(addon, b!, K, N, false);
      addon.gemm(count * M, N, K, f32(a!), null, false, packed ?? f32(b!), null, false, f32(y), null, null, false, 0, null, null, 1, 1);
      return [y];
    }
    const aMap = broadcastIndex(yBatch, aBatch), bMap = broadcastIndex(yBatch, bBatch);
    const aOff = new Float64Array(count), bOff = new Float64Array(count), cOff = new Float64Array(count);
    for (let i = 0; i < count; i++) { aOff[i] = aMap[i] * M * K; bOff[i] = bMap[i] * K * N; cOff[i] = i * M * N; }
    addon.gemm(M, N, K, f32(a!), aOff, false, f32(b!), bOff, false, f32(y), cOff, null, false, 0, null, null, 1, count);
    return [y];
  }, (inputs) => allF32(inputs));

  registerKernel('linear', 'cpu', ([x, weight, bias], _attrs, [out]) => {
    const y = empty(out);
    linearInto(addon, y, x!, weight!, bias, 'none', null);
    return [y];
  }, (inputs) => allF32(inputs));

  registerKernel<{ activation: Activation }>('linear_fused', 'cpu', ([x, weight, bias, residual], { activation }, [out]) => {
    const y = empty(out);
    linearInto(addon, y, x!, weight!, bias, activation, residual);
    return [y];
  }, (inputs) => allF32(inputs));

  interface ConvAttrs { stride: readonly number[]; padding: readonly number[]; dilation: readonly number[]; groups: number }
  registerKernel<ConvAttrs>('conv2d', 'cpu', ([x, weight, bias], { stride, padding, dilation, groups }, [out]) => {
    const y = empty(out);
    const [o, , kh, kw] = weight!.shape;
    addon.conv2d(f32(x!), f32(weight!), f32OrNull(bias), f32(y), [...x!.shape], [o, kh, kw],
      [stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]], groups, 0);
    return [y];
  }, (inputs) => allF32(inputs));
}
