// LLM serving ops over a paged KV cache (vLLM's layout, native/llm/paged_attention.h):
//   kv_write         writes new K or V rows into page-pool slots, in place (the pool is session state)
//   paged_attention  causal grouped-query attention of a ragged batch of tokens over the pools
// A pool is [numBlocks, kvHeads, blockSize, headDim] f32 or f16 (rows rounded to nearest even): slot s is block s / blockSize, row
// s % blockSize, so one kv head's rows of a block are contiguous. A step's tokens of many
// sequences are flattened to [tokens, ...]; per-sequence metadata is data (block tables, context
// lengths, query offsets), so a compiled plan serves any context length.
import { defineOp, type TensorMeta } from './registry.js';
import { dispatch1 } from './dispatch.js';
import { formatShape } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import { concrete } from './kernel-utils.js';
import { readElement, writeElement, type DType } from '../tensor/dtype.js';

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
  if (p.dtype !== 'f32' && p.dtype !== 'f16') throw new TypeError(`${op}: ${name} must be an f32 or f16 page pool [blocks, kvHeads, blockSize, headDim], got ${p.dtype}`);
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
    mustMatch('kv_write', 'rows [tokens, kvHeads, headDim] must have the pool\'s headDim', r.shape[2], p.shape[3]);
    mustMatch('kv_write', 'slot_mapping must have one slot per token row', slots!.shape[0], r.shape[0]);
    return [{ dtype: p.dtype, shape: p.shape }];
  },
  reference([pool, rows, slots]) {
    const [NB, Hkv, BS, D] = pool!.shape;
    const T = rows!.shape[0];
    const src = rows!.data as Float32Array, sm = slots!.data as Int32Array, pd = pool!.dtype;
    for (let t = 0; t < T; t++) {
      const s = sm[t];
      if (s === -1) continue;
      if (s < -1 || s >= NB * BS) throw new RangeError(`kv_write: slot_mapping[${t}] = ${s} is outside the pool (${NB} blocks × ${BS} slots); use −1 for padding tokens`);
      const blk = Math.floor(s / BS), off = s % BS;
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
    mustMatch(op, 'q [tokens, heads, headDim] must have the pools\' headDim', qm.shape[2], k.shape[3]);
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
    const Q = q!.data as Float32Array, K = poolValues(kp!), V = poolValues(vp!);
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
            const ko = ((tables[s * MB + Math.floor(j / BS)] * Hkv + kvh) * BS + (j % BS)) * D;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += Q[qo + d] * K[ko + d];
            let sc = dot * scale;
            if (attrs.softcap > 0) sc = attrs.softcap * Math.tanh(sc / attrs.softcap);
            scores[j] = sc;
            if (sc > mx) mx = sc;
          }
          let sum = 0;
          acc.fill(0);
          for (let j = lo; j <= pos; j++) {
            const p = Math.exp(scores[j] - mx);
            sum += p;
            const vo = ((tables[s * MB + Math.floor(j / BS)] * Hkv + kvh) * BS + (j % BS)) * D;
            for (let d = 0; d < D; d++) acc[d] += p * V[vo + d];
          }
          for (let d = 0; d < D; d++) out[qo + d] = acc[d] / sum;
        }
      }
    }
    return [Tensor.fromStorage('f32', concrete(outs[0].shape), out)];
  },
});

/** A pool's values as f32 (f16 pools widened). */
function poolValues(t: Tensor): Float32Array {
  if (t.dtype === 'f32') return t.data as Float32Array;
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = readElement(t.dtype as DType, t.data, i);
  return out;
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
