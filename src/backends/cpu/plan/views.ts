// Strided views for the plan lowering: a value is a window (element offset, shape, element
// strides) into some storage, so reshape, permute, split, slice and expand cost nothing when the
// consumer can read strides (elementwise, attention, copies, GEMM rows), and are copied only when
// one cannot.

export const contiguousStrides = (shape: readonly number[]): number[] => {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
};

export const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Whether strides describe the row-major layout of shape (size-1 dims may have any stride). */
export function isContiguous(shape: readonly number[], strides: readonly number[]): boolean {
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== acc) return numelOf(shape) === 0;
    acc *= shape[i];
  }
  return true;
}

/** Strides under which `newShape` views the same elements as (shape, strides) in row-major order,
 *  or null when no such strides exist (PyTorch's view rule: only dims that are contiguous with each
 *  other can be merged). */
export function reshapeStrides(shape: readonly number[], strides: readonly number[], newShape: readonly number[]): number[] | null {
  if (numelOf(shape) === 0 || isContiguous(shape, strides)) return contiguousStrides(newShape);
  // drop size-1 dims of the source: they can be placed anywhere
  const os: number[] = [], ost: number[] = [];
  shape.forEach((d, i) => { if (d !== 1) { os.push(d); ost.push(strides[i]); } });
  const out = new Array<number>(newShape.length);
  let viewD = newShape.length - 1;
  let chunkBase = ost[ost.length - 1];
  let tensorNumel = 1, viewNumel = 1;
  for (let d = os.length - 1; d >= 0; d--) {
    tensorNumel *= os[d];
    if (d === 0 || ost[d - 1] !== tensorNumel * chunkBase) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        out[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD];
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) { chunkBase = ost[d - 1]; tensorNumel = 1; viewNumel = 1; }
    }
  }
  while (viewD >= 0 && newShape[viewD] === 1) { out[viewD] = 1; viewD--; }
  return viewD === -1 ? out : null;
}

/** Strides of a (shape, strides) view broadcast to outShape (right-aligned; 0 where it repeats). */
export function broadcastTo(shape: readonly number[], strides: readonly number[], outShape: readonly number[]): number[] {
  const off = outShape.length - shape.length;
  return outShape.map((d, i) => {
    const j = i - off;
    if (j < 0) return 0;
    return shape[j] === 1 && d !== 1 ? 0 : shape[j] === 1 ? 0 : strides[j];
  });
}

/** Python slice bounds for step > 0 on a concrete dim (as the slice op defines them). */
export function sliceBounds(dim: number, start: number, end: number, step: number): { start: number; length: number } {
  const clamp = (i: number): number => (i < 0 ? Math.max(0, i + dim) : Math.min(i, dim));
  const s = clamp(start), e = clamp(end);
  return { start: s, length: e > s ? Math.ceil((e - s) / step) : 0 };
}
