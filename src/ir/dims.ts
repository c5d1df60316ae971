// Symbolic dim expressions as the IR sees them: the strings shape inference builds ("batch",
// "2*seq", "batch*heads", "(seq+1)") parsed into polynomials, so they can be compared (two
// spellings of one product are equal), hashed canonically and evaluated under concrete bindings.
import type { Dim } from '../tensor/shape.js';

/** A polynomial in dim symbols: monomial key (sorted factor names joined by '*', '' for the
 *  constant term) -> integer coefficient. */
export type DimPoly = Map<string, number>;

/** Dim names usable in input specs and attributes: identifier-like, so expressions parse. */
export const DIM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export class DimSyntaxError extends Error {
  constructor(readonly expression: string, detail: string) {
    super(`symbolic dim "${expression}": ${detail}`);
    this.name = 'DimSyntaxError';
  }
}

function mulMonomials(a: string, b: string): string {
  if (a === '') return b;
  if (b === '') return a;
  return [...a.split('*'), ...b.split('*')].sort().join('*');
}

function addInto(p: DimPoly, key: string, c: number): void {
  const v = (p.get(key) ?? 0) + c;
  if (v === 0) p.delete(key); else p.set(key, v);
}

function polyMul(a: DimPoly, b: DimPoly): DimPoly {
  const out: DimPoly = new Map();
  for (const [ka, ca] of a) for (const [kb, cb] of b) addInto(out, mulMonomials(ka, kb), ca * cb);
  return out;
}

/** Parses a dim (number or expression over + - * and parentheses) into a polynomial. */
export function parseDim(d: Dim): DimPoly {
  if (typeof d === 'number') return d === 0 ? new Map() : new Map([['', d]]);
  const src = d;
  const tokens = src.match(/\d+|[A-Za-z_][A-Za-z0-9_]*|[-+*()]|\S/g) ?? [];
  let pos = 0;
  const fail = (why: string): never => { throw new DimSyntaxError(src, why); };
  const expr = (): DimPoly => {
    let acc = term();
    while (tokens[pos] === '+' || tokens[pos] === '-') {
      const sign = tokens[pos++] === '+' ? 1 : -1;
      for (const [k, c] of term()) addInto(acc, k, sign * c);
    }
    return acc;
  };
  const term = (): DimPoly => {
    let acc = factor();
    while (tokens[pos] === '*') { pos++; acc = polyMul(acc, factor()); }
    return acc;
  };
  const factor = (): DimPoly => {
    const t = tokens[pos++];
    if (t === undefined) return fail('unexpected end of expression');
    if (t === '(') {
      const inner = expr();
      if (tokens[pos++] !== ')') fail('missing )');
      return inner;
    }
    if (t === '-') { const f = factor(); for (const [k, c] of f) f.set(k, -c); return f; }
    if (/^\d+$/.test(t)) return parseDim(Number(t));
    if (DIM_NAME.test(t)) return new Map([[t, 1]]);
    return fail(`unexpected "${t}"`);
  };
  const p = expr();
  if (pos !== tokens.length) fail(`unexpected "${tokens[pos]}"`);
  return p;
}

/** The canonical spelling of a dim: a number when it is constant, otherwise the polynomial's terms
 *  in sorted order ("2*seq", "batch*seq", "(1+seq)"). Equal polynomials give equal strings. */
export function canonicalDim(d: Dim): Dim {
  if (typeof d === 'number') return d;
  const p = parseDim(d);
  const keys = [...p.keys()].sort();
  if (keys.length === 0) return 0;
  if (keys.length === 1 && keys[0] === '') return p.get('')!;
  const terms = keys.map((k) => {
    const c = p.get(k)!;
    if (k === '') return String(c);
    return c === 1 ? k : c === -1 ? `-${k}` : `${c}*${k}`;
  });
  if (terms.length === 1) return terms[0];
  return `(${terms.join('+').replace(/\+-/g, '-')})`;
}

/** Whether two dims are provably equal as polynomials. */
export function dimsEqual(a: Dim, b: Dim): boolean {
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  try { return canonicalDim(a) === canonicalDim(b); } catch { return a === b; }
}

export function shapesEqual(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => dimsEqual(d, b[i]));
}

/** Symbol names a dim mentions. */
export function dimSymbols(d: Dim): string[] {
  if (typeof d === 'number') return [];
  return [...new Set(d.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? [])];
}

export type DimBindings = ReadonlyMap<string, number>;

/** The value of a dim under concrete bindings of its symbols; throws naming an unbound symbol. */
export function evalDim(d: Dim, bindings: DimBindings): number {
  if (typeof d === 'number') return d;
  let total = 0;
  for (const [key, c] of parseDim(d)) {
    let v = c;
    if (key !== '') {
      for (const name of key.split('*')) {
        const b = bindings.get(name);
        if (b === undefined) throw new RangeError(`symbolic dim "${d}": "${name}" has no value (bound: ${[...bindings.keys()].join(', ') || 'none'})`);
        v *= b;
      }
    }
    total += v;
  }
  return total;
}

export const evalShape = (shape: readonly Dim[], bindings: DimBindings): number[] => shape.map((d) => evalDim(d, bindings));
