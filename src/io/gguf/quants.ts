// ggml tensor encodings: block layouts, dequantization to f32 for every type this reader supports,
// and ggml's reference quantizers for Q8_0 and Q4_0 (bit-exact with quantize_row_q8_0_ref /
// quantize_row_q4_0_ref in ggml-quants.c, so files we write quantize exactly as llama.cpp would).
//
// Layouts are little-endian and packed (no padding). `ggml_half` is an IEEE f16 bit pattern.
// Arithmetic follows ggml's f32 evaluation order with Math.fround after each operation, so
// dequantized values are the f32 values ggml's scalar code produces (no FMA contraction).
import { f16BitsToFloat, floatToF16Bits, bf16BitsToFloat } from '../../tensor/half.js';
import { type GgmlTypeInfo, type GgmlTypeName, QK_K, ggmlType } from './types.js';

const fround = Math.fround;

let f16Table: Float32Array | null = null;
/** f16 bits -> f32 value, through a 64K-entry table (the dequant loops' hot path). */
function f16Lut(): Float32Array {
  if (f16Table) return f16Table;
  f16Table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToFloat(h);
  return f16Table;
}
const half = (b: Uint8Array, o: number, lut: Float32Array): number => lut[b[o] | (b[o + 1] << 8)];

/*
 * struct block_q8_0 {          // 34 bytes, 32 weights
 *     ggml_half d;             // scale
 *     int8_t    qs[32];        // quants: w[j] = qs[j] * d
 * };
 */
export const QK8_0 = 32;
function dequantQ8_0(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * QK8_0 < n; b++, o += 34) {
    const d = half(src, o, lut);
    const base = b * QK8_0;
    for (let j = 0; j < QK8_0; j++) out[base + j] = fround(((src[o + 2 + j] << 24) >> 24) * d);
  }
}

/*
 * struct block_q4_0 {          // 18 bytes, 32 weights
 *     ggml_half d;             // scale
 *     uint8_t   qs[16];        // nibbles: low nibble of qs[j] is weight j, high nibble is weight j+16
 * };                           // w = (nibble - 8) * d
 */
export const QK4_0 = 32;
function dequantQ4_0(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * QK4_0 < n; b++, o += 18) {
    const d = half(src, o, lut);
    const base = b * QK4_0;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j];
      out[base + j] = fround(((q & 0x0f) - 8) * d);
      out[base + j + 16] = fround(((q >> 4) - 8) * d);
    }
  }
}

/*
 * struct block_q4_1 {          // 20 bytes, 32 weights
 *     ggml_half d;             // scale
 *     ggml_half m;             // min
 *     uint8_t   qs[16];        // nibbles as in q4_0; w = nibble * d + m
 * };
 */
function dequantQ4_1(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * 32 < n; b++, o += 20) {
    const d = half(src, o, lut), m = half(src, o + 2, lut);
    const base = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j];
      out[base + j] = fround(fround((q & 0x0f) * d) + m);
      out[base + j + 16] = fround(fround((q >> 4) * d) + m);
    }
  }
}

/*
 * struct block_q5_0 {          // 22 bytes, 32 weights
 *     ggml_half d;             // scale
 *     uint8_t   qh[4];         // 5th bit of each weight: bit j of the little-endian uint32
 *     uint8_t   qs[16];        // low 4 bits, nibbles as in q4_0
 * };                           // w = (q5 - 16) * d
 */
function dequantQ5_0(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * 32 < n; b++, o += 22) {
    const d = half(src, o, lut);
    const qh = (src[o + 2] | (src[o + 3] << 8) | (src[o + 4] << 16) | (src[o + 5] << 24)) >>> 0;
    const base = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j];
      const h0 = ((qh >>> j) << 4) & 0x10, h1 = (qh >>> (j + 12)) & 0x10;
      out[base + j] = fround((((q & 0x0f) | h0) - 16) * d);
      out[base + j + 16] = fround((((q >> 4) | h1) - 16) * d);
    }
  }
}

/*
 * struct block_q5_1 {          // 24 bytes, 32 weights
 *     ggml_half d, m;          // scale, min
 *     uint8_t   qh[4];         // 5th bits as in q5_0
 *     uint8_t   qs[16];        // low 4 bits
 * };                           // w = q5 * d + m
 */
