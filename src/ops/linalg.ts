// Linear algebra ops: matmul (NumPy semantics), linear (x · weightᵀ + bias) and conv2d (NCHW,
// grouped, strided, padded, dilated). Reference kernels accumulate in float64 and round once.
import { defineOp, type TensorMeta } from './registry.js';
import { isFloatDType } from '../tensor/dtype.js';
import { type Dim, type Shape, broadcastShapes, dimAdd, dimDiv, formatShape, numel } from '../tensor/shape.js';
import { values, tensorFrom, concrete, broadcastIndex } from './kernel-utils.js';

interface Conv2dAttrs { stride: readonly number[]; padding: readonly number[]; dilation: readonly number[]; groups: number }

/** Two dims can only be shown to differ when both are concrete; a symbolic dim is checked at run time. */
const mayEqual = (a: Dim, b: Dim): boolean => typeof a !== 'number' || typeof b !== 'number' || a === b;

/** All named inputs must share one floating-point dtype (what GEMM kernels are written for). */
function checkDTypes(op: string, named: [string, TensorMeta | null][]): void {
  const [firstName, first] = named[0];
  if (!isFloatDType(first!.dtype)) throw new TypeError(`${op}: ${firstName} has dtype ${first!.dtype}; ${op} needs floating-point tensors (cast it first)`);
  for (const [name, m] of named.slice(1)) {
    if (m && m.dtype !== first!.dtype) throw new TypeError(`${op}: ${name} has dtype ${m.dtype} but ${firstName} has dtype ${first!.dtype}; they must match`);
  }
}

// ---- matmul ----

/** Output shape of a NumPy matmul, plus the pieces the kernel needs. */
function matmulShape(a: Shape, b: Shape): { out: Dim[]; batch: Dim[]; aBatch: Shape; bBatch: Shape } {
  if (a.length === 0 || b.length === 0) {
    throw new RangeError(`matmul: operands must have at least one dim, got a ${formatShape(a)}, b ${formatShape(b)}`);
  }
  const a2 = a.length === 1 ? [1, a[0]] : a; // 1-D a is a row vector [1, K]
  const b2 = b.length === 1 ? [b[0], 1] : b; // 1-D b is a column vector [K, 1]
  const ka = a2[a2.length - 1], kb = b2[b2.length - 2];
  if (!mayEqual(ka, kb)) throw new RangeError(`matmul: inner dims differ: a is ${formatShape(a)}, b is ${formatShape(b)}`);
  const aBatch = a2.slice(0, -2), bBatch = b2.slice(0, -2);
  const batch = broadcastShapes(aBatch, bBatch);
  if (!batch) throw new RangeError(`matmul: batch dims do not broadcast: a is ${formatShape(a)}, b is ${formatShape(b)}`);
  const out: Dim[] = [...batch];
  if (a.length > 1) out.push(a2[a2.length - 2]);
  if (b.length > 1) out.push(b2[b2.length - 1]);
  return { out, batch, aBatch, bBatch };
}

/** C[m, n] += A[m, k] · B[k, n] for one batch element (row-major, offsets into flat arrays). */
function gemm(A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, m: number, k: number, n: number): void {
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const aip = A[aOff + i * k + p]; // no zero-skip: 0 · Inf must stay NaN
      const bRow = bOff + p * n, cRow = cOff + i * n;
      for (let j = 0; j < n; j++) C[cRow + j] += aip * B[bRow + j];
    }
  }
}

export const matmul = defineOp({
  name: 'matmul',
  kind: 'linalg',
  inputs: ['a', 'b'],
  attrs: {},
  doc: 'Matrix product with NumPy semantics: 1-D a is [1, K] and 1-D b is [K, 1] with the added dim removed from the result; leading batch dims broadcast.',
  infer([a, b]) {
    checkDTypes('matmul', [['a', a], ['b', b]]);
    return [{ dtype: a!.dtype, shape: matmulShape(a!.shape, b!.shape).out }];
  },
  reference([a, b], _attrs, [out]) {
    const { batch, aBatch, bBatch } = matmulShape(a!.shape, b!.shape);
    const as = a!.shape, bs = b!.shape;
    const m = as.length === 1 ? 1 : as[as.length - 2], k = as[as.length - 1];
    const n = bs.length === 1 ? 1 : bs[bs.length - 1];
    const batchShape = concrete(batch);
    const aMap = broadcastIndex(batchShape, concrete(aBatch)), bMap = broadcastIndex(batchShape, concrete(bBatch));
    const A = values(a!), B = values(b!);
    const C = new Float64Array(numel(batchShape) * m * n);
    for (let t = 0; t < aMap.length; t++) gemm(A, aMap[t] * m * k, B, bMap[t] * k * n, C, t * m * n, m, k, n);
    return [tensorFrom(out, C)];
  },
});

