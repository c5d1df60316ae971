// The pass manager: the one pass interface and the one runner. An ordered list of named passes runs
// over a copy of the graph, any of which can be disabled by name; optional verification after every
// pass and an IR dump hook. Passes that profit from it are re-run until they stop changing the
// graph. The JIT runs its pipeline through runPasses too (src/jit/compile.ts), with the target its
// backend supplies; this module imports no backend.
import { performance } from 'node:perf_hooks';
import { type Graph, subgraphsOf } from '../ir/graph.js';

/** What the graph will run on, as far as passes care: whether a fused op they could emit has a
 *  fast kernel there. Fusing into an op that only has the pure-TS reference kernel would make a
 *  natively-executed graph slower, so such rewrites are skipped for that target. Each backend
 *  supplies its own (JitBackend.target()). */
export interface Target {
  readonly name: string;
  canEmit(op: string): boolean;
}

/** Every op is welcome (reference execution, tests, exporters). */
export const ANY_TARGET: Target = { name: 'any', canEmit: () => true };

export interface PassContext {
  target: Target;
  /** Check the graph after each pass (GraphVerifyError names the first problem). */
  verify: boolean;
}

export interface Pass {
  name: string;
  /** One line for listings: what the pass rewrites. */
  description: string;
  /** Rewrites `graph` in place; returns how many rewrites it made (0 = unchanged). */
  run(graph: Graph, context: PassContext): number;
  /** Re-run until a run makes no rewrite (bounded), for passes whose rewrites expose more work. */
  fixpoint?: boolean;
}

export interface PassStat { name: string; rewrites: number; ms: number; nodesAfter: number }

export interface RunPassesOptions {
  /** Default: the full pipeline (src/passes/index.ts). */
  passes?: readonly Pass[];
  disable?: readonly string[];
  target?: Target;
  verify?: boolean;
  /** Called after each pass that ran, with the graph as it is then. */
  dump?: (passName: string, graph: Graph, index: number) => void;
}

const FIXPOINT_LIMIT = 8;

/** Whether to verify after each pass when the caller did not say: only when asked for with
 *  INFERJIT_VERIFY_IR=1 (scripts/run-tests.mjs sets it for the test suite). */
export function verifyFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.INFERJIT_VERIFY_IR === '1';
}

/** Runs one pass in place (to its fixpoint when it asks for one); returns its rewrite count. */
export function runPass(pass: Pass, graph: Graph, context: PassContext): number {
  let total = 0;
  for (let round = 0; round < (pass.fixpoint ? FIXPOINT_LIMIT : 1); round++) {
    // control-flow sub-graphs (cond branches, loop bodies) are closed graphs: the pass rewrites them
    // the same way, each on its own
    let n = pass.run(graph, context);
    for (const sub of subgraphsOf(graph)) n += pass.run(sub.graph, context);
    total += n;
    if (context.verify) {
      try { graph.verify(); } catch (e) {
        if (e instanceof Error) e.message = `after pass ${pass.name}: ${e.message}`;
        throw e;
      }
    }
    if (n === 0) break;
  }
  return total;
}

/** Runs the pipeline on a copy of `graph` (the input is never modified). */
export function runPasses(graph: Graph, passes: readonly Pass[], options: Omit<RunPassesOptions, 'passes'> = {}): { graph: Graph; stats: PassStat[] } {
  const known = new Set(passes.map((p) => p.name));
  for (const d of options.disable ?? []) {
    if (!known.has(d)) throw new RangeError(`runPasses: cannot disable unknown pass "${d}"; passes: ${[...known].join(', ')}`);
  }
  const context: PassContext = { target: options.target ?? ANY_TARGET, verify: options.verify ?? verifyFromEnv() };
  const g = graph.clone();
  const stats: PassStat[] = [];
  let i = 0;
  for (const pass of passes) {
    if (options.disable?.includes(pass.name)) continue;
    const t0 = performance.now();
    const rewrites = runPass(pass, g, context);
    stats.push({ name: pass.name, rewrites, ms: performance.now() - t0, nodesAfter: g.nodes.length });
    options.dump?.(pass.name, g, ++i);
  }
  return { graph: g, stats };
}
