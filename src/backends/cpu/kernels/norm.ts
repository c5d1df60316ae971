// Native kernels for layer_norm, rms_norm, group_norm, rotary_embedding, the fused
// residual-add norms (add_layer_norm, add_rms_norm, add_group_norm) and add_softmax, all f32.
import { registerKernel } from '../../../ops/registry.js';
import { numel } from '../../../tensor/shape.js';
import type { NativeAddon } from '../addon.js';
import { allF32, empty, f32, f32OrNull, broadcastStrides } from './util.js';

type F32 = Float32Array;
/** The fused norm/softmax entry points of native/ops/norm.cc (beside NativeAddon's). */
interface FusedNormAddon {
  addGroupNorm(x: F32, residual: F32, weight: F32 | null, bias: F32 | null, out: F32, sum: F32,
    n: number, c: number, spatial: number, groups: number, eps: number): void;
  /** x and out contiguous with `shape`; the addend read through `addendStrides` (0 where it broadcasts). */
  addSoftmax(x: F32, addend: F32, out: F32, shape: number[], addendStrides: number[], axis: number): void;
}

export function registerNormKernels(addon: NativeAddon): void {
  const fused = addon as unknown as FusedNormAddon;
  registerKernel<{ normalized_ndim: number; eps: number }>('layer_norm', 'cpu', ([x, w, b], { normalized_ndim: nd, eps }, [out]) => {
    const y = empty(out);
    const cols = numel(x!.shape.slice(x!.rank - nd));
    addon.norm(false, f32(x!), null, f32OrNull(w), f32OrNull(b), f32(y), null, cols === 0 ? 0 : x!.size / cols, cols, eps);
    return [y];
  }, (inputs) => allF32(inputs));

  registerKernel<{ eps: number }>('rms_norm', 'cpu', ([x, w], { eps }, [out]) => {
    const y = empty(out);
    const cols = x!.shape[x!.rank - 1];
    addon.norm(true, f32(x!), null, f32OrNull(w), null, f32(y), null, cols === 0 ? 0 : x!.size / cols, cols, eps);
    return [y];
  }, (inputs) => allF32(inputs));

  registerKernel<{ normalized_ndim: number; eps: number }>('add_layer_norm', 'cpu', ([x, r, w, b], { normalized_ndim: nd, eps }, [outNorm, outSum]) => {
    const y = empty(outNorm), s = empty(outSum);
    const cols = numel(x!.shape.slice(x!.rank - nd));
    addon.norm(false, f32(x!), f32(r!), f32OrNull(w), f32OrNull(b), f32(y), f32(s), cols === 0 ? 0 : x!.size / cols, cols, eps);
    return [y, s];
  }, (inputs) => allF32(inputs));

  registerKernel<{ eps: number }>('add_rms_norm', 'cpu', ([x, r, w], { eps }, [outNorm, outSum]) => {
    const y = empty(outNorm), s = empty(outSum);
    const cols = x!.shape[x!.rank - 1];
    addon.norm(true, f32(x!), f32(r!), f32OrNull(w), null, f32(y), f32(s), cols === 0 ? 0 : x!.size / cols, cols, eps);
    return [y, s];
  }, (inputs) => allF32(inputs));

  registerKernel<{ num_groups: number; eps: number }>('group_norm', 'cpu', ([x, w, b], { num_groups: groups, eps }, [out]) => {
    const y = empty(out);
    const [n, c] = x!.shape;
    addon.groupNorm(f32(x!), f32OrNull(w), f32OrNull(b), f32(y), n, c, numel(x!.shape.slice(2)), groups, eps);
    return [y];
  }, (inputs) => allF32(inputs));

  registerKernel<{ num_groups: number; eps: number }>('add_group_norm', 'cpu', ([x, r, w, b], { num_groups: groups, eps }, [outNorm, outSum]) => {
    const y = empty(outNorm), s = empty(outSum);
    const [n, c] = x!.shape;
    fused.addGroupNorm(f32(x!), f32(r!), f32OrNull(w), f32OrNull(b), f32(y), f32(s), n, c, numel(x!.shape.slice(2)), groups, eps);
    return [y, s];
  }, (inputs) => allF32(inputs));

  registerKernel<{ axis: number }>('add_softmax', 'cpu', ([x, a], { axis }, [out]) => {
    const y = empty(out);
    // A scalar x is a one-element row.
    const shape = x!.rank === 0 ? [1] : [...x!.shape];
    const ax = x!.rank === 0 ? 0 : axis < 0 ? axis + x!.rank : axis;
    fused.addSoftmax(f32(x!), f32(a!), f32(y), shape, broadcastStrides(shape, a!.shape), ax);
    return [y];
  }, (inputs) => allF32(inputs));

  registerKernel<{ interleaved: boolean }>('rotary_embedding', 'cpu', ([x, cos, sin], { interleaved }, [out]) => {
    const y = empty(out);
    const s = x!.shape;
    const seq = s[s.length - 2], d = s[s.length - 1];
    addon.rotary(f32(x!), f32(cos!), f32(sin!), f32(y), d === 0 ? 0 : x!.size / d, seq, d, cos!.shape[1], interleaved);
    return [y];
  }, (inputs) => allF32(inputs));
}
