// interpretIncremental (src/backends/reference/incremental.ts) on a paged decoder's step graph
// (kv_write in place, paged attention, rotary tables, the LM head): after a parameter changes it
// must give interpret's outputs bit for bit while running only what depends on the change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interpret } from '../../src/backends/reference/interpret.js';
import { IncrementalCache, interpretIncremental } from '../../src/backends/reference/incremental.js';
import { outlierModel, randomSequences } from '../../src/quant/index.js';
import { traceStep, flatInputs } from '../../src/quant/calibrate.js';
import { prefillArgs } from '../../src/quant/step.js';
import { fromArray } from '../../src/tensor/creation.js';
import type { Tensor } from '../../src/tensor/tensor.js';

const bytes = (t: Tensor): Buffer => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
const perturbed = (t: Tensor, seed: number): Tensor => {
  const d = Float32Array.from(t.data as Float32Array, (v, i) => v * (1 + 0.01 * Math.sin(i + seed)));
  return fromArray(d, [...t.shape], 'f32');
};

test('interpretIncremental: bit-identical to interpret, recomputing only downstream of a changed parameter', () => {
  const model = outlierModel({ numLayers: 3 });
  const [tokens] = randomSequences(1, 19, 256, 5);
  const fresh = () => prefillArgs(model, tokens!, { allLogits: true });
  const { graph, constants } = traceStep(model, fresh());
  const cache = new IncrementalCache();
  const run = (params: Map<string, Tensor>) => {
    const expected = interpret(graph, flatInputs(fresh()), params)[0]!;
    const got = interpretIncremental(graph, flatInputs(fresh()), params, cache);
    assert.ok(bytes(got.outputs[0]!).equals(bytes(expected)), 'outputs bit for bit');
    return { ...cache.lastRun, keys: got.keys };
  };
  const first = run(constants);
  assert.equal(first.executed, graph.nodes.length, 'an empty cache runs every node');
  assert.equal(first.reused, 0);

  const names = [...constants.keys()];
  const late = names.find((n) => n.includes('layers.2') && n.includes('down'))!;
  const early = names.find((n) => n.includes('layers.0') && n.includes('q_proj') || n.includes('layers.0') && n.includes('wq'))!;
  assert.ok(late && early, `found layer weights among ${names.join(', ')}`);
  const lateChange = run(new Map([...constants, [late, perturbed(constants.get(late)!, 1)]]));
  assert.ok(lateChange.reused > 0 && lateChange.executed < graph.nodes.length / 4,
    `a last-layer change reruns a few nodes (${lateChange.executed} of ${graph.nodes.length})`);
  const earlyChange = run(new Map([...constants, [early, perturbed(constants.get(early)!, 2)]]));
  assert.ok(earlyChange.executed > 2 * lateChange.executed, `a first-layer change reruns most of the graph (${earlyChange.executed} vs ${lateChange.executed})`);

  // retain() keeps one run's values: the original parameters are then found again from the first run's keys
  cache.retain([first.keys]);
  assert.ok(cache.size > 0 && cache.size <= first.keys.size);
  const again = run(constants);
  assert.ok(again.executed < graph.nodes.length / 4, `the first run's kept values serve the same parameters again (${again.executed} nodes ran)`);
});
