// The graph optimizer's public surface: the default pass pipeline (in order) and its registry, the
// pass manager, the pattern matcher, derived constants and the memory planner. Nothing here imports
// a backend or the JIT: what a backend can run reaches the passes as a Target.
import type { Graph } from '../ir/graph.js';
import { runPasses as run, type RunPassesOptions } from './manager.js';
import { DEFAULT_PASSES } from './pipeline.js';

export { DEFAULT_PASSES, registerPass, unregisterPass, listPasses, listPassNames } from './pipeline.js';
export { runPasses, runPass, ANY_TARGET, verifyFromEnv, type Pass, type PassContext, type PassStat, type Target, type RunPassesOptions } from './manager.js';
export { P, Match, Rewriter, GraphView, applyRules, matchAt, type Rule, type Pattern, type OpPattern } from './pattern.js';
export { emit, emit1, sortTopologically, removeDeadNodes, constantValues, useCounts } from './rewrite.js';
export { splitConstants, DERIVED_PREFIX, type ConstantSplit } from './derived.js';
export { planMemory, describePlan, ARENA_ALIGNMENT, type MemoryPlan, type PlanOptions } from './memory-plan.js';
export { LITERAL_FOLD_MAX, foldConstants, hoistConstantPrologue } from './constant-fold.js';

/** optimize(graph) = the default pipeline on a copy of `graph`. */
export function optimize(graph: Graph, options: Omit<RunPassesOptions, 'passes'> = {}): Graph {
  return run(graph, DEFAULT_PASSES, options).graph;
}
