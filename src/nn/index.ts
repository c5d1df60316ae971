// The `nn` namespace: Module and the layers (import { nn } from 'inferjit').
export { Module, buffer, isBuffer, type StateDict, type LoadReport, type TensorSpec } from './module.js';
export { type InitOptions } from './init.js';
export { Linear, Conv2d, type Conv2dOptions, Embedding } from './linear.js';
export { LayerNorm, RMSNorm, GroupNorm } from './norm.js';
export { ReLU, GELU, SiLU, Tanh, Sigmoid, Identity, Softmax, activation, type ActivationName } from './activation.js';
export { ModuleList, Sequential } from './container.js';
export { SelfAttention, type SelfAttentionOptions, MLP, type MLPOptions } from './attention.js';
