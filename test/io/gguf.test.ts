import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  readGguf, parseGguf, writeGguf, encodeGgufBytes, gguf, GgufError, quantizeQ8_0, quantizeQ4_0, dequantize,
} from '../../src/io/gguf/index.js';
import { fromArray } from '../../src/index.js';
import { floatToF16Bits, f16BitsToFloat } from '../../src/tensor/half.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-gguf-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Builds GGUF bytes by hand, independently of the writer. */
class Bytes {
  parts: number[] = [];
  u8(v: number) { this.parts.push(v & 0xff); return this; }
  u32(v: number) { for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff); return this; }
  u64(v: number) { this.u32(v % 2 ** 32); this.u32(Math.floor(v / 2 ** 32)); return this; }
  f32(v: number) { const b = new Uint8Array(new Float32Array([v]).buffer); this.parts.push(...b); return this; }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); this.parts.push(...b); return this; }
  padTo(align: number) { while (this.parts.length % align) this.parts.push(0); return this; }
  get length() { return this.parts.length; }
  bytes() { return new Uint8Array(this.parts); }
}

test('parses a hand-built v3 file: header, one u32 kv, one F32 tensor with default alignment 32', () => {
  const b = new Bytes().u8(0x47).u8(0x47).u8(0x55).u8(0x46).u32(3).u64(1).u64(1)
    .str('llama.block_count').u32(4).u32(12)
    .str('w').u32(2).u64(3).u64(2).u32(0).u64(0);
  const headerEnd = b.length;
  b.padTo(32);
  const dataStart = b.length;
  for (const v of [1, 2, 3, 4, 5, 6]) b.f32(v);
  const f = parseGguf(b.bytes());
  assert.equal(f.version, 3);
  assert.equal(f.alignment, 32);
  assert.equal(f.dataOffset, dataStart);
  assert.ok(dataStart > headerEnd && dataStart % 32 === 0);
  assert.equal(f.getNumber('llama.block_count'), 12);
  assert.equal(f.metadataTypes.get('llama.block_count'), 'u32');
  const t = f.tensorInfo('w');
  assert.deepEqual(t.ne, [3, 2]);
  assert.deepEqual(t.shape, [2, 3]); // row-major: ne reversed
  assert.equal(t.offset, dataStart);
  assert.equal(t.byteLength, 24);
  assert.deepEqual(f.toTensor('w').toArray(), [[1, 2, 3], [4, 5, 6]]);
});

