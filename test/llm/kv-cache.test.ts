// Paged KV cache bookkeeping: page allocation per sequence, block tables, release, truncate, and
// the element offsets the native kernels use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PagedKvCache, KvCacheFullError } from '../../src/llm/kv-cache.js';

const make = (numBlocks = 4, dtype: 'f32' | 'f16' = 'f32') =>
  new PagedKvCache({ numLayers: 2, numKvHeads: 2, headDim: 8, numBlocks, blockSize: 4, dtype });

test('pages are allocated as sequences grow and returned on release', () => {
  const c = make();
  assert.equal(c.k.length, 2);
  assert.equal(c.k[0].length, 4 * 2 * 4 * 8);
  const a = c.allocate(), b = c.allocate();
  assert.deepEqual([...c.extend(a, 5)], [0, 1]); // 5 positions need 2 pages of 4
  assert.deepEqual([...c.extend(b, 1)], [2]);
  assert.deepEqual([...c.extend(a, 3)], [0, 1]); // positions 5..7 fit page 1
  assert.equal(c.length(a), 8);
  assert.equal(c.freeBlocks, 1);
  assert.throws(() => c.extend(a, 5), (e: unknown) => e instanceof KvCacheFullError && /needs 2 more pages .* only 1 of 4 are free/.test((e as Error).message));
  assert.equal(c.length(a), 8, 'a failed extend leaves the sequence unchanged');
  c.release(a);
  assert.equal(c.freeBlocks, 3);
  const d = c.allocate();
  assert.deepEqual([...c.extend(d, 9)], [0, 1, 3]);
  assert.throws(() => c.length(a), /no sequence 0/);
});

test('truncate frees whole pages past the new length', () => {
  const c = make();
  const s = c.allocate();
  c.extend(s, 10);
  c.truncate(s, 5);
  assert.equal(c.length(s), 5);
  assert.deepEqual([...c.blockTable(s)], [0, 1]);
  assert.equal(c.freeBlocks, 2);
  assert.throws(() => c.truncate(s, 6), /length must be in \[0, 5\]/);
});

test('offsets follow the [block][kvHead][slot][dim] layout', () => {
  const c = make();
  const a = c.allocate(), b = c.allocate();
  c.extend(b, 4); // b takes page 0
  c.extend(a, 6); // a takes pages 1, 2
  // position 5 of a: logical block 1 -> page 2, slot 1; kv head 1
  assert.equal(c.offset(a, 5, 1), ((2 * 2 + 1) * 4 + 1) * 8);
  assert.throws(() => c.offset(a, 6, 0), /outside the sequence's 6 positions/);
});

test('f16 storage and option validation', () => {
  const c = make(2, 'f16');
  assert.ok(c.k[0] instanceof Uint16Array);
  assert.equal(c.bytes, 2 * 2 * (2 * 2 * 4 * 8) * 2);
  assert.throws(() => new PagedKvCache({ numLayers: 1, numKvHeads: 1, headDim: 8, numBlocks: 0 }), /numBlocks must be a positive integer, got 0/);
});
