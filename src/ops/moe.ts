// The mixture-of-experts FFN of Mixtral as one op:
//   moe(x [T, H], router_logits [T, E], w_gate, w_up, w_down) -> [T, H]
// Each token goes to the top_k experts with the largest router logits; its routing weights are the
// softmax over those k logits (Mixtral's softmax over all E followed by renormalizing the k kept
// probabilities is the same number), and its output is Σ_j weight_j · down_e(silu(gate_e·x) ⊙ up_e·x)
// over its experts e. Ties between logits go to the lower expert index.
//
// Expert weights are stacked: gate and up hold E experts' [F, H] matrices, down E experts' [H, F].
// Each stack is either an f32 tensor [E, F, H] / [E, H, F] or a quantized weight
// (src/tensor/quantized.ts) over the E·F (or E·H) rows of the stacked matrix, as GGUF stores
// ffn_gate_exps / ffn_up_exps / ffn_down_exps; the node's *_format attributes say which.
// The native kernels (native/llm/moe.cc) group the tokens routed to each expert and run every expert
// as one GEMM over its tokens; the reference kernel below is the plain per-token loop in float64.
import { Tensor } from '../tensor/tensor.js';
import { formatShape, type Dim } from '../tensor/shape.js';
import { type QuantFormat, QUANT_FORMATS, checkQuantSpec, dequantizeValues, quantLayout, quantSpecOf, quantizedTensor, quantizeValues } from '../tensor/quantized.js';
import { defineOp, type TensorMeta } from './registry.js';
import { dispatch1 } from './dispatch.js';
import { concrete } from './kernel-utils.js';

export type ExpertFormat = 'f32' | QuantFormat;
export const EXPERT_FORMATS: readonly ExpertFormat[] = ['f32', ...QUANT_FORMATS];

export interface MoeAttrs {
  top_k: number;
  num_experts: number;
  /** Expert hidden size F. */
  ffn: number;
  gate_format: ExpertFormat;
  up_format: ExpertFormat;
  down_format: ExpertFormat;
  /** int4 scale group (32 for every other format). */
  group: number;
}

const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;

/** The u8 byte count of a quantized stack of E experts' [N, K] matrices. */
const stackBytes = (format: QuantFormat, E: number, N: number, K: number, group: number): number =>
  quantLayout({ format, N: E * N, K, group: format === 'int4' ? group : 32 }).totalBytes;

function checkStack(name: string, w: TensorMeta | null, format: ExpertFormat, E: number, N: number, K: number, group: number): void {
  if (!w) throw new TypeError(`moe: ${name} weights are required`);
  if (format === 'f32') {
    if (w.dtype !== 'f32' || w.shape.length !== 3 || !mayEqual(w.shape[0], E) || !mayEqual(w.shape[1], N) || !mayEqual(w.shape[2], K)) {
      throw new TypeError(`moe: ${name} weights must be f32 [experts ${E}, ${N}, ${K}], got ${w.dtype}${formatShape(w.shape)}`);
    }
    return;
  }
  checkQuantSpec({ format, N: E * N, K, group: format === 'int4' ? group : 32 }, `moe: ${name} weights`);
  const bytes = stackBytes(format, E, N, K, group);
  if (w.dtype !== 'u8' || w.shape.length !== 1 || !mayEqual(w.shape[0], bytes)) {
    throw new TypeError(`moe: ${name} weights must be the u8[${bytes}] bytes of ${E} stacked ${format} [${N}, ${K}] experts, got ${w.dtype}${formatShape(w.shape)}`);
  }
}

