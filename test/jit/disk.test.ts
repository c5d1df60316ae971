// The disk cache across processes: a second process reuses the captured graph without tracing,
// damaged entries are rebuilt with a warning, concurrent compiles of one key both succeed, and a
// source change (of the model or of a helper file forward calls) is never served a stale graph.
// Each process prints its stats and its compiled and eager outputs (fixtures/disk-worker.ts);
// compiled must equal eager exactly (same kernels through the same dispatch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DiskCache } from '../../src/cache/disk-cache.js';
import type { JitStats } from '../../src/jit/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const WORKER = join(here, 'fixtures', 'disk-worker.ts');

interface WorkerResult { stats: JitStats; compiled: unknown; eager: unknown; stderr: string; window?: [number, number] }

function runWorker(cacheDir: string, opts: { script?: string; env?: Record<string, string> } = {}): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', opts.script ?? WORKER], {
      cwd: root,
      env: { ...process.env, INFERJIT_CACHE_DIR: cacheDir, INFERJIT_CACHE: '', INFERJIT_DEVICE: '', ...opts.env },
    });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`worker exited with ${code}:\n${err}`));
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as WorkerResult;
      r.stderr = err;
      resolve(r);
    });
  });
}

function assertCorrect(r: WorkerResult): void {
  assert.deepEqual(r.compiled, r.eager);
}

const damagedWarnings = (stderr: string): number => (stderr.match(/inferjit cache: entry [0-9a-f]{12}… in .* is damaged/g) ?? []).length;

test('a second process hits the disk cache with zero captures; damaged entries are rebuilt with one warning', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-disk-'));
  try {
    const first = await runWorker(dir);
    assertCorrect(first);
    assert.equal(first.stats.captures, 1);
    assert.equal(first.stats.diskHits, 0);
    assert.equal(first.stats.diskWrites, 2); // the captured graph and the optimized artifact

    const second = await runWorker(dir);
    assertCorrect(second);
    assert.deepEqual(second.compiled, first.compiled);
    assert.equal(second.stats.captures, 0);
    assert.equal(second.stats.diskHits, 1);
    assert.equal(second.stats.artifactHits, 1);
    assert.equal(second.stats.recompiles, 0); // batch 3 and 4 share the dynamic-batch graph

    // Truncate the captured graph and flip a byte of the optimized graph.
    const cache = new DiskCache(dir);
    const entries = cache.list();
    assert.deepEqual(entries.map((e) => e.kind).sort(), ['artifact', 'capture']);
    const capture = entries.find((e) => e.kind === 'capture')!;
    const artifact = entries.find((e) => e.kind === 'artifact')!;
    const graphFile = join(dir, 'entries', capture.key, 'graph.json');
    writeFileSync(graphFile, readFileSync(graphFile).subarray(0, 100));
    const optFile = join(dir, 'entries', artifact.key, 'optimized.json');
    const bytes = Buffer.from(readFileSync(optFile));
    bytes[bytes.length >> 1] ^= 0x20;
    writeFileSync(optFile, bytes);

    const third = await runWorker(dir);
    assertCorrect(third);
    assert.deepEqual(third.compiled, first.compiled);
    assert.equal(third.stats.captures, 1); // rebuilt by tracing again
    assert.equal(damagedWarnings(third.stderr), 2, third.stderr); // one per damaged entry, no more
    assert.match(third.stderr, /is damaged \(file graph.json has 100 bytes, the manifest says \d+ \(truncated\?\)\); removing it and rebuilding/);
    assert.match(third.stderr, /is damaged \(file optimized.json does not match its (xxh64|sha256) checksum\)/);

    const fourth = await runWorker(dir);
    assertCorrect(fourth);
    assert.equal(fourth.stats.captures, 0);
    assert.equal(damagedWarnings(fourth.stderr), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two processes compiling the same key at the same time both succeed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-race-'));
  const barrier = mkdtempSync(join(tmpdir(), 'inferjit-barrier-'));
  try {
    // Both wait at a barrier after loading inferjit, so they compile at the same time.
    const env = { WORKER_BARRIER: barrier, WORKER_PARTIES: '2' };
    const [a, b] = await Promise.all([runWorker(dir, { env }), runWorker(dir, { env })]);
    const [wa, wb] = [a.window!, b.window!];
    assert.ok(Math.max(wa[0], wb[0]) < Math.min(wa[1], wb[1]), `the two compiles did not overlap (${JSON.stringify([wa, wb])}): the test did not race`);
    for (const r of [a, b]) {
      assertCorrect(r);
      assert.equal(r.stats.captures + r.stats.diskHits, 1);
      assert.equal(damagedWarnings(r.stderr), 0, r.stderr);
    }
    assert.deepEqual(a.compiled, b.compiled);
    const cache = new DiskCache(dir);
    assert.deepEqual(cache.list().map((e) => e.kind).sort(), ['artifact', 'capture']);
    assert.ok(cache.list().every((e) => e.ok));
    const after = await runWorker(dir);
    assert.equal(after.stats.captures, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(barrier, { recursive: true, force: true });
  }
});

test('changing a helper file or the model source is never served a stale graph', async () => {
  const work = mkdtempSync(join(tmpdir(), 'inferjit-src-'));
  const dir = join(work, 'cache');
  try {
    const script = join(work, 'worker.ts');
    copyFileSync(WORKER, script);
    writeFileSync(join(work, 'package.json'), '{ "type": "module" }'); // ESM, like the repo (top-level await)
    copyFileSync(join(here, 'fixtures', 'disk-helper.ts'), join(work, 'disk-helper.ts'));
    const env = { INFERJIT_SRC_INDEX: pathToFileURL(join(root, 'src', 'index.ts')).href };
    const first = await runWorker(dir, { script, env });
    assert.equal(first.stats.captures, 1);
    assert.equal((await runWorker(dir, { script, env })).stats.captures, 0);

    // The helper is not part of the key; its recorded hash is checked when the entry is loaded.
    const helper = join(work, 'disk-helper.ts');
    writeFileSync(helper, readFileSync(helper, 'utf8').replace('b.mul(0.5)', 'b.mul(0.25)'));
    const helperChanged = await runWorker(dir, { script, env });
    assertCorrect(helperChanged);
    assert.notDeepEqual(helperChanged.compiled, first.compiled);
    assert.equal(helperChanged.stats.captures, 1);
    assert.match(helperChanged.stats.diskRejects[0].reason, /source file .*disk-helper\.ts changed since the graph was captured/);
    assert.equal((await runWorker(dir, { script, env })).stats.captures, 0); // the new graph is cached

    // The model class's source is part of the key itself.
    writeFileSync(script, readFileSync(script, 'utf8').replace('this.norm.forward(this.fc.forward(x))', 'this.norm.forward(this.fc.forward(x)).relu()'));
    const modelChanged = await runWorker(dir, { script, env });
    assertCorrect(modelChanged);
    assert.equal(modelChanged.stats.captures, 1);
    assert.deepEqual(modelChanged.stats.diskRejects, []);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
