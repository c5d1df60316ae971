// The list of graph passes the compile pipeline runs, in order. Passes are functions Graph -> Graph
// with a name; the optimizer's default pipeline (src/passes/) is registered here at load time,
// `passes: { disable: [...] }` switches passes off by name, and the debug dump writes the IR after
// each one. Each optimizer pass runs on a copy of its input graph, is verified afterwards when
// debugging or testing, and only emits fused ops the compile's device has fast kernels for.
import type { Graph } from '../ir/index.js';
import type { ResolvedOptions } from './options.js';
import { DEFAULT_PASSES } from '../passes/index.js';
import { runPass, targetFor, verifyByDefault, type Pass } from '../passes/manager.js';

export interface PassContext {
  /** The resolved jit options of the compile that runs the pass (device, precision, ...). */
  options: ResolvedOptions;
}

export interface GraphPass {
  name: string;
  /** One line for listings: what the pass rewrites. */
  description: string;
  run(graph: Graph, context: PassContext): Graph;
}

/** A JIT pass running an optimizer pass on a copy of the graph. */
export function jitPass(pass: Pass): GraphPass {
  return {
    name: pass.name,
    description: pass.description,
    run(graph, context) {
      const g = graph.clone();
      runPass(pass, g, { target: targetFor(context.options.device), verify: verifyByDefault() || context.options.debug !== null });
      return g;
    },
  };
}

const passes: GraphPass[] = DEFAULT_PASSES.map(jitPass);

/** Appends a pass to the pipeline (or inserts it before the pass named `before`). */
export function registerPass(pass: GraphPass, options: { before?: string } = {}): void {
  if (!/^[a-z][a-z0-9-]*$/.test(pass.name)) throw new TypeError(`registerPass: pass name "${pass.name}" must be lowercase words joined by '-'`);
  if (passes.some((p) => p.name === pass.name)) throw new Error(`registerPass: a pass named "${pass.name}" is already registered`);
  if (options.before !== undefined) {
    const i = passes.findIndex((p) => p.name === options.before);
    if (i < 0) throw new Error(`registerPass: cannot insert "${pass.name}" before unknown pass "${options.before}"`);
    passes.splice(i, 0, pass);
  } else passes.push(pass);
}

export const listPasses = (): readonly GraphPass[] => passes;
export const listPassNames = (): string[] => passes.map((p) => p.name);

/** Removes a registered pass (for tests that register a temporary one). */
export function unregisterPass(name: string): boolean {
  const i = passes.findIndex((p) => p.name === name);
  if (i >= 0) passes.splice(i, 1);
  return i >= 0;
}
