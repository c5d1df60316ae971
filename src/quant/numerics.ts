// The number formats of post-training quantization, as plain array functions: symmetric int8 and
// int4 (round to nearest, halves away from zero, clamp to ±127 / [-8, 7]) and FP8 E4M3 (OCP "fn" variant: max 448,
// subnormals, round to nearest even). "Fake" quantization returns the dequantized values, which is
// what the simulated W8A8 / W4 / KV paths compute with; the fake_quant op, the calibration
// searches (smoothing, PSS, AWQ, GPTQ) and the artifact writer all call these, so a search scores
// exactly the rounding the model later runs with.

export const INT8_MAX = 127;
export const INT4_MIN = -8;
export const INT4_MAX = 7;
export const FP8_E4M3_MAX = 448;

export type ActFormat = 'int8' | 'fp8';

/** The largest representable magnitude of a format (what a scale maps the absolute max to). */
export const formatMax = (f: ActFormat): number => (f === 'int8' ? INT8_MAX : FP8_E4M3_MAX);

/** Round half to even (as hardware FP8 conversion does). */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x rounded to the nearest FP8 E4M3 value (clamped to ±448). */
export function roundE4M3(x: number): number {
  const a = Math.abs(x);
  if (a === 0 || Number.isNaN(a)) return 0;
  if (a >= FP8_E4M3_MAX) return Math.sign(x) * FP8_E4M3_MAX;
  // normals: 3 mantissa bits below the leading one; subnormals: fixed step 2^-9 below 2^-6
  const e = Math.max(Math.floor(Math.log2(a)), -6);
  const step = 2 ** (e - 3);
  const q = roundEven(a / step) * step;
  return Math.sign(x) * Math.min(q, FP8_E4M3_MAX);
}

/** Round half away from zero: symmetric, so a weight and its negation get opposite codes. */
export const roundSym = (x: number): number => (x < 0 ? -Math.round(-x) : Math.round(x));

/** One value quantized with `scale` (value = q · scale) and dequantized. */
export function fakeQuantValue(x: number, scale: number, f: ActFormat): number {
  if (!(scale > 0)) return 0;
  if (f === 'int8') return Math.max(-INT8_MAX, Math.min(INT8_MAX, roundSym(x / scale))) * scale;
  return roundE4M3(x / scale) * scale;
}

/** Fake-quantizes `x` in place in runs of `row` values, each run with its own dynamic absmax scale
 *  (row = last dim: per token; row = x.length: per tensor). */
export function fakeQuantRows(x: Float32Array | Float64Array, row: number, f: ActFormat): void {
  const m = formatMax(f);
  for (let r = 0; r < x.length; r += row) {
    let amax = 0;
    for (let j = r; j < r + row; j++) amax = Math.max(amax, Math.abs(x[j]));
    const s = Math.fround(amax / m);
    for (let j = r; j < r + row; j++) x[j] = fakeQuantValue(x[j], s, f);
  }
}

export type WeightFormat = 'int8' | 'int4' | 'fp8';

/** Per-output-channel (int8, fp8) or per-group (int4) absmax scales of a row-major [N, K] matrix. */
export function weightScales(w: ArrayLike<number>, N: number, K: number, f: WeightFormat, group: number): Float32Array {
  const g = f === 'int4' ? group : K;
  const groups = K / g;
  const div = f === 'int8' ? INT8_MAX : f === 'int4' ? INT4_MAX : FP8_E4M3_MAX;
  const s = new Float32Array(N * groups);
  for (let n = 0; n < N; n++) {
    for (let gi = 0; gi < groups; gi++) {
      let amax = 0;
      for (let k = gi * g; k < (gi + 1) * g; k++) amax = Math.max(amax, Math.abs(w[n * K + k]));
      s[n * groups + gi] = Math.fround(amax / div);
    }
  }
  return s;
}

/** The integer code (int8/int4) or the scaled FP8 value of one weight under `scale`. */
export function weightCode(x: number, scale: number, f: WeightFormat): number {
  if (!(scale > 0)) return 0;
  if (f === 'int8') return Math.max(-INT8_MAX, Math.min(INT8_MAX, roundSym(x / scale)));
  if (f === 'int4') return Math.max(INT4_MIN, Math.min(INT4_MAX, roundSym(x / scale)));
  return roundE4M3(x / scale);
}

/** Fake-quantized copy of a row-major [N, K] weight with the given scales (see weightScales). */
export function fakeQuantWeight(w: ArrayLike<number>, N: number, K: number, f: WeightFormat, group: number, scales?: Float32Array): Float32Array {
  const s = scales ?? weightScales(w, N, K, f, group);
  const g = f === 'int4' ? group : K;
  const groups = K / g;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const sc = s[n * groups + Math.floor(k / g)];
      out[n * K + k] = weightCode(w[n * K + k], sc, f) * sc;
    }
  }
  return out;
}
