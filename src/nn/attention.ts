// Multi-head self-attention (with grouped-query heads) and the transformer MLP.
import { type Tensor } from '../tensor/tensor.js';
import { split, scaledDotProductAttention } from '../ops/api.js';
import { Module } from './module.js';
import { Linear } from './linear.js';
import { type ActivationName, activation } from './activation.js';
import { type InitOptions, initRng, checkPositiveInt } from './init.js';

export interface SelfAttentionOptions extends InitOptions {
  /** Number of key/value heads (grouped-query attention); must divide numHeads. Default numHeads. */
  numKVHeads?: number;
  /** Bias on the qkv and output projections. Default true. */
  bias?: boolean;
  /** Mask future positions. Default false. */
  causal?: boolean;
}

/**
 * Self-attention over x [batch, seq, dim]. One fused projection `qkv` produces numHeads query heads
 * and numKVHeads key and value heads of headDim = dim / numHeads, laid out [q | k | v] along the
 * output features (so qkv.weight is [(numHeads + 2·numKVHeads)·headDim, dim]); `proj` maps the
 * concatenated heads back to dim. The core is F.scaledDotProductAttention, which the compiler
 * lowers to a fused attention kernel.
 */
export class SelfAttention extends Module {
  qkv: Linear;
  proj: Linear;
  readonly numKVHeads: number;
  readonly headDim: number;
  readonly causal: boolean;

  constructor(readonly dim: number, readonly numHeads: number, options: SelfAttentionOptions = {}) {
    super();
    checkPositiveInt('SelfAttention', 'dim', dim);
    checkPositiveInt('SelfAttention', 'numHeads', numHeads);
    this.numKVHeads = checkPositiveInt('SelfAttention', 'numKVHeads', options.numKVHeads ?? numHeads);
    if (dim % numHeads !== 0) throw new RangeError(`SelfAttention: dim (${dim}) must be divisible by numHeads (${numHeads})`);
    if (numHeads % this.numKVHeads !== 0) throw new RangeError(`SelfAttention: numHeads (${numHeads}) must be a multiple of numKVHeads (${this.numKVHeads})`);
    this.headDim = dim / numHeads;
    this.causal = options.causal ?? false;
    const rng = initRng(options.seed);
    const bias = options.bias ?? true;
    this.qkv = new Linear(dim, (numHeads + 2 * this.numKVHeads) * this.headDim, { bias, seed: rng.nextU32(), dtype: options.dtype });
    this.proj = new Linear(dim, dim, { bias, seed: rng.nextU32(), dtype: options.dtype });
  }

  /** `mask` is broadcast against the scores [batch, numHeads, seq, seq]: a bool mask keeps `true`
   *  positions, a float mask is added (use -Infinity to block). */
  forward(x: Tensor, mask?: Tensor | null): Tensor {
    const dims = x.metaShape;
    if (dims.length !== 3 || (typeof dims[2] === 'number' && dims[2] !== this.dim)) {
      throw new RangeError(`SelfAttention: x must be [batch, seq, ${this.dim}], got [${dims.join(', ')}]`);
    }
    const [batch, seq] = dims;
    const { numHeads, numKVHeads, headDim } = this;
    const [q, k, v] = split(this.qkv.forward(x), [numHeads * headDim, numKVHeads * headDim, numKVHeads * headDim], -1);
    // [batch, seq, heads·headDim] -> [batch, heads, seq, headDim]
    const heads = (t: Tensor, n: number): Tensor => t.reshape([batch, seq, n, headDim]).transpose(1, 2);
    const out = scaledDotProductAttention(heads(q, numHeads), heads(k, numKVHeads), heads(v, numKVHeads), { mask, causal: this.causal });
    return this.proj.forward(out.transpose(1, 2).reshape([batch, seq, this.dim]));
  }

  override extraRepr(): string {
    return `dim=${this.dim}, numHeads=${this.numHeads}` + (this.numKVHeads !== this.numHeads ? `, numKVHeads=${this.numKVHeads}` : '') + (this.causal ? ', causal=true' : '');
  }
}

export interface MLPOptions extends InitOptions {
  /** Activation between the two projections. Default 'gelu' (exact). */
  activation?: ActivationName | Module;
  bias?: boolean;
  /** Output features; default dim. */
  outDim?: number;
}

/** fc2(act(fc1(x))): dim -> hidden -> outDim, the transformer feed-forward block. */
export class MLP extends Module {
  fc1: Linear;
  act: Module;
  fc2: Linear;

  constructor(dim: number, hidden: number, options: MLPOptions = {}) {
    super();
    const rng = initRng(options.seed);
    const bias = options.bias ?? true;
    this.fc1 = new Linear(dim, hidden, { bias, seed: rng.nextU32(), dtype: options.dtype });
    this.act = activation(options.activation ?? 'gelu');
    this.fc2 = new Linear(hidden, options.outDim ?? dim, { bias, seed: rng.nextU32(), dtype: options.dtype });
  }

  forward(x: Tensor): Tensor { return this.fc2.forward(this.act.forward(this.fc1.forward(x))); }
}
