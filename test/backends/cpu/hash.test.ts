// The native XXH64 against digests from the reference implementation (libxxhash 0.8.1, XXH64 via
// ctypes): empty input, each tail path (1, 3 and 63 bytes), whole 32-byte stripes, and a seed.
// Also the content-hash front door the disk cache uses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addon } from '../../../src/backends/cpu/addon.js';
import { contentHash, hashWith, checksumAlgorithm } from '../../../src/cache/content-hash.js';

const nativeTest = addon ? test : test.skip;

const sines = Buffer.from(Float32Array.from({ length: 1001 }, (_, i) => Math.fround(Math.sin(i))).buffer);
const VECTORS: [Buffer, string, string][] = [
  [Buffer.alloc(0), 'ef46db3751d8e999', '95f0626f6f0a4409'],
  [Buffer.from('a'), 'd24ec4f1a98c6e5b', 'dc6349d489e0f965'],
  [Buffer.from('abc'), '44bc2cf5ad770999', '9e755206156676d7'],
  [Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!'), 'aa4dcad69fac0eb3', '24ce55806b40784c'],
  [sines, '2cbdb1ee96088218', 'e4e89d1893ddcfbc'],
];

nativeTest('xxh64 matches the reference implementation (seeds 0 and 7)', () => {
  for (const [bytes, seed0, seed7] of VECTORS) {
    assert.equal(addon!.xxh64(bytes, 0), seed0, `${bytes.length} bytes, seed 0`);
    assert.equal(addon!.xxh64(bytes, 7), seed7, `${bytes.length} bytes, seed 7`);
  }
});

nativeTest('xxh64 hashes the view, not its whole buffer', () => {
  const whole = Buffer.concat([Buffer.from('xx'), Buffer.from('abc'), Buffer.from('yy')]);
  assert.equal(addon!.xxh64(whole.subarray(2, 5), 0), '44bc2cf5ad770999');
});

test('contentHash tags the algorithm and any typed array hashes by its bytes', () => {
  const f = new Float32Array([1, 2, 3]);
  const h = contentHash(f);
  assert.equal(h, `${checksumAlgorithm}:${hashWith(checksumAlgorithm, new Uint8Array(f.buffer))}`);
  assert.notEqual(contentHash(new Float32Array([1, 2, 4])), h, 'one changed value changes the hash');
  assert.equal(hashWith('sha256', Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});
