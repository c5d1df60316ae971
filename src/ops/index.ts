// Loads every op definition into the registry (import for side effects), and re-exports the API.
import './unary.js';
import './binary.js';
import './reduce.js';
import './norm.js';
import './linalg.js';
import './movement.js';
import './model.js';
import './fused.js';
import './fused-conv-norm.js';
import './control.js';
import './quantized.js';
import './llm.js';
import './moe.js';

export * from './api.js';
export { kvWrite, pagedAttention, type PagedAttentionOptions } from './llm.js';
export { moe, quantizeExperts, type MoeOptions } from './moe.js';
export { dispatch, dispatch1, withTraceHook, setEagerBackend, getEagerBackend, withEagerBackend, isNativeAvailable } from './dispatch.js';
export { defineOp, getOp, hasOp, listOps, registerKernel, kernelBackends } from './registry.js';
export type { OpDef, TensorMeta, Kernel, OpKind, BackendName, GraphSignature, RunSubgraph } from './registry.js';
