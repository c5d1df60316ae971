// The graph optimizer's public surface: the default pass pipeline (in order), the pass manager,
// the pattern matcher, derived constants and the memory planner.
import type { Pass } from './manager.js';
import { simplifyPass } from './simplify.js';
import { csePass } from './cse.js';
import { constantFoldPass } from './constant-fold.js';
import { transposeFoldPass } from './transpose-fold.js';
import { attentionFusionPass } from './attention-fusion.js';
import { normFusionPass } from './norm-fusion.js';
import { horizontalGemmPass } from './horizontal-gemm.js';
import { gemmEpiloguePass } from './gemm-epilogue.js';
import { quantEpiloguePass } from './quant-epilogue.js';
import { addNormFusionPass } from './add-norm-fusion.js';
import { elementwiseFusionPass } from './elementwise-fusion.js';
import { dcePass } from './dce.js';

/**
 * The pipeline, in order. Clean-up first (so patterns see canonical chains and shared
 * subexpressions once), then the fusions from the largest units down: attention and norms consume
 * elementwise ops that elementwise fusion would otherwise swallow; horizontal GEMM fusion runs
 * before epilogue fusion so identical epilogues are merged once; residual-add fusion into a GEMM
 * epilogue is preferred over add+norm fusion (the add is free inside the GEMM), which picks up the
 * residual adds that remain; elementwise fusion takes what is left; DCE sweeps last.
 */
export const DEFAULT_PASSES: readonly Pass[] = [
  simplifyPass,
  csePass,
  constantFoldPass,
  transposeFoldPass,
  attentionFusionPass,
  normFusionPass,
  horizontalGemmPass,
  gemmEpiloguePass,
  quantEpiloguePass,
  addNormFusionPass,
  elementwiseFusionPass,
  dcePass,
];

/** Runs the default pipeline (or `passes`) on a copy of the graph; see runPasses for options. */
export { runPasses, runPass, ANY_TARGET, targetFor, verifyByDefault, type Pass, type PassContext, type PassStat, type Target, type RunPassesOptions } from './manager.js';
export { P, Match, Rewriter, GraphView, applyRules, matchAt, type Rule, type Pattern, type OpPattern } from './pattern.js';
export { emit, emit1, sortTopologically, removeDeadNodes, constantValues, useCounts } from './rewrite.js';
export { splitConstants, bindConstants, BoundConstants, DERIVED_PREFIX, type ConstantSplit } from './derived.js';
export { planMemory, describePlan, ARENA_ALIGNMENT, type MemoryPlan, type PlanOptions } from './memory-plan.js';
export { LITERAL_FOLD_MAX, foldConstants, hoistConstantPrologue } from './constant-fold.js';

import type { Graph } from '../ir/graph.js';
import { runPasses as run, type RunPassesOptions } from './manager.js';

/** optimize(graph) = the default pipeline on a copy of `graph`. */
export function optimize(graph: Graph, options: Omit<RunPassesOptions, 'passes'> = {}): Graph {
  return run(graph, DEFAULT_PASSES, options).graph;
}
