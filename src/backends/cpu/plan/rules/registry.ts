// The plan lowering's rule table: one rule per op name, registered by the family files beside this
// one (movement, elementwise, gemm, norm, attention, conv, reduce, ...), like the passes' rule
// tables. A rule checks its operands, decides views or copies and where the result goes, and emits
// encoded kernels through the PlanBuilder; it throws through builder.unsupported() when the plan
// cannot run the node (the graph then falls back to the interpreter). PLAN_OPS is this table's keys.
import type { Node } from '../../../../ir/graph.js';
import type { PlanBuilder } from '../builder.js';

/** Lowers node (index i in the graph) into kernels and views. */
export type PlanRule = (node: Node, b: PlanBuilder, i: number) => void;

const rules = new Map<string, PlanRule>();

export function definePlanRule(ops: string | readonly string[], rule: PlanRule): void {
  for (const op of typeof ops === 'string' ? [ops] : ops) {
    if (rules.has(op)) throw new Error(`plan rule for ${op} is defined twice`);
    rules.set(op, rule);
  }
}

export const planRule = (op: string): PlanRule | undefined => rules.get(op);

/** Ops with a registered rule (dtype and layout limits are checked when lowering). */
export const registeredPlanOps = (): ReadonlySet<string> => new Set(rules.keys());