function dequantQ5_1(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * 32 < n; b++, o += 24) {
    const d = half(src, o, lut), m = half(src, o + 2, lut);
    const qh = (src[o + 4] | (src[o + 5] << 8) | (src[o + 6] << 16) | (src[o + 7] << 24)) >>> 0;
    const base = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j];
      const h0 = ((qh >>> j) << 4) & 0x10, h1 = (qh >>> (j + 12)) & 0x10;
      out[base + j] = fround(fround(((q & 0x0f) | h0) * d) + m);
      out[base + j + 16] = fround(fround(((q >> 4) | h1) * d) + m);
    }
  }
}

/** ggml's get_scale_min_k4: the j-th 6-bit scale and min packed in a K-quant's 12 scale bytes. */
function scaleMinK4(j: number, s: Uint8Array, o: number): [number, number] {
  if (j < 4) return [s[o + j] & 63, s[o + j + 4] & 63];
  return [(s[o + j + 4] & 0x0f) | ((s[o + j - 4] >> 6) << 4), (s[o + j + 4] >> 4) | ((s[o + j] >> 6) << 4)];
}

/*
 * struct block_q4_K {          // 144 bytes, 256 weights in 8 sub-blocks of 32
 *     ggml_half d;             // super-block scale for the sub-block scales
 *     ggml_half dmin;          // super-block scale for the sub-block mins
 *     uint8_t   scales[12];    // 8 scales + 8 mins, 6 bits each: for j < 4, scales[j] & 63 and
 *                              // scales[j+4] & 63; for j >= 4, low 4 bits in scales[j+4] (scale: low
 *                              // nibble, min: high nibble) and high 2 bits in the top 2 bits of
 *                              // scales[j-4] (scale) and scales[j] (min)
 *     uint8_t   qs[128];       // 4-bit quants: each 64 weights use 32 bytes, low nibbles first
 * };                           // w = d*sc[j] * q - dmin*m[j]
 */
function dequantQ4_K(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * QK_K < n; b++, o += 144) {
    const d = half(src, o, lut), dmin = half(src, o + 2, lut);
    const sOff = o + 4;
    let q = o + 16, y = b * QK_K;
    for (let j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
      const [sc1, m1i] = scaleMinK4(is, src, sOff);
      const [sc2, m2i] = scaleMinK4(is + 1, src, sOff);
      const d1 = fround(d * sc1), m1 = fround(dmin * m1i), d2 = fround(d * sc2), m2 = fround(dmin * m2i);
      for (let l = 0; l < 32; l++) out[y++] = fround(fround(d1 * (src[q + l] & 0x0f)) - m1);
      for (let l = 0; l < 32; l++) out[y++] = fround(fround(d2 * (src[q + l] >> 4)) - m2);
    }
  }
}

/*
 * struct block_q5_K {          // 176 bytes, 256 weights in 8 sub-blocks of 32
 *     ggml_half d, dmin;       // as in q4_K
 *     uint8_t   scales[12];    // as in q4_K
 *     uint8_t   qh[32];        // 5th bits: for the 64-weight group g, bit 2g of qh[l] belongs to the
 *                              // low-nibble weight l and bit 2g+1 to the high-nibble weight l+32
 *     uint8_t   qs[128];       // low 4 bits as in q4_K
 * };                           // w = d*sc[j] * q5 - dmin*m[j]
 */
function dequantQ5_K(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * QK_K < n; b++, o += 176) {
    const d = half(src, o, lut), dmin = half(src, o + 2, lut);
    const sOff = o + 4, qh = o + 16;
    let ql = o + 48, y = b * QK_K, u1 = 1, u2 = 2;
    for (let j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      const [sc1, m1i] = scaleMinK4(is, src, sOff);
      const [sc2, m2i] = scaleMinK4(is + 1, src, sOff);
      const d1 = fround(d * sc1), m1 = fround(dmin * m1i), d2 = fround(d * sc2), m2 = fround(dmin * m2i);
      for (let l = 0; l < 32; l++) out[y++] = fround(fround(d1 * ((src[ql + l] & 0x0f) + (src[qh + l] & u1 ? 16 : 0))) - m1);
      for (let l = 0; l < 32; l++) out[y++] = fround(fround(d2 * ((src[ql + l] >> 4) + (src[qh + l] & u2 ? 16 : 0))) - m2);
    }
  }
}

