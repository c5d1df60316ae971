// Normalization layers: LayerNorm, RMSNorm and GroupNorm. Scales start at one and shifts at zero,
// so a fresh norm layer is the plain normalization.
import { type Tensor } from '../tensor/tensor.js';
import { type DType } from '../tensor/dtype.js';
import { ones, zeros } from '../tensor/creation.js';
import { layerNorm, rmsNorm, groupNorm } from '../ops/api.js';
import { Module } from './module.js';
import { checkPositiveInt } from './init.js';

/** Normalizes over the trailing `normalizedShape` dims, then scales by `weight` and shifts by `bias`. */
export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  readonly normalizedShape: readonly number[];
  readonly eps: number;

  constructor(normalizedShape: number | readonly number[], options: { eps?: number; elementwiseAffine?: boolean; bias?: boolean; dtype?: DType } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    if (this.normalizedShape.length === 0) throw new RangeError('LayerNorm: normalizedShape must have at least one dim');
    this.normalizedShape.forEach((d) => checkPositiveInt('LayerNorm', 'normalizedShape', d));
    this.eps = options.eps ?? 1e-5;
    const affine = options.elementwiseAffine ?? true;
    this.weight = affine ? ones(this.normalizedShape, options.dtype) : null;
    this.bias = affine && (options.bias ?? true) ? zeros(this.normalizedShape, options.dtype) : null;
  }

  forward(x: Tensor): Tensor { return layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps); }
  override extraRepr(): string { return `[${this.normalizedShape}], eps=${this.eps}, elementwiseAffine=${this.weight !== null}`; }
}

/** x / sqrt(mean(x²) + eps) · weight over the last dim (Llama's norm: no centering, no bias). */
export class RMSNorm extends Module {
  weight: Tensor | null;
  readonly eps: number;

  constructor(readonly dim: number, options: { eps?: number; elementwiseAffine?: boolean; dtype?: DType } = {}) {
    super();
    checkPositiveInt('RMSNorm', 'dim', dim);
    this.eps = options.eps ?? 1e-6;
    this.weight = (options.elementwiseAffine ?? true) ? ones([dim], options.dtype) : null;
  }

  forward(x: Tensor): Tensor {
    if (x.rank === 0 || (typeof x.metaShape[x.rank - 1] === 'number' && x.metaShape[x.rank - 1] !== this.dim)) {
      throw new RangeError(`RMSNorm: last dim of x [${x.metaShape.join(', ')}] must be ${this.dim}`);
    }
    return rmsNorm(x, this.weight, this.eps);
  }
  override extraRepr(): string { return `${this.dim}, eps=${this.eps}`; }
}

/** Normalizes [N, C, *] over groups of C/numGroups channels (and all spatial positions), then
 *  applies a per-channel scale and shift. */
export class GroupNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  readonly eps: number;

  constructor(readonly numGroups: number, readonly numChannels: number, options: { eps?: number; affine?: boolean; dtype?: DType } = {}) {
    super();
    checkPositiveInt('GroupNorm', 'numGroups', numGroups);
    checkPositiveInt('GroupNorm', 'numChannels', numChannels);
    if (numChannels % numGroups !== 0) throw new RangeError(`GroupNorm: numChannels (${numChannels}) must be divisible by numGroups (${numGroups})`);
    this.eps = options.eps ?? 1e-5;
    const affine = options.affine ?? true;
    this.weight = affine ? ones([numChannels], options.dtype) : null;
    this.bias = affine ? zeros([numChannels], options.dtype) : null;
  }

  forward(x: Tensor): Tensor { return groupNorm(x, this.numGroups, this.weight, this.bias, this.eps); }
  override extraRepr(): string { return `${this.numGroups}, ${this.numChannels}, eps=${this.eps}, affine=${this.weight !== null}`; }
}
