// The reference backend: runs a graph node by node through eager dispatch on the pure-TS
// kernels. It always works, so it is the oracle for every other backend and the fallback where
// a graph cannot be lowered natively.
export { interpret, bindInputs, concreteAttrs } from './interpret.js';
export { bindConstants, BoundConstants } from './bound-constants.js';
export { interpreterExecutable } from './executable.js';
export { referenceJitBackend } from './jit.js';
