import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalDim, dimsEqual, evalDim, dimSymbols, parseDim } from '../../src/ir/index.js';

test('canonical spelling makes equal products and sums compare equal', () => {
  assert.equal(canonicalDim('batch*2'), '2*batch');
  assert.equal(canonicalDim('seq*batch'), 'batch*seq');
  assert.equal(canonicalDim('(seq+1)'), '(1+seq)');
  assert.equal(canonicalDim('2*(a+b)'), '(2*a+2*b)');
  assert.equal(canonicalDim('a-a+3'), 3);
  assert.ok(dimsEqual('(seq+seq)', '2*seq'));
  assert.ok(!dimsEqual('seq', 'batch'));
  assert.ok(dimsEqual(4, '2*2'));
});

test('evalDim evaluates under bindings and names unbound symbols', () => {
  const b = new Map([['batch', 3], ['seq', 5]]);
  assert.equal(evalDim('256*batch', b), 768);
  assert.equal(evalDim('(batch*seq+1)', b), 16);
  assert.equal(evalDim(7, b), 7);
  assert.throws(() => evalDim('heads', b), /symbolic dim "heads": "heads" has no value \(bound: batch, seq\)/);
  assert.deepEqual(dimSymbols('2*batch*seq'), ['batch', 'seq']);
  assert.throws(() => parseDim('2**a'), /symbolic dim "2\*\*a": unexpected "\*"/);
});