export const moeOp = defineOp<MoeAttrs>({
  name: 'moe',
  kind: 'model',
  inputs: ['x', 'router_logits', 'w_gate', 'w_up', 'w_down'],
  attrs: {
    top_k: { type: 'int', default: 2 },
    num_experts: { type: 'int' },
    ffn: { type: 'int' },
    gate_format: { type: 'string', default: 'f32', oneOf: EXPERT_FORMATS },
    up_format: { type: 'string', default: 'f32', oneOf: EXPERT_FORMATS },
    down_format: { type: 'string', default: 'f32', oneOf: EXPERT_FORMATS },
    group: { type: 'int', default: 32 },
  },
  doc: 'Mixtral mixture-of-experts FFN: x [T, H] goes to the top_k experts of router_logits [T, E] with weights softmax(selected logits); '
    + 'out = Σ weight · down_e(silu(gate_e·x) ⊙ up_e·x). Experts are stacked: w_gate, w_up [E, F, H], w_down [E, H, F] (f32, or quantized '
    + 'u8 bytes of the stacked matrix as the *_format attribute says).',
  infer([x, logits, wg, wu, wd], a) {
    if (!x || x.dtype !== 'f32' || x.shape.length !== 2) throw new TypeError(`moe: x must be f32 [tokens, hidden], got ${x ? x.dtype + formatShape(x.shape) : 'nothing'}`);
    if (!logits || logits.dtype !== 'f32' || logits.shape.length !== 2) {
      throw new TypeError(`moe: router_logits must be f32 [tokens, experts], got ${logits ? logits.dtype + formatShape(logits.shape) : 'nothing'}`);
    }
    const E = a.num_experts, F = a.ffn, H = x.shape[1];
    if (!Number.isInteger(E) || E < 1) throw new RangeError(`moe: num_experts must be a positive integer, got ${E}`);
    if (!Number.isInteger(F) || F < 1) throw new RangeError(`moe: ffn (the experts' hidden size) must be a positive integer, got ${F}`);
    if (!Number.isInteger(a.top_k) || a.top_k < 1 || a.top_k > E) throw new RangeError(`moe: top_k must lie in 1..${E} (the number of experts), got ${a.top_k}`);
    if (typeof H !== 'number') throw new RangeError('moe: the hidden size (x\'s last dim) must be a concrete number');
    if (!mayEqual(logits.shape[0], x.shape[0]) || !mayEqual(logits.shape[1], E)) {
      throw new RangeError(`moe: router_logits ${formatShape(logits.shape)} must be [tokens, ${E}] for x ${formatShape(x.shape)}`);
    }
    checkStack('gate', wg, a.gate_format, E, F, H, a.group);
    checkStack('up', wu, a.up_format, E, F, H, a.group);
    checkStack('down', wd, a.down_format, E, H, F, a.group);
    return [{ dtype: 'f32', shape: x.shape }];
  },
  reference([x, logits, wg, wu, wd], a, outs) {
    const [T, H] = concrete(outs[0].shape);
    const E = a.num_experts, F = a.ffn, k = a.top_k;
    const values = (w: Tensor, format: ExpertFormat, N: number, K: number): Float32Array => (format === 'f32'
      ? w.data as Float32Array
      : dequantizeValues(w.data as Uint8Array, { format, N: E * N, K, group: format === 'int4' ? a.group : 32 }));
    const G = values(wg!, a.gate_format, F, H), U = values(wu!, a.up_format, F, H), D = values(wd!, a.down_format, H, F);
    const X = x!.data as Float32Array, L = logits!.data as Float32Array;
    const out = new Float32Array(T * H);
    const h = new Float64Array(F), acc = new Float64Array(H);
    for (let t = 0; t < T; t++) {
      const { experts, weights } = route(L.subarray(t * E, (t + 1) * E), k);
      acc.fill(0);
      for (let j = 0; j < k; j++) {
        const e = experts[j];
        for (let f = 0; f < F; f++) {
          let g = 0, u = 0;
          const row = (e * F + f) * H;
          for (let i = 0; i < H; i++) { g += G[row + i] * X[t * H + i]; u += U[row + i] * X[t * H + i]; }
          h[f] = (g / (1 + Math.exp(-g))) * u;
        }
        for (let o = 0; o < H; o++) {
          let y = 0;
          const row = (e * H + o) * F;
          for (let f = 0; f < F; f++) y += D[row + f] * h[f];
          acc[o] += weights[j] * y;
        }
      }
      for (let o = 0; o < H; o++) out[t * H + o] = acc[o];
    }
    return [Tensor.fromStorage('f32', [T, H], out)];
  },
});

/** A token's top-k experts (largest logits first, ties to the lower index) and their softmax weights. */
export function route(logits: ArrayLike<number>, k: number): { experts: number[]; weights: number[] } {
  const experts: number[] = [];
  for (let j = 0; j < k; j++) {
    let best = -1;
    for (let e = 0; e < logits.length; e++) if (!experts.includes(e) && (best < 0 || logits[e] > logits[best])) best = e;
    experts.push(best);
  }
  const mx = logits[experts[0]];
  const ex = experts.map((e) => Math.exp(logits[e] - mx));
  const sum = ex.reduce((s, v) => s + v, 0);
  return { experts, weights: ex.map((v) => v / sum) };
}

export interface MoeOptions {
  /** Experts per token (Mixtral: 2). */
  topK?: number;
}

/** The format of an expert stack: 'f32' for an f32 [E, N, K] tensor, else its quantized format. */
function stackFormat(w: Tensor, name: string, E: number): { format: ExpertFormat; N: number; group: number } {
  const q = quantSpecOf(w);
  if (!q) {
    if (w.dtype !== 'f32' || w.rank !== 3) throw new TypeError(`moe: ${name} weights must be an f32 [experts, out, in] tensor or a stacked quantized weight, got ${w.dtype}[${w.shape.join(', ')}]`);
    return { format: 'f32', N: w.shape[1], group: 32 };
  }
  if (q.N % E !== 0) throw new RangeError(`moe: the quantized ${name} weight has ${q.N} rows, not a multiple of the ${E} experts`);
  return { format: q.format, N: q.N / E, group: q.group };
}

/**
 * Mixtral's expert FFN over tokens x [T, H] with router logits [T, E] (see the op's doc). Expert
 * stacks are f32 [E, F, H] / [E, H, F] tensors or quantized weights over the stacked rows
 * (`quantizeExperts`, or GGUF ffn_*_exps tensors loaded as they are stored).
 */
export function moe(x: Tensor, routerLogits: Tensor, wGate: Tensor, wUp: Tensor, wDown: Tensor, o: MoeOptions = {}): Tensor {
  const E = routerLogits.shape[1];
  if (typeof E !== 'number') throw new RangeError('moe: the number of experts (router_logits\' last dim) must be concrete');
  const g = stackFormat(wGate, 'gate', E), u = stackFormat(wUp, 'up', E), d = stackFormat(wDown, 'down', E);
  return dispatch1('moe', [x, routerLogits, wGate, wUp, wDown], {
    top_k: o.topK ?? 2, num_experts: E, ffn: g.N,
    gate_format: g.format, up_format: u.format, down_format: d.format, group: [g, u, d].find((s) => s.format === 'int4')?.group ?? 32,
  });
}

/** Quantizes an f32 expert stack [E, N, K] into one quantized weight over its E·N rows (the layout `moe` and GGUF's *_exps tensors use). */
export function quantizeExperts(w: Tensor, format: QuantFormat, options: { group?: number } = {}): Tensor {
  if (w.rank !== 3 || w.dtype !== 'f32') throw new RangeError(`quantizeExperts: expected an f32 [experts, out, in] tensor, got ${w.dtype}[${w.shape.join(', ')}]`);
  const [E, N, K] = w.shape;
  const spec = { format, N: E * N, K, group: options.group ?? 32 };
  return quantizedTensor(spec, quantizeValues(w.toFlatArray(), spec));
}
