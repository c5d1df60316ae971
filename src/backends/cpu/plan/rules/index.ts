// Registers every plan lowering rule (importing a family file registers its rules).
import './elementwise.js';
import './movement.js';
import './gemm.js';
import './norm.js';
import './reduce.js';
import './attention.js';
import './conv.js';
import './quant.js';
import './llm.js';
import './control-flow.js';
import './moe.js';
import './w8a8.js';

export { planRule, registeredPlanOps, type PlanRule } from './registry.js';
