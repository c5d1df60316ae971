// LLM-serving rules: kv_write becomes an in-place write into the session's page pool (the graph
// input flagged state: its result is a view of that same input, so no pool is ever copied; its rows
// may be strided token rows of a wider projection), and
// paged_attention one ragged-attention kernel over the pools (native/plan/llm_kernels.cc).
import { encodeKvWrite, encodePagedAttention } from '../kernel-table.gen.js';
import type { View } from '../builder.js';
import type { PlanBuilder } from '../builder.js';
import { isContiguous } from '../views.js';
import { definePlanRule } from './registry.js';

/** The native kv dtype code (native/llm/paged_attention.h KvDtype) of a pool view. */
const KV_DTYPE_CODE: Record<string, number> = { f32: 0, f16: 1, i8: 2 };

/** The pool operand: a contiguous f32, f16 or int8 view of a graph input flagged state (directly or through earlier kv_writes). */
function poolView(b: PlanBuilder, v: number, what: string): View {
  const view = b.viewOf(v);
  if (view.store.kind !== 'input' || !b.graph.inputs[view.store.index]?.state) b.unsupported(`${what} must be session state (a graph input flagged state)`);
  if (KV_DTYPE_CODE[view.dtype] === undefined || !isContiguous(view.shape, view.strides) || view.offset !== 0) {
    b.unsupported(`${what} must be a whole contiguous f32, f16 or int8 page pool (a widened fp16-precision input is a copy, not the pool)`);
  }
  return view;
}

definePlanRule('kv_write', (node, b) => {
  const [pv, rv, sv] = node.inputs as number[];
  const pool = poolView(b, pv, 'kv_write pool');
  if (!b.isF32(rv) || b.dtypeOf(sv) !== 'i32') b.unsupported('kv_write takes f32 rows and an i32 slot mapping');
  const [T, , D] = b.shape(rv);
  const [NB, Hkv, BS] = pool.shape;  // an int8 pool's last dim is D + 4 (the op's inference checked it)
  // token rows may lie inside wider ones (the V columns of a fused QKV projection): read in place
  const { view: rows, ld } = b.asMatrix(rv, T, Hkv * D);
  const slots = b.contiguous(sv);
  b.emit('kv_write', encodeKvWrite({
    rows, slots, pool, tokens: T, kvHeads: Hkv, headDim: D, blockSize: BS, numBlocks: NB, kvDtype: KV_DTYPE_CODE[pool.dtype], rowStride: ld,
  }));
  // the result is the pool itself: later readers see the rows just written
  b.setView(node.outputs[0], pool);
});

definePlanRule('paged_attention', (node, b) => {
  const [qv, kv, vv, btv, slv, qsv] = node.inputs as number[];
  if (!b.isF32(qv) || !b.isF32(node.outputs[0])) b.unsupported('paged_attention runs on f32 queries');
  const kPool = poolView(b, kv, 'paged_attention k_pool'), vPool = poolView(b, vv, 'paged_attention v_pool');
  if (kPool.dtype !== vPool.dtype) b.unsupported('k_pool and v_pool dtypes differ');
  for (const m of [btv, slv, qsv]) if (b.dtypeOf(m) !== 'i32') b.unsupported('paged_attention metadata must be i32');
  const q = b.contiguous(qv), blockTables = b.contiguous(btv), seqLens = b.contiguous(slv), queryStart = b.contiguous(qsv);
  const [T, H, D] = q.shape;
  if (queryStart.shape[0] !== blockTables.shape[0] + 1) {
    throw new RangeError(`paged_attention: query_start must hold seqs + 1 = ${blockTables.shape[0] + 1} offsets, got ${queryStart.shape[0]}`);
  }
  const [NB, Hkv, BS] = kPool.shape;
  const a = node.attrs;
  const out = b.dest(node.outputs[0]);
  b.emit('paged_attention', encodePagedAttention({
    q, kPool, vPool, blockTables, seqLens, queryStart, out,
    tokens: T, heads: H, kvHeads: Hkv, headDim: D, blockSize: BS, numBlocks: NB, seqs: blockTables.shape[0], maxBlocks: blockTables.shape[1],
    window: a.window as number, kvDtype: KV_DTYPE_CODE[kPool.dtype], scale: (a.scale as number) === 0 ? 1 / Math.sqrt(D) : (a.scale as number), softcap: a.softcap as number,
  }));
  b.setView(node.outputs[0], out);
});
