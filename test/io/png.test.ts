// PNG writer and reader: CRC-32 check values, byte layout of a hand-checked tiny image, round trips
// through every row filter and channel count, a PNG made by another encoder, and clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { crc32, encodePng, decodePng, writePng, readPng, type Image, type PngFilter } from '../../src/io/png.js';
import { PngError } from '../../src/io/errors.js';

test('crc32: standard check values', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926); // the CRC-32/ISO-HDLC check value
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(new TextEncoder().encode('IEND')), 0xae426082); // every PNG ends with this CRC
  // Continuing a CRC over a split input equals the CRC of the whole.
  const bytes = new TextEncoder().encode('The quick brown fox');
  assert.equal(crc32(bytes.subarray(9), crc32(bytes.subarray(0, 9))), crc32(bytes));
});

test('encodePng: signature, IHDR fields and filtered scanlines of a 2×2 RGB image', () => {
  const image: Image = { width: 2, height: 2, channels: 3, data: Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]) };
  const png = encodePng(image, { filter: 'none' });
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal(png.readUInt32BE(8), 13);
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20), png[24], png[25], png[26], png[27], png[28]], [2, 2, 8, 2, 0, 0, 0]);
  assert.equal(png.readUInt32BE(29), crc32(png.subarray(12, 29)));
  const idatLength = png.readUInt32BE(33);
  assert.equal(png.toString('latin1', 37, 41), 'IDAT');
  const raw = inflateSync(png.subarray(41, 41 + idatLength));
  assert.deepEqual([...raw], [0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 10, 20, 30]);
  assert.equal(png.toString('latin1', png.length - 8, png.length - 4), 'IEND');
  // Sub filter on the same rows: each byte minus the byte one pixel to the left (mod 256).
  const subPng = encodePng(image, { filter: 'sub' });
  const sub = inflateSync(subPng.subarray(41, 41 + subPng.readUInt32BE(33)));
  assert.deepEqual([...sub], [1, 255, 0, 0, 0 - 255 + 256, 255, 0, 1, 0, 0, 255, 10, 20, 30 - 255 + 256]);
});

/** An image with gradients, edges and noise, so every filter type wins some rows. */
function testImage(width: number, height: number, channels: Image['channels'], seed: number): Image {
  const data = new Uint8Array(width * height * channels);
  let s = seed;
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < channels; c++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const kind = (y >> 2) % 4;
    const v = kind === 0 ? x * 7 + c * 40 : kind === 1 ? y * 5 + c : kind === 2 ? (x * y + c * 13) : s >>> 24;
    data[(y * width + x) * channels + c] = v & 0xff;
  }
  return { width, height, channels, data };
}

test('round trip through every filter and channel count', () => {
  const filters: PngFilter[] = ['none', 'sub', 'up', 'average', 'paeth', 'adaptive'];
  for (const channels of [1, 2, 3, 4] as const) {
    for (const filter of filters) {
      const image = testImage(13, 17, channels, channels * 31 + filters.indexOf(filter));
      const back = decodePng(encodePng(image, { filter }));
      assert.deepEqual([back.width, back.height, back.channels], [13, 17, channels]);
      assert.deepEqual(back.data, image.data, `${channels} channels, filter ${filter}`);
    }
  }
  // Adaptive filtering on this image uses several filter types, so the decoder's unfilters are all exercised.
  const image = testImage(32, 32, 3, 7);
  const png = encodePng(image);
  const raw = inflateSync(png.subarray(41, 41 + png.readUInt32BE(33)));
  const used = new Set(Array.from({ length: 32 }, (_, y) => raw[y * (32 * 3 + 1)]));
  assert.ok(used.size >= 3, `filter types used: ${[...used]}`);
});

test('decodePng reads an image written by another encoder (Python zlib, multiple IDAT chunks)', () => {
  // 3×2 RGBA, rows filtered with Paeth and Up, the zlib stream split across two IDAT chunks — made
  // with a few lines of Python (struct + zlib.compress), not with this module.
  const b64 = 'iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAYAAACddGYaAAAAB0lEQVR42mNhZGL+OmxSGAAAABFJREFUzykkzRAVFdXIxIAEADMoAtFSQpUQAAAAAElFTkSuQmCC';
  const image = decodePng(Buffer.from(b64, 'base64'));
  assert.deepEqual([image.width, image.height, image.channels], [3, 2, 4]);
  assert.deepEqual([...image.data], [
    1, 2, 3, 255, 10, 20, 30, 255, 100, 110, 120, 128,
    1, 2, 3, 255, 10, 20, 30, 255, 100, 110, 120, 128,
  ]);
});

