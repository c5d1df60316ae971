// Native eager kernels for kv_write and paged_attention (src/ops/llm.ts): the cores the plan runs
// (native/llm/paged_attention.cc, bound in native/llm/paged_napi.cc), so an eager step writes and
// reads the pools exactly as a compiled one does — int8 pools included, where the reference's f64
// softmax and the native kernel's int16-rounded dots differ by ~2^-16 and a greedy step could flip.
// The metadata is checked first with the reference's own checks, so a bad slot or block table is
// the same error either way.
import { registerKernel } from '../../../ops/registry.js';
import { checkRaggedMeta, checkSlots, type PagedAttentionAttrs } from '../../../ops/llm.js';
import { Tensor } from '../../../tensor/tensor.js';
import type { NativeAddon } from '../addon.js';
import { bytesOf } from './util.js';

interface PagedAddon {
  pagedKvWrite(pool: Uint8Array, dtype: number, rows: Float32Array, slots: Int32Array, T: number, Hkv: number, D: number, blockSize: number, numBlocks: number): void;
  pagedAttentionRagged(q: Float32Array, k: Uint8Array, v: Uint8Array, dtype: number, tables: Int32Array, seqLens: Int32Array, queryStart: Int32Array,
    out: Float32Array, dims: number[], scale: number, softcap: number): void;
}

/** native/llm/paged_attention.h KvDtype of a pool. */
const KV_DTYPE: Record<string, number> = { f32: 0, f16: 1, i8: 2 };

export function registerPagedKernels(addon: NativeAddon): void {
  const p = addon as unknown as Partial<PagedAddon>;
  if (typeof p.pagedKvWrite !== 'function' || typeof p.pagedAttentionRagged !== 'function') return;
  const write = p.pagedKvWrite.bind(addon), attend = p.pagedAttentionRagged.bind(addon);

  registerKernel('kv_write', 'cpu', ([pool, rows, slots]) => {
    const [NB, Hkv, BS] = pool!.shape;
    const [T, , D] = rows!.shape;
    const sm = slots!.data as Int32Array;
    checkSlots(sm, T, NB, BS);
    write(bytesOf(pool!), KV_DTYPE[pool!.dtype], rows!.data as Float32Array, sm, T, Hkv, D, BS, NB);
    pool!.markModified();
    // the result aliases the pool, as the reference's does
    return [Tensor.fromStorage(pool!.dtype, pool!.shape, pool!.data)];
  }, ([pool, rows, slots]) => KV_DTYPE[pool!.dtype] !== undefined && rows!.dtype === 'f32' && slots!.dtype === 'i32');

  registerKernel<PagedAttentionAttrs>('paged_attention', 'cpu', ([q, kp, vp, bt, sl, qs], attrs, [out]) => {
    const [T, H, D] = q!.shape;
    const [NB, Hkv, BS] = kp!.shape;
    const [S, MB] = bt!.shape;
    const starts = qs!.data as Int32Array, lens = sl!.data as Int32Array, tables = bt!.data as Int32Array;
    if (qs!.shape[0] !== S + 1) throw new RangeError(`paged_attention: query_start must hold seqs + 1 = ${S + 1} offsets, got ${qs!.shape[0]}`);
    checkRaggedMeta(starts, lens, tables, S, MB, T, BS, NB);
    const y = Tensor.empty('f32', out.shape as number[]);
    attend(q!.data as Float32Array, bytesOf(kp!), bytesOf(vp!), KV_DTYPE[kp!.dtype], tables, lens, starts, y.data as Float32Array,
      [T, H, Hkv, D, BS, NB, S, MB, attrs.window], attrs.scale === 0 ? 1 / Math.sqrt(D) : attrs.scale, attrs.softcap);
    return [y];
  }, ([q, kp, vp, bt, sl, qs]) => q!.dtype === 'f32' && kp!.dtype === vp!.dtype && KV_DTYPE[kp!.dtype] !== undefined
    && bt!.dtype === 'i32' && sl!.dtype === 'i32' && qs!.dtype === 'i32');
}
