// Odd files in a cache folder (issue 14): a FIFO or a symlink to /dev/zero in place of a cache file
// used to hang every later process (the symlink also grew memory ~220 MB/s), and cacheDir
// '/proc/self/x' spun forever in a recursive mkdir. Each scenario runs in a child process with a
// time limit (fixtures/odd-files-worker.ts), so a hang fails here instead of stalling the suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const WORKER = join(here, 'fixtures', 'odd-files-worker.ts');
import { reducedPrecisionSupport } from '../../src/backends/cpu/bf16.js';

const bf16Skip = (): string | false => (reducedPrecisionSupport().bf16 ? false : `no bf16 here: ${reducedPrecisionSupport().missing}`);
const LIMIT_MS = 90_000; // all scenarios and tsx start-up; a hang would run until killed

interface Outcome {
  scenario: string; hit?: boolean; leftover?: string; rebuilt?: boolean; cleared?: number; listed?: { ok: boolean; bytes: number }[];
  warnings: string[]; ms: number; userFileIntact?: boolean; userDirIntact?: boolean; devZero: boolean; errors?: string[];
  state?: { state: string; why?: string }; get?: string; same?: boolean; diskWrites?: number;
  stats?: { packed: number; loaded: number; written: number }[]; exported?: boolean[]; modelKind?: string; hashes?: Record<string, string>;
}

const SCENARIOS = ['fifo-data', 'fifo-manifest', 'zero-data', 'zero-manifest', 'outside-symlink', 'entry-dir-symlink', 'grown-data',
  'fifo-marker', 'proc-self', 'compile-proc', 'weights-fifo', 'onnx-fifo', 'source-files'];
let outcomes: Map<string, Outcome> | Error | null = null;

/** All scenarios run once, in one child process (tsx starts once), under one time limit; a hang or
 *  crash fails every test that needs the scenarios (without running them again). */
function run(scenario: string): Outcome {
  if (!outcomes) {
    const list = SCENARIOS.filter((s) => s !== 'weights-fifo' || !bf16Skip());
    const r = spawnSync(process.execPath, ['--import', 'tsx', WORKER, ...list], { encoding: 'utf8', timeout: LIMIT_MS, cwd: join(here, '..', '..') });
    const started = [...r.stderr.matchAll(/^start (\S+)$/gm)].map((m) => m[1]);
    const parsed = new Map(r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => { const o = JSON.parse(l) as Outcome; return [o.scenario, o] as const; }));
    if (r.signal === 'SIGTERM') outcomes = new Error(`scenario ${started.at(-1)} hung (killed after ${LIMIT_MS} ms)`);
    else if (r.status !== 0) outcomes = new Error(`scenario ${started.at(-1)} crashed (${r.signal ?? r.status}):\n${r.stderr}`);
    else outcomes = parsed;
  }
  if (outcomes instanceof Error) throw outcomes;
  const o = outcomes.get(scenario);
  assert.ok(o, `no outcome for ${scenario}`);
  return o;
}

/** The entry is reported once as damaged (with `why`), removed, rebuilt and cleared. */
function assertRebuilt(o: Outcome, why: RegExp): void {
  assert.equal(o.hit, false);
  assert.equal(o.leftover, 'absent', 'the odd entry is removed');
  assert.equal(o.rebuilt, true);
  assert.equal(o.cleared, 1);
  assert.equal(o.warnings.length, 1, o.warnings.join('\n'));
  assert.match(o.warnings[0], why);
  assert.ok(o.ms < 5000, `took ${o.ms} ms`);
}

test('a FIFO in place of a data file or a manifest is reported as damage, never opened for reading', () => {
  assertRebuilt(run('fifo-data'), /is damaged \(file data.bin is a FIFO, not a regular file\); removing it and rebuilding/);
  const m = run('fifo-manifest');
  assertRebuilt(m, /is damaged \(cannot read entry.json \(is a FIFO, not a regular file\)\)/);
  assert.deepEqual(m.listed, [{ ok: false, bytes: 1000 }]); // listed as damaged; the FIFO counts 0 bytes
});

