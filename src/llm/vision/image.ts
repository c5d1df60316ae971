// Images for LLaVA: PNG (src/io/png.ts) or JPEG (jpeg-js) bytes to RGB pixels, then CLIP preprocessing
// exactly as transformers' CLIPImageProcessor does it for llava-1.5: convert to RGB (alpha dropped,
// gray replicated), resize the shortest side to 336 with PIL's bicubic filter on 8-bit pixels,
// center crop 336×336, rescale by 1/255, normalize with CLIP's mean and std, channels first.
//
// The resize is PIL's ImagingResample, not a textbook bicubic: the filter (a = -0.5, support 2) is
// stretched by the downscale factor (so downscaling averages, i.e. antialiases), the weights of each
// output pixel are normalized and turned into 22-bit fixed point, and the horizontal pass runs first
// and rounds/clamps to 8 bits before the vertical pass. Matching those roundings keeps our pixels
// identical to the reference's instead of ±1 level off.
import * as fs from 'node:fs';
import jpeg from 'jpeg-js';
import { decodePng, type Image } from '../../io/png.js';
import { ModelFileError } from '../../io/errors.js';
import { fromArray } from '../../tensor/creation.js';
import { type Tensor } from '../../tensor/tensor.js';

/** An image could not be read as PNG or JPEG. */
export class ImageError extends ModelFileError {
  constructor(file: string, detail: string) { super('image', file, detail); this.name = 'ImageError'; }
}

/** 8-bit RGB pixels, row-major, 3 bytes per pixel. */
export interface RgbImage { width: number; height: number; data: Uint8Array }

const isPng = (b: Uint8Array) => b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
const isJpeg = (b: Uint8Array) => b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

/** PIL's convert('RGB'): gray is replicated, alpha is dropped (not composited). */
export function toRgb(image: Image): RgbImage {
  const { width, height, channels, data } = image;
  if (channels === 3) return { width, height, data };
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    if (channels === 4) { out[3 * i] = data[4 * i]; out[3 * i + 1] = data[4 * i + 1]; out[3 * i + 2] = data[4 * i + 2]; } else {
      const g = data[i * channels];
      out[3 * i] = g; out[3 * i + 1] = g; out[3 * i + 2] = g;
    }
  }
  return { width, height, data: out };
}

/** Decodes PNG or JPEG bytes (told apart by their signatures) to RGB. */
export function decodeImage(bytes: Uint8Array, source = 'image'): RgbImage {
  if (isPng(bytes)) return toRgb(decodePng(bytes, source));
  if (isJpeg(bytes)) {
    let d: { width: number; height: number; data: Uint8Array };
    try {
      d = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: 200, maxMemoryUsageInMB: 2048 });
    } catch (e) { throw new ImageError(source, `not a readable JPEG: ${(e as Error).message ?? String(e)}`); }
    if (d.data.length !== d.width * d.height * 3) throw new ImageError(source, `JPEG decoded to ${d.data.length} bytes for ${d.width}×${d.height} RGB`);
    return { width: d.width, height: d.height, data: d.data };
  }
  const head = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new ImageError(source, `neither a PNG nor a JPEG (the file starts with ${head || 'nothing'}); give a .png or .jpg image`);
}

export function readImage(path: string): RgbImage {
  let bytes: Uint8Array;
  try { bytes = fs.readFileSync(path); } catch (e) { throw new ImageError(path, `cannot read the image: ${(e as Error).message}`); }
  return decodeImage(bytes, path);
}

/** PIL's bicubic kernel (a = -0.5). */
export function bicubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

const PRECISION_BITS = 32 - 8 - 2;

