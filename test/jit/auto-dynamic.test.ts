// Automatic dynamic shapes: an undeclared input dim that takes a second size is marked dynamic
// (one warning naming the input and dim, a stats() counter), so a third size reuses the graph.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, randn, Tensor, inferenceJit } from '../../src/index.js';

for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];

class Mlp extends nn.Module {
  fc1 = new nn.Linear(8, 16, { seed: 1 });
  fc2 = new nn.Linear(16, 4, { seed: 2 });
  forward(x: Tensor): Tensor { return this.fc2.forward(this.fc1.forward(x).gelu()).softmax(-1); }
}

const memory = { cache: 'memory' as const };

function close(a: Tensor, b: Tensor): void {
  assert.deepEqual(a.shape, b.shape);
  const x = a.toFlatArray(), y = b.toFlatArray();
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= 1e-5 * (1 + Math.abs(y[i])), `element ${i}: ${x[i]} vs ${y[i]}`);
}

function captureWarnings(): { list: string[]; stop(): void } {
  const list: string[] = [];
  const on = (w: Error & { code?: string }): void => { if (w.code === 'INFERJIT_AUTO_DYNAMIC') list.push(w.message); };
  process.on('warning', on);
  return { list, stop: () => process.off('warning', on) };
}

test('the second batch size marks the dim dynamic; a third size does not recompile; results equal eager', async () => {
  const w = captureWarnings();
  const m = new Mlp();
  const fast = inferenceJit(m, memory);
  for (const b of [2, 3]) { const x = randn([b, 8], { seed: b }); close(fast(x), m.forward(x)); }
  const afterTwo = fast.stats();
  assert.equal(afterTwo.misses, 2);
  assert.equal(afterTwo.autoDynamicDims, 1);
  for (const b of [5, 7, 1, 2]) { const x = randn([b, 8], { seed: 10 + b }); close(fast(x), m.forward(x)); }
  const s = fast.stats();
  assert.equal(s.misses, 2, 'sizes 5, 7, 1 and 2 again served by the dynamic graph');
  assert.equal(s.autoDynamicDims, 1, 'said once');
  await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  w.stop();
  assert.equal(w.list.length, 1);
  assert.match(w.list[0], /input 0 dim 0 took sizes 2 and 3; marking it dynamic/);
});

test('autoDynamic: false compiles every size', () => {
  const m = new Mlp();
  const fast = inferenceJit(m, { ...memory, autoDynamic: false });
  for (const b of [2, 3, 5]) { const x = randn([b, 8], { seed: b }); close(fast(x), m.forward(x)); }
  assert.equal(fast.stats().misses, 3);
  assert.equal(fast.stats().autoDynamicDims, 0);
});

test('a declared inputSpec is left alone', () => {
  const m = new Mlp();
  const fast = inferenceJit(m, { ...memory, inputSpec: [{ shape: [-1, 8] }] });
  for (const b of [2, 3, 5]) { const x = randn([b, 8], { seed: b }); close(fast(x), m.forward(x)); }
  assert.equal(fast.stats().misses, 1);
  assert.equal(fast.stats().autoDynamicDims, 0);
});

test('a dim the model cannot take dynamically falls back to static compiles', () => {
  class FixedTable extends nn.Module {
    table = randn([4, 8], { seed: 9 });
    forward(x: Tensor): Tensor { return x.add(this.table.sliceAxis(0, 0, x.shape[0])); } // shape read into JS
  }
  const m = new FixedTable();
  const fast = inferenceJit(m, memory);
  for (const b of [2, 3, 4, 3]) { const x = randn([b, 8], { seed: b }); close(fast(x), m.forward(x)); }
  const s = fast.stats();
  assert.equal(s.misses, 3, 'sizes 2, 3 and 4 compile static; 3 again hits');
  assert.equal(s.recompileReasons.length, 2);
  assert.match(s.recompileReasons[0].detail, /was \[2, 8\], now \[3, 8\]/);
});
