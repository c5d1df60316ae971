// A graph run node by node through eager dispatch: the reference backend's executable, and the cpu
// backend's fallback when a graph cannot become a native plan.
import type { Tensor } from '../../tensor/tensor.js';
import type { Graph } from '../../ir/graph.js';
import { withEagerBackend, type EagerBackend } from '../../ops/dispatch.js';
import type { Executable } from '../backend.js';
import { bindConstants } from './bound-constants.js';
import { interpret } from './interpret.js';

/** `eager` picks the kernels the nodes run on ('reference': pure TS; 'auto': native where built);
 *  `describe` is the line describe() returns (why the graph is interpreted). */
export function interpreterExecutable(graph: Graph, constants: ReadonlyMap<string, Tensor>, options: { backend: string; eager: EagerBackend; describe: string }): Executable {
  // Values the passes derived from weights (transposed or concatenated weights) are computed once
  // and recomputed only when a source weight changes.
  const bound = bindConstants(graph, constants);
  const run = (inputs: Tensor[]): Tensor[] => withEagerBackend(options.eager, () => interpret(bound.graph, inputs, bound.constants()));
  return { backend: options.backend, run, runAsync: async (inputs) => run(inputs), describe: () => options.describe };
}