/** Per output index: first input index and the 22-bit fixed-point weights (PIL's precompute_coeffs + normalize_coeffs_8bpc). */
function coefficients(inSize: number, outSize: number): { start: Int32Array; weights: Int32Array[] } {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const start = new Int32Array(outSize);
  const weights: Int32Array[] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    // PIL truncates toward zero with a C cast; the arguments here are >= -support + 0.5 > -inf, cast as C does
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k = new Float64Array(xmax);
    let ww = 0;
    for (let x = 0; x < xmax; x++) { const w = bicubic((x + xmin - center + 0.5) / filterScale); k[x] = w; ww += w; }
    const fixed = new Int32Array(xmax);
    for (let x = 0; x < xmax; x++) {
      const v = ww === 0 ? 0 : k[x] / ww;
      // C: (int)(0.5 + v * (1 << PRECISION_BITS)) for v >= 0, (int)(-0.5 + ...) otherwise
      fixed[x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    start[o] = xmin;
    weights.push(fixed);
  }
  return { start, weights };
}

const clip8 = (v: number): number => { const s = Math.floor(v / (1 << PRECISION_BITS)); return s < 0 ? 0 : s > 255 ? 255 : s; };

/** PIL Image.resize((width, height), BICUBIC) of an RGB image: horizontal pass, 8-bit rounding, vertical pass. */
export function resizeBicubic(image: RgbImage, width: number, height: number): RgbImage {
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) throw new RangeError(`resizeBicubic: size ${width}×${height} must be positive integers`);
  let cur = image;
  const half = 1 << (PRECISION_BITS - 1);
  if (width !== cur.width) {
    const { start, weights } = coefficients(cur.width, width);
    const out = new Uint8Array(width * cur.height * 3);
    for (let y = 0; y < cur.height; y++) {
      for (let x = 0; x < width; x++) {
        const w = weights[x], s = start[x];
        for (let c = 0; c < 3; c++) {
          let acc = half;
          for (let i = 0; i < w.length; i++) acc += cur.data[(y * cur.width + s + i) * 3 + c] * w[i];
          out[(y * width + x) * 3 + c] = clip8(acc);
        }
      }
    }
    cur = { width, height: cur.height, data: out };
  }
  if (height !== cur.height) {
    const { start, weights } = coefficients(cur.height, height);
    const out = new Uint8Array(cur.width * height * 3);
    for (let y = 0; y < height; y++) {
      const w = weights[y], s = start[y];
      for (let x = 0; x < cur.width; x++) {
        for (let c = 0; c < 3; c++) {
          let acc = half;
          for (let i = 0; i < w.length; i++) acc += cur.data[((s + i) * cur.width + x) * 3 + c] * w[i];
          out[(y * cur.width + x) * 3 + c] = clip8(acc);
        }
      }
    }
    cur = { width: cur.width, height, data: out };
  }
  return cur;
}

export interface ClipPreprocessOptions {
  /** Target of the shortest side (default 336). */
  shortestEdge?: number;
  /** Center crop size (default: shortestEdge). */
  cropSize?: number;
  /** Per-channel mean and std after rescaling to [0, 1] (default: CLIP's). */
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
}

export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** transformers' get_resize_output_image_size(shortest_edge, default_to_square=False): the long side truncates. */
export function shortestEdgeSize(width: number, height: number, edge: number): { width: number; height: number } {
  if (width <= height) return { width: edge, height: Math.trunc((edge * height) / width) };
  return { width: Math.trunc((edge * width) / height), height: edge };
}

/** CLIPImageProcessor: pixel values [1, 3, crop, crop] f32. */
export function clipPreprocess(image: RgbImage, options: ClipPreprocessOptions = {}): Tensor {
  const edge = options.shortestEdge ?? 336;
  const crop = options.cropSize ?? edge;
  const mean = options.mean ?? CLIP_MEAN, std = options.std ?? CLIP_STD;
  if (image.width <= 0 || image.height <= 0) throw new RangeError(`clipPreprocess: the image is ${image.width}×${image.height}`);
  const size = shortestEdgeSize(image.width, image.height, edge);
  const r = resizeBicubic(image, size.width, size.height);
  if (crop > r.width || crop > r.height) throw new RangeError(`clipPreprocess: crop ${crop} is larger than the resized ${r.width}×${r.height} image`);
  // transformers' center_crop: integer halves of the excess, rounded down
  const top = Math.floor((r.height - crop) / 2), left = Math.floor((r.width - crop) / 2);
  const out = new Float32Array(3 * crop * crop);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < crop; y++) {
      for (let x = 0; x < crop; x++) {
        const v = r.data[((top + y) * r.width + left + x) * 3 + c] / 255;
        out[(c * crop + y) * crop + x] = (v - mean[c]) / std[c];
      }
    }
  }
  return fromArray(out, [1, 3, crop, crop], 'f32');
}

/** Reads a PNG or JPEG file and preprocesses it for a CLIP tower. */
export function loadClipImage(path: string, options: ClipPreprocessOptions = {}): Tensor {
  return clipPreprocess(readImage(path), options);
}