/*
 * struct block_q6_K {          // 210 bytes, 256 weights in 16 sub-blocks of 16
 *     uint8_t   ql[128];       // low 4 bits; per 128-weight half: ql[l] low/high nibble = weights l/l+64,
 *                              // ql[l+32] low/high nibble = weights l+32/l+96 (l < 32)
 *     uint8_t   qh[64];        // high 2 bits; per half: qh[l] bits 0-1, 2-3, 4-5, 6-7 = weights
 *                              // l, l+32, l+64, l+96
 *     int8_t    scales[16];    // sub-block scales
 *     ggml_half d;             // super-block scale
 * };                           // w = d * scales[sub] * (q6 - 32)
 */
function dequantQ6_K(src: Uint8Array, out: Float32Array, n: number): void {
  const lut = f16Lut();
  for (let b = 0, o = 0; b * QK_K < n; b++, o += 210) {
    const d = half(src, o + 208, lut);
    let ql = o, qh = o + 128, sc = o + 192, y = b * QK_K;
    for (let half128 = 0; half128 < 2; half128++, y += 128, ql += 64, qh += 32, sc += 8) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l];
        const q1 = ((src[ql + l] & 0x0f) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const s = (k: number): number => (src[sc + is + k] << 24) >> 24;
        out[y + l] = fround(fround(d * s(0)) * q1);
        out[y + l + 32] = fround(fround(d * s(2)) * q2);
        out[y + l + 64] = fround(fround(d * s(4)) * q3);
        out[y + l + 96] = fround(fround(d * s(6)) * q4);
      }
    }
  }
}

type Dequantizer = (src: Uint8Array, out: Float32Array, n: number) => void;

function plain(read: (dv: DataView, i: number) => number, bytes: number): Dequantizer {
  return (src, out, n) => {
    const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    for (let i = 0; i < n; i++) out[i] = read(dv, i * bytes);
  };
}

const DEQUANTIZERS: Partial<Record<GgmlTypeName, Dequantizer>> = {
  F32: plain((dv, o) => dv.getFloat32(o, true), 4),
  F16: (src, out, n) => { const lut = f16Lut(); for (let i = 0; i < n; i++) out[i] = half(src, 2 * i, lut); },
  BF16: (src, out, n) => { for (let i = 0; i < n; i++) out[i] = bf16BitsToFloat(src[2 * i] | (src[2 * i + 1] << 8)); },
  F64: plain((dv, o) => dv.getFloat64(o, true), 8),
  I8: plain((dv, o) => dv.getInt8(o), 1),
  I16: plain((dv, o) => dv.getInt16(o, true), 2),
  I32: plain((dv, o) => dv.getInt32(o, true), 4),
  I64: plain((dv, o) => Number(dv.getBigInt64(o, true)), 8),
  Q4_0: dequantQ4_0, Q4_1: dequantQ4_1, Q5_0: dequantQ5_0, Q5_1: dequantQ5_1, Q8_0: dequantQ8_0,
  Q4_K: dequantQ4_K, Q5_K: dequantQ5_K, Q6_K: dequantQ6_K,
};

/** Types `dequantize` can convert to f32. */
export const DEQUANTIZABLE_TYPES: readonly GgmlTypeName[] = Object.keys(DEQUANTIZERS) as GgmlTypeName[];

/**
 * Decodes `n` elements of ggml type `type` from their raw little-endian bytes into f32
 * (float types convert exactly; F64 and I64 round to the nearest f32).
 * Throws a RangeError if `bytes` is too short or `n` is not a whole number of blocks.
 */
export function dequantize(type: GgmlTypeName | GgmlTypeInfo, bytes: Uint8Array, n: number, out?: Float32Array): Float32Array {
  const info = typeof type === 'string' ? ggmlType(type) : type;
  const fn = DEQUANTIZERS[info.name];
  if (!fn) throw new TypeError(`dequantize: ggml type ${info.name} is not supported; supported: ${DEQUANTIZABLE_TYPES.join(', ')}`);
  if (!Number.isInteger(n) || n < 0 || n % info.blockSize !== 0) {
    throw new RangeError(`dequantize: ${info.name} needs a whole number of ${info.blockSize}-element blocks, got n = ${n}`);
  }
  const need = (n / info.blockSize) * info.typeSize;
  if (bytes.byteLength < need) throw new RangeError(`dequantize: ${n} ${info.name} elements need ${need} bytes, got ${bytes.byteLength}`);
  const dst = out ?? new Float32Array(n);
  if (dst.length < n) throw new RangeError(`dequantize: output holds ${dst.length} values, need ${n}`);
  fn(bytes, dst, n);
  return dst;
}

