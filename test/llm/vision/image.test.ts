// CLIP preprocessing (src/llm/vision/image.ts) against hand-computed values and against an
// independent floating-point PIL-bicubic reference, and PNG vs JPEG of the same pixels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import jpeg from 'jpeg-js';
import { encodePng } from '../../../src/io/png.js';
import { clipPreprocess, decodeImage, resizeBicubic, bicubic, shortestEdgeSize, CLIP_MEAN, CLIP_STD, ImageError, type RgbImage } from '../../../src/llm/vision/image.js';

const rgb = (width: number, height: number, f: (x: number, y: number, c: number) => number): RgbImage => {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = f(x, y, c);
  return { width, height, data };
};
const norm = (v: number, c: number) => (v / 255 - CLIP_MEAN[c]) / CLIP_STD[c];

test('the bicubic kernel is PIL\'s (a = -0.5)', () => {
  assert.equal(bicubic(0), 1);
  assert.ok(bicubic(1) === 0); // -0 from the cubic: equal as a weight
  assert.equal(bicubic(2), 0);
  assert.equal(bicubic(0.25), 0.8671875);
  assert.equal(bicubic(1.25), -0.0703125);
});

// 4×4 -> shortest edge 2: a 2× downscale, so PIL stretches the kernel to support 4 and samples it at
// (x - center + 0.5) / 2. Output 0 (center 1) weighs inputs 0..3 by k(-0.25), k(0.25), k(0.75), k(1.25)
// = 0.8671875, 0.8671875, 0.2265625, -0.0703125 (sum 1.890625); output 1 mirrors them. Every row is the
// same, so the vertical pass keeps the values. Row [0, 100, 200, 255]:
//   out0 = (0·.8671875 + 100·.8671875 + 200·.2265625 - 255·.0703125) / 1.890625 = 60.35 -> 60
//   out1 = (-0·.0703125 + 100·.2265625 + 200·.8671875 + 255·.8671875) / 1.890625 = 220.68 -> 221
// and G = 255 - R gives 194.65 -> 195 and 34.32 -> 34; B = 128 stays 128.
test('preprocessing a 4×4 image to 2×2 matches the hand-computed PIL bicubic + rescale + normalize', () => {
  const row = [0, 100, 200, 255];
  const img = rgb(4, 4, (x, _y, c) => (c === 0 ? row[x] : c === 1 ? 255 - row[x] : 128));
  const t = clipPreprocess(img, { shortestEdge: 2 });
  assert.deepEqual([...t.shape], [1, 3, 2, 2]);
  const got = t.toFlatArray();
  const want = [[60, 221], [195, 34], [128, 128]];
  for (let c = 0; c < 3; c++) for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
    assert.ok(Math.abs(got[(c * 2 + y) * 2 + x] - norm(want[c][x], c)) < 1e-6, `c${c} y${y} x${x}: ${got[(c * 2 + y) * 2 + x]} vs ${norm(want[c][x], c)}`);
  }
});

test('shortest edge keeps the aspect ratio (long side truncated) and the crop is centered (excess halved, rounded down)', () => {
  assert.deepEqual(shortestEdgeSize(640, 480, 336), { width: 448, height: 336 });
  assert.deepEqual(shortestEdgeSize(333, 500, 336), { width: 336, height: 504 });
  assert.deepEqual(shortestEdgeSize(500, 333, 336), { width: 504, height: 336 });
  // 3×6 at edge 3: no resize; a 3-row crop starts at row floor((6 - 3) / 2) = 1
  const img = rgb(3, 6, (x, y, c) => 40 * y + 3 * x + c);
  const t = clipPreprocess(img, { shortestEdge: 3 }).toFlatArray();
  for (let c = 0; c < 3; c++) for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) {
    assert.ok(Math.abs(t[(c * 3 + y) * 3 + x] - norm(40 * (y + 1) + 3 * x + c, c)) < 1e-6);
  }
});

/** PIL's resample in floating point (no fixed point), each pass rounded to 8 bits: within one level of PIL. */
function referenceResize(img: RgbImage, w: number, h: number): RgbImage {
  const pass = (inSize: number, outSize: number, read: (i: number, o2: number, c: number) => number, o2n: number) => {
    const scale = inSize / outSize, fs = Math.max(scale, 1), support = 2 * fs;
    const out: number[][][] = [];
    for (let o = 0; o < outSize; o++) {
      const center = (o + 0.5) * scale;
      const lo = Math.max(Math.trunc(center - support + 0.5), 0), hi = Math.min(Math.trunc(center + support + 0.5), inSize);
      const ws: number[] = [];
      for (let i = lo; i < hi; i++) ws.push(bicubic((i - center + 0.5) / fs));
      const sum = ws.reduce((a, b) => a + b, 0);
      out.push(Array.from({ length: o2n }, (_, o2) => [0, 1, 2].map((c) => {
        let acc = 0;
        for (let i = lo; i < hi; i++) acc += read(i, o2, c) * ws[i - lo] / sum;
        return Math.min(255, Math.max(0, Math.round(acc)));
      })));
    }
    return out;
  };
  const hor = pass(img.width, w, (i, y, c) => img.data[(y * img.width + i) * 3 + c], img.height); // [w][y][c]
  const ver = pass(img.height, h, (i, x, c) => hor[x][i][c], w); // [y][x][c]
  return rgb(w, h, (x, y, c) => ver[y][x][c]);
}

