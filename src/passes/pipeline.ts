// The pass pipeline: the default passes in order, and the registry the JIT compiles with
// (registerPass adds user passes; `passes: { disable: [...] }` switches any off by name).
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
import { w8EpiloguePass } from './w8-epilogue.js';
import { addNormFusionPass } from './add-norm-fusion.js';
import { convEpiloguePass } from './conv-epilogue.js';
import { groupNormFusionPass } from './group-norm-fusion.js';
import { elementwiseFusionPass } from './elementwise-fusion.js';
import { dcePass } from './dce.js';

/**
 * The pipeline, in order. Clean-up first (so patterns see canonical chains and shared
 * subexpressions once), then the fusions from the largest units down: attention and norms consume
 * elementwise ops that elementwise fusion would otherwise swallow; horizontal GEMM fusion runs
 * before epilogue fusion so identical epilogues are merged once; residual-add fusion into a GEMM
 * epilogue is preferred over add+norm fusion (the add is free inside the GEMM), which picks up the
 * residual adds that remain (conv epilogues likewise come before add + group norm, and group norm +
 * activation before elementwise fusion would take the activation); elementwise fusion takes what
 * is left; DCE sweeps last.
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
  w8EpiloguePass,
  convEpiloguePass,
  addNormFusionPass,
  groupNormFusionPass,
  elementwiseFusionPass,
  dcePass,
];

const registered: Pass[] = [...DEFAULT_PASSES];

/** Appends a pass to the JIT's pipeline (or inserts it before the pass named `before`). A pass
 *  rewrites the graph in place and returns how many rewrites it made (see Pass in manager.ts). */
export function registerPass(pass: Pass, options: { before?: string } = {}): void {
  if (!pass || typeof pass.run !== 'function' || typeof pass.name !== 'string') {
    throw new TypeError('registerPass: expected { name, description, run(graph, context): number }');
  }
  if (!/^[a-z][a-z0-9-]*$/.test(pass.name)) throw new TypeError(`registerPass: pass name "${pass.name}" must be lowercase words joined by '-'`);
  if (registered.some((p) => p.name === pass.name)) throw new Error(`registerPass: a pass named "${pass.name}" is already registered`);
  if (options.before !== undefined) {
    const i = registered.findIndex((p) => p.name === options.before);
    if (i < 0) throw new Error(`registerPass: cannot insert "${pass.name}" before unknown pass "${options.before}"`);
    registered.splice(i, 0, pass);
  } else registered.push(pass);
}

/** The pipeline the JIT runs: the default passes plus registered ones, in order. */
export const listPasses = (): readonly Pass[] => registered;
export const listPassNames = (): string[] => registered.map((p) => p.name);

/** Removes a registered pass (for tests that register a temporary one). */
export function unregisterPass(name: string): boolean {
  const i = registered.findIndex((p) => p.name === name);
  if (i >= 0) registered.splice(i, 1);
  return i >= 0;
}
