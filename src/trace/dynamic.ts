// Dynamic dims: turning concrete tracing runs into one graph whose shapes and shape attributes are
// symbolic ("batch", "256*batch").
//
// Why two runs: user code reads concrete numbers from `x.shape` and computes with them
// (`const [B, L, C] = x.shape; x.reshape(B, L, heads, C / heads)`), so the traced attributes hold
// the example's numbers, not the symbols. We cannot see the arithmetic, but we can observe it: the
// function is traced once with the real example dims and once more with every dynamic dim
// multiplied by its own prime (dim 0 ×2, dim 1 ×3, dim 2 ×5, ...). Multiplying keeps divisibility
// constraints the user's code may rely on (patch sizes, head counts) intact.
//
// Soundness: the two graphs must have the same structure (ops, wiring, constants, output
// structure); otherwise control flow depends on a dynamic dim and we refuse. Every number that
// differs between the runs (shape attributes, e.g. reshape targets) must be c·∏dims with a
// positive integer c: the ratio of the two numbers is then a product of the dims' primes, whose
// factorization names the dims uniquely, and c must come out an integer. Sums of dims reach user
// code only through shapes (concat of a cache and new tokens gives "(past+new)"), so a number may
// also be c·∏dims·S for a sum S that some already-inferred shape holds, when exactly one such form
// fits both runs. Anything else (L+1 or L/2 computed in JS, a float depending on L, a number in an
// attribute that cannot hold symbols) is reported as "not dynamic-safe" with the op and source
// line, and the user marks that dim static. With symbolic attributes in place, every node's shape inference is re-run on symbolic
// input shapes, and its result must evaluate to the recorded concrete shapes of both runs.
//
// Limits: two observations cannot rule out every coincidence (e.g. code that saturates,
// `Math.min(L, 512)`, with both examples above 512 looks static); literals created inside forward
// must not depend on dynamic dims (arange(L) is refused); quotients of dynamic dims are refused.
import type { Dim } from '../tensor/shape.js';
import { dimMul } from '../tensor/shape.js';
import { getOp, type GraphSignature } from '../ops/registry.js';
import { normalizeAttrs, type AttrValue, type AttrValues } from '../ops/attrs.js';
import { Graph, signatureOf } from '../ir/graph.js';
import { evalDim, canonicalDim } from '../ir/dims.js';
import type { TraceRunResult } from './tracer.js';
import { canonicalTree } from './tree.js';

/** A dynamic dim, its example value (run 1) and its value in the second run (= v1 · prime). */
export interface DynamicDim { name: string; v1: number; v2: number; prime: number }

/** The primes the second run multiplies dynamic dims by, one per dim. */
export const DIM_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];

/** Thrown when a dim marked dynamic cannot be expressed symbolically in the traced graph. */
export class DynamicDimError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DynamicDimError';
  }
}

/** The value of v1 (run 1) / v2 (run 2) as c·∏dims, or as c·∏dims·S where S is one of the
 *  `sums` (parenthesized sums of dims that shape inference produced, e.g. "(new+past)" after a
 *  concat), or undefined when there is no such form or more than one fits. */
export function solveDim(v1: number, v2: number, dims: readonly DynamicDim[], sums: readonly string[] = []): Dim | undefined {
  const direct = solveMonomial(v1, v2, dims);
  if (direct !== undefined || sums.length === 0) return direct;
  const bind1 = new Map(dims.map((d) => [d.name, d.v1]));
  const bind2 = new Map(dims.map((d) => [d.name, d.v2]));
  const found = new Map<string, Dim>();
  for (const sum of sums) {
    const s1 = evalDim(sum, bind1), s2 = evalDim(sum, bind2);
    if (s1 <= 0 || s2 <= 0 || v1 % s1 !== 0 || v2 % s2 !== 0) continue;
    const rest = solveMonomial(v1 / s1, v2 / s2, dims);
    if (rest === undefined) continue;
    const d = dimMul(rest, sum);
    found.set(String(canonicalDim(d)), d);
  }
  return found.size === 1 ? [...found.values()][0] : undefined;
}

function solveMonomial(v1: number, v2: number, dims: readonly DynamicDim[]): Dim | undefined {
  if (v1 === v2) return v1;
  if (!Number.isInteger(v1) || !Number.isInteger(v2) || v1 <= 0 || v2 <= 0 || v2 % v1 !== 0) return undefined;
  let ratio = v2 / v1;
  let divisor = 1;
  const names: string[] = [];
  for (const d of dims) {
    while (ratio % d.prime === 0) { ratio /= d.prime; names.push(d.name); divisor *= d.v1; }
  }
  if (ratio !== 1 || names.length > 4 || v1 % divisor !== 0) return undefined;
  return dimMul(v1 / divisor, ...names);
}

/** Parenthesized sums inside symbolic dims ("4*(new+past)*b" -> "(new+past)"). Only sums of plain
 *  terms without '*' are used: shape.ts's dimMul splits products on every '*'. */