// ---- linear ----

export const linear = defineOp({
  name: 'linear',
  kind: 'linalg',
  inputs: ['x', 'weight', 'bias?'],
  attrs: {},
  doc: 'y = x · weightᵀ + bias with x [..., in], weight [out, in], bias [out]; y is [..., out].',
  infer([x, weight, bias]) {
    checkDTypes('linear', [['x', x], ['weight', weight], ['bias', bias]]);
    const xs = x!.shape, ws = weight!.shape;
    if (xs.length < 1) throw new RangeError(`linear: x must have at least one dim, got a scalar`);
    if (ws.length !== 2) throw new RangeError(`linear: weight must be [out, in], got ${formatShape(ws)}`);
    if (!mayEqual(xs[xs.length - 1], ws[1])) {
      throw new RangeError(`linear: x ${formatShape(xs)} has ${xs[xs.length - 1]} input features but weight ${formatShape(ws)} expects ${ws[1]}`);
    }
    if (bias && (bias.shape.length !== 1 || !mayEqual(bias.shape[0], ws[0]))) {
      throw new RangeError(`linear: bias ${formatShape(bias.shape)} must be [out] = [${ws[0]}] for weight ${formatShape(ws)}`);
    }
    return [{ dtype: x!.dtype, shape: [...xs.slice(0, -1), ws[0]] }];
  },
  reference([x, weight, bias], _attrs, [out]) {
    const [o, inF] = weight!.shape;
    const rows = inF === 0 ? numel(x!.shape.slice(0, -1)) : x!.size / inF;
    const X = values(x!), W = values(weight!), b = bias ? values(bias) : null;
    const Y = new Float64Array(rows * o);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < o; j++) {
        let s = b ? b[j] : 0;
        for (let p = 0; p < inF; p++) s += X[r * inF + p] * W[j * inF + p];
        Y[r * o + j] = s;
      }
    }
    return [tensorFrom(out, Y)];
  },
});

// ---- conv2d ----

/** Output length of one spatial dim: floor((size + 2·pad − dil·(k−1) − 1) / stride) + 1. Symbolic sizes
 *  are supported when stride is 1, or when the size is provably divisible by the stride. */
function convOutDim(size: Dim, k: Dim, stride: number, pad: number, dil: number, what: string, shapes: string): Dim {
  if (typeof k !== 'number') throw new RangeError(`conv2d: kernel ${what} must be concrete, got "${k}" (${shapes})`);
  const c = 2 * pad - dil * (k - 1) - 1;
  if (typeof size === 'number') {
    const o = Math.floor((size + c) / stride) + 1;
    if (o <= 0) {
      throw new RangeError(`conv2d: output ${what} would be ${o} (input ${size}, kernel ${k}, stride ${stride}, padding ${pad}, dilation ${dil}); ${shapes}`);
    }
    return o;
  }
  if (stride === 1) return dimAdd(size, c + 1);
  const q = dimDiv(size, stride);
  // size = q·stride, so floor((q·stride + c) / stride) + 1 = q + floor((c + stride) / stride)
  if (q !== undefined) return dimAdd(q, Math.floor((c + stride) / stride));
  throw new RangeError(`conv2d: cannot infer the output ${what} for symbolic input ${what} "${size}" with stride ${stride}; make the dim a multiple of the stride (e.g. "${stride}*${size}") or concrete (${shapes})`);
}

