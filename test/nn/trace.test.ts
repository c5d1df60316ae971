// Layers must keep symbolic dims flowing when traced (batch and sequence length named, not fixed),
// so they take their reshape targets from metaShape. A minimal recording hook stands in for the
// tracer here: it returns symbolic outputs with the inferred (possibly symbolic) shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, ops, Tensor, manualSeed } from '../../src/index.js';
import { TinyTransformer } from '../../examples/models/transformer.js';

const example: Record<string, number> = { batch: 2, seq: 5 };
const exampleDim = (d: number | string): number =>
  typeof d === 'number' ? d : d.split('*').reduce((n, f) => n * (/^\d+$/.test(f) ? Number(f) : example[f]), 1);

function symbolic(shape: (number | string)[]): Tensor {
  return Tensor.symbolicTensor('f32', shape.map(exampleDim), {
    symShape: shape, value: null,
    onDataRead(op: string): never { throw new Error(`data read: ${op}`); },
  });
}

function trace(fn: () => Tensor): { out: Tensor; opNames: string[] } {
  const opNames: string[] = [];
  const out = ops.withTraceHook((def, _inputs, _attrs, outs) => {
    opNames.push(def.name);
    return outs.map((m) => symbolic([...m.shape]));
  }, fn);
  return { out, opNames };
}

test('SelfAttention keeps symbolic batch and sequence dims', () => {
  const attn = new nn.SelfAttention(16, 4, { numKVHeads: 2, seed: 1 });
  const { out, opNames } = trace(() => attn.forward(symbolic(['batch', 'seq', 16])));
  assert.deepEqual(out.metaShape, ['batch', 'seq', 16]);
  assert.ok(opNames.includes('scaled_dot_product_attention'), opNames.join(' '));
});

test('the two-block transformer traces with symbolic dims and touches no data', () => {
  manualSeed(0);
  const model = new TinyTransformer({ dim: 32, heads: 4 });
  const { out, opNames } = trace(() => model.forward(symbolic(['batch', 'seq', 32])));
  assert.deepEqual(out.metaShape, ['batch', 'seq', 32]);
  assert.equal(opNames.filter((n) => n === 'scaled_dot_product_attention').length, 2);
  assert.equal(opNames.filter((n) => n === 'layer_norm').length, 5);
});
