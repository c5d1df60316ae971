// Model-level ops that fusion passes and native kernels treat as units: rotary position embedding,
// scaled dot-product attention (grouped-query, causal, masked) and top-k selection.
import { defineOp, type TensorMeta } from './registry.js';
import { Tensor } from '../tensor/tensor.js';
import { isFloatDType, allocStorage } from '../tensor/dtype.js';
import { type Dim, type Shape, formatShape, normalizeAxis, numel } from '../tensor/shape.js';
import { values, tensorFrom, concrete, broadcastIndex, aroundAxis } from './kernel-utils.js';

interface RotaryAttrs { interleaved: boolean }
interface AttentionAttrs { causal: boolean; scale: number }
interface TopKAttrs { k: number; axis: number; largest: boolean; sorted: boolean }

/** Two dims can only be shown to differ when both are concrete; a symbolic dim is checked at run time. */
const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;

function checkFloat(op: string, name: string, m: TensorMeta): void {
  if (!isFloatDType(m.dtype)) throw new TypeError(`${op}: ${name} has dtype ${m.dtype}; ${op} needs a floating-point tensor (cast it first)`);
}

// ---- rotary_embedding ----

export const rotaryEmbedding = defineOp<RotaryAttrs>({
  name: 'rotary_embedding',
  kind: 'model',
  inputs: ['x', 'cos', 'sin'],
  attrs: { interleaved: { type: 'bool', default: false } },
  doc: 'x [..., S, D], cos/sin [S, R/2] with rotary dim R <= D. Each pair (x1, x2) becomes (x1·cos − x2·sin, x2·cos + x1·sin). '
    + 'Pairs are (2i, 2i+1) when interleaved (GPT-J), (i, i + R/2) otherwise (NeoX); dims >= R pass through.',
  infer([x, cos, sin]) {
    const op = 'rotary_embedding';
    checkFloat(op, 'x', x!);
    checkFloat(op, 'cos', cos!);
    checkFloat(op, 'sin', sin!);
    const xs = x!.shape;
    if (xs.length < 2) throw new RangeError(`${op}: x must be [..., seq, headDim] (rank >= 2), got ${formatShape(xs)}`);
    const cs = cos!.shape, ss = sin!.shape;
    if (cs.length !== 2) throw new RangeError(`${op}: cos must be [seq, rotaryDim/2], got ${formatShape(cs)}`);
    if (ss.length !== 2 || !mayEqual(ss[0], cs[0]) || !mayEqual(ss[1], cs[1])) {
      throw new RangeError(`${op}: sin ${formatShape(ss)} must have the shape of cos ${formatShape(cs)}`);
    }
    const seq = xs[xs.length - 2], headDim = xs[xs.length - 1];
    if (!mayEqual(cs[0], seq)) throw new RangeError(`${op}: cos ${formatShape(cs)} has ${cs[0]} positions but x ${formatShape(xs)} has seq ${seq}`);
    const half = cs[1];
    if (typeof half === 'number' && typeof headDim === 'number' && 2 * half > headDim) {
      throw new RangeError(`${op}: rotary dim ${2 * half} (2 × cos ${formatShape(cs)}[1]) exceeds the head dim ${headDim} of x ${formatShape(xs)}`);
    }
    return [{ dtype: x!.dtype, shape: xs }];
  },
  reference([x, cos, sin], { interleaved }, [out]) {
    const shape = concrete(out.shape);
    const seq = shape[shape.length - 2], d = shape[shape.length - 1];
    const half = cos!.shape[1];
    const v = values(x!), C = values(cos!), S = values(sin!);
    const rows = d === 0 ? 0 : v.length / d; // one row per (..., position)
    for (let r = 0; r < rows; r++) {
      const base = r * d, pos = r % seq;
      for (let i = 0; i < half; i++) {
        const i1 = base + (interleaved ? 2 * i : i);
        const i2 = base + (interleaved ? 2 * i + 1 : i + half);
        const c = C[pos * half + i], s = S[pos * half + i];
        const x1 = v[i1], x2 = v[i2];
        v[i1] = x1 * c - x2 * s;
        v[i2] = x2 * c + x1 * s;
      }
    }
    return [tensorFrom(out, v)];
  },
});

// ---- scaled_dot_product_attention ----