test('a symlink to /dev/zero in place of a data file or a manifest is refused without reading it', () => {
  const d = run('zero-data');
  assertRebuilt(d, /file data.bin is a symlink, not a regular file/);
  assert.ok(d.devZero, '/dev/zero itself is untouched (only the link was removed)');
  const m = run('zero-manifest');
  assertRebuilt(m, /cannot read entry.json \(is a symlink, not a regular file\)/);
  assert.ok(m.devZero);
});

test('symlinks out of the cache are removed as links; their targets are never touched', () => {
  const f = run('outside-symlink');
  assertRebuilt(f, /file data.bin is a symlink/);
  assert.equal(f.userFileIntact, true);
  const d = run('entry-dir-symlink');
  assertRebuilt(d, /is damaged \(it is a symlink, not a folder\)/);
  assert.equal(d.userDirIntact, true);
});

test('a file larger than its manifest says is not read past the recorded size', () => {
  assertRebuilt(run('grown-data'), /file data.bin has 1049576 bytes, more than the 1000 expected/);
});

test('a FIFO as the folder marker makes the folder foreign (refused), without blocking', () => {
  const o = run('fifo-marker');
  assert.equal(o.state?.state, 'foreign');
  assert.match(o.state?.why ?? '', /its inferjit-cache.json is a FIFO, not a regular file/);
  assert.match(o.get ?? '', /is not an inferjit cache folder/);
});

test("cacheDir '/proc/self/x' (and a path under a file) fails at once with a specific error", () => {
  const o = run('proc-self');
  assert.ok(o.ms < 2000, `took ${o.ms} ms`);
  const [proc, deep, underFile, direct] = o.errors!;
  assert.match(proc, /^ENOENT: inferjit cache: cannot create the cache folder \/proc\/self\/x: ENOENT.*; set cacheDir \/ INFERJIT_CACHE_DIR to a writable folder on a regular filesystem/);
  assert.match(deep, /^ENOENT: inferjit cache: cannot create the cache folder \/proc\/self\/x\/y\/z \(creating \/proc\/self\/x\): ENOENT/);
  assert.match(underFile, /^EINFERJIT_NOT_A_CACHE: inferjit cache: \/etc\/hostname\/cache is not an inferjit cache folder \(a part of its path is a file, not a folder\)/);
  assert.match(direct, /cannot create the cache folder \/proc\/self\/x/);
});

test("a compile with cacheDir '/proc/self/x' warns once and runs without the disk cache", () => {
  const o = run('compile-proc');
  assert.equal(o.same, true);
  assert.equal(o.diskWrites, 0);
  assert.equal(o.warnings.length, 1, o.warnings.join('\n'));
  assert.match(o.warnings[0], /cannot use \/proc\/self\/x \(inferjit cache: cannot create the cache folder \/proc\/self\/x: ENOENT.*\); continuing without the disk cache/);
});

test('a FIFO in place of packed weight panels is repacked, not read', { skip: bf16Skip() }, () => {
  const o = run('weights-fifo');
  assert.deepEqual(o.stats, [{ packed: 1, loaded: 0, written: 1 }, { packed: 1, loaded: 0, written: 1 }, { packed: 0, loaded: 1, written: 0 }]);
  assert.equal(o.warnings.length, 1, o.warnings.join('\n'));
  assert.match(o.warnings[0], /file panels.bin is a FIFO, not a regular file/);
});

test('a FIFO in place of an exported ONNX model is exported again, not handed to onnxruntime', () => {
  const o = run('onnx-fifo');
  assert.deepEqual(o.exported, [true, true]);
  assert.equal(o.same, true);
  assert.equal(o.modelKind, 'file');
});

test('source files named in a capture manifest are hashed only when they are regular files', () => {
  const o = run('source-files');
  assert.deepEqual(Object.values(o.hashes!), ['missing', 'missing', 'missing']);
  assert.ok(o.ms < 2000, `took ${o.ms} ms`);
});