export const conv2d = defineOp<Conv2dAttrs>({
  name: 'conv2d',
  kind: 'linalg',
  inputs: ['x', 'weight', 'bias?'],
  attrs: {
    stride: { type: 'ints', default: [1, 1] },
    padding: { type: 'ints', default: [0, 0] },
    dilation: { type: 'ints', default: [1, 1] },
    groups: { type: 'int', default: 1 },
  },
  doc: '2-D cross-correlation (as in PyTorch): x [N, C, H, W], weight [O, C/groups, kH, kW], bias [O]; zero padding.',
  infer([x, weight, bias], { stride, padding, dilation, groups }) {
    checkDTypes('conv2d', [['x', x], ['weight', weight], ['bias', bias]]);
    const xs = x!.shape, ws = weight!.shape;
    const shapes = `x is ${formatShape(xs)}, weight is ${formatShape(ws)}`;
    if (xs.length !== 4) throw new RangeError(`conv2d: x must be [N, C, H, W], got ${formatShape(xs)}`);
    if (ws.length !== 4) throw new RangeError(`conv2d: weight must be [O, C/groups, kH, kW], got ${formatShape(ws)}`);
    const pairOk = (v: readonly number[], min: number) => v.length === 2 && v.every((e) => e >= min);
    if (!pairOk(stride, 1)) throw new RangeError(`conv2d: stride must be two integers >= 1, got [${stride.join(', ')}]`);
    if (!pairOk(padding, 0)) throw new RangeError(`conv2d: padding must be two integers >= 0, got [${padding.join(', ')}]`);
    if (!pairOk(dilation, 1)) throw new RangeError(`conv2d: dilation must be two integers >= 1, got [${dilation.join(', ')}]`);
    if (groups < 1) throw new RangeError(`conv2d: groups must be >= 1, got ${groups}`);
    const [n, c, h, w] = xs;
    const [o, cPerGroup, kh, kw] = ws;
    if (typeof c === 'number' && c % groups !== 0) throw new RangeError(`conv2d: input channels ${c} are not divisible by groups ${groups}; ${shapes}`);
    if (typeof cPerGroup === 'number' && typeof c === 'number' && cPerGroup * groups !== c) {
      throw new RangeError(`conv2d: channel mismatch: x has ${c} channels, weight expects ${cPerGroup} per group × ${groups} groups = ${cPerGroup * groups}; ${shapes}`);
    }
    if (typeof o === 'number' && o % groups !== 0) throw new RangeError(`conv2d: output channels ${o} are not divisible by groups ${groups}; ${shapes}`);
    if (bias && (bias.shape.length !== 1 || !mayEqual(bias.shape[0], o))) {
      throw new RangeError(`conv2d: bias ${formatShape(bias.shape)} must be [O] = [${o}]; ${shapes}`);
    }
    const oh = convOutDim(h, kh, stride[0], padding[0], dilation[0], 'height', shapes);
    const ow = convOutDim(w, kw, stride[1], padding[1], dilation[1], 'width', shapes);
    return [{ dtype: x!.dtype, shape: [n, o, oh, ow] }];
  },
  reference([x, weight, bias], { stride: [sh, sw], padding: [ph, pw], dilation: [dh, dw], groups }, [out]) {
    const [n, c, h, w] = x!.shape;
    const [o, cg, kh, kw] = weight!.shape;
    const [, , oh, ow] = concrete(out.shape);
    const og = o / groups;
    const X = values(x!), W = values(weight!), b = bias ? values(bias) : null;
    const Y = new Float64Array(n * o * oh * ow);
    for (let bi = 0; bi < n; bi++) {
      for (let oc = 0; oc < o; oc++) {
        const g = Math.floor(oc / og);
        const yBase = (bi * o + oc) * oh * ow;
        if (b) Y.fill(b[oc], yBase, yBase + oh * ow);
        for (let ic = 0; ic < cg; ic++) {
          const xBase = (bi * c + g * cg + ic) * h * w;
          const wBase = (oc * cg + ic) * kh * kw;
          for (let ki = 0; ki < kh; ki++) {
            for (let kj = 0; kj < kw; kj++) {
              const wv = W[wBase + ki * kw + kj];
              for (let yi = 0; yi < oh; yi++) {
                const xi = yi * sh - ph + ki * dh;
                if (xi < 0 || xi >= h) continue;
                for (let yj = 0; yj < ow; yj++) {
                  const xj = yj * sw - pw + kj * dw;
                  if (xj < 0 || xj >= w) continue;
                  Y[yBase + yi * ow + yj] += wv * X[xBase + xi * w + xj];
                }
              }
            }
          }
        }
      }
    }
    return [tensorFrom(out, Y)];
  },
});
