// LLaVA (src/llm/vision): the image encoder (CLIP tower + projector) compiled to a native plan and
// exported to ONNX, both against eager; the whole image-to-text step eager vs compiled through the
// StepEngine; image rows landing at the right prompt positions; the checkpoint's missing/unexpected
// report. The tiny checkpoint is examples/llm/llava-tiny.ts (every tensor random, llava-hf names).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randn, fromArray, inferenceJit, type Tensor } from '../../../src/index.js';
import { trace } from '../../../src/trace/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { exportGraphToBytes } from '../../../src/onnx/export.js';
import { OrtSession } from '../../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../../src/backends/onnxruntime/index.js';
import { readSafetensors } from '../../../src/io/safetensors.js';
import { writeSafetensors } from '../../../src/io/safetensors-writer.js';
import { loadLlava, canonicalLlavaName, type Llava } from '../../../src/llm/vision/llava.js';
import { layersToRun } from '../../../src/llm/vision/clip.js';
import { writeTinyLlava, TINY_SPECIALS, TINY_VOCAB } from '../../../examples/llm/llava-tiny.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-llava-'));
const dir = path.join(tmp, 'tiny');
writeTinyLlava(dir);
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const maxDiff = (a: Tensor | ArrayLike<number>, b: Tensor | ArrayLike<number>): number => {
  const x = 'toFlatArray' in a ? a.toFlatArray() : a, y = 'toFlatArray' in b ? b.toFlatArray() : b;
  assert.equal(x.length, y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
};
const pixels = (n: number, seed: number): Tensor => randn([n, 3, 28, 28], { seed });
const open = (o: Parameters<typeof loadLlava>[1] = {}): Llava => loadLlava(dir, { maxContext: 128, maxSeqs: 2, maxStepTokens: 32, ...o });

test('vision feature layer -2 runs all but the last block; out-of-range layers are refused', () => {
  assert.equal(layersToRun(24, -2), 23);
  assert.equal(layersToRun(24, -1), 24);
  assert.equal(layersToRun(24, 0), 0);
  assert.throws(() => layersToRun(24, -26), /vision_feature_layer -26/);
});

// f32 GEMMs and attention in both; the plan fuses epilogues and may sum in another order, so a few
// ulps of outputs of order 1 (1e-4 absolute) is the bound.
test('image encoder: compiled native plan == eager at batch 1 and 2', () => {
  const m = open();
  const enc = m.encoder;
  const compiled = inferenceJit(enc, { device: 'cpu', fallback: 'error', cache: 'memory', inputSpec: [{ shape: ['batch', 3, 28, 28] }] }) as unknown as ((x: Tensor) => Tensor) & { compiledEntries(): { executable: { describe(): string } }[] };
  for (const n of [1, 2]) {
    const x = pixels(n, 11 + n);
    const want = enc.forward(x);
    const got = compiled(x);
    assert.deepEqual([...got.shape], [n, 16, 48]);
    const d = maxDiff(got, want);
    assert.ok(d < 1e-4, `batch ${n}: max |compiled - eager| = ${d}`);
  }
  const how = compiled.compiledEntries()[0].executable.describe();
  assert.match(how, /^cpu plan/, how);
  assert.match(how, /attention_fused/, 'the tower attention lowers to the fused attention kernel');
});

test('image encoder exported to ONNX and run by onnxruntime-node matches eager (reference kernels)', () => {
  const enc = open().encoder;
  const traced = trace((x: Tensor) => enc.forward(x), [pixels(2, 3)], { inputSpec: [{ shape: ['batch', 3, 28, 28] }], module: enc });
  const names = { inputNames: ['pixel_values'], outputNames: ['image_embeds'] };
  const { inputs: ins, outputs: outs } = graphIO(traced.graph, names);
  const session = new OrtSession(exportGraphToBytes(traced.graph, traced.constants, names).bytes, {}, ins, outs);
  try {
    for (const n of [1, 3]) {
      const x = pixels(n, 20 + n);
      const want = withEagerBackend('reference', () => enc.forward(x));
      const [got] = session.runSync([x]);
      assert.deepEqual([...got.shape], [n, 16, 48]);
      const d = maxDiff(got, want);
      assert.ok(d < 1e-4, `batch ${n}: max |onnx - eager| = ${d}`);
    }
  } finally { session.dispose(); }
});

/** Logits of one prefill step over the spliced prompt, through the engine's runner. */
async function prefillLogits(m: Llava, prompt: number[], images: Tensor[]): Promise<Float32Array> {
  const { ids, release } = m.attachImages(prompt, images);
  const runner = m.engine.runner;
  const seq = runner.newSequence();
  try {
    assert.ok(runner.reserve(seq, ids.length));
    return (await runner.step([{ seq, tokens: ids, n: ids.length }])).slice();
  } finally { runner.release(seq); release(); }
}

const PROMPT = [TINY_SPECIALS.bos, 85, 83, 69, 82, 58, TINY_SPECIALS.image, 10, 87, 104, 97, 116, 63];

// The whole image-to-text step: pixels -> encoder -> table rows -> spliced step -> logits, and the
// greedy continuation. Same kernels family, different fusion: 1e-3 on logits of order 1-10.
test('image-to-text: compiled (encoder + step) == eager on prefill logits and greedy tokens', async () => {
  const eager = open({ compile: false, compileEncoder: false });
  const compiled = open();
  const img = [pixels(1, 40)];
  const a = await prefillLogits(eager, PROMPT, img), b = await prefillLogits(compiled, PROMPT, img);
  assert.equal(a.length, TINY_VOCAB);
  const d = maxDiff(a, b);
  assert.ok(d < 1e-3, `max |compiled - eager| logits = ${d}`);
  assert.match(compiled.engine.describe(), /^cpu plan/, compiled.engine.describe());
  assert.equal(eager.engine.describe(), 'eager');
  const ge = await eager.generate(PROMPT, img, { maxTokens: 6, temperature: 0 });
  const gc = await compiled.generate(PROMPT, img, { maxTokens: 6, temperature: 0 });
  assert.deepEqual(gc.tokens, ge.tokens);
  // the image matters: another image changes the logits
  const c = await prefillLogits(compiled, PROMPT, [pixels(1, 41)]);
  assert.ok(maxDiff(b, c) > 1e-3, 'a different image leaves the logits unchanged');
});

test('splicing: image rows go exactly to the <image> positions (one placeholder expanded, or a full run)', () => {
  const m = open({ compile: false, compileEncoder: false });
  const N = m.rowsPerImage, V = TINY_VOCAB;
  assert.equal(N, 16);
  const one = m.spliceIds([1, TINY_SPECIALS.image, 2], [1]);
  assert.deepEqual(one, [1, ...Array.from({ length: N }, (_, r) => V + N + r), 2]);
  assert.deepEqual(m.spliceIds([1, ...new Array(N).fill(TINY_SPECIALS.image), 2], [1]), one);
  assert.throws(() => m.spliceIds([1, TINY_SPECIALS.image, TINY_SPECIALS.image, 2], [0]), /run of 2 <image> tokens/);
  assert.throws(() => m.spliceIds([1, 2], [0]), /1 image\(s\) given but the prompt has 0/);

  // the layer-0 input: perturb one table row; only the position holding that row's id changes, to that row
  const dec = m.decoder;
  const table = dec.imageTable;
  const tdata = table.data as Float32Array;
  const D = m.config.text.hiddenSize;
  for (let i = 0; i < tdata.length; i++) tdata[i] = Math.sin(i * 0.37);
  const ids = [5, V + 3, 7, V + 0, V + 9, 250];
  const idT = fromArray(Int32Array.from(ids), [ids.length], 'i32');
  const before = dec.embed(idT, table).toFlatArray();
  const row = 9;
  for (let j = 0; j < D; j++) tdata[row * D + j] += 1 + j;
  const after = dec.embed(idT, table).toFlatArray();
  const embed = dec.language_model.embed.toFlatArray();
  ids.forEach((id, t) => {
    const got = after.slice(t * D, (t + 1) * D);
    const want = id >= V ? tdata.slice((id - V) * D, (id - V + 1) * D) : embed.slice(id * D, (id + 1) * D);
    assert.deepEqual([...got], [...want], `position ${t} (id ${id}) holds the wrong row`);
    const changed = got.some((v, j) => v !== before[t * D + j]);
    assert.equal(changed, id === V + row, `position ${t}: changed = ${changed}`);
  });
});

test('loading: missing and unexpected tensors are reported by name; the new transformers naming loads too', () => {
  const st = readSafetensors(dir);
  const all = new Map(st.names.map((n) => [n, st.toTensor(n)] as [string, Tensor]));
  const broken = path.join(tmp, 'broken');
  fs.mkdirSync(broken);
  fs.copyFileSync(path.join(dir, 'config.json'), path.join(broken, 'config.json'));
  const b = new Map(all);
  b.delete('vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias');
  b.delete('language_model.model.layers.0.mlp.up_proj.weight');
  b.set('vision_tower.vision_model.encoder.layers.7.mlp.fc2.bias', all.get('vision_tower.vision_model.encoder.layers.1.mlp.fc1.bias')!);
  b.set('language_model.model.layers.1.self_attn.o_proj.weight', all.get('language_model.model.layers.1.mlp.up_proj.weight')!);
  b.set('vision_tower.vision_model.pre_layrnorm.bias', all.get('vision_tower.vision_model.encoder.layers.1.mlp.fc1.bias')!);
  writeSafetensors(path.join(broken, 'model.safetensors'), b);
  assert.throws(() => loadLlava(broken), (e: Error) =>
    /missing \(2\): .*layers\.1\.mlp\.fc2\.bias.*layers\.0\.mlp\.up_proj\.weight/.test(e.message) && /unexpected \(1\): .*layers\.7\.mlp\.fc2\.bias/.test(e.message)
    && /mismatched \(2\): .*pre_layrnorm\.bias: \[64\], expected \[32\].*o_proj\.weight: \[96, 48\], expected \[48, 48\]/.test(e.message));

  // transformers >= 4.52 names: model.language_model.*, model.vision_tower.*, model.multi_modal_projector.*, lm_head.weight
  const renamed = path.join(tmp, 'renamed');
  fs.mkdirSync(renamed);
  fs.copyFileSync(path.join(dir, 'config.json'), path.join(renamed, 'config.json'));
  const newName = (n: string) => n.startsWith('language_model.model.') ? 'model.language_model.' + n.slice('language_model.model.'.length)
    : n === 'language_model.lm_head.weight' ? 'lm_head.weight' : 'model.' + n;
  writeSafetensors(path.join(renamed, 'model.safetensors'), new Map([...all].map(([n, t]) => [newName(n), t])));
  for (const n of all.keys()) assert.equal(canonicalLlavaName(newName(n)), n);
  const x = pixels(1, 9);
  const a = loadLlava(renamed, { compileEncoder: false, compile: false }), o = open({ compileEncoder: false, compile: false });
  assert.equal(maxDiff(a.encoder.forward(x), o.encoder.forward(x)), 0);
});