export const scaledDotProductAttention = defineOp<AttentionAttrs>({
  name: 'scaled_dot_product_attention',
  kind: 'model',
  inputs: ['q', 'k', 'v', 'mask?'],
  attrs: { causal: { type: 'bool', default: false }, scale: { type: 'float', default: 0 } },
  doc: 'softmax(q·kᵀ·scale + mask)·v. q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] → [B, Hq, Lq, Dv]; '
    + 'query head h reads kv head floor(h / (Hq/Hkv)). mask broadcasts to [B, Hq, Lq, Lk]: bool keeps true, float is added. '
    + 'causal lets query i see key j iff j <= i + (Lk − Lq). scale 0 means 1/sqrt(D). '
    + 'A query row whose keys are all masked (every score −∞) outputs zeros rather than NaN, so padded rows stay finite.',
  infer([q, k, v, mask]) {
    const op = 'scaled_dot_product_attention';
    checkFloat(op, 'q', q!);
    for (const [name, m] of [['k', k!], ['v', v!]] as const) {
      if (m.dtype !== q!.dtype) throw new TypeError(`${op}: ${name} has dtype ${m.dtype} but q has dtype ${q!.dtype}; they must match`);
    }
    const qs = q!.shape, ks = k!.shape, vs = v!.shape;
    const shapes = `q is ${formatShape(qs)}, k is ${formatShape(ks)}, v is ${formatShape(vs)}`;
    for (const [name, s, layout] of [['q', qs, '[B, Hq, Lq, D]'], ['k', ks, '[B, Hkv, Lk, D]'], ['v', vs, '[B, Hkv, Lk, Dv]']] as const) {
      if (s.length !== 4) throw new RangeError(`${op}: ${name} must be rank 4 ${layout}, got ${formatShape(s)} (reshape [B, L, D] inputs to [B, 1, L, D])`);
    }
    const [b, hq, lq] = qs;
    const [, hkv, lk] = ks;
    if (!mayEqual(ks[0], b) || !mayEqual(vs[0], b)) throw new RangeError(`${op}: batch sizes differ: ${shapes}`);
    if (!mayEqual(ks[3], qs[3])) throw new RangeError(`${op}: q and k head dims differ: ${shapes}`);
    if (!mayEqual(vs[1], hkv) || !mayEqual(vs[2], lk)) throw new RangeError(`${op}: k and v must agree on heads and length: ${shapes}`);
    if (typeof hq === 'number' && typeof hkv === 'number' && (hkv === 0 || hq % hkv !== 0)) {
      throw new RangeError(`${op}: query heads ${hq} must be a multiple of key/value heads ${hkv}; ${shapes}`);
    }
    if (mask) {
      if (mask.dtype !== 'bool' && !isFloatDType(mask.dtype)) {
        throw new TypeError(`${op}: mask has dtype ${mask.dtype}; it must be bool (true = attend) or floating-point (added to the scores)`);
      }
      const target: Shape = [b, hq, lq, lk];
      const ms = mask.shape;
      const off = target.length - ms.length;
      if (off < 0 || ms.some((d, i) => d !== 1 && !mayEqual(d, target[off + i]))) {
        throw new RangeError(`${op}: mask ${formatShape(ms)} does not broadcast to the score shape ${formatShape(target)} [B, Hq, Lq, Lk]`);
      }
    }
    return [{ dtype: q!.dtype, shape: [b, hq, lq, vs[3]] }];
  },
  reference([q, k, v, mask], { causal, scale }, [out]) {
    const [b, hq, lq, d] = q!.shape;
    const [, hkv, lk] = k!.shape;
    const dv = v!.shape[3];
    const group = hq / hkv;
    const sc = scale === 0 ? 1 / Math.sqrt(d) : scale;
    const Q = values(q!), K = values(k!), V = values(v!);
    const M = mask ? values(mask) : null;
    const mIndex = mask ? broadcastIndex([b, hq, lq, lk], mask.shape) : null;
    const isBool = mask?.dtype === 'bool';
    const O = new Float64Array(b * hq * lq * dv);
    const scores = new Float64Array(lk);
    for (let bi = 0; bi < b; bi++) {
      for (let h = 0; h < hq; h++) {
        const kvBase = (bi * hkv + Math.floor(h / group)) * lk;
        for (let i = 0; i < lq; i++) {
          const row = (bi * hq + h) * lq + i;
          let max = -Infinity;
          for (let j = 0; j < lk; j++) {
            let s: number;
            if (causal && j > i + (lk - lq)) s = -Infinity;
            else {
              s = 0;
              for (let t = 0; t < d; t++) s += Q[row * d + t] * K[(kvBase + j) * d + t];
              s *= sc;
              if (M) {
                const m = M[mIndex![row * lk + j]];
                if (isBool) { if (m === 0) s = -Infinity; } else s += m;
              }
            }
            scores[j] = s;
            if (s > max) max = s;
          }
          if (max === -Infinity) continue; // every key masked: the row stays zero (documented above)
          let total = 0;
          for (let j = 0; j < lk; j++) { scores[j] = Math.exp(scores[j] - max); total += scores[j]; }
          for (let j = 0; j < lk; j++) {
            const p = scores[j] / total;
            if (p === 0) continue;
            const vRow = (kvBase + j) * dv;
            for (let t = 0; t < dv; t++) O[row * dv + t] += p * V[vRow + t];
          }
        }
      }
    }
    return [tensorFrom(out, O)];
  },
});

