// Latents -> pictures. A `Decoder` turns DiT latents into RGB images in [-1, 1]; the one here is the
// linear latent-to-RGB approximation of the Stable Diffusion VAE used for sampler previews. A real
// VAE decoder (sd-vae-ft-mse, as DiT uses) implements the same interface and plugs in unchanged.
import { F, fromArray, type Tensor } from '../../src/index.js';
import { type Image } from '../../src/io/png.js';

export interface Decoder {
  /** Latents [N, 4, h, w] in DiT's space (SD-VAE latents times 0.18215) -> images [N, 3, H, W] with
   *  values nominally in [-1, 1]. A VAE decoder divides by 0.18215 first, as DiT's sample.py does. */
  decode(latents: Tensor): Tensor;
}

/**
 * The 4×3 matrix mapping an SD-1.x VAE latent pixel (in the scaled, 0.18215 space) to approximate
 * RGB in [-1, 1]: ComfyUI's `SD15.latent_rgb_factors` (comfy/latent_formats.py, the refit of keturn's
 * original 2022 estimate), rows are latent channels, columns R, G, B. DiT trains on the same VAE
 * (stabilityai/sd-vae-ft-*), so it applies to DiT latents. It is an approximation: colours and
 * coarse layout survive, fine texture does not.
 */
export const SD_LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [0.3512, 0.2297, 0.3227],
  [0.3250, 0.4974, 0.2350],
  [-0.2829, 0.1762, 0.2721],
  [-0.2120, -0.2616, -0.7177],
];

/** Linear latent-to-RGB per latent pixel, then nearest upsampling by the VAE's factor (8), so the
 *  output has the size a VAE decoder would give. */
export class LatentRgbDecoder implements Decoder {
  readonly #weight: Tensor; // [3, 4]: rgb = W · latent

  constructor(readonly upsample = 8, factors: readonly (readonly number[])[] = SD_LATENT_RGB_FACTORS) {
    const c = factors.length;
    const w = new Float64Array(3 * c);
    factors.forEach((row, k) => {
      if (row.length !== 3) throw new RangeError(`LatentRgbDecoder: factor row ${k} has ${row.length} entries, expected 3 (R, G, B)`);
      row.forEach((v, ch) => { w[ch * c + k] = v; });
    });
    this.#weight = fromArray(w, [3, c]);
  }

  decode(latents: Tensor): Tensor {
    if (latents.rank !== 4 || latents.shape[1] !== this.#weight.shape[1]) {
      throw new RangeError(`LatentRgbDecoder: latents must be [N, ${this.#weight.shape[1]}, h, w], got [${latents.shape.join(', ')}]`);
    }
    const rgb = F.linear(latents.permute(0, 2, 3, 1), this.#weight.cast(latents.dtype)).permute(0, 3, 1, 2); // [N, 3, h, w]
    return this.upsample === 1 ? rgb : F.upsampleNearest2d(rgb, this.upsample);
  }
}

/**
 * Tiles images [N, 3, H, W] (values in [-1, 1]) into one 8-bit RGB picture, `nrow` per row with
 * `padding` black pixels between and around them, like torchvision's save_image(normalize=True,
 * value_range=(-1, 1)) that DiT's sample.py uses: v -> clamp((v + 1) / 2, 0, 1) · 255, rounded.
 */
export function imagesToGrid(images: Tensor, options: { nrow?: number; padding?: number } = {}): Image {
  if (images.rank !== 4 || images.shape[1] !== 3) throw new RangeError(`imagesToGrid: images must be [N, 3, H, W], got [${images.shape.join(', ')}]`);
  const [n, , h, w] = images.shape;
  const nrow = Math.min(options.nrow ?? 8, n), pad = options.padding ?? 2;
  const rows = Math.ceil(n / nrow);
  const width = nrow * (w + pad) + pad, height = rows * (h + pad) + pad;
  const data = new Uint8Array(width * height * 3);
  const v = images.toFlatArray();
  for (let k = 0; k < n; k++) {
    const x0 = pad + (k % nrow) * (w + pad), y0 = pad + Math.floor(k / nrow) * (h + pad);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const value = v[((k * 3 + c) * h + y) * w + x];
          const unit = Math.min(1, Math.max(0, (value + 1) / 2));
          data[((y0 + y) * width + x0 + x) * 3 + c] = Number.isNaN(unit) ? 0 : Math.round(unit * 255);
        }
      }
    }
  }
  return { width, height, channels: 3, data };
}
