// Loading DiT weights by the original names: a full state round trip, dtype conversion, wrapper
// prefixes, and the report for missing, unexpected and mis-shaped tensors (strict and not).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, randn, type Tensor } from '../../src/index.js';
import { DiT } from '../../examples/diffusion/dit.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors-writer.js';
import { loadDiTState, loadDiTCheckpoint } from '../../examples/diffusion/checkpoint.js';

const tiny = { inputSize: 8, patchSize: 2, hiddenSize: 64, depth: 2, numHeads: 4, numClasses: 10 };
const copyState = (m: DiT, map: (name: string, t: Tensor) => Tensor = (_, t) => t): Map<string, Tensor> =>
  new Map([...m.stateDict()].map(([n, t]) => [n, map(n, fromArray(t.toFlatArray(), [...t.shape], t.dtype))]));

test('a state dict with the original names loads completely and reproduces the outputs', () => {
  const source = new DiT(tiny, { seed: 1 }), target = new DiT(tiny, { seed: 2 });
  const x = randn([1, 4, 8, 8], { seed: 3 }), t = fromArray([250], [1]), y = fromArray([4], [1], 'i64');
  assert.notDeepEqual(target.forward(x, t, y).toFlatArray(), source.forward(x, t, y).toFlatArray());
  const report = loadDiTState(target, copyState(source));
  assert.deepEqual([report.missing, report.unexpected, report.mismatched, report.loaded, report.converted], [[], [], [], 32, 0]);
  assert.match(report.summary, /loaded all 32 tensors/);
  assert.deepEqual(target.forward(x, t, y).toFlatArray(), source.forward(x, t, y).toFlatArray());
});

test('f16 tensors are converted; a shared "module." prefix is removed', () => {
  const source = new DiT(tiny, { seed: 4 }), target = new DiT(tiny, { seed: 5 });
  const state = new Map([...copyState(source, (_, t) => t.cast('f16'))].map(([n, t]) => [`module.${n}`, t]));
  const report = loadDiTState(target, state);
  assert.equal(report.converted, 32);
  assert.equal(report.strippedPrefix, 'module.');
  assert.match(report.summary, /32 converted to f32, prefix "module\." removed/);
  const w = target.blocks.at(1).attn.qkv.weight.toFlatArray(), src = source.blocks.at(1).attn.qkv.weight.toFlatArray();
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i] - src[i]) <= 1e-3 * Math.abs(src[i]) + 1e-7); // f16 keeps 11 bits
});

test('missing, unexpected and mis-shaped tensors: strict refuses with one report, non-strict loads the rest', () => {
  const other = new DiT({ ...tiny, inputSize: 16, numClasses: 20, depth: 3 }, { seed: 6 });
  const state = copyState(other);
  state.delete('final_layer.linear.bias');
  const target = new DiT(tiny, { seed: 7 });
  const before = target.blocks.at(0).attn.proj.weight.toFlatArray();
  assert.throws(() => loadDiTState(target, state, { source: 'other.safetensors' }), (e: Error) => {
    assert.match(e.message, /^loadDiTCheckpoint: other\.safetensors: refused \(strict\): 13 problems/);
    assert.match(e.message, /missing from the checkpoint \(1\): final_layer\.linear\.bias/);
    assert.match(e.message, /unexpected in the checkpoint \(10\): blocks\.2\.attn\.qkv\.weight/);
    assert.match(e.message, /pos_embed: model f32\[1, 16, 64\], checkpoint f32\[1, 64, 64\]/);
    assert.match(e.message, /y_embedder\.embedding_table\.weight: model f32\[11, 64\], checkpoint f32\[21, 64\]/);
    assert.match(e.message, /looks like a DiT with depth 3, hidden 64, patch 2 \(16×16 latents, 20 classes\).*pass --image-size 128/);
    return true;
  });
  assert.deepEqual(target.blocks.at(0).attn.proj.weight.toFlatArray(), before, 'strict failure copies nothing');

  const report = loadDiTState(target, state, { strict: false });
  assert.deepEqual(report.missing, ['final_layer.linear.bias']);
  assert.equal(report.unexpected.length, 10);
  assert.deepEqual(report.mismatched.map((m) => m.name), ['pos_embed', 'y_embedder.embedding_table.weight']);
  assert.equal(report.loaded, 29);
  assert.deepEqual(report.inferred, { hiddenSize: 64, inChannels: 4, patchSize: 2, numClasses: 20, inputSize: 16, depth: 3 });
  assert.deepEqual(target.blocks.at(0).attn.proj.weight.toFlatArray(), other.blocks.at(0).attn.proj.weight.toFlatArray());
  assert.match(report.summary, /loaded 29 of 32 tensors; 13 problems/);
});

test('loadDiTCheckpoint reads a safetensors file (bf16 weights, as converted checkpoints often are)', () => {
  const source = new DiT(tiny, { seed: 8 });
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-dit-ckpt-'));
  try {
    const path = join(dir, 'dit.safetensors');
    writeSafetensors(path, new Map([...source.stateDict()].map(([n, t]) => [n, t.cast('bf16')])));
    const target = new DiT(tiny, { seed: 9 });
    const report = loadDiTCheckpoint(target, path);
    assert.equal(report.loaded, 32);
    assert.equal(report.converted, 32);
    assert.ok(report.summary.startsWith(`loadDiTCheckpoint: ${path}: loaded all 32 tensors`), report.summary);
    const w = target.final_layer.linear.weight.toFlatArray(), src = source.final_layer.linear.weight.toFlatArray();
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i] - src[i]) <= 4e-3 * Math.abs(src[i]) + 1e-30); // bf16 keeps 8 bits
    assert.throws(() => loadDiTCheckpoint(target, join(dir, 'nope.safetensors')), /cannot open/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
