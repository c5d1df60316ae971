// Native fused attention for scaled_dot_product_attention (flash-style tiling in
// native/attention/attention.cc): f32 q/k/v with an optional bool or f32 mask.
import { registerKernel } from '../../../ops/registry.js';
import type { NativeAddon } from '../addon.js';
import { empty, f32, broadcastStrides } from './util.js';

interface AttentionAttrs { causal: boolean; scale: number }

export function registerAttentionKernels(addon: NativeAddon): void {
  registerKernel<AttentionAttrs>('scaled_dot_product_attention', 'cpu', ([q, k, v, mask], { causal, scale }, [out]) => {
    const [b, hq, lq, d] = q!.shape;
    const [, hkv, lk] = k!.shape;
    const dv = v!.shape[3];
    const y = empty(out);
    const strides = mask ? broadcastStrides([b, hq, lq, lk], mask.shape) : [0, 0, 0, 0];
    addon.sdpa(f32(q!), f32(k!), f32(v!), mask ? (mask.data as Float32Array | Uint8Array) : null, mask?.dtype === 'bool', strides, f32(y),
      [b, hq, hkv, lq, lk, d, dv], scale === 0 ? 1 / Math.sqrt(d) : scale, causal);
    return [y];
  }, ([q, k, v, mask]) => q!.dtype === 'f32' && k!.dtype === 'f32' && v!.dtype === 'f32' && (!mask || mask.dtype === 'bool' || mask.dtype === 'f32'));
}
