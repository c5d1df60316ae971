// INT8 KV page pools: the layout, quantize-on-write and the row reads of the reference kernels
// (the native twin is native/llm/paged_attention.cc, which must agree bit for bit on writes).
//
// An int8 pool is an i8 tensor [numBlocks, kvHeads, blockSize, headDim + 4]. Each (block, kv head)
// tile of blockSize·(headDim + 4) bytes holds the tile's blockSize rows of headDim int8 values,
// then the rows' blockSize f32 scales (little endian). Keeping the scales after the values keeps
// the rows contiguous and the pool one tensor, so kv_write stays one in-place write into session
// state and paged_attention keeps its inputs. A row (one slot, one kv head) is quantized when it is
// written with its own absmax scale: scale = absmax/127, q = round-half-even(x·(127/absmax)),
// clamped to ±127, all in f32 arithmetic; an all-zero row has scale 0.
import type { DType } from '../tensor/dtype.js';

/** Bytes of a row's scale appended (per tile) to an int8 pool's rows. */
export const KV_INT8_SCALE_BYTES = 4;

/** The head dim of a pool [blocks, kvHeads, blockSize, last]: last for f32/f16 pools, last − 4 for int8 ones. */
export function poolHeadDim(dtype: DType | string, last: number | string): number | string {
  if (dtype !== 'i8' || typeof last !== 'number') return last;
  return last - KV_INT8_SCALE_BYTES;
}

const half = (x: number): number => {
  // round half to even, as the native conversion (MXCSR default) does
  const f = Math.floor(x), d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
};

/** Row reads of an int8 pool: offsets of a row's values and its scale. */
export class Int8PoolRows {
  readonly values: Int8Array;
  private readonly view: DataView;
  private readonly tileBytes: number;
  constructor(data: Int8Array, readonly kvHeads: number, readonly blockSize: number, readonly headDim: number) {
    this.values = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.tileBytes = blockSize * (headDim + KV_INT8_SCALE_BYTES);
  }
  /** Byte offset of the values of (block, kv head, slot in the block). */
  row(block: number, kvHead: number, slot: number): number {
    return (block * this.kvHeads + kvHead) * this.tileBytes + slot * this.headDim;
  }
  scale(block: number, kvHead: number, slot: number): number {
    return this.view.getFloat32((block * this.kvHeads + kvHead) * this.tileBytes + this.blockSize * this.headDim + slot * KV_INT8_SCALE_BYTES, true);
  }
  /** Quantizes src[from .. from + headDim) into (block, kv head, slot). */
  write(block: number, kvHead: number, slot: number, src: Float32Array, from: number): void {
    const D = this.headDim, at = this.row(block, kvHead, slot);
    let amax = 0;
    for (let d = 0; d < D; d++) amax = Math.max(amax, Math.abs(src[from + d]));
    let scale = 0;
    if (amax > 0) {
      const inv = Math.fround(127 / amax);
      for (let d = 0; d < D; d++) this.values[at + d] = Math.min(127, Math.max(-127, half(Math.fround(src[from + d] * inv))));
      scale = Math.fround(amax / 127);
    } else {
      this.values.fill(0, at, at + D);
    }
    this.view.setFloat32((block * this.kvHeads + kvHead) * this.tileBytes + this.blockSize * D + slot * KV_INT8_SCALE_BYTES, scale, true);
  }
}