test('metadata of every value type round-trips through writer and reader, v2 and v3', () => {
  const nested = [new Int32Array([1, -2]), new Int32Array([3])];
  const metadata = {
    'a.u8': gguf.u8(255), 'a.i8': gguf.i8(-128), 'a.u16': gguf.u16(65535), 'a.i16': gguf.i16(-32768),
    'a.u32': gguf.u32(4294967295), 'a.i32': gguf.i32(-2147483648), 'a.f32': gguf.f32(1.5), 'a.f64': gguf.f64(Math.PI),
    'a.bool': true, 'a.bool_false': false, 'a.string': 'héllo ▁ 🙂',
    'a.u64': gguf.u64(18446744073709551615n), 'a.u64_small': gguf.u64(7), 'a.i64': gguf.i64(-9007199254740993n),
    'a.arr_f32': new Float32Array([0.25, -1]), 'a.arr_i32': new Int32Array([1, 2, 3]), 'a.arr_str': ['x', '', 'zz'],
    'a.arr_bool': [true, false], 'a.arr_u64': new BigUint64Array([1n, 2n ** 64n - 1n]), 'a.arr_empty': gguf.array('string', []),
    'a.nested': gguf.array({ array: 'i32' }, nested),
    'a.nested_str': gguf.array({ array: 'string' }, [['a', 'b'], []]),
  };
  for (const version of [2, 3] as const) {
    const file = path.join(tmp, `meta-v${version}.gguf`);
    writeGguf(file, { version, metadata });
    const f = readGguf(file);
    assert.equal(f.version, version);
    const m = f.metadata;
    assert.equal(m.get('a.u8'), 255); assert.equal(m.get('a.i8'), -128);
    assert.equal(m.get('a.u16'), 65535); assert.equal(m.get('a.i16'), -32768);
    assert.equal(m.get('a.u32'), 4294967295); assert.equal(m.get('a.i32'), -2147483648);
    assert.equal(m.get('a.f32'), 1.5); assert.equal(m.get('a.f64'), Math.PI);
    assert.equal(m.get('a.bool'), true); assert.equal(m.get('a.bool_false'), false);
    assert.equal(m.get('a.string'), 'héllo ▁ 🙂');
    assert.equal(m.get('a.u64'), 18446744073709551615n); // beyond 2^53: bigint
    assert.equal(m.get('a.u64_small'), 7); // exact: number
    assert.equal(m.get('a.i64'), -9007199254740993n);
    assert.deepEqual(m.get('a.arr_f32'), new Float32Array([0.25, -1]));
    assert.deepEqual(m.get('a.arr_i32'), new Int32Array([1, 2, 3]));
    assert.deepEqual(m.get('a.arr_str'), ['x', '', 'zz']);
    assert.deepEqual(m.get('a.arr_bool'), [true, false]);
    assert.deepEqual(m.get('a.arr_u64'), new BigUint64Array([1n, 2n ** 64n - 1n]));
    assert.deepEqual(m.get('a.arr_empty'), []);
    assert.deepEqual(m.get('a.nested'), nested);
    assert.deepEqual(m.get('a.nested_str'), [['a', 'b'], []]);
    assert.deepEqual(f.metadataTypes.get('a.nested'), { array: { array: 'i32' } });
    assert.deepEqual(f.metadataTypes.get('a.arr_u64'), { array: 'u64' });
    assert.equal(f.metadataTypes.get('a.i8'), 'i8');
    // Re-writing with the reader's own types reproduces the file byte for byte.
    const again = encodeGgufBytes({ version, metadata: f.metadata, metadataTypes: f.metadataTypes });
    assert.deepEqual(again, new Uint8Array(fs.readFileSync(file)));
  }
});

test('typed accessors name the key and the types on mismatch', () => {
  const f = parseGguf(encodeGgufBytes({ metadata: { 'x.name': 'n', 'x.count': gguf.u32(3) } }), 'm.gguf');
  assert.equal(f.getString('x.name'), 'n');
  assert.equal(f.getString('x.missing', 'dflt'), 'dflt');
  assert.throws(() => f.getNumber('x.name'), (e: unknown) => e instanceof GgufError && /"x\.name" has type string, expected a number/.test(e.message));
  assert.throws(() => f.getString('x.missing'), /gguf: m\.gguf: metadata key "x\.missing" is missing/);
  assert.throws(() => f.toTensor('nope'), /no tensor named "nope"/);
});

