// PNG images: an 8-bit RGB/RGBA (and grayscale) encoder with per-row adaptive filtering, an atomic
// file writer, and a decoder for 8-bit non-interlaced images (all five row filters) that tests and
// tools use to read images back. zlib comes from node:zlib; chunk CRCs are computed here.
import { deflateSync, inflateSync } from 'node:zlib';
import { writeFileSync, renameSync, unlinkSync, readFileSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { PngError } from './errors.js';

/** An 8-bit image, row-major, channels interleaved (RGBRGB... or RGBARGBA...). */
export interface Image {
  width: number;
  height: number;
  /** 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). */
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

/** PNG row filters (spec §9.2); 'adaptive' picks per row the one with the least sum of |bytes|
 *  (as signed), libpng's default heuristic. */
export type PngFilter = 'none' | 'sub' | 'up' | 'average' | 'paeth' | 'adaptive';
const FILTERS: Record<Exclude<PngFilter, 'adaptive'>, number> = { none: 0, sub: 1, up: 2, average: 3, paeth: 4 };

export interface PngEncodeOptions {
  /** Default 'adaptive'. */
  filter?: PngFilter;
  /** zlib level 0-9; default 6. */
  compressionLevel?: number;
}

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
const COLOR_TYPE: Record<Image['channels'], number> = { 1: 0, 2: 4, 3: 2, 4: 6 };
const CHANNELS_OF: Record<number, Image['channels']> = { 0: 1, 4: 2, 2: 3, 6: 4 };

// ---- CRC-32 (ISO 3309 / PNG spec Annex D), table-driven ----

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 of `bytes`, continuing from `crc` (0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---- encoding ----

function checkImage(image: Image, what: string): void {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width > 0x7fffffff || height > 0x7fffffff) {
    throw new RangeError(`${what}: width and height must be positive integers, got ${width}×${height}`);
  }
  if (!(channels in COLOR_TYPE)) throw new RangeError(`${what}: channels must be 1, 2, 3 or 4, got ${channels}`);
  if (!(data instanceof Uint8Array)) throw new TypeError(`${what}: data must be a Uint8Array`);
  if (data.length !== width * height * channels) {
    throw new RangeError(`${what}: data holds ${data.length} bytes but ${width}×${height}×${channels} needs ${width * height * channels}`);
  }
}

function chunk(type: string, body: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'latin1');
  out.set(body, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

const paeth = (a: number, b: number, c: number): number => {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
};

/** Writes row `cur` filtered with `type` into out[0..] (out[0] is the filter byte). `prev` is the
 *  previous raw row (zeros for the first row); bpp is bytes per pixel. */
function filterRow(type: number, cur: Uint8Array, prev: Uint8Array, bpp: number, out: Uint8Array): void {
  out[0] = type;
  for (let i = 0; i < cur.length; i++) {
    const a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
    const pred = type === 0 ? 0 : type === 1 ? a : type === 2 ? b : type === 3 ? (a + b) >>> 1 : paeth(a, b, c);
    out[i + 1] = (cur[i] - pred) & 0xff;
  }
}

/** Encodes an 8-bit image as PNG bytes. */
export function encodePng(image: Image, options: PngEncodeOptions = {}): Buffer {
  checkImage(image, 'encodePng');
  const { width, height, channels, data } = image;
  const filter = options.filter ?? 'adaptive';
  if (filter !== 'adaptive' && !(filter in FILTERS)) throw new RangeError(`encodePng: unknown filter ${JSON.stringify(filter)}`);
  const stride = width * channels;
  const raw = new Uint8Array((stride + 1) * height);
  const zeroRow = new Uint8Array(stride);
  const candidate = new Uint8Array(stride + 1);
  for (let y = 0; y < height; y++) {
    const cur = data.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? data.subarray((y - 1) * stride, y * stride) : zeroRow;
    const dst = raw.subarray(y * (stride + 1), (y + 1) * (stride + 1));
    if (filter !== 'adaptive') { filterRow(FILTERS[filter], cur, prev, channels, dst); continue; }
    let best = Infinity;
    for (let type = 0; type < 5; type++) {
      filterRow(type, cur, prev, channels, candidate);
      let cost = 0;
      for (let i = 1; i <= stride; i++) cost += candidate[i] < 128 ? candidate[i] : 256 - candidate[i];
      if (cost < best) { best = cost; dst.set(candidate); }
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = COLOR_TYPE[channels];
  ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0; // deflate, adaptive filtering, no interlace
  const idat = deflateSync(raw, { level: options.compressionLevel ?? 6 });
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))]);
}

/** Writes `image` to `path` as PNG atomically: the bytes go to a temporary file in the same
 *  directory, which is then renamed over `path`, so readers never see a half-written image. */
export function writePng(path: string, image: Image, options: PngEncodeOptions = {}): void {
  const bytes = encodePng(image, options);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* the temp file may not exist */ }
    throw e;
  }
}

