// Pre-packed GEMM weights. Packing B into panels costs a full pass over it, so a weight that is
// used again is packed once and the handle cached on the tensor (keyed by the tensor object, with
// its version: an in-place update repacks). A tensor seen for the first time is not cached, so
// one-off activations (attention scores, per-call inputs) are not duplicated in memory.
import type { Tensor } from '../../tensor/tensor.js';
import type { NativeAddon, PackedHandle } from './addon.js';

interface Entry { version: number; handle: PackedHandle }
// One cache per orientation: linear reads weight [N, K] (transposed), matmul reads b [K, N].
const caches = { plain: new WeakMap<Tensor, Entry>(), trans: new WeakMap<Tensor, Entry>() };
const seenOnce = { plain: new WeakMap<Tensor, number>(), trans: new WeakMap<Tensor, number>() };
// Off inside withoutWeightPacking: nothing new is cached (packs already cached are still used).
let caching = true;

/**
 * Runs `fn` without caching new packed weights: for one-shot passes over a whole model (quantize()'s
 * calibration and scoring run every weight twice or more, and at 1B scale the packs cached on the
 * second sighting are ~4 GB of native memory that nothing uses afterwards). Weights are packed
 * per call instead (one extra pass over each weight per call: within a few percent of a GEMM).
 */
export function withoutWeightPacking<T>(fn: () => T): T {
  const was = caching;
  caching = false;
  try { return fn(); } finally { caching = was; }
}

/** The packed form of a 2-D weight `t` viewed as B [K, N] (or stored [N, K] when transB), or null
 *  when it should be packed per call (first sighting). `force` packs and caches immediately. */
export function packedWeight(addon: NativeAddon, t: Tensor, K: number, N: number, transB: boolean, force = false): PackedHandle | null {
  const key = transB ? 'trans' : 'plain';
  const hit = caches[key].get(t);
  if (hit && hit.version === t.version) return hit.handle;
  if (!force && !caching) return null;
  if (!force && !hit && seenOnce[key].get(t) !== t.version) {
    seenOnce[key].set(t, t.version);
    return null;
  }
  const handle = addon.packB(t.data as Float32Array, K, N, transB);
  caches[key].set(t, { version: t.version, handle });
  return handle;
}

/** Packs a linear-layer weight [out, in] now, so the first call is as fast as later ones. */
export function prepackLinearWeight(addon: NativeAddon, weight: Tensor): void {
  if (weight.dtype !== 'f32' || weight.rank !== 2) throw new TypeError(`prepackWeight: weight must be a 2-D f32 tensor, got ${weight.dtype}[${weight.shape.join(', ')}]`);
  packedWeight(addon, weight, weight.shape[1], weight.shape[0], true, true);
}