test('tensors: F32 F16 BF16 I8 I32 I64 round-trip with ggml dim order and stay zero-copy', () => {
  const file = path.join(tmp, 'tensors.gguf');
  const a = fromArray([[1, 2, 3], [4, 5, 6]]);
  writeGguf(file, {
    tensors: [
      { name: 'f32', type: 'F32', data: a },
      { name: 'f16', type: 'F16', shape: [3], data: [0.5, -2, 65504] },
      { name: 'bf16', type: 'BF16', shape: [2], data: [1.5, -3] },
      { name: 'i8', type: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) },
      { name: 'i32', type: 'I32', shape: [2, 1], data: [-7, 9] },
      { name: 'i64', type: 'I64', shape: [1], data: [-5] },
    ],
  });
  for (const load of ['lazy', 'memory'] as const) {
    const f = readGguf(file, { load });
    assert.deepEqual(f.tensors.map((t) => t.type), ['F32', 'F16', 'BF16', 'I8', 'I32', 'I64']);
    for (const t of f.tensors) assert.equal(t.relativeOffset % 32, 0);
    assert.deepEqual(f.tensorInfo('i32').ne, [1, 2]);
    const t32 = f.toTensor('f32');
    assert.equal(t32.dtype, 'f32');
    assert.deepEqual(t32.toArray(), [[1, 2, 3], [4, 5, 6]]);
    const t16 = f.toTensor('f16');
    assert.equal(t16.dtype, 'f16');
    assert.deepEqual(Array.from(t16.data as Uint16Array), [0x3800, 0xc000, 0x7bff]);
    assert.deepEqual(f.toTensor('bf16').toArray(), [1.5, -3]);
    assert.equal(f.toTensor('bf16').dtype, 'bf16');
    assert.deepEqual(f.toTensor('f16', { dtype: 'f32' }).toArray(), [0.5, -2, 65504]);
    assert.deepEqual(f.toTensor('i8').toArray(), [-128, 0, 127]);
    assert.deepEqual(f.toTensor('i32').toArray(), [[-7], [9]]);
    assert.equal(f.toTensor('i64').dtype, 'i64');
    assert.deepEqual(f.toTensor('i64').toArray(), [-5]);
    if (load === 'memory') {
      // In memory mode the tensor is a view over the file buffer: one copy of the weights in total.
      const t = f.toTensor('f32');
      const raw = f.tensorData('f32');
      assert.equal((t.data as Float32Array).buffer, raw.buffer);
    }
  }
});

test('alignment: general.alignment is honoured; bad values are rejected', () => {
  const bytes = encodeGgufBytes({ alignment: 64, tensors: [{ name: 'a', type: 'F32', shape: [3], data: [1, 2, 3] }, { name: 'b', type: 'F32', shape: [1], data: [4] }] });
  const f = parseGguf(bytes);
  assert.equal(f.alignment, 64);
  assert.equal(f.metadataTypes.get('general.alignment'), 'u32');
  assert.equal(f.dataOffset % 64, 0);
  assert.equal(f.tensorInfo('b').relativeOffset, 64);
  assert.deepEqual(f.toTensor('b').toArray(), [4]);
  const bad = encodeGgufBytes({ metadata: { 'general.alignment': gguf.u32(32) } });
  new DataView(bad.buffer).setUint32(24 + 8 + 17 + 4, 48, true); // the u32 value after key and type
  assert.throws(() => parseGguf(bad), /general\.alignment is 48; it must be a non-zero power of two/);
  assert.throws(() => encodeGgufBytes({ alignment: 48 }), /alignment must be a power of two, got 48/);
  assert.throws(() => parseGguf(encodeGgufBytes({ metadata: { 'general.alignment': gguf.u64(32) } })), /general\.alignment has type u64; it must be u32/);
});

/** The same pseudo-random inputs as the C program that produced the golden bytes below. */
function goldenInputs(): Float32Array {
  const x = new Float32Array(256);
  let s = 12345;
  for (let i = 0; i < 256; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const m = ((s >>> 11) % 2000001) - 1000000;
    const block = i >> 5;
    const scale = block === 0 ? 1 / 1048576 : block === 1 ? 1 / 64 : block === 2 ? 1 / 2 ** 28 : 1 / 4096;
    x[i] = m * scale;
  }
  for (let j = 0; j < 32; j++) {
    x[128 + j] = 0;
    x[160 + j] = (j - 16) * 0.25;
    x[192 + j] = ((((j * 7) % 32) - 15) * 3) / 7; // C: (float)a * 3.0f / 7.0f, one rounding to f32
    x[224 + j] = j === 5 ? 1e-30 : j % 2 ? 1e-31 : -2e-31;
  }
  return x;
}

