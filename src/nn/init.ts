// Deterministic parameter initialization. Each parameter tensor is filled from its own 32-bit seed,
// drawn from the layer's generator: `new Rng(options.seed)` when the layer is given a seed, else the
// global generator, so `manualSeed(0); new Model()` rebuilds bit-identical weights.
import { type Tensor } from '../tensor/tensor.js';
import { type DType } from '../tensor/dtype.js';
import { Rng, defaultRng } from '../tensor/random.js';
import { rand, randn } from '../tensor/creation.js';

/** Options every layer with weights accepts. */
export interface InitOptions {
  /** Seed for this layer's weights (and, for composite layers, the seeds of its sublayers). */
  seed?: number;
  /** dtype of the parameters; default f32. */
  dtype?: DType;
}

/** The generator a layer draws its parameter seeds from. */
export function initRng(seed?: number): Rng {
  if (seed === undefined) return defaultRng();
  if (!Number.isInteger(seed)) throw new TypeError(`init: seed must be an integer, got ${seed}`);
  return new Rng(seed);
}

/** Uniform(-bound, bound): with bound = 1/sqrt(fanIn) this is PyTorch's default for Linear and Conv
 *  (kaiming_uniform with a = sqrt(5)), which keeps activations O(1) through deep stacks. */
export const uniformInit = (shape: readonly number[], bound: number, rng: Rng, dtype: DType = 'f32'): Tensor =>
  rand(shape, { seed: rng.nextU32(), low: -bound, high: bound, dtype });

/** Standard normal, PyTorch's default for Embedding. */
export const normalInit = (shape: readonly number[], rng: Rng, dtype: DType = 'f32'): Tensor =>
  randn(shape, { seed: rng.nextU32(), dtype });

/** Throws unless v is a positive integer, naming the layer and argument. */
export function checkPositiveInt(layer: string, arg: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${layer}: ${arg} must be a positive integer, got ${v}`);
  return v;
}
