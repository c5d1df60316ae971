// How exported models name their inputs, one rule for exportModel and exportOnnx: after the traced
// function's parameters (`forward(x, mask)` -> "x", "mask") when each parameter is one tensor, else
// after the tracer's argument paths ("arg0", "arg1.mask"); `inputNames` overrides both.
import type { Graph } from '../ir/index.js';

/** Parameter names of a function from its source (`forward(x, mask)` -> ['x', 'mask']); null when
 *  the list is not plain identifiers (destructuring, rest parameters). */
export function parameterNames(fn: (...args: any[]) => unknown): string[] | null {
  const src = Function.prototype.toString.call(fn);
  const m = /^[^(]*\(([^)]*)\)/.exec(src) ?? /^\s*(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(src);
  if (!m) return null;
  const names = m[1].split(',').map((p) => p.replace(/\/\*.*?\*\//g, '').split('=')[0].split(':')[0].trim()).filter((p) => p.length > 0);
  return names.every((n) => /^[A-Za-z_$][\w$]*$/.test(n)) ? names : null;
}

/** The function's parameter names for the graph's inputs when every argument was one tensor (the
 *  tracer then names input i "arg<i>"), else undefined (the graph's own names are used). */
export function inputNamesFromParameters(graph: Graph, fn: ((...args: any[]) => unknown) | undefined): string[] | undefined {
  if (!fn) return undefined;
  const names = parameterNames(fn);
  if (!names || names.length !== graph.inputs.length) return undefined;
  return graph.inputs.every((inp, i) => inp.name === `arg${i}`) ? names : undefined;
}