// Produced by a separate C implementation of ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref,
// compiled with native f32 arithmetic and F16C f32->f16 conversion (see the report of this change).
const GOLDEN_Q8_0 = 'ad1f8685122a749f051320528b4784943bfceb82ed7f8b32f206cdf235aa9864d483ab57fccf1a838551d1d68113333027ac794efb42d93f1a4cf7b8fb340c6ae97847a7ca013cdcde5b5caa9aeb724711bee87160e2663e0f782c7fe55864932826981d7692a13fca5144e5b0cc6de9504198466216b972ebb7365c8c813186de9d097589d2db7a00000000000000000000000000000000000000000000000000000000000000000000082881899199a1a9b1b9c0c8d0d8e0e8f0f8000810182028303840474f575f676f77e92a89c0f83067a1d810477fb9f0285f99d0084077b1e8205791c800386fa9e0184f0000e70de70de77fe70de70de70de70de70de70de70de70de70de70de70de70de70d';
const GOLDEN_Q4_0 = '9daf9fff9705f15e9887b6935fd4ff2fb4f89c6788c56ac0a0dd753580b99bfb7af3cf2d188f244a7a02520dae2921f4576cfa6112fa924f753dbce61305bf076d2c91fc0e5964ff0080888888888888888888888888888888880038809191a2a2b3b3c4c4d5d5e6e6f7f7f8dbba8f4c19d5a26e3bf7c4805d19e6a27f3b0080aa77aa77aa70aa77aa77aa77aa77aa77';
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('Q8_0 and Q4_0 quantizers are bit-exact with ggml reference quantization', () => {
  const x = goldenInputs();
  let h = 0;
  const u = new Uint32Array(x.buffer);
  for (let i = 0; i < 256; i++) h = (Math.imul(h, 31) + u[i]) >>> 0;
  assert.equal(h.toString(16).padStart(8, '0'), '5d495a4a'); // inputs identical to the C program's
  assert.equal(hex(quantizeQ8_0(x)), GOLDEN_Q8_0);
  assert.equal(hex(quantizeQ4_0(x)), GOLDEN_Q4_0);
});

test('Q8_0 / Q4_0 hand-worked blocks dequantize to the expected values', () => {
  // Q4_0: values -8..7 (times 1) -> max magnitude is -8, so d = -8 / -8 = 1 and q = x + 8 exactly.
  const x = Array.from({ length: 32 }, (_, i) => (i % 16) - 8);
  const q4 = quantizeQ4_0(x);
  assert.equal(q4[0] | (q4[1] << 8), floatToF16Bits(1));
  assert.equal(q4[2], 0 | (0 << 4)); // weight 0 -> nibble 0, weight 16 -> nibble 0
  assert.equal(q4[2 + 15], 15 | (15 << 4));
  assert.deepEqual(Array.from(dequantize('Q4_0', q4, 32)), x);
  // Q8_0: amax 127 -> d = 1, q = x.
  const y = Array.from({ length: 32 }, (_, i) => (i * 8) - 127);
  y[31] = 127;
  const q8 = quantizeQ8_0(y);
  assert.equal(q8[0] | (q8[1] << 8), floatToF16Bits(1));
  assert.deepEqual(Array.from(dequantize('Q8_0', q8, 32)), y);
  // Dequantized Q8_0 of random data is within d/2 of the input (round to nearest), d = amax/127 in f16.
  const r = goldenInputs().subarray(0, 64);
  const back = dequantize('Q8_0', quantizeQ8_0(r), 64);
  for (let b = 0; b < 2; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(r[b * 32 + j]));
    const d = f16BitsToFloat(floatToF16Bits(amax / 127));
    // tolerance: half a step, plus the f16 rounding of d times the largest quant (127 * d * 2^-11)
    for (let j = 0; j < 32; j++) assert.ok(Math.abs(back[b * 32 + j] - r[b * 32 + j]) <= d / 2 + 127 * d * 2 ** -11);
  }
});

/** f16 bytes of a value. */
const h16 = (v: number): number[] => { const b = floatToF16Bits(v); return [b & 0xff, b >> 8]; };

