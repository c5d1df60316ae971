// Shapes whose dims are concrete numbers or symbolic names ("batch", "seq"), and the small
// amount of symbolic arithmetic shape inference needs. A symbolic dim is a canonical string
// expression: a product of factors ("batch*seq", "2*seq"); sums appear only from concat ("seq+1").

export type Dim = number | string;
export type Shape = readonly Dim[];

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a concrete shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}

export const formatShape = (shape: Shape): string => `[${shape.join(', ')}]`;

/** Top-level factors of a product expression ("2*batch*(seq+1)" -> ["2", "batch", "(seq+1)"]). */
function splitFactors(d: string): string[] {
  const out: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < d.length; i++) {
    const c = d[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '*' && depth === 0) { out.push(d.slice(start, i)); start = i + 1; }
  }
  out.push(d.slice(start));
  return out;
}

function factors(d: Dim): { coeff: number; syms: string[] } {
  if (typeof d === 'number') return { coeff: d, syms: [] };
  let coeff = 1;
  const syms: string[] = [];
  for (const f of splitFactors(d)) { if (/^\d+$/.test(f)) coeff *= Number(f); else syms.push(f); }
  return { coeff, syms };
}

/** Product of dims; symbolic factors are kept sorted so equal products compare equal. */
export function dimMul(...dims: Dim[]): Dim {
  let coeff = 1;
  const syms: string[] = [];
  for (const d of dims) {
    const f = factors(d);
    coeff *= f.coeff;
    syms.push(...f.syms);
  }
  if (syms.length === 0 || coeff === 0) return coeff;
  syms.sort();
  return coeff === 1 ? syms.join('*') : `${coeff}*${syms.join('*')}`;
}

export function dimAdd(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  if (a === b) return dimMul(2, a);
  return typeof b === 'number' && b < 0 ? `(${a}-${-b})` : `(${a}+${b})`;
}

/** a / b where b divides a; returns undefined when that cannot be shown. */
export function dimDiv(a: Dim, b: Dim): Dim | undefined {
  if (typeof a === 'number' && typeof b === 'number') return b !== 0 && a % b === 0 ? a / b : undefined;
  if (a === b) return 1;
  const fa = factors(a), fb = factors(b);
  if (fa.coeff % fb.coeff !== 0) return undefined;
  const rest = [...fa.syms];
  for (const s of fb.syms) {
    const i = rest.indexOf(s);
    if (i < 0) return undefined;
    rest.splice(i, 1);
  }
  return dimMul(fa.coeff / fb.coeff, ...rest);
}


/** NumPy broadcasting of two shapes; returns undefined when they are incompatible. */
export function broadcastShapes(a: Shape, b: Shape): Dim[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da === db || db === 1) out[i] = da;
    else if (da === 1) out[i] = db;
    else return undefined;
  }
  return out;
}

/** Normalizes a possibly negative axis against a rank, or throws with the op name. */
export function normalizeAxis(axis: number, rank: number, op: string, what = 'axis'): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) {
    throw new RangeError(`${op}: ${what} ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}
