// The IR printer's output for the two-block transformer, kept as a readable, stable snapshot: a
// change to tracing, naming or printing shows up here as a reviewable diff. Regenerate with
// INFERJIT_UPDATE_SNAPSHOTS=1 after checking that the new text is right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { randn, manualSeed } from '../../src/index.js';
import { trace } from '../../src/trace/index.js';
import { TinyTransformer } from '../../examples/models/transformer.js';

const SNAPSHOT = fileURLToPath(new URL('./snapshots/two-block-transformer.ir.txt', import.meta.url));

function capture(): string {
  manualSeed(0);
  const model = new TinyTransformer({ dim: 32, heads: 2, depth: 2 });
  const x = randn([2, 8, 32], { seed: 1 });
  const { graph } = trace((t) => model.forward(t), [x], { module: model, inputSpec: [{ shape: ['batch', 'seq', 32] }] });
  graph.verify();
  return graph.print({ source: false });
}

test('the two-block transformer prints as a stable, readable IR snapshot', () => {
  const text = capture();
  if (process.env.INFERJIT_UPDATE_SNAPSHOTS === '1' || !existsSync(SNAPSHOT)) {
    if (process.env.CI && !existsSync(SNAPSHOT)) assert.fail(`snapshot ${SNAPSHOT} is missing; generate it with INFERJIT_UPDATE_SNAPSHOTS=1`);
    writeFileSync(SNAPSHOT, text);
  }
  assert.equal(text, readFileSync(SNAPSHOT, 'utf8'));
  // Same model, same trace: byte-identical text (no ids or ordering that depend on run state).
  assert.equal(capture(), text);
  // Readability: symbolic dims, parameter names by module path, one node per line.
  assert.match(text, /f32\[batch, seq, 32\]/);
  assert.match(text, /@blocks\.0\.attn\.qkv\.weight/);
  assert.match(text, /scaled_dot_product_attention/);
});