test('Q4_1, Q5_0, Q5_1 blocks dequantize per ggml layout', () => {
  // q4_1: w = q * d + m. qs[j] low nibble = weight j, high = weight j+16.
  const qs = Array.from({ length: 16 }, (_, j) => (j % 16) | ((15 - j) << 4));
  const q41 = new Uint8Array([...h16(0.5), ...h16(-1), ...qs]);
  const e41 = Array.from({ length: 32 }, (_, i) => (i < 16 ? i : 15 - (i - 16)) * 0.5 - 1);
  assert.deepEqual(Array.from(dequantize('Q4_1', q41, 32)), e41);
  // q5_0: 5-bit q = low nibble | (bit i of qh) << 4; w = (q - 16) * d.
  const q5 = Array.from({ length: 32 }, (_, i) => (i * 13) % 32);
  let qh = 0;
  for (let i = 0; i < 32; i++) if (q5[i] & 16) qh |= 1 << i;
  const qhBytes = [qh & 255, (qh >>> 8) & 255, (qh >>> 16) & 255, (qh >>> 24) & 255];
  const low = Array.from({ length: 16 }, (_, j) => (q5[j] & 15) | ((q5[j + 16] & 15) << 4));
  assert.deepEqual(Array.from(dequantize('Q5_0', new Uint8Array([...h16(0.25), ...qhBytes, ...low]), 32)), q5.map((q) => (q - 16) * 0.25));
  assert.deepEqual(Array.from(dequantize('Q5_1', new Uint8Array([...h16(2), ...h16(0.5), ...qhBytes, ...low]), 32)), q5.map((q) => q * 2 + 0.5));
});

