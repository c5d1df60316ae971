// inferjit's public entry point.
import './ops/index.js';

export { DynamicDimError } from './trace/dynamic.js';
export { Tensor, GraphBreakError, type Device, type TensorLike, type NestedArray } from './tensor/tensor.js';
export { type DType, DTYPES, promoteTypes } from './tensor/dtype.js';
export { type Dim, type Shape } from './tensor/shape.js';
export { zeros, ones, full, arange, fromArray, tensor, randn, rand, scalar } from './tensor/creation.js';
export { manualSeed, Rng } from './tensor/random.js';
export { quantizeWeight, quantizedTensor, ggufParameter, quantSpecOf, isQuantized, QUANT_FORMATS, type QuantFormat, type QuantSpec } from './tensor/quantized.js';
export * as ops from './ops/index.js';
export { backendInfo, setNumThreads, getNumThreads, prepackWeight, type BackendInfo } from './backends/cpu/index.js';
export { NotACacheFolderError, CacheFsError } from './cache/index.js';
export * as nn from './nn/index.js';
export * as F from './nn/functional.js';
export { inferenceJit, jitOptions, jitHandle, jitStats, jitDescribe, configure, resetConfig, DiskCache, registerPass, type JitOptions, type JitStats, type JitHandle, type InputSpec, type CompiledModule, type CompiledFunction } from './jit/index.js';
