// Layers with learned weight matrices: Linear, Conv2d and Embedding.
import { type Tensor } from '../tensor/tensor.js';
import { linear, conv2d, embedding } from '../ops/api.js';
import { Module } from './module.js';
import { type InitOptions, initRng, uniformInit, normalInit, checkPositiveInt } from './init.js';

/** y = x·Wᵀ + b with W [outFeatures, inFeatures]; weights and bias ~ U(-1/√in, 1/√in). */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: InitOptions & { bias?: boolean } = {}) {
    super();
    checkPositiveInt('Linear', 'inFeatures', inFeatures);
    checkPositiveInt('Linear', 'outFeatures', outFeatures);
    const rng = initRng(options.seed);
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = uniformInit([outFeatures, inFeatures], bound, rng, options.dtype);
    this.bias = (options.bias ?? true) ? uniformInit([outFeatures], bound, rng, options.dtype) : null;
  }

  forward(x: Tensor): Tensor { return linear(x, this.weight, this.bias); }
  override extraRepr(): string { return `inFeatures=${this.inFeatures}, outFeatures=${this.outFeatures}, bias=${this.bias !== null}`; }
}

type Pair = number | [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

export interface Conv2dOptions extends InitOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

/** 2-D convolution over [N, C, H, W]; weight [outChannels, inChannels/groups, kH, kW], weights and
 *  bias ~ U(-1/√fanIn, 1/√fanIn) with fanIn = inChannels/groups·kH·kW. */
export class Conv2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair, options: Conv2dOptions = {}) {
    super();
    checkPositiveInt('Conv2d', 'inChannels', inChannels);
    checkPositiveInt('Conv2d', 'outChannels', outChannels);
    this.kernelSize = pair(kernelSize);
    this.stride = pair(options.stride ?? 1);
    this.padding = pair(options.padding ?? 0);
    this.dilation = pair(options.dilation ?? 1);
    this.groups = checkPositiveInt('Conv2d', 'groups', options.groups ?? 1);
    this.kernelSize.forEach((k) => checkPositiveInt('Conv2d', 'kernelSize', k));
    this.stride.forEach((s) => checkPositiveInt('Conv2d', 'stride', s));
    this.dilation.forEach((d) => checkPositiveInt('Conv2d', 'dilation', d));
    this.padding.forEach((p) => { if (!Number.isInteger(p) || p < 0) throw new RangeError(`Conv2d: padding must be a non-negative integer, got ${p}`); });
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new RangeError(`Conv2d: inChannels (${inChannels}) and outChannels (${outChannels}) must both be divisible by groups (${this.groups})`);
    }
    const [kh, kw] = this.kernelSize;
    const fanIn = (inChannels / this.groups) * kh * kw;
    const rng = initRng(options.seed);
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = uniformInit([outChannels, inChannels / this.groups, kh, kw], bound, rng, options.dtype);
    this.bias = (options.bias ?? true) ? uniformInit([outChannels], bound, rng, options.dtype) : null;
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }
  override extraRepr(): string {
    return `${this.inChannels}, ${this.outChannels}, kernelSize=[${this.kernelSize}], stride=[${this.stride}], padding=[${this.padding}]` +
      (this.dilation.some((d) => d !== 1) ? `, dilation=[${this.dilation}]` : '') + (this.groups !== 1 ? `, groups=${this.groups}` : '') +
      `, bias=${this.bias !== null}`;
  }
}

/** A lookup table [numEmbeddings, embeddingDim] indexed by integer ids of any shape; ~ N(0, 1). */
export class Embedding extends Module {
  weight: Tensor;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, options: InitOptions = {}) {
    super();
    checkPositiveInt('Embedding', 'numEmbeddings', numEmbeddings);
    checkPositiveInt('Embedding', 'embeddingDim', embeddingDim);
    this.weight = normalInit([numEmbeddings, embeddingDim], initRng(options.seed), options.dtype);
  }

  forward(ids: Tensor): Tensor { return embedding(ids, this.weight); }
  override extraRepr(): string { return `${this.numEmbeddings}, ${this.embeddingDim}`; }
}

