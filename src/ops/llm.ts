// LLM serving ops over a paged KV cache (vLLM's layout, native/llm/paged_attention.h):
//   kv_write         writes new K or V rows into page-pool slots, in place (the pool is session state)
//   paged_attention  causal grouped-query attention of a ragged batch of tokens over the pools
// A pool is [numBlocks, kvHeads, blockSize, headDim] f32 or f16 (rows rounded to nearest even), or int8
// [numBlocks, kvHeads, blockSize, headDim + 4] (each row quantized at write with its own scale, the
// scales after each tile's rows: src/ops/kv-int8.ts): slot s is block s / blockSize, row
// s % blockSize, so one kv head's rows of a block are contiguous. A step's tokens of many
// sequences are flattened to [tokens, ...]; per-sequence metadata is data (block tables, context
// lengths, query offsets), so a compiled plan serves any context length.
import { defineOp, type TensorMeta } from './registry.js';
import { dispatch1 } from './dispatch.js';
import { formatShape } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import { concrete } from './kernel-utils.js';
import { readElement, writeElement, type DType } from '../tensor/dtype.js';
import { Int8PoolRows, poolHeadDim, KV_INT8_SCALE_BYTES } from './kv-int8.js';

interface KvWriteAttrs { [k: string]: never }
export interface PagedAttentionAttrs { scale: number; num_kv_heads: number; window: number; softcap: number }

const known = (d: unknown): d is number => typeof d === 'number';
function mustMatch(op: string, what: string, a: unknown, b: unknown): void {
  if (known(a) && known(b) && a !== b) throw new RangeError(`${op}: ${what} (${a} vs ${b})`);
}
function needRank(op: string, name: string, t: TensorMeta | null, rank: number, dtype?: string): TensorMeta {
  if (!t) throw new TypeError(`${op}: input ${name} is required`);
  if (t.shape.length !== rank) throw new RangeError(`${op}: ${name} must have rank ${rank}, got ${formatShape(t.shape)}`);
  if (dtype && t.dtype !== dtype) throw new TypeError(`${op}: ${name} must be ${dtype}, got ${t.dtype}`);
  return t;
}
function checkPool(op: string, name: string, pool: TensorMeta | null): TensorMeta {
  const p = needRank(op, name, pool, 4);
  if (p.dtype !== 'f32' && p.dtype !== 'f16' && p.dtype !== 'i8') {
    throw new TypeError(`${op}: ${name} must be an f32 or f16 page pool [blocks, kvHeads, blockSize, headDim] or an int8 one [blocks, kvHeads, blockSize, headDim + ${KV_INT8_SCALE_BYTES}], got ${p.dtype}`);
  }
  const last = p.shape[3];
  if (p.dtype === 'i8' && known(last) && last <= KV_INT8_SCALE_BYTES) {
    throw new RangeError(`${op}: int8 ${name} ${formatShape(p.shape)} must have a last dim of headDim + ${KV_INT8_SCALE_BYTES} (each row's values, then room for its f32 scale), got ${last}`);
  }
  return p;
}