test('bicubic resize (down and up, odd sizes) is within one level of a floating-point PIL reference', () => {
  const img = rgb(37, 23, (x, y, c) => (x * 53 + y * 97 + c * 71 + ((x * y) % 7) * 19) % 256);
  for (const [w, h] of [[16, 9], [5, 3], [50, 31], [1, 1], [37, 11]]) {
    const got = resizeBicubic(img, w, h), want = referenceResize(img, w, h);
    let worst = 0;
    for (let i = 0; i < got.data.length; i++) worst = Math.max(worst, Math.abs(got.data[i] - want.data[i]));
    assert.ok(worst <= 1, `${w}×${h}: worst difference ${worst} levels`);
  }
});

// Pillow itself is the oracle (fixtures/pil-bicubic.py wrote its outputs): the port must be bit-exact.
test('bicubic resize is bit-exact with Pillow\'s Image.resize(BICUBIC) (fixture written by Pillow)', () => {
  const fixture = JSON.parse(fs.readFileSync(new URL('./fixtures/pil-bicubic.json', import.meta.url), 'utf8')) as
    { pillow: string; cases: { width: number; height: number; toWidth: number; toHeight: number; src: string; dst: string }[] };
  for (const c of fixture.cases) {
    const got = resizeBicubic({ width: c.width, height: c.height, data: new Uint8Array(Buffer.from(c.src, 'base64')) }, c.toWidth, c.toHeight);
    const want = Buffer.from(c.dst, 'base64');
    const differ = got.data.reduce((n, v, i) => n + Number(v !== want[i]), 0);
    assert.equal(differ, 0, `${c.width}×${c.height} -> ${c.toWidth}×${c.toHeight}: ${differ} bytes differ from Pillow ${fixture.pillow}`);
  }
});

test('a PNG and a JPEG of the same pixels preprocess to close tensors; RGBA and gray convert as PIL does', () => {
  // smooth content: JPEG at quality 100 stays within a few levels of it
  const img = rgb(64, 48, (x, y, c) => Math.round(128 + 100 * Math.sin(x / 9 + c) * Math.cos(y / 11 - c)));
  const rgba = new Uint8Array(64 * 48 * 4);
  for (let i = 0; i < 64 * 48; i++) { rgba.set(img.data.subarray(3 * i, 3 * i + 3), 4 * i); rgba[4 * i + 3] = 77; }
  const png = encodePng({ width: 64, height: 48, channels: 3, data: img.data });
  const pngA = encodePng({ width: 64, height: 48, channels: 4, data: rgba });
  const jpg = jpeg.encode({ width: 64, height: 48, data: rgba }, 100).data;
  const a = clipPreprocess(decodeImage(png), { shortestEdge: 32 }).toFlatArray();
  const b = clipPreprocess(decodeImage(jpg), { shortestEdge: 32 }).toFlatArray();
  const c = clipPreprocess(decodeImage(pngA), { shortestEdge: 32 }).toFlatArray();
  assert.deepEqual(c, a, 'alpha is dropped, not composited');
  let worst = 0, mean = 0;
  for (let i = 0; i < a.length; i++) { const d = Math.abs(a[i] - b[i]); worst = Math.max(worst, d); mean += d / a.length; }
  // one level is 1/255/std ≈ 0.015 after normalization
  assert.ok(worst < 0.1 && mean < 0.02, `png vs jpeg: worst ${worst}, mean ${mean}`);
  const gray = encodePng({ width: 2, height: 1, channels: 1, data: Uint8Array.from([10, 200]) });
  assert.deepEqual([...decodeImage(gray).data], [10, 10, 10, 200, 200, 200]);
  assert.throws(() => decodeImage(Uint8Array.from([0x47, 0x49, 0x46, 0x38]), 'x.gif'), (e: Error) => e instanceof ImageError && /neither a PNG nor a JPEG \(the file starts with 47 49 46 38\)/.test(e.message));
  assert.throws(() => decodeImage(Uint8Array.from([0xff, 0xd8, 0xff, 0x00, 0x01]), 'bad.jpg'), ImageError);
});