function sumsIn(shape: readonly Dim[], into: Set<string>): void {
  for (const d of shape) {
    if (typeof d !== 'string') continue;
    for (const m of d.match(/\([^()*]*\)/g) ?? []) into.add(m);
  }
}

/** Merges the two runs' graphs into one with symbolic shapes; `inputShapes` are the symbolic
 *  shapes of the graph inputs (from the input spec). */
export function generalize(r1: TraceRunResult, r2: TraceRunResult, inputShapes: readonly (readonly Dim[])[], dims: readonly DynamicDim[]): Graph {
  const g1 = r1.graph, g2 = r2.graph;
  const run1 = dims.map((d) => `${d.name}=${d.v1}`).join(', ');
  const run2 = dims.map((d) => `${d.name}=${d.v2}`).join(', ');
  const names = dims.map((d) => `"${d.name}"`).join(', ');
  const advice = `Mark the dim static in inputSpec (use a number instead of a name or -1), or keep the shape arithmetic symbolic-friendly (products of dims, e.g. reshape(B, L, heads, C / heads) where only B and L are dynamic).`;
  const structural = (what: string): never => {
    throw new DynamicDimError(
      `trace: the traced graph depends on the value of dynamic dim(s) ${names}: traced with ${run1} and again with ${run2}, ${what}. ` +
      `The code's control flow (or the tensors it creates) changes with the dim, so one graph cannot serve all its values. ${advice}`);
  };
  const nodeWhere = (i: number): string => {
    const n = g1.nodes[i] ?? g2.nodes[i];
    return `node ${i} (${n.op}${n.source ? ` at ${n.source}` : ''})`;
  };

  // ---- the structure must match ----
  if (g1.constants.length !== g2.constants.length || g1.nodes.length !== g2.nodes.length) {
    const i = firstDifferentNode(g1, g2);
    structural(i === undefined
      ? `the graphs have ${g1.nodes.length} and ${g2.nodes.length} nodes and ${g1.constants.length} and ${g2.constants.length} constants`
      : `the graphs first differ at ${nodeWhere(i)}: ${describeNode(g1, i)} vs ${describeNode(g2, i)}`);
  }
  g1.constants.forEach((c1, i) => {
    const c2 = g2.constants[i];
    const use = r1.constantUses.get(c1.value) ?? r2.constantUses.get(c2.value) ?? 'an op';
    if (c1.kind !== c2.kind || c1.name !== c2.name || c1.value !== c2.value || c1.dtype !== c2.dtype) {
      structural(`the constants used differ (@${c1.name} vs @${c2.name}, used by ${use})`);
    }
    if (c1.shape.join() !== c2.shape.join() || JSON.stringify(c1.data) !== JSON.stringify(c2.data)) {
      structural(`a tensor created inside the traced function (@${c1.name}, first used by ${use}) is ${c1.dtype}[${c1.shape.join(', ')}] in one run and ${c2.dtype}[${c2.shape.join(', ')}]${c1.shape.join() === c2.shape.join() ? ' with different values' : ''} in the other. ` +
        `Tensors built from shape numbers (arange(L), masks) are baked in as literals; pass such a tensor as an input or build it with tensor ops from the inputs`);
    }
  });
  g1.nodes.forEach((n1, i) => {
    const n2 = g2.nodes[i];
    if (n1.op !== n2.op || n1.inputs.join() !== n2.inputs.join() || n1.outputs.join() !== n2.outputs.join() ||
        Object.keys(n1.attrs).join() !== Object.keys(n2.attrs).join()) {
      structural(`the graphs first differ at ${nodeWhere(i)}: ${describeNode(g1, i)} vs ${describeNode(g2, i)}`);
    }
  });
  if (g1.outputs.map((o) => `${o.name}=${o.value}`).join() !== g2.outputs.map((o) => `${o.name}=${o.value}`).join()) {
    structural(`the outputs differ (${g1.outputs.map((o) => o.name).join(', ')} vs ${g2.outputs.map((o) => o.name).join(', ')})`);
  }
  const t1 = JSON.stringify(canonicalTree(r1.outputTree)), t2 = JSON.stringify(canonicalTree(r2.outputTree));
  if (t1 !== t2) structural(`the function's result differs outside its tensors (${t1} vs ${t2}); a non-tensor result (e.g. a shape number) cannot depend on a dynamic dim`);

  // ---- symbolic attributes, then symbolic shapes by re-running inference ----
  const g = g1.clone();
  g.inputs.forEach((inp, i) => { g.value(inp.value).shape = [...inputShapes[i]]; });
  const sums = new Set<string>();
  const bind1 = new Map(dims.map((d) => [d.name, d.v1]));
  const bind2 = new Map(dims.map((d) => [d.name, d.v2]));
  g.nodes.forEach((node, i) => {
    const def = getOp(node.op);
    const a2 = g2.nodes[i].attrs;
    const attrs: AttrValues = {};
    for (const [k, v1] of Object.entries(node.attrs)) {
      attrs[k] = symbolizeAttr(k, v1, a2[k], def.attrs[k]?.type, (detail) => {
        throw new DynamicDimError(`trace: dynamic dim(s) ${names} are not dynamic-safe at ${nodeWhere(i)}: attribute "${k}" is ${show(v1)} when traced with ${run1} and ${show(a2[k])} with ${run2}; ${detail}. ${advice}`);
      }, dims, [...sums]);
    }
    node.attrs = normalizeAttrs(def.name, def.attrs, attrs);
    let metas;
    try {
      const ins = node.inputs.map((v) => (v === null ? null : g.meta(v)));
      if (node.graphs) {
        // control flow: each sub-graph pair is generalized the same way, its inputs taking the
        // symbolic types of the node's operands (a cond's predicate is not passed to its branches)
        const operands = (node.op === 'cond' ? ins.slice(1) : ins).map((m) => [...m!.shape]);
        const other = g2.nodes[i].graphs ?? {};
        const subs: Record<string, Graph> = {};
        const sigs: Record<string, GraphSignature> = {};
        for (const [k, s1] of Object.entries(node.graphs)) {
          const s2 = other[k];
          if (!s2) structural(`${nodeWhere(i)} has no "${k}" sub-graph in one run`);
          const asRun = (sg: Graph, r: TraceRunResult): TraceRunResult => ({ graph: sg, outputTree: { t: 'value', v: null }, constants: r.constants, constantUses: new Map() });
          subs[k] = generalize(asRun(s1, r1), asRun(s2, r2), operands, dims);
          sigs[k] = signatureOf(subs[k]);
        }
        node.graphs = subs;
        metas = def.inferGraphs!(ins, node.attrs, sigs);
      } else metas = def.infer(ins, node.attrs);
    }
    catch (e) {
      throw new DynamicDimError(`trace: shape inference of ${nodeWhere(i)} fails on symbolic shapes (${node.inputs.map((v) => (v === null ? 'none' : `[${g.value(v).shape.join(', ')}]`)).join(', ')}): ${(e as Error).message}. Mark dim(s) ${names} static to trace this model.`);
    }
    metas.forEach((m, j) => {
      const id = node.outputs[j];
      const s1 = g1.value(id).shape, s2 = g2.value(id).shape;
      const fits = m.shape.length === s1.length && m.shape.every((d, k) => {
        try { return evalDim(d, bind1) === s1[k] && evalDim(d, bind2) === s2[k]; } catch { return false; }
      });
      if (!fits) {
        throw new DynamicDimError(`trace: dynamic dim(s) ${names} are not dynamic-safe at ${nodeWhere(i)}: its output ${j} has shape [${s1.join(', ')}] with ${run1} and [${s2.join(', ')}] with ${run2}, but shape inference on symbolic inputs gives [${m.shape.join(', ')}]. ${advice}`);
      }
      const v = g.value(id);
      v.dtype = m.dtype;
      v.shape = [...m.shape];
      sumsIn(v.shape, sums);
    });
  });
  return g;
}