export const kvWriteOp = defineOp<KvWriteAttrs>({
  name: 'kv_write',
  kind: 'other',
  inputs: ['pool', 'rows', 'slot_mapping'],
  attrs: {},
  writesInto: 0,
  doc: 'pool[slot / blockSize, h, slot % blockSize, :] = rows[t, h, :] for slot = slot_mapping[t] (slot −1: padding, skipped); '
    + 'pool [blocks, kvHeads, blockSize, headDim] is written in place and returned.',
  infer([pool, rows, slots]) {
    const p = checkPool('kv_write', 'pool', pool);
    const r = needRank('kv_write', 'rows', rows, 3, 'f32');
    needRank('kv_write', 'slot_mapping', slots, 1, 'i32');
    mustMatch('kv_write', 'rows [tokens, kvHeads, headDim] must have the pool\'s kvHeads', r.shape[1], p.shape[1]);
    mustMatch('kv_write', `rows [tokens, kvHeads, headDim] must have the pool's headDim${p.dtype === 'i8' ? ` (an int8 pool's last dim is headDim + ${KV_INT8_SCALE_BYTES})` : ''}`,
      r.shape[2], poolHeadDim(p.dtype, p.shape[3]));
    mustMatch('kv_write', 'slot_mapping must have one slot per token row', slots!.shape[0], r.shape[0]);
    return [{ dtype: p.dtype, shape: p.shape }];
  },
  reference([pool, rows, slots]) {
    const [NB, Hkv, BS] = pool!.shape;
    const [T, , D] = rows!.shape;
    const src = rows!.data as Float32Array, sm = slots!.data as Int32Array, pd = pool!.dtype;
    const i8 = pd === 'i8' ? new Int8PoolRows(pool!.data as Int8Array, Hkv, BS, rows!.shape[2]) : null;
    checkSlots(sm, T, NB, BS);
    for (let t = 0; t < T; t++) {
      const s = sm[t];
      if (s === -1) continue;
      const blk = Math.floor(s / BS), off = s % BS;
      if (i8) {
        for (let h = 0; h < Hkv; h++) i8.write(blk, h, off, src, (t * Hkv + h) * D);
        continue;
      }
      for (let h = 0; h < Hkv; h++) {
        const from = (t * Hkv + h) * D, to = ((blk * Hkv + h) * BS + off) * D;
        // f16 pools round to nearest even, as the native kernel does
        for (let d = 0; d < D; d++) writeElement(pd, pool!.data, to + d, src[from + d]);
      }
    }
    pool!.markModified();
    // the result aliases the pool: same storage, so eager and compiled steps share one pool
    return [Tensor.fromStorage(pool!.dtype, pool!.shape, pool!.data)];
  },
});

export const pagedAttentionOp = defineOp<PagedAttentionAttrs>({
  name: 'paged_attention',
  kind: 'model',
  inputs: ['q', 'k_pool', 'v_pool', 'block_tables', 'seq_lens', 'query_start'],
  attrs: {
    scale: { type: 'float', default: 0 },
    num_kv_heads: { type: 'int', default: 0 },
    window: { type: 'int', default: 0 },
    softcap: { type: 'float', default: 0 },
  },
  doc: 'Causal grouped-query attention of ragged tokens q [tokens, heads, headDim] over paged K/V pools. Sequence s owns tokens '
    + 'query_start[s] .. query_start[s+1]−1 (n of them) at positions seq_lens[s]−n .. seq_lens[s]−1 and its keys are in the blocks '
    + 'block_tables[s, :]. scale 0 means 1/√headDim; window > 0 keeps the last `window` keys (Mistral); softcap > 0 maps scores to '
    + 'softcap·tanh(score/softcap). Tokens of no sequence (padding) get zeros.',
  infer([q, kp, vp, bt, sl, qs], attrs) {
    const op = 'paged_attention';
    const qm = needRank(op, 'q', q, 3, 'f32');
    const k = checkPool(op, 'k_pool', kp), v = checkPool(op, 'v_pool', vp);
    k.shape.forEach((d, i) => mustMatch(op, `k_pool ${formatShape(k.shape)} and v_pool ${formatShape(v.shape)} must have the same shape`, d, v.shape[i]));
    if (k.dtype !== v.dtype) throw new TypeError(`${op}: k_pool is ${k.dtype} but v_pool is ${v.dtype}; they must match`);
    const b = needRank(op, 'block_tables', bt, 2, 'i32');
    const s = needRank(op, 'seq_lens', sl, 1, 'i32');
    needRank(op, 'query_start', qs, 1, 'i32');
    mustMatch(op, 'block_tables [seqs, maxBlocks] and seq_lens [seqs] disagree on seqs', b.shape[0], s.shape[0]);
    // query_start holds seqs + 1 offsets; checked when shapes are concrete (kernels, lowering), since
    // symbolic dims carry no arithmetic
    mustMatch(op, `q [tokens, heads, headDim] must have the pools' headDim${k.dtype === 'i8' ? ` (an int8 pool's last dim is headDim + ${KV_INT8_SCALE_BYTES})` : ''}`,
      qm.shape[2], poolHeadDim(k.dtype, k.shape[3]));
    const H = qm.shape[1], Hkv = k.shape[1];
    if (attrs.num_kv_heads !== 0) mustMatch(op, 'num_kv_heads must equal the pools\' kvHeads', attrs.num_kv_heads, Hkv);
    if (known(H) && known(Hkv) && H % Hkv !== 0) throw new RangeError(`${op}: ${H} query heads are not a multiple of ${Hkv} kv heads`);
    if (attrs.window < 0) throw new RangeError(`${op}: window must be ≥ 0 (0: no window), got ${attrs.window}`);
    if (!(attrs.softcap >= 0)) throw new RangeError(`${op}: softcap must be ≥ 0 (0: none), got ${attrs.softcap}`);
    return [{ dtype: 'f32', shape: qm.shape }];
  },
  reference([q, kp, vp, bt, sl, qs], attrs, outs) {
    const [T, H, D] = concrete(q!.shape);
    const [, Hkv, BS] = kp!.shape;
    const [S, MB] = bt!.shape;
    const G = H / Hkv;
    const scale = attrs.scale === 0 ? 1 / Math.sqrt(D) : attrs.scale;
    const Q = q!.data as Float32Array, K = poolRows(kp!, D), V = poolRows(vp!, D);
    const tables = bt!.data as Int32Array, lens = sl!.data as Int32Array, starts = qs!.data as Int32Array;
    const out = new Float32Array(T * H * D);
    if (qs!.shape[0] !== S + 1) throw new RangeError(`paged_attention: query_start must hold seqs + 1 = ${S + 1} offsets, got ${qs!.shape[0]}`);
    checkRaggedMeta(starts, lens, tables, S, MB, T, BS, kp!.shape[0]);
    const scores = new Float64Array(Math.max(1, ...Array.from(lens)));
    const acc = new Float64Array(D);
    for (let s = 0; s < S; s++) {
      const n = starts[s + 1] - starts[s], L = lens[s];
      for (let i = 0; i < n; i++) {
        const t = starts[s] + i, pos = L - n + i;
        const lo = attrs.window > 0 ? Math.max(0, pos - attrs.window + 1) : 0;
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / G), qo = (t * H + h) * D;
          let mx = -Infinity;
          for (let j = lo; j <= pos; j++) {
            const blk = tables[s * MB + Math.floor(j / BS)], ko = K.row(blk, kvh, j % BS), kv = K.values;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += Q[qo + d] * kv[ko + d];
            let sc = dot * K.scale(blk, kvh, j % BS) * scale;
            if (attrs.softcap > 0) sc = attrs.softcap * Math.tanh(sc / attrs.softcap);
            scores[j] = sc;
            if (sc > mx) mx = sc;
          }
          let sum = 0;
          acc.fill(0);
          for (let j = lo; j <= pos; j++) {
            const p = Math.exp(scores[j] - mx);
            sum += p;
            const blk = tables[s * MB + Math.floor(j / BS)], vo = V.row(blk, kvh, j % BS), vv = V.values;
            const pv = p * V.scale(blk, kvh, j % BS);
            for (let d = 0; d < D; d++) acc[d] += pv * vv[vo + d];
          }
          for (let d = 0; d < D; d++) out[qo + d] = acc[d] / sum;
        }
      }
    }
    return [Tensor.fromStorage('f32', concrete(outs[0].shape), out)];
  },
});

