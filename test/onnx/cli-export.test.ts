// `inferjit export model.ts --out model.onnx` (runExportCommand): a model file with example inputs
// is traced and written as ONNX; the result runs in onnxruntime-node; usage errors exit with 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runExportCommand } from '../../src/cli/export.js';
import { loadOrt } from '../../src/backends/onnxruntime/session.js';

const dir = mkdtempSync(join(tmpdir(), 'inferjit-cli-export-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const root = new URL('../../', import.meta.url).href;

function io() {
  const out: string[] = [], err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

// .mts: a .ts file outside an ESM package would load as CommonJS, with its own copy of inferjit's modules
const modelFile = join(dir, 'model.mts');
writeFileSync(modelFile, `
import { nn, randn, manualSeed, type Tensor } from '${root}src/index.ts';
class Head extends nn.Module {
  proj = new nn.Linear(8, 3);
  forward(features: Tensor) { return this.proj.forward(features).softmax(-1); }
}
manualSeed(2);
export default () => ({ model: new Head(), args: [randn([2, 8], { seed: 1 })], inputSpec: [{ shape: ['batch', 8] }], outputNames: ['probs'] });
`);

test('inferjit export writes a runnable ONNX model named after forward\'s parameters', async () => {
  const out = join(dir, 'head.onnx');
  const t = io();
  assert.equal(await runExportCommand([modelFile, '--out', out], t.io), 0, t.err.join('\n'));
  assert.match(t.out[0], /^wrote .*head\.onnx \(\d+ bytes, ONNX opset 18\)$/);
  assert.equal(t.out[1], 'inputs: features; outputs: probs');
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(out);
  assert.deepEqual(session.inputNames, ['features']);
  const r = await session.run({ features: new ort.Tensor('float32', new Float32Array(5 * 8).fill(0.5), [5, 8]) });
  const probs = r.probs.data as Float32Array;
  assert.equal(probs.length, 15);
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(probs[3 * i] + probs[3 * i + 1] + probs[3 * i + 2] - 1) < 1e-6, 'rows sum to 1');

  const json = io();
  assert.equal(await runExportCommand([modelFile, '--out', join(dir, 'ext.onnx'), '--external-data', '--external-threshold', '0', '--json'], json.io), 0, json.err.join('\n'));
  const info = JSON.parse(json.out[0]);
  assert.equal(info.dataPath, join(dir, 'ext.onnx.data'));
  assert.ok(existsSync(info.dataPath));
});

test('inferjit export usage errors', async () => {
  const cases: [string[], RegExp, number][] = [
    [[modelFile], /missing --out <model\.onnx>/, 2],
    [['--out', 'x.onnx'], /missing the model file/, 2],
    [[modelFile, '--out', 'x.onnx', '--opset', '13'], /unknown option --opset/, 2],
    [[modelFile, '--out', 'x.onnx', '--input-spec', '{'], /--input-spec is not JSON/, 2],
    [[join(dir, 'missing.ts'), '--out', join(dir, 'x.onnx')], /inferjit export: .*missing\.ts/, 1],
  ];
  for (const [argv, message, code] of cases) {
    const t = io();
    assert.equal(await runExportCommand(argv, t.io), code, argv.join(' '));
    assert.match(t.err.join('\n'), message);
  }
  const bad = join(dir, 'bad.ts');
  writeFileSync(bad, 'export const notIt = 1;\n');
  const t = io();
  assert.equal(await runExportCommand([bad, '--out', join(dir, 'bad.onnx')], t.io), 2);
  assert.match(t.err[0], /has no default export and no export named "onnxExport"/);
});