/** ggml's roundf: halves round away from zero. */
const roundAway = (v: number): number => (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5));

function checkQuantInput(name: string, x: ArrayLike<number>, qk: number): void {
  if (x.length % qk !== 0) throw new RangeError(`${name}: ${x.length} values are not a whole number of ${qk}-element blocks`);
}

/** Quantizes f32 values to Q8_0 blocks exactly as ggml's quantize_row_q8_0_ref:
 *  d = amax / 127, q = roundf(x / d) (computed as x * (1/d) in f32). */
export function quantizeQ8_0(x: ArrayLike<number>): Uint8Array {
  checkQuantInput('quantizeQ8_0', x, QK8_0);
  const nb = x.length / QK8_0;
  const out = new Uint8Array(nb * 34);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) { const a = Math.abs(fround(x[i * QK8_0 + j])); amax = amax > a ? amax : a; }
    const d = fround(amax / 127);
    const id = d ? fround(1 / d) : 0;
    const dh = floatToF16Bits(d);
    const o = i * 34;
    out[o] = dh & 0xff; out[o + 1] = dh >> 8;
    for (let j = 0; j < QK8_0; j++) out[o + 2 + j] = roundAway(fround(fround(x[i * QK8_0 + j]) * id)) & 0xff;
  }
  return out;
}

/** Quantizes f32 values to Q4_0 blocks exactly as ggml's quantize_row_q4_0_ref: d = max / -8 where max is
 *  the value of largest magnitude (keeping its sign), q = min(15, (int8)(x / d + 8.5)). */
