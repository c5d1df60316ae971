// WorkingParams (src/quant/working-params.ts): copies on first read, edits queued until read,
// provenance from the edits' tags, and release() of a consumed working copy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkingParams } from '../../src/quant/working-params.js';
import { fromArray } from '../../src/tensor/creation.js';

test('WorkingParams: a copy per parameter with its edits; release drops it and later use is an error', () => {
  const a = fromArray([1, 2, 3, 4], [2, 2], 'f32');
  const b = fromArray([5, 6], [2], 'f32');
  const work = new WorkingParams([['a', a], ['b', b]]);
  work.edit('a', 'double', (v) => { for (let i = 0; i < v.length; i++) v[i] *= 2; }); // queued: nobody read a yet
  assert.deepEqual([...work.values('a')], [2, 4, 6, 8]);
  assert.deepEqual([...(a.data as Float32Array)], [1, 2, 3, 4], 'the module keeps its own values');
  work.edit('a', 'plus1', (v) => { for (let i = 0; i < v.length; i++) v[i] += 1; }); // lands now
  assert.deepEqual([...work.values('a')], [3, 5, 7, 9]);
  assert.equal(work.provenance('a'), 'double plus1');
  assert.equal(work.provenance('b'), '');
  work.release('a');
  assert.equal(work.provenance('a'), 'double plus1', 'the provenance outlives the copy');
  assert.deepEqual(work.names(), ['a'], 'a released parameter is still one the build replaces');
  assert.throws(() => work.values('a'), /parameter "a" was used after its working copy was released/);
  assert.throws(() => work.edit('a', 'x', () => {}), /released/);
  assert.deepEqual([...work.values('b')], [5, 6]);
});
