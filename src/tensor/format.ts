// Readable printing of tensors: dtype, shape and values, eliding the middle of large dims.
import type { Tensor } from './tensor.js';
import { numel } from './shape.js';

const EDGE = 3;       // values shown at each end of an elided dim
const THRESHOLD = 1000; // tensors with more elements than this are elided

export function formatTensor(t: Tensor): string {
  const head = `Tensor(${t.dtype}, [${t.shape.join(', ')}]${t.device !== 'cpu' ? `, ${t.device}` : ''}`;
  if (t.isSymbolic) return `${head}, symbolic [${t.metaShape.join(', ')}])`;
  // i64 prints exactly from its BigInts (toFlatArray refuses values beyond 2^53)
  const flat: ArrayLike<number | bigint> = t.dtype === 'i64' ? (t.data as BigInt64Array) : t.toFlatArray();
  const elide = flat.length > THRESHOLD;
  const isFloat = t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16';
  const fmt = (v: number | bigint): string => {
    if (typeof v === 'bigint') return String(v);
    if (!isFloat) return t.dtype === 'bool' ? (v ? 'true' : 'false') : String(v);
    if (!Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e5 || a < 1e-4) ? v.toExponential(4) : v.toFixed(4);
  };
  const body = (dim: number, offset: number, indent: string): string => {
    if (t.rank === 0) return fmt(flat[0]);
    const n = t.shape[dim];
    const stride = numel(t.shape.slice(dim + 1));
    const idx = elide && n > 2 * EDGE ? [...range(0, EDGE), -1, ...range(n - EDGE, n)] : range(0, n);
    if (dim === t.rank - 1) {
      return `[${idx.map((i) => (i < 0 ? '...' : fmt(flat[offset + i]))).join(', ')}]`;
    }
    const rows = idx.map((i) => (i < 0 ? '...' : body(dim + 1, offset + i * stride, indent + ' ')));
    return `[${rows.join(`,\n${indent} `)}]`;
  };
  return `${head},\n${body(0, 0, '')})`;
}

function range(a: number, b: number): number[] {
  const r: number[] = [];
  for (let i = a; i < b; i++) r.push(i);
  return r;
}
