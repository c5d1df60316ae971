// `F`: the functional neural-network API (import { F } from 'inferjit'). The ops are the public op
// functions of src/ops/api.ts; the helpers below are small compositions models keep rewriting.
import { type Tensor } from '../tensor/tensor.js';
import { type DType } from '../tensor/dtype.js';
import { fromArray } from '../tensor/creation.js';
import { chunk, silu, gelu } from '../ops/api.js';

export {
  linear, matmul, conv2d, type Conv2dOptions,
  layerNorm, rmsNorm, groupNorm,
  relu, gelu, silu, sigmoid, tanh, softmax, logSoftmax,
  scaledDotProductAttention, type AttentionOptions, rotaryEmbedding,
  embedding, pad, upsampleNearest2d, cast,
} from '../ops/api.js';

/**
 * cos and sin tables [seqLen, rotaryDim/2] for F.rotaryEmbedding: angle(p, i) = (offset + p) ·
 * base^(-2i/rotaryDim), the RoPE frequencies of Llama/NeoX. They are computed in float64 and rounded
 * once, so long positions keep their precision. `offset` is the position of the first row (the
 * number of tokens already in a KV cache).
 */
export function rotaryCosSin(seqLen: number, rotaryDim: number, options: { base?: number; offset?: number; dtype?: DType } = {}): { cos: Tensor; sin: Tensor } {
  if (!Number.isInteger(seqLen) || seqLen < 0) throw new RangeError(`rotaryCosSin: seqLen must be a non-negative integer, got ${seqLen}`);
  if (!Number.isInteger(rotaryDim) || rotaryDim <= 0 || rotaryDim % 2 !== 0) throw new RangeError(`rotaryCosSin: rotaryDim must be a positive even integer, got ${rotaryDim}`);
  const base = options.base ?? 10000, offset = options.offset ?? 0, dtype = options.dtype ?? 'f32';
  const half = rotaryDim / 2;
  const cos = new Float64Array(seqLen * half), sin = new Float64Array(seqLen * half);
  for (let p = 0; p < seqLen; p++) {
    for (let i = 0; i < half; i++) {
      const angle = (offset + p) * Math.pow(base, (-2 * i) / rotaryDim);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos: fromArray(cos, [seqLen, half], dtype), sin: fromArray(sin, [seqLen, half], dtype) };
}

/** silu(a) · b where [a, b] are the two halves of x's last dim (Llama's gated MLP on a fused
 *  gate/up projection). */
export function swiglu(x: Tensor): Tensor {
  const [a, b] = gatedHalves(x, 'swiglu');
  return silu(a).mul(b);
}

/** gelu(a) · b where [a, b] are the two halves of x's last dim. */
export function geglu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  const [a, b] = gatedHalves(x, 'geglu');
  return gelu(a, approximate).mul(b);
}

function gatedHalves(x: Tensor, op: string): Tensor[] {
  const last = x.metaShape[x.rank - 1];
  if (x.rank === 0 || (typeof last === 'number' && last % 2 !== 0)) {
    throw new RangeError(`${op}: the last dim of x [${x.metaShape.join(', ')}] must be even (it holds the two halves)`);
  }
  return chunk(x, 2, -1);
}
