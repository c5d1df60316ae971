// The onnxruntime backend writes its exported models into the cache folder (onnx/<key>/): `cache
// info` and the size cap count them, `cache ls` lists them and `cache clear` removes them (issue
// 21: clear used to leave onnx/ behind, uncounted). A real compile on device 'onnxruntime'.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';
import { DiskCache, sha256 } from '../../src/cache/disk-cache.js';
import { inferenceJit, nn, randn, type Tensor } from '../../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = join(here, '..', '..', 'bin', 'inferjit.mjs');

class Net extends nn.Module {
  fc = new nn.Linear(8, 8, { seed: 5 });
  forward(x: Tensor): Tensor { return this.fc.forward(x).relu(); }
}

function cliJson(args: string[]): Record<string, unknown> {
  const out: string[] = [];
  const code = main([...args, '--json'], { out: (l) => out.push(l), err: (l) => out.push(l) });
  assert.equal(code, 0, out.join('\n'));
  return JSON.parse(out.join('\n'));
}

function compileOnOrt(cacheDir: string): boolean {
  const model = new Net();
  const fast = inferenceJit(model, { cacheDir, cache: 'disk', device: 'onnxruntime', inputSpec: [{ shape: ['batch', 8] }] });
  const x = randn([2, 8], { seed: 1 });
  const got = fast(x).toFlatArray(), want = model.forward(x).toFlatArray();
  return got.every((v, i) => Math.abs(v - want[i]) < 1e-5);
}

test('ONNX exports are counted by cache info, listed by ls, removed by clear and evicted by the cap', () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'inferjit-onnx-'));
  try {
    assert.ok(compileOnOrt(cacheDir));
    const [exportKey] = readdirSync(join(cacheDir, 'onnx'));
    const modelBytes = statSync(join(cacheDir, 'onnx', exportKey, 'model.onnx')).size;
    assert.ok(modelBytes > 8 * 8 * 4, 'the export holds the weights');

    const info = cliJson(['cache', 'info', '--dir', cacheDir]) as { entries: number; onnxExports: number; bytes: number };
    assert.equal(info.entries, 2); // capture + artifact
    assert.equal(info.onnxExports, 1);
    const entryBytes = new DiskCache(cacheDir).list().filter((e) => e.folder === 'entries').reduce((n, e) => n + e.bytes, 0);
    assert.equal(info.bytes, entryBytes + modelBytes);
    const ls = cliJson(['cache', 'ls', '--dir', cacheDir]) as unknown as { key: string; kind: string; folder: string; ok: boolean }[];
    assert.deepEqual(ls.filter((e) => e.folder === 'onnx').map((e) => [e.key, e.kind, e.ok]), [[exportKey, 'onnx', true]]);

    // The size cap evicts the export when it is the least recently used item.
    const past = new Date(Date.now() - 3600_000);
    utimesSync(join(cacheDir, 'onnx', exportKey), past, past);
    const capped = new DiskCache(cacheDir, { maxBytes: entryBytes });
    capped.put(sha256('small'), { kind: 'artifact', label: 'small', files: { 'a.txt': 'x' } });
    assert.equal(existsSync(join(cacheDir, 'onnx', exportKey)), false, 'the export was evicted');
    assert.ok(compileOnOrt(cacheDir)); // and is exported again when needed

    // `cache clear` through the real CLI removes the exports too.
    const before = new DiskCache(cacheDir).list();
    const entries = before.filter((e) => e.folder === 'entries').length;
    assert.equal(before.filter((e) => e.folder === 'onnx').length, 1);
    const r = spawnSync(process.execPath, [BIN, 'cache', 'clear', '--dir', cacheDir], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.trim(), new RegExp(`^removed ${entries} entries and 1 ONNX export from ${cacheDir}$`));
    assert.deepEqual(readdirSync(join(cacheDir, 'onnx')), []);
    assert.deepEqual(cliJson(['cache', 'info', '--dir', cacheDir]).bytes, 0);
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
