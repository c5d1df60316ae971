// Memory planning: buffers whose lifetimes do not overlap share one arena. placeBuffers() is the
// placement itself (greedy by size, as in TFLite's arena planner) and the one the native plan
// lowering (src/backends/cpu/plan/lower.ts) uses over its kernels' buffers. planMemory() is the
// graph-level analysis built on it: for a concrete shape binding, it places every intermediate value
// of a graph by node-index liveness, with three refinements (used by bench/passes.ts and its tests
// to show what an arena saves over node-by-node allocation):
//  - views: a reshape (same bytes, new shape) and a split along a dim with nothing but size-1 dims
//    before it (each piece a contiguous byte range) alias their input instead of copying, and keep
//    it alive as long as they are;
//  - in place: an elementwise node may write its output over an input whose buffer dies at that
//    node, when the input has the output's exact shape and element size (element i is read before
//    element i is written, and no other element reads it);
//  - placement: buffers are placed largest first at the lowest offset that does not collide with a
//    placed buffer of overlapping lifetime (greedy-by-size, as in TFLite's arena planner).
// Graph inputs, constants (parameters, literals, derived constants) and graph outputs are not in
// the arena: the caller owns them (outputs are handed to the user).
import type { Graph, Node } from '../ir/graph.js';
import { evalShape, type DimBindings } from '../ir/dims.js';
import { dtypeBytes } from '../tensor/dtype.js';
import { getOp } from '../ops/registry.js';
import { constantValues } from './rewrite.js';

export const ARENA_ALIGNMENT = 64;

export interface MemoryPlan {
  /** Byte offset in the arena of every planned value (views and in-place results included). */
  offsets: Map<number, number>;
  /** Bytes of every planned value. */
  sizes: Map<number, number>;
  /** Arena size: the planned peak. */
  arenaBytes: number;
  /** One buffer per planned value, no reuse, no views (what running node by node allocates). */
  naiveBytes: number;
  /** The largest sum of simultaneously live buffer bytes: a lower bound for any plan. */
  liveBytesBound: number;
  /** Output value -> the input value whose (dying) buffer it overwrites. */
  inPlace: Map<number, number>;
  /** View value -> the value whose bytes it aliases (reshape, contiguous split piece). */
  views: Map<number, number>;
  /** Per buffer (one per group of aliasing values): [first node, last node] it is live. */
  lifetimes: Map<number, [number, number]>;
}

export interface PlanOptions {
  /** Alias reshapes and contiguous split pieces (default true). */
  views?: boolean;
  /** Let elementwise nodes overwrite a dying input (default true). */
  inPlace?: boolean;
}

/** n rounded up to the arena alignment. */
export const alignArena = (n: number): number => Math.ceil(n / ARENA_ALIGNMENT) * ARENA_ALIGNMENT;
const align = alignArena;

/** A buffer to place: its bytes and the first and last step (node, kernel) it is live at, inclusive. */
export interface Lifetime { bytes: number; first: number; last: number }

/** Places buffers largest first (ties: earliest first) at the lowest aligned offset that overlaps no
 *  placed buffer with an overlapping lifetime. Returns each buffer's offset and the arena size. */
export function placeBuffers(buffers: readonly Lifetime[]): { offsets: number[]; arenaBytes: number } {
  const order = buffers.map((_, b) => b).sort((p, q) => buffers[q].bytes - buffers[p].bytes || buffers[p].first - buffers[q].first);
  const placed: { offset: number; end: number; first: number; last: number }[] = [];
  const offsets = new Array<number>(buffers.length).fill(0);
  for (const b of order) {
    const buf = buffers[b];
    const size = align(buf.bytes);
    const clashes = placed.filter((p) => p.first <= buf.last && buf.first <= p.last).sort((x, y) => x.offset - y.offset);
    let offset = 0;
    for (const c of clashes) {
      if (offset + size <= c.offset) break;
      offset = Math.max(offset, c.end);
    }
    placed.push({ offset, end: offset + size, first: buf.first, last: buf.last });
    offsets[b] = offset;
  }
  return { offsets, arenaBytes: placed.reduce((m, p) => Math.max(m, p.end), 0) };
}