/** Row reads of a pool: int8 rows are read as stored and scaled where used (no float copy of the cache). */
interface PoolRows { values: ArrayLike<number>; row(block: number, kvHead: number, slot: number): number; scale(block: number, kvHead: number, slot: number): number }
function poolRows(t: Tensor, D: number): PoolRows {
  const [, Hkv, BS] = t.shape;
  if (t.dtype === 'i8') return new Int8PoolRows(t.data as Int8Array, Hkv, BS, D);
  const row = (b: number, h: number, s: number): number => ((b * Hkv + h) * BS + s) * D;
  const one = (): number => 1;
  if (t.dtype === 'f32') return { values: t.data as Float32Array, row, scale: one };
  // f16 pools are widened once (the reference's oracle; the native kernels convert in registers)
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = readElement(t.dtype as DType, t.data, i);
  return { values: out, row, scale: one };
}

/** Checks kv_write's slot mapping: each slot in the pool, or −1 (padding); names the first bad one. */
export function checkSlots(slots: Int32Array, T: number, NB: number, BS: number): void {
  for (let t = 0; t < T; t++) {
    const s = slots[t];
    if (s < -1 || s >= NB * BS) throw new RangeError(`kv_write: slot_mapping[${t}] = ${s} is outside the pool (${NB} blocks × ${BS} slots); use −1 for padding tokens`);
  }
}

/** Checks a ragged step's metadata against the shapes, naming the first bad entry. */
export function checkRaggedMeta(starts: Int32Array, lens: Int32Array, tables: Int32Array, S: number, MB: number, T: number, BS: number, NB: number): void {
  const op = 'paged_attention';
  if (starts[0] < 0) throw new RangeError(`${op}: query_start[0] = ${starts[0]} must be ≥ 0`);
  for (let s = 0; s < S; s++) {
    const n = starts[s + 1] - starts[s], L = lens[s];
    if (n < 0 || starts[s + 1] > T) throw new RangeError(`${op}: query_start[${s + 1}] = ${starts[s + 1]} must lie in [query_start[${s}], tokens = ${T}]`);
    if (L < n) throw new RangeError(`${op}: seq_lens[${s}] = ${L} is less than its ${n} new tokens (seq_lens counts the new tokens too)`);
    if (L > MB * BS) throw new RangeError(`${op}: seq_lens[${s}] = ${L} exceeds the block table (${MB} blocks × ${BS})`);
    for (let b = 0; b * BS < L; b++) {
      const blk = tables[s * MB + b];
      if (blk < 0 || blk >= NB) throw new RangeError(`${op}: block_tables[${s}, ${b}] = ${blk} is not a block of the pool (0..${NB - 1})`);
    }
  }
}

/** Writes K or V rows [tokens, kvHeads, headDim] into pool slots in place; returns the pool (same storage). */
export const kvWrite = (pool: Tensor, rows: Tensor, slotMapping: Tensor): Tensor => dispatch1('kv_write', [pool, rows, slotMapping]);

export interface PagedAttentionOptions { scale?: number; numKvHeads?: number; window?: number; softcap?: number }
/** Ragged causal attention over paged pools (see the op's doc); out [tokens, heads, headDim]. */
export function pagedAttention(q: Tensor, kPool: Tensor, vPool: Tensor, blockTables: Tensor, seqLens: Tensor, queryStart: Tensor,
  o: PagedAttentionOptions = {}): Tensor {
  return dispatch1('paged_attention', [q, kPool, vPool, blockTables, seqLens, queryStart],
    { scale: o.scale ?? 0, num_kv_heads: o.numKvHeads ?? 0, window: o.window ?? 0, softcap: o.softcap ?? 0 });
}
