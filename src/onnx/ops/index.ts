// Attaches every op's ONNX mapping to the op registry (import for side effects). One file per
// src/ops file, so an op's mapping is found under the same name as its definition.
import '../../ops/index.js';
import './unary.js';
import './binary.js';
import './reduce.js';
import './norm.js';
import './linalg.js';
import './movement.js';
import './model.js';
import './fused.js';
import './fused-conv-norm.js';