export function quantizeQ4_0(x: ArrayLike<number>): Uint8Array {
  checkQuantInput('quantizeQ4_0', x, QK4_0);
  const nb = x.length / QK4_0;
  const out = new Uint8Array(nb * 18);
  for (let i = 0; i < nb; i++) {
    let amax = 0, max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = fround(x[i * QK4_0 + j]);
      if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; }
    }
    const d = fround(max / -8);
    const id = d ? fround(1 / d) : 0;
    const dh = floatToF16Bits(d);
    const o = i * 18;
    out[o] = dh & 0xff; out[o + 1] = dh >> 8;
    for (let j = 0; j < 16; j++) {
      const x0 = fround(fround(x[i * QK4_0 + j]) * id);
      const x1 = fround(fround(x[i * QK4_0 + 16 + j]) * id);
      const q0 = Math.min(15, Math.trunc(fround(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(fround(x1 + 8.5)));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

// ---- K-quant quantizers ----
// Simple min/max quantizers that write valid Q4_K / Q5_K / Q6_K blocks (the layouts documented above,
// as ggml and llama.cpp read them). They are not ggml's quantize_row_q*_K_ref, which searches each
// sub-block's scale and min to minimize the squared error: the blocks decode in any reader, but a
// file quantized here is a little less accurate than one quantized by llama.cpp.

const putHalf = (out: Uint8Array, o: number, v: number): number => {
  const h = floatToF16Bits(v);
  out[o] = h & 0xff; out[o + 1] = h >> 8;
  return f16BitsToFloat(h);
};

/** Q4_K / Q5_K: per 32-value sub-block an affine map x ≈ d·sc·q − dmin·m, q in [0, 2^bits − 1]. */
function quantizeAffineK(name: string, x: ArrayLike<number>, bits: 4 | 5): Uint8Array {
  checkQuantInput(name, x, QK_K);
  const S = bits === 4 ? 144 : 176, qmax = (1 << bits) - 1;
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * S);
  const scale = new Float64Array(8), min = new Float64Array(8), sc = new Uint8Array(8), mq = new Uint8Array(8);
  for (let b = 0; b < nb; b++) {
    const o = b * S, base = b * QK_K;
    for (let j = 0; j < 8; j++) {
      let lo = 0, hi = 0;
      for (let l = 0; l < 32; l++) { const v = fround(x[base + 32 * j + l]); if (v < lo) lo = v; if (v > hi) hi = v; }
      scale[j] = (hi - lo) / qmax;
      min[j] = -lo; // >= 0: the min is subtracted
    }
    let smax = 0, mmax = 0;
    for (let j = 0; j < 8; j++) { smax = Math.max(smax, scale[j]); mmax = Math.max(mmax, min[j]); }
    const d = putHalf(out, o, smax / 63), dmin = putHalf(out, o + 2, mmax / 63);
    for (let j = 0; j < 8; j++) {
      // round the scale up so the largest value still fits in qmax steps
      sc[j] = d > 0 ? Math.min(63, Math.ceil(scale[j] / d - 1e-6)) : 0;
      mq[j] = dmin > 0 ? Math.min(63, Math.round(min[j] / dmin)) : 0;
    }
    const s = o + 4;
    for (let j = 0; j < 4; j++) {
      out[s + j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
      out[s + j + 4] = (mq[j] & 63) | ((mq[j + 4] >> 4) << 6);
      out[s + j + 8] = (sc[j + 4] & 15) | ((mq[j + 4] & 15) << 4);
    }
    const qh = o + 16, qs = bits === 4 ? o + 16 : o + 48;
    for (let j = 0; j < 8; j++) {
      const dj = fround(d * sc[j]), mj = fround(dmin * mq[j]);
      const c = j >> 1, high = j & 1;
      for (let l = 0; l < 32; l++) {
        const v = fround(x[base + 32 * j + l]);
        const q = dj > 0 ? Math.max(0, Math.min(qmax, Math.round((v + mj) / dj))) : 0;
        out[qs + 32 * c + l] |= high ? (q & 15) << 4 : q & 15;
        if (bits === 5 && q > 15) out[qh + l] |= 1 << (2 * c + high);
      }
    }
  }
  return out;
}

/** Quantizes f32 values (a whole number of 256-value super-blocks) to Q4_K blocks. */
export const quantizeQ4_K = (x: ArrayLike<number>): Uint8Array => quantizeAffineK('quantizeQ4_K', x, 4);
/** Quantizes f32 values (a whole number of 256-value super-blocks) to Q5_K blocks. */
export const quantizeQ5_K = (x: ArrayLike<number>): Uint8Array => quantizeAffineK('quantizeQ5_K', x, 5);

/** Quantizes f32 values (a whole number of 256-value super-blocks) to Q6_K blocks: per 16-value
 *  sub-block a symmetric scale d·sc (sc an int8), q in [−32, 31]. */
export function quantizeQ6_K(x: ArrayLike<number>): Uint8Array {
  checkQuantInput('quantizeQ6_K', x, QK_K);
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * 210);
  const sub = new Float64Array(16), q = new Int8Array(QK_K);
  for (let b = 0; b < nb; b++) {
    const o = b * 210, base = b * QK_K;
    let smax = 0;
    for (let j = 0; j < 16; j++) {
      let amax = 0;
      for (let l = 0; l < 16; l++) amax = Math.max(amax, Math.abs(fround(x[base + 16 * j + l])));
      sub[j] = amax / 31;
      smax = Math.max(smax, sub[j]);
    }
    const d = putHalf(out, o + 208, smax / 127);
    for (let j = 0; j < 16; j++) {
      const scj = d > 0 ? Math.min(127, Math.ceil(sub[j] / d - 1e-6)) : 0;
      out[o + 192 + j] = scj & 0xff;
      const dj = fround(d * scj);
      for (let l = 0; l < 16; l++) {
        const i = 16 * j + l;
        q[i] = dj > 0 ? Math.max(-32, Math.min(31, Math.round(fround(x[base + i]) / dj))) : 0;
      }
    }
    for (let h = 0; h < 2; h++) {
      const ql = o + 64 * h, qh = o + 128 + 32 * h;
      for (let l = 0; l < 32; l++) {
        const v = (i: number): number => q[128 * h + 32 * i + l] + 32;
        const q1 = v(0), q2 = v(1), q3 = v(2), q4 = v(3);
        out[ql + l] = (q1 & 15) | ((q3 & 15) << 4);
        out[ql + l + 32] = (q2 & 15) | ((q4 & 15) << 4);
        out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
  return out;
}