/** Plans the arena for `graph` with its symbolic dims bound to `dimBindings`. */
export function planMemory(graph: Graph, dimBindings: DimBindings = new Map(), options: PlanOptions = {}): MemoryPlan {
  const useViews = options.views ?? true, useInPlace = options.inPlace ?? true;
  const consts = constantValues(graph);
  const outputs = new Set(graph.outputs.map((o) => o.value));
  const bytesOf = (v: number): number => {
    const m = graph.meta(v);
    return evalShape(m.shape, dimBindings).reduce((a, b) => a * b, 1) * dtypeBytes(m.dtype);
  };
  const planned = (v: number | null): v is number => v !== null && !consts.has(v) && !outputs.has(v) && !graph.inputs.some((i) => i.value === v);

  const sizes = new Map<number, number>();
  const defAt = new Map<number, number>();
  const lastUse = new Map<number, number>();
  graph.nodes.forEach((n, i) => {
    for (const v of n.outputs) if (planned(v)) { sizes.set(v, bytesOf(v)); defAt.set(v, i); lastUse.set(v, i); }
    for (const v of n.inputs) if (planned(v)) lastUse.set(v, i);
  });

  // views and in-place results join the buffer of the value they alias: `root` maps a value to the
  // value that owns its buffer, `within` to its byte offset inside that buffer
  const root = new Map<number, number>();
  const within = new Map<number, number>();
  const views = new Map<number, number>();
  const inPlace = new Map<number, number>();
  const ownerOf = (v: number): number => root.get(v) ?? v;
  const bufferEnd = new Map<number, number>();
  for (const v of sizes.keys()) bufferEnd.set(v, lastUse.get(v)!);
  const extend = (owner: number, end: number): void => { bufferEnd.set(owner, Math.max(bufferEnd.get(owner)!, end)); };

  graph.nodes.forEach((n, i) => {
    if (useViews) {
      const viewOf = viewSource(graph, n, dimBindings);
      if (viewOf) {
        const src = n.inputs[0]!;
        if (planned(src)) {
          viewOf.forEach((offset, j) => {
            const v = n.outputs[j];
            if (!planned(v)) return;
            const owner = ownerOf(src);
            root.set(v, owner);
            within.set(v, (within.get(src) ?? 0) + offset);
            views.set(v, src);
            extend(owner, lastUse.get(v)!);
          });
          return;
        }
      }
    }
    if (useInPlace && n.outputs.length === 1 && planned(n.outputs[0]) && getOp(n.op).kind === 'elementwise') {
      const out = n.outputs[0];
      const om = graph.meta(out);
      for (const u of n.inputs) {
        if (!planned(u) || views.has(u) || (within.get(u) ?? 0) !== 0) continue; // whole buffers only, not views into one
        const um = graph.meta(u);
        const owner = ownerOf(u);
        if (dtypeBytes(um.dtype) !== dtypeBytes(om.dtype) || sizes.get(owner) !== sizes.get(out) || bufferEnd.get(owner) !== i) continue;
        if (evalShape(um.shape, dimBindings).join() !== evalShape(om.shape, dimBindings).join()) continue;
        // another operand reading the same bytes under a different shape could see overwritten elements
        if (n.inputs.some((w) => w !== null && w !== u && planned(w) && ownerOf(w) === owner)) continue;
        root.set(out, owner);
        within.set(out, 0);
        inPlace.set(out, u);
        extend(owner, lastUse.get(out)!);
        break;
      }
    }
  });

  // one buffer per owner, placed greedily by size
  const owners = [...sizes.keys()].filter((v) => !root.has(v));
  const lifetimes = new Map<number, [number, number]>(owners.map((v) => [v, [defAt.get(v)!, bufferEnd.get(v)!]]));
  const placement = placeBuffers(owners.map((v) => ({ bytes: sizes.get(v)!, first: lifetimes.get(v)![0], last: lifetimes.get(v)![1] })));
  const ownerOffset = new Map<number, number>(owners.map((v, k) => [v, placement.offsets[k]]));
  const offsets = new Map<number, number>();
  for (const v of sizes.keys()) offsets.set(v, ownerOffset.get(ownerOf(v))! + (within.get(v) ?? 0));

  let liveBytesBound = 0;
  for (let i = 0; i < graph.nodes.length; i++) {
    let live = 0;
    for (const [v, [s, e]] of lifetimes) if (s <= i && i <= e) live += align(sizes.get(v)!);
    liveBytesBound = Math.max(liveBytesBound, live);
  }
  return {
    offsets,
    sizes,
    arenaBytes: placement.arenaBytes,
    naiveBytes: [...sizes.values()].reduce((a, b) => a + align(b), 0),
    liveBytesBound,
    inPlace,
    views,
    lifetimes,
  };
}

/** For a node whose outputs can alias its input's bytes: each output's byte offset into the input. */
function viewSource(graph: Graph, n: Node, bindings: DimBindings): number[] | null {
  if (n.op === 'reshape') return [0];
  if (n.op === 'split' && n.inputs[0] !== null) {
    const xm = graph.meta(n.inputs[0]);
    const shape = evalShape(xm.shape, bindings);
    const axis = (n.attrs.axis as number) < 0 ? (n.attrs.axis as number) + shape.length : (n.attrs.axis as number);
    if (!shape.slice(0, axis).every((d) => d === 1)) return null; // pieces interleave in memory
    const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1) * dtypeBytes(xm.dtype);
    let at = 0;
    return (n.attrs.sizes as number[]).map((s) => { const o = at; at += s * inner; return o; });
  }
  return null;
}

/** A one-line summary: "arena 1.2 MiB (naive 4.0 MiB, live bound 1.1 MiB), 3 in place, 5 views". */
export function describePlan(plan: MemoryPlan): string {
  const mib = (b: number): string => `${(b / 2 ** 20).toFixed(2)} MiB`;
  return `arena ${mib(plan.arenaBytes)} (naive ${mib(plan.naiveBytes)}, live bound ${mib(plan.liveBytesBound)}), ${plan.inPlace.size} in place, ${plan.views.size} views`;
}