// ---- top_k ----

export const topK = defineOp<TopKAttrs>({
  name: 'top_k',
  kind: 'model',
  inputs: ['x'],
  attrs: {
    k: { type: 'int' },
    axis: { type: 'int', default: -1 },
    largest: { type: 'bool', default: true },
    sorted: { type: 'bool', default: true },
  },
  doc: 'The k largest (or smallest) entries along axis: values (x dtype) and indices (i64). Ties keep the lower index first; '
    + 'NaN counts as larger than every number. sorted=false returns the chosen entries in their original order along axis.',
  infer([x], { k, axis }) {
    const xs = x!.shape;
    if (x!.dtype === 'bool') throw new TypeError(`top_k: x has dtype bool; top_k needs a numeric tensor (cast it first)`);
    if (xs.length === 0) throw new RangeError(`top_k: x must have at least one dim, got a scalar`);
    const a = normalizeAxis(axis, xs.length, 'top_k');
    const size = xs[a];
    if (k < 0 || (typeof size === 'number' && k > size)) {
      throw new RangeError(`top_k: k ${k} is out of range for axis ${a} of size ${size} in x ${formatShape(xs)}`);
    }
    const shape = xs.map((d, i) => (i === a ? k : d));
    return [{ dtype: x!.dtype, shape }, { dtype: 'i64', shape }];
  },
  reference([x], { k, axis, largest, sorted }, [valuesOut, indicesOut]) {
    const a = normalizeAxis(axis, x!.rank, 'top_k');
    const { outer, size, inner } = aroundAxis(x!.shape, a);
    const v = values(x!);
    const src = x!.data as Float32Array; // values are copied as stored, so i64 and halves stay exact
    const n = numel(concrete(valuesOut.shape));
    const outValues = allocStorage(valuesOut.dtype, n) as Float32Array;
    const outIndices = new Float64Array(n);
    // NaN ranks above every number; ties fall back to the index so the order is total and stable
    const order = new Array<number>(size);
    for (let o = 0; o < outer; o++) {
      for (let in_ = 0; in_ < inner; in_++) {
        const at = (i: number) => (o * size + i) * inner + in_;
        for (let i = 0; i < size; i++) order[i] = i;
        order.sort((p, q) => {
          const vp = v[at(p)], vq = v[at(q)];
          const np = Number.isNaN(vp), nq = Number.isNaN(vq);
          let c: number;
          if (np || nq) c = np && nq ? 0 : np ? 1 : -1;
          else c = vp === vq ? 0 : vp > vq ? 1 : -1;
          return c !== 0 ? (largest ? -c : c) : p - q;
        });
        const chosen = order.slice(0, k);
        if (!sorted) chosen.sort((p, q) => p - q);
        for (let j = 0; j < k; j++) {
          const dst = (o * k + j) * inner + in_;
          outValues[dst] = src[at(chosen[j])];
          outIndices[dst] = chosen[j];
        }
      }
    }
    return [Tensor.fromStorage(valuesOut.dtype, concrete(valuesOut.shape), outValues), tensorFrom(indicesOut, outIndices)];
  },
});