/** Packs Q4_K/Q5_K 6-bit scales and mins as ggml's quantize_row_q4_K_ref stores them. */
function packScalesK4(ls: number[], lm: number[]): number[] {
  const s = new Array(12).fill(0);
  for (let j = 0; j < 8; j++) {
    if (j < 4) { s[j] = ls[j]; s[j + 4] = lm[j]; } else {
      s[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
      s[j - 4] |= (ls[j] >> 4) << 6;
      s[j] |= (lm[j] >> 4) << 6;
    }
  }
  return s;
}

test('Q4_K and Q5_K super-blocks dequantize to d*scale*q - dmin*min per sub-block', () => {
  const ls = [1, 63, 17, 40, 5, 33, 62, 48], lm = [0, 7, 63, 21, 50, 3, 36, 60];
  const q = Array.from({ length: 256 }, (_, i) => (i * 7 + (i >> 5)) % 32); // 5-bit values
  const d = 0.125, dmin = 0.0625;
  // q4_K: 4-bit quants, each 64-weight group stores 32 bytes: weight g*64+l low nibble, g*64+32+l high.
  const qs4: number[] = [];
  for (let g = 0; g < 4; g++) for (let l = 0; l < 32; l++) qs4.push((q[g * 64 + l] & 15) | ((q[g * 64 + 32 + l] & 15) << 4));
  const blk4 = new Uint8Array([...h16(d), ...h16(dmin), ...packScalesK4(ls, lm), ...qs4]);
  assert.equal(blk4.length, 144);
  const got4 = dequantize('Q4_K', blk4, 256);
  for (let i = 0; i < 256; i++) {
    const sb = i >> 5;
    assert.equal(got4[i], Math.fround(d * ls[sb] * (q[i] & 15) - dmin * lm[sb]), `q4_K weight ${i}`);
  }
  // q5_K: the 5th bit of weight g*64+l is bit 2g of qh[l]; of weight g*64+32+l bit 2g+1.
  const qh = new Array(32).fill(0);
  for (let g = 0; g < 4; g++) for (let l = 0; l < 32; l++) {
    if (q[g * 64 + l] & 16) qh[l] |= 1 << (2 * g);
    if (q[g * 64 + 32 + l] & 16) qh[l] |= 1 << (2 * g + 1);
  }
  const blk5 = new Uint8Array([...h16(d), ...h16(dmin), ...packScalesK4(ls, lm), ...qh, ...qs4]);
  assert.equal(blk5.length, 176);
  const got5 = dequantize('Q5_K', blk5, 256);
  for (let i = 0; i < 256; i++) {
    const sb = i >> 5;
    assert.equal(got5[i], Math.fround(d * ls[sb] * q[i] - dmin * lm[sb]), `q5_K weight ${i}`);
  }
});

test('Q6_K super-block dequantizes to d*scale*(q-32) per 16-weight sub-block', () => {
  const L = Array.from({ length: 256 }, (_, i) => (i * 29 + 3) % 64); // 6-bit values
  const scales = Array.from({ length: 16 }, (_, i) => (i * 37) % 256 - 128); // int8
  // Packing as in ggml's quantize_row_q6_K_ref.
  const ql = new Array(128).fill(0), qh = new Array(64).fill(0);
  for (let half = 0; half < 2; half++) {
    const j = half * 128;
    for (let l = 0; l < 32; l++) {
      ql[half * 64 + l] = (L[j + l] & 0xf) | ((L[j + l + 64] & 0xf) << 4);
      ql[half * 64 + l + 32] = (L[j + l + 32] & 0xf) | ((L[j + l + 96] & 0xf) << 4);
      qh[half * 32 + l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6);
    }
  }
  const d = 0.03125;
  const blk = new Uint8Array([...ql, ...qh, ...scales.map((s) => s & 0xff), ...h16(d)]);
  assert.equal(blk.length, 210);
  const got = dequantize('Q6_K', blk, 256);
  for (let i = 0; i < 256; i++) assert.equal(got[i], d * scales[i >> 4] * (L[i] - 32), `q6_K weight ${i}`);
});

test('quantized tensors in a file: raw blocks via tensorData, f32 via toTensor', () => {
  const x = goldenInputs();
  const bytes = encodeGgufBytes({
    metadata: { 'general.architecture': 'llama', 'general.quantization_version': gguf.u32(2) },
    tensors: [{ name: 'q8', type: 'Q8_0', shape: [4, 64], data: x }, { name: 'q4', type: 'Q4_0', shape: [2, 128], data: x }],
  });
  const f = parseGguf(bytes);
  assert.equal(f.architecture, 'llama');
  assert.equal(hex(f.tensorData('q8')), GOLDEN_Q8_0);
  assert.equal(hex(f.tensorData('q4')), GOLDEN_Q4_0);
  assert.deepEqual(f.tensorInfo('q4').ne, [128, 2]);
  const t = f.toTensor('q8');
  assert.equal(t.dtype, 'f32');
  assert.deepEqual(t.shape, [4, 64]);
  assert.deepEqual(t.data, dequantize('Q8_0', f.tensorData('q8'), 256));
  assert.throws(() => encodeGgufBytes({ tensors: [{ name: 'bad', type: 'Q4_0', shape: [2, 48], data: new Float32Array(96) }] }),
    /needs its last dim to be a multiple of 32, shape is \[2, 48\]/);
});

test('malformed files give a GgufError naming the problem and the byte offset', () => {
  const good = encodeGgufBytes({ metadata: { k: gguf.u32(1) }, tensors: [{ name: 't', type: 'F32', shape: [8], data: new Float32Array(8) }] });
  const mutate = (fn: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
    const b = good.slice();
    fn(b, new DataView(b.buffer));
    return b;
  };
  const err = (bytes: Uint8Array, re: RegExp) => assert.throws(() => parseGguf(bytes, 'x.gguf'), (e: unknown) => e instanceof GgufError && re.test(e.message));
  err(mutate((b) => { b[0] = 0x47; b[3] = 0x4c; }), /not a GGUF file: magic bytes are 47 47 55 4c, expected 47 47 55 46 \("GGUF"\) \(at byte offset 0\)/);
  err(mutate((_, dv) => dv.setUint32(4, 1, true)), /GGUF version 1 .* not supported; .*\(at byte offset 4\)/);
  err(mutate((_, dv) => dv.setUint32(4, 0x03000000, true)), /big-endian GGUF files are not supported/);
  err(mutate((_, dv) => dv.setUint32(4, 7, true)), /unsupported GGUF version 7/);
  err(good.subarray(0, 10), /file is 10 bytes, too short for a GGUF header/);
  err(mutate((_, dv) => dv.setBigUint64(8, 1n << 40n, true)), /tensor count is corrupt: 1099511627776 tensor infos .*\(at byte offset 8\)/);
  // kv: key at 24 ("k": 8 + 1 bytes), type at 33, value at 37. Tensor info starts at 41.
  err(mutate((_, dv) => dv.setUint32(33, 13, true)), /metadata "k" has unknown value type 13 \(valid: 0-12\) \(at byte offset 33\)/);
  // tensor info: name at 41 (8 + 1), n_dims at 50, ne[0] at 54, type at 62, offset at 66.
  err(mutate((_, dv) => dv.setUint32(62, 4, true)), /tensor "t" has unknown or removed ggml type id 4 \(at byte offset 62\)/);
  err(mutate((_, dv) => dv.setUint32(50, 5, true)), /tensor "t" has 5 dims; ggml allows at most 4/);
  err(mutate((_, dv) => dv.setBigUint64(66, 8n, true)), /data offset 8 is not a multiple of the alignment 32 \(at byte offset 66\)/);
  err(mutate((_, dv) => dv.setUint32(62, 8, true)), /type Q8_0 with blocks of 32, but its innermost dim ne\[0\] = 8/);
  err(good.subarray(0, good.length - 33), /file is truncated: tensor "t" \(F32 ne=\[8\], 32 bytes\) spans bytes 96\.\.128 but the file is 95 bytes long \(at byte offset 96\)/);
  err(mutate((_, dv) => dv.setBigUint64(24, 1000n, true)), /metadata key #0 length 1000 runs past the end of the file \(96 bytes left\) \(at byte offset 24\)/);
  err(good.subarray(0, 45), /file is truncated or its tensor count is corrupt: 1 tensor infos \(at least 24 bytes\) and 1 key-value pairs \(at least 13 bytes\) do not fit in the 21 bytes after the header \(at byte offset 8\)/);
  err(mutate((b) => { b[32] = 0xff; }), /metadata key #0 is not valid UTF-8 \(at byte offset 32\)/);
});

test('bool values other than 0/1 and duplicate keys are rejected', () => {
  const b = encodeGgufBytes({ metadata: { flag: true } });
  const dv = new DataView(b.buffer);
  // key "flag" at 24 (8 + 4 bytes), type at 36, value at 40
  dv.setUint8(40, 2);
  assert.throws(() => parseGguf(b), /metadata "flag" is a bool stored as 2; only 0 and 1 are valid \(at byte offset 40\)/);
  const two = encodeGgufBytes({ metadata: { aa: gguf.u8(1), ab: gguf.u8(2) } });
  two[48] = 'a'.charCodeAt(0); // second key "ab" (length at 39, bytes at 47..48) -> "aa"
  assert.throws(() => parseGguf(two), /duplicate metadata key "aa"/);
});

test('fuzz: every truncation and many byte flips throw only GgufError, never hang or crash', () => {
  const file = encodeGgufBytes({
    metadata: {
      'general.architecture': 'llama', 'llama.block_count': gguf.u32(2), 'tokenizer.ggml.tokens': ['<s>', 'a', 'bc'],
      'tokenizer.ggml.scores': new Float32Array([0, -1, -2]), nested: gguf.array({ array: 'u8' }, [new Uint8Array([1, 2])]),
      flag: true, big: gguf.u64(5n), f: gguf.f64(2.5),
    },
    tensors: [
      { name: 'a', type: 'F32', shape: [2, 4], data: new Float32Array(8).fill(1) },
      { name: 'b', type: 'Q8_0', shape: [32], data: new Float32Array(32).fill(0.5) },
      { name: 'c', type: 'Q4_0', shape: [32], data: new Float32Array(32).fill(-0.5) },
      { name: 'd', type: 'F16', shape: [3], data: [1, 2, 3] },
    ],
  });
  const check = (bytes: Uint8Array, what: string) => {
    try {
      const f = parseGguf(bytes);
      for (const t of f.tensors) {
        try { f.toTensor(t.name); } catch (e) { if (!(e instanceof GgufError)) throw e; }
      }
    } catch (e) {
      if (!(e instanceof GgufError)) throw new Error(`${what}: threw ${(e as Error).name}: ${(e as Error).message}`);
    }
  };
  // Every cut before the end of the last tensor's data must be detected (the alignment padding after it is optional).
  const end = Math.max(...parseGguf(file).tensors.map((t) => t.offset + t.byteLength));
  for (let n = 0; n < end; n++) {
    assert.throws(() => parseGguf(file.subarray(0, n)), GgufError, `truncated at ${n}`);
  }
  let s = 7;
  const rnd = (k: number) => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % k; };
  const start = Date.now();
  for (let i = 0; i < 3000; i++) {
    const b = file.slice();
    const flips = 1 + rnd(3);
    for (let j = 0; j < flips; j++) b[rnd(b.length)] ^= 1 << rnd(8);
    check(b, `flip round ${i}`);
    // Also the same byte set to extreme values (all ones makes huge counts and lengths).
    const c = file.slice();
    c[rnd(c.length)] = 0xff;
    check(c, `0xff round ${i}`);
  }
  assert.ok(Date.now() - start < 10_000, 'fuzzing took too long');
});

test('readGguf reports unreadable paths; writes are atomic and leave no temp files', () => {
  assert.throws(() => readGguf(path.join(tmp, 'missing.gguf')), (e: unknown) => e instanceof GgufError && /missing\.gguf: cannot open/.test(e.message));
  const dir = path.join(tmp, 'atomic');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'm.gguf');
  fs.writeFileSync(file, 'old contents');
  writeGguf(file, { metadata: { x: 'new' } });
  assert.deepEqual(fs.readdirSync(dir), ['m.gguf']);
  assert.equal(readGguf(file).getString('x'), 'new');
  // A failed write (bad metadata) leaves the previous file untouched and no temp file behind.
  assert.throws(() => writeGguf(file, { metadata: { y: gguf.u8(300) } }), /metadata "y" = 300 does not fit u8/);
  assert.deepEqual(fs.readdirSync(dir), ['m.gguf']);
  assert.equal(readGguf(file).getString('x'), 'new');
});

test('a header larger than the 1 MiB read window parses the same lazily and in memory', () => {
  const tokens = Array.from({ length: 120_000 }, (_, i) => `tok_${i}_▁`);
  const file = path.join(tmp, 'big-header.gguf');
  writeGguf(file, {
    metadata: { 'tokenizer.ggml.tokens': tokens, 'tokenizer.ggml.scores': Float32Array.from(tokens, (_, i) => -i) },
    tensors: [{ name: 'w', type: 'F32', shape: [4], data: [1, 2, 3, 4] }],
  });
  assert.ok(fs.statSync(file).size > 2 * 1024 * 1024);
  for (const load of ['lazy', 'memory'] as const) {
    const f = readGguf(file, { load });
    assert.deepEqual(f.getStringArray('tokenizer.ggml.tokens'), tokens);
    const scores = f.getNumberArray('tokenizer.ggml.scores');
    assert.equal(scores.length, 120_000);
    assert.equal(scores[119_999], -119_999);
    assert.deepEqual(f.toTensor('w').toArray(), [1, 2, 3, 4]);
  }
});