function symbolizeAttr(name: string, v1: AttrValue, v2: AttrValue, type: string | undefined, fail: (detail: string) => never, dims: readonly DynamicDim[], sums: readonly string[]): AttrValue {
  if (JSON.stringify(v1) === JSON.stringify(v2)) return v1;
  const one = (a: unknown, b: unknown): Dim => {
    if (typeof a !== 'number' || typeof b !== 'number') return fail('non-numeric attributes must not change with a dynamic dim');
    const s = solveDim(a, b, dims, sums);
    if (s === undefined) {
      return fail(Number.isInteger(a) && Number.isInteger(b)
        ? `${a} → ${b} is not a whole multiple of a product of dynamic dims (or of a sum of them that some shape holds); arithmetic like L+1 or L/2 on shape numbers cannot be made symbolic`
        : 'a float attribute cannot depend on a dynamic dim');
    }
    return s;
  };
  if (Array.isArray(v1) && Array.isArray(v2) && v1.length === v2.length) {
    const out = v1.map((a, k) => one(a, v2[k]));
    if (type !== 'dims' && out.some((d) => typeof d === 'string')) {
      fail(`the attribute "${name}" has type ${type} and cannot hold symbolic dims`);
    }
    return out;
  }
  if (typeof v1 === 'number' && typeof v2 === 'number') {
    one(v1, v2);
    return fail(`the attribute "${name}" has type ${type} and cannot hold a symbolic dim`);
  }
  return fail('the attribute changes in a way that cannot be made symbolic');
}

function firstDifferentNode(g1: Graph, g2: Graph): number | undefined {
  const n = Math.min(g1.nodes.length, g2.nodes.length);
  for (let i = 0; i < n; i++) {
    const a = g1.nodes[i], b = g2.nodes[i];
    if (a.op !== b.op || a.inputs.join() !== b.inputs.join()) return i;
  }
  return n < Math.max(g1.nodes.length, g2.nodes.length) ? n : undefined;
}

function describeNode(g: Graph, i: number): string {
  const n = g.nodes[i];
  if (!n) return 'no node';
  return `${n.op}(${n.inputs.map((v) => (v === null ? 'none' : `%${v}`)).join(', ')})${n.source ? ` at ${n.source}` : ''}`;
}

const show = (v: AttrValue | undefined): string => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));
