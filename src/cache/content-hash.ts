// Content checksums for the disk cache: XXH64 computed natively (memory speed) where the native
// addon is loaded, sha256 otherwise. sha256 ran at ~1.2 GB/s here, so hashing DiT-S/2's 125 MB of
// weights to key their packed panels took longer (105 ms) than packing them (40 ms). These hashes
// detect stale or damaged data; they are not a defence against someone who can write the cache
// folder (that person could as well rewrite the checksums).
import { createHash } from 'node:crypto';
import { addon } from '../backends/cpu/addon.js';

export type ChecksumAlgorithm = 'xxh64' | 'sha256';

/** The algorithm new checksums use in this process. */
export const checksumAlgorithm: ChecksumAlgorithm = addon && typeof addon.xxh64 === 'function' ? 'xxh64' : 'sha256';

const bytesOf = (data: ArrayBufferView): Uint8Array => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** `<algorithm>:<hex>` over the bytes of `data`. */
export function contentHash(data: ArrayBufferView): string {
  return `${checksumAlgorithm}:${hashWith(checksumAlgorithm, data)}`;
}

/** The hex digest of `data` by `algorithm`, or null when this process cannot compute it (an
 *  XXH64 checksum written by a process with the native addon, read by one without). */
export function hashWith(algorithm: ChecksumAlgorithm, data: ArrayBufferView): string | null {
  if (algorithm === 'sha256') return createHash('sha256').update(bytesOf(data)).digest('hex');
  return addon && typeof addon.xxh64 === 'function' ? addon.xxh64(bytesOf(data), 0) : null;
}
