// Activation functions as modules, for use in Sequential and as swappable MLP parts.
import { type Tensor } from '../tensor/tensor.js';
import { relu, gelu, silu, tanh, sigmoid, softmax } from '../ops/api.js';
import { Module } from './module.js';

export class ReLU extends Module { forward(x: Tensor): Tensor { return relu(x); } }
export class SiLU extends Module { forward(x: Tensor): Tensor { return silu(x); } }
export class Tanh extends Module { forward(x: Tensor): Tensor { return tanh(x); } }
export class Sigmoid extends Module { forward(x: Tensor): Tensor { return sigmoid(x); } }
export class Identity extends Module { forward(x: Tensor): Tensor { return x; } }

/** GELU; approximate 'none' is the exact erf form, 'tanh' the tanh approximation (GPT-2, DiT). */
export class GELU extends Module {
  readonly approximate: 'none' | 'tanh';
  constructor(options: { approximate?: 'none' | 'tanh' } = {}) {
    super();
    this.approximate = options.approximate ?? 'none';
    if (this.approximate !== 'none' && this.approximate !== 'tanh') throw new RangeError(`GELU: approximate must be 'none' or 'tanh', got ${JSON.stringify(this.approximate)}`);
  }
  forward(x: Tensor): Tensor { return gelu(x, this.approximate); }
  override extraRepr(): string { return this.approximate === 'none' ? '' : `approximate='${this.approximate}'`; }
}

export class Softmax extends Module {
  constructor(readonly axis = -1) { super(); }
  forward(x: Tensor): Tensor { return softmax(x, this.axis); }
  override extraRepr(): string { return `axis=${this.axis}`; }
}

/** Activation names accepted where a layer builds its own activation (MLP). */
export type ActivationName = 'relu' | 'gelu' | 'gelu_tanh' | 'silu' | 'tanh' | 'sigmoid' | 'identity';

/** The module for an activation name; a Module is passed through unchanged. */
export function activation(a: ActivationName | Module): Module {
  if (a instanceof Module) return a;
  switch (a) {
    case 'relu': return new ReLU();
    case 'gelu': return new GELU();
    case 'gelu_tanh': return new GELU({ approximate: 'tanh' });
    case 'silu': return new SiLU();
    case 'tanh': return new Tanh();
    case 'sigmoid': return new Sigmoid();
    case 'identity': return new Identity();
    default: throw new RangeError(`activation: unknown activation ${JSON.stringify(a)}; expected one of relu, gelu, gelu_tanh, silu, tanh, sigmoid, identity, or a Module`);
  }
}
