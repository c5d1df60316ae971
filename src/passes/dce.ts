// Dead-code elimination: removes nodes whose outputs nothing reads (no node input, no graph
// output), and constants and values left unreferenced. Safe because every op is pure: a node with
// no observer cannot affect any output.
import type { Graph } from '../ir/graph.js';
import type { Pass } from './manager.js';
import { removeDeadNodes } from './rewrite.js';

export const dcePass: Pass = {
  name: 'dce',
  description: 'remove nodes, constants and values that no output depends on',
  run(graph: Graph): number {
    const constantsBefore = graph.constants.length;
    return removeDeadNodes(graph) + (constantsBefore - graph.constants.length);
  },
};
