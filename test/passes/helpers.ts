// Shared by the pass tests: build graphs by tracing small functions, run one pass (or the whole
// pipeline) on a copy, and check structure and numerical equivalence before/after on seeded
// random inputs with the reference kernels.
import assert from 'node:assert/strict';
import '../../src/index.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { randn } from '../../src/tensor/creation.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import type { Graph } from '../../src/ir/graph.js';
import { trace, type InputSpec } from '../../src/trace/index.js';
import { interpret } from '../../src/backends/reference/index.js';
import { runPass, ANY_TARGET, type Pass, type Target } from '../../src/passes/manager.js';

export const paramsOf = (entries: Record<string, Tensor>) => ({ namedParameters: () => Object.entries(entries) });

export interface Traced { graph: Graph; constants: Map<string, Tensor>; inputs: Tensor[] }

/** Traces fn(...inputs) with `params` as named parameters (and optional dynamic dims). */
export function traced(fn: (...args: Tensor[]) => Tensor | Tensor[], inputs: Tensor[], params: Record<string, Tensor> = {}, inputSpec?: (InputSpec | null)[]): Traced {
  const r = trace(fn, inputs, { module: paramsOf(params), ...(inputSpec ? { inputSpec } : {}) });
  return { graph: r.graph, constants: r.constants, inputs };
}

/** Runs one pass on a copy, verifying the result; returns the copy and the rewrite count. */
export function applyPass(graph: Graph, pass: Pass, target: Target = ANY_TARGET): { graph: Graph; rewrites: number } {
  const g = graph.clone();
  const rewrites = runPass(pass, g, { target, verify: true });
  g.verify();
  return { graph: g, rewrites };
}

export const ops = (g: Graph): string[] => g.nodes.map((n) => n.op);
export const count = (g: Graph, op: string): number => g.nodes.filter((n) => n.op === op).length;

export function run(graph: Graph, inputs: readonly Tensor[], constants: ReadonlyMap<string, Tensor>): Tensor[] {
  return withEagerBackend('reference', () => interpret(graph, inputs, constants));
}

/** Largest |a − b| / (atol + rtol·|b|) over all elements (≤ 1 means within tolerance). */
export function assertClose(got: Tensor, want: Tensor, tol: { atol: number; rtol: number }, what: string): void {
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assert.deepEqual([...got.shape], [...want.shape], `${what}: shape`);
  const g = got.toFlatArray(), w = want.toFlatArray();
  for (let i = 0; i < w.length; i++) {
    if (Number.isNaN(w[i]) && Number.isNaN(g[i])) continue;
    if (!(Math.abs(g[i] - w[i]) <= tol.atol + tol.rtol * Math.abs(w[i]))) {
      assert.fail(`${what}: element ${i} is ${g[i]}, expected ${w[i]} (atol ${tol.atol}, rtol ${tol.rtol})`);
    }
  }
}

/** Default tolerance for f32 graphs whose values are O(1): the reference kernels round once per
 *  op to f32, a fused op rounds once for several, so results differ by a few f32 ulps (~1e-7
 *  relative) per fused op; 1e-5 leaves room for a dozen such steps. */
export const F32_TOL = { atol: 1e-5, rtol: 1e-5 };

/** Interprets both graphs on the same inputs (or fresh seeded ones) and compares every output. */
export function assertEquivalent(before: Graph, after: Graph, t: Traced, tol = F32_TOL, inputs: readonly Tensor[] = t.inputs): void {
  const a = run(before, inputs, t.constants), b = run(after, inputs, t.constants);
  assert.equal(b.length, a.length);
  a.forEach((x, i) => assertClose(b[i], x, tol, `output ${i}`));
}

export const rnd = (shape: number[], seed: number): Tensor => randn(shape, { seed });