test('decodePng and encodePng errors name the problem', () => {
  const png = encodePng(testImage(4, 4, 3, 1));
  assert.throws(() => decodePng(Buffer.from('GIF89a......')), /not a PNG file \(bad signature\)/);
  const corrupt = Buffer.from(png);
  corrupt[20] ^= 1; // inside IHDR
  assert.throws(() => decodePng(corrupt, 'x.png'), /png: x\.png: CRC mismatch in chunk IHDR at byte 8/);
  assert.throws(() => decodePng(png.subarray(0, png.length - 20)), /runs past the end of the file|missing IEND/);
  assert.throws(() => encodePng({ width: 2, height: 2, channels: 3, data: new Uint8Array(11) }), /data holds 11 bytes but 2×2×3 needs 12/);
  assert.throws(() => encodePng({ width: 0, height: 2, channels: 3, data: new Uint8Array(0) }), /width and height must be positive integers/);
  const sixteen = Buffer.from(png);
  sixteen[24] = 16;
  sixteen.writeUInt32BE(crc32(sixteen.subarray(12, 29)), 29);
  assert.throws(() => decodePng(sixteen), /bit depth 16 is not supported/);
});

test('writePng writes atomically (no temp file left) and readPng reads it back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-png-'));
  try {
    const path = join(dir, 'img.png');
    writeFileSync(path, 'old contents');
    const image = testImage(9, 5, 4, 3);
    writePng(path, image);
    assert.deepEqual(readdirSync(dir), ['img.png']);
    assert.deepEqual(readPng(path).data, image.data);
    assert.deepEqual(readFileSync(path).subarray(1, 4).toString('latin1'), 'PNG');
    assert.throws(() => writePng(join(dir, 'missing-dir', 'a.png'), image), /ENOENT/);
    assert.deepEqual(readdirSync(dir), ['img.png']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A PNG assembled chunk by chunk (CRCs computed), to build files the encoder never writes. */
function pngOf(chunks: [string, Uint8Array][]): Buffer {
  const parts: Buffer[] = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])];
  for (const [type, body] of chunks) {
    const c = Buffer.alloc(12 + body.length);
    c.writeUInt32BE(body.length, 0);
    c.write(type, 4, 'latin1');
    c.set(body, 8);
    c.writeUInt32BE(crc32(c.subarray(4, 8 + body.length)), 8 + body.length);
    parts.push(c);
  }
  return Buffer.concat(parts);
}
const ihdr = (w: number, h: number, colorType = 0) => { const b = Buffer.alloc(13); b.writeUInt32BE(w, 0); b.writeUInt32BE(h, 4); b[8] = 8; b[9] = colorType; return b; };

test('a zlib bomb is stopped at the size the header implies, not inflated in full', async () => {
  const { deflateSync } = await import('node:zlib');
  const bomb = deflateSync(Buffer.alloc(64 << 20)); // 64 MiB of zeros in ~64 KiB
  const png = pngOf([['IHDR', ihdr(1, 1)], ['IDAT', bomb], ['IEND', new Uint8Array(0)]]);
  // Before the cap, the 64 MiB were inflated and only then compared with the 2 bytes expected.
  assert.throws(() => decodePng(png, 'bomb.png'), (e: unknown) => e instanceof PngError &&
    /png: bomb\.png: image data inflates to more than the 2 bytes a 1×1×1 image holds/.test(e.message));
});

test('malformed headers: zero size, a second IHDR, IHDR after IDAT, no IDAT, bad zlib', async () => {
  const { deflateSync } = await import('node:zlib');
  const data = deflateSync(Buffer.from([0, 7]));
  const end: [string, Uint8Array] = ['IEND', new Uint8Array(0)];
  const err = (png: Buffer, re: RegExp) => assert.throws(() => decodePng(png, 'x.png'), (e: unknown) => e instanceof PngError && re.test(e.message), String(re));
  assert.deepEqual(decodePng(pngOf([['IHDR', ihdr(1, 1)], ['IDAT', data], end])).data, Uint8Array.from([7]));
  err(pngOf([['IHDR', ihdr(0, 1)], ['IDAT', data], end]), /image size 0×1 is invalid/);
  err(pngOf([['IHDR', ihdr(1, 0)], ['IDAT', data], end]), /image size 1×0 is invalid/);
  err(pngOf([['IHDR', ihdr(1, 1)], ['IHDR', ihdr(2, 2)], ['IDAT', data], end]), /a second IHDR chunk/);
  err(pngOf([['IDAT', data], ['IHDR', ihdr(1, 1)], end]), /the first chunk is IDAT; a PNG must start with IHDR/);
  err(pngOf([['IHDR', ihdr(1, 1)], ['IDAT', data], ['IHDR', ihdr(1, 1)], end]), /a second IHDR chunk/);
  err(pngOf([['IHDR', ihdr(1, 1)], end]), /no IDAT chunk/);
  err(pngOf([['IHDR', ihdr(1, 1)], ['IDAT', Uint8Array.from([1, 2, 3])], end]), /image data is not valid zlib data/);
  err(pngOf([['IHDR', ihdr(100000, 100000, 6)], ['IDAT', data], end]), /needs 40000100000 bytes of data, more than the 1073741824-byte limit/);
});