// ---- decoding ----

/** Largest decoded image accepted (bytes of filtered rows): 1 GiB, far above any image this project writes. */
const MAX_IMAGE_BYTES = 1 << 30;

/** Decodes an 8-bit, non-interlaced PNG (gray, gray+alpha, RGB or RGBA) and checks every CRC.
 *  Palette images, 16-bit and sub-byte depths and Adam7 interlacing are refused by name. Every
 *  problem is a PngError naming the file and the byte offset. The image data is inflated with a cap
 *  at the size the header implies, so a small file cannot expand into gigabytes (a zlib bomb). */
export function decodePng(bytes: Uint8Array, source = 'png'): Image {
  const fail = (detail: string, at?: number): never => { throw new PngError(source, detail, at); };
  if (bytes.length < 8 || !SIGNATURE.every((b, i) => bytes[i] === b)) fail('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let header: { width: number; height: number; channels: Image['channels'] } | null = null;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (pos < bytes.length && !ended) {
    if (pos + 12 > bytes.length) fail(`truncated chunk header at byte ${pos}`);
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    if (pos + 12 + length > bytes.length) fail(`chunk ${type} at byte ${pos} runs past the end of the file`);
    const body = bytes.subarray(pos + 8, pos + 8 + length);
    const stored = view.getUint32(pos + 8 + length);
    if (crc32(bytes.subarray(pos + 4, pos + 8 + length)) !== stored) fail(`CRC mismatch in chunk ${type} at byte ${pos}`);
    if (pos === 8 && type !== 'IHDR') fail(`the first chunk is ${type}; a PNG must start with IHDR`, pos);
    if (type === 'IHDR') {
      if (header) fail('a second IHDR chunk (a PNG has exactly one, first)', pos);
      if (length !== 13) fail(`IHDR has length ${length}, expected 13`);
      const width = view.getUint32(pos + 8), height = view.getUint32(pos + 12);
      if (width === 0 || height === 0 || width > 0x7fffffff || height > 0x7fffffff) fail(`image size ${width}×${height} is invalid (each must be in [1, 2^31 - 1])`, pos + 8);
      const depth = body[8], colorType = body[9], interlace = body[12];
      if (depth !== 8) fail(`bit depth ${depth} is not supported (only 8)`);
      if (!(colorType in CHANNELS_OF)) fail(`color type ${colorType} is not supported (gray, gray+alpha, RGB, RGBA only)`);
      if (body[10] !== 0 || body[11] !== 0) fail('unknown compression or filter method');
      if (interlace !== 0) fail('interlaced images are not supported');
      header = { width, height, channels: CHANNELS_OF[colorType] };
    } else if (type === 'IDAT') {
      if (!header) fail('IDAT before IHDR', pos);
      idat.push(body);
    }
    else if (type === 'IEND') ended = true;
    else if ((bytes[pos + 4] & 0x20) === 0) fail(`unknown critical chunk ${type}`);
    pos += 12 + length;
  }
  if (!header) return fail('missing IHDR');
  if (!ended) fail('missing IEND');
  const { width, height, channels } = header;
  const stride = width * channels;
  const expected = (stride + 1) * height;
  if (expected > MAX_IMAGE_BYTES) fail(`image ${width}×${height}×${channels} needs ${expected} bytes of data, more than the ${MAX_IMAGE_BYTES}-byte limit`);
  if (idat.length === 0) fail('no IDAT chunk (the image has no data)');
  let raw: Buffer;
  try {
    // One byte of slack tells "too much data" apart from "exactly right".
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: expected + 1 });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') return fail(`image data inflates to more than the ${expected} bytes a ${width}×${height}×${channels} image holds`);
    return fail(`image data is not valid zlib data: ${(e as Error).message}`);
  }
  if (raw.length !== expected) fail(`image data inflates to ${raw.length} bytes, expected ${expected}`);
  const data = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const type = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = data.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? data.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels] : 0, b = prev ? prev[i] : 0, c = prev && i >= channels ? prev[i - channels] : 0;
      let pred: number;
      switch (type) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) >>> 1; break;
        case 4: pred = paeth(a, b, c); break;
        default: return fail(`row ${y} has unknown filter type ${type}`);
      }
      cur[i] = (src[i] + pred) & 0xff;
    }
  }
  return { width, height, channels, data };
}

/** Reads and decodes a PNG file (see decodePng for what is supported). */
export function readPng(path: string): Image {
  return decodePng(readFileSync(path), path);
}
