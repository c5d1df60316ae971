// The cache deletes only in folders it owns and only names it created (issue 14, data loss):
// `inferjit cache clear --dir ~` used to run `rm -rf ~/tmp`, every compile pruned <cacheDir>/tmp of
// anything older than an hour, and `cache clear` pulled live processes' staging folders away.
// The CLI runs for real (bin/inferjit.mjs in a child process); compiles are real inferenceJit
// compiles with cacheDir pointing at the folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { createHash } from 'node:crypto';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DiskCache, sha256 } from '../../src/cache/disk-cache.js';
import { MARKER_FILE, NotACacheFolderError, folderState } from '../../src/cache/cache-folder.js';
import { inferenceJit, nn, randn, type Tensor } from '../../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = join(here, '..', '..', 'bin', 'inferjit.mjs');
const TWO_HOURS_AGO = new Date(Date.now() - 2 * 3600_000);

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8', env: { ...process.env, INFERJIT_CACHE_DIR: '', INFERJIT_CACHE_MAX_BYTES: '', ...env }, timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** User files: a tmp/ folder with an old file (what the prune used to delete), a note, a project. */
function plantUserFiles(dir: string): string[] {
  mkdirSync(join(dir, 'tmp', 'work'), { recursive: true });
  mkdirSync(join(dir, 'project'), { recursive: true });
  const files = [join(dir, 'tmp', 'keep.txt'), join(dir, 'tmp', 'work', 'draft.txt'), join(dir, 'notes.txt'), join(dir, 'project', 'main.ts')];
  for (const f of files) writeFileSync(f, `user data ${f}`);
  for (const p of [join(dir, 'tmp', 'keep.txt'), join(dir, 'tmp', 'work'), join(dir, 'tmp')]) utimesSync(p, TWO_HOURS_AGO, TWO_HOURS_AGO);
  return files;
}
function assertSurvived(files: string[]): void {
  for (const f of files) assert.equal(readFileSync(f, 'utf8'), `user data ${f}`, `${f} must survive`);
}

class Net extends nn.Module {
  fc = new nn.Linear(8, 8, { seed: 3 });
  forward(x: Tensor): Tensor { return this.fc.forward(x).relu(); }
}

/** A real compile with the disk cache in `cacheDir`; returns compiled vs eager and the warnings. */
async function compileWith(cacheDir: string, batch: string | number = 'batch'): Promise<{ same: boolean; warnings: string[]; diskWrites: number }> {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(w.message); };
  process.on('warning', onWarning);
  try {
    const model = new Net();
    const fast = inferenceJit(model, { cacheDir, cache: 'disk', inputSpec: [{ shape: [batch, 8] }] });
    const x = randn([3, 8], { seed: 9 });
    const same = JSON.stringify(fast(x).toArray()) === JSON.stringify(model.forward(x).toArray());
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    return { same, warnings, diskWrites: fast.stats().diskWrites };
  } finally {
    process.off('warning', onWarning);
  }
}

test('`cache clear --dir ~` (a home folder with tmp/) removes nothing and says why', () => {
  const home = mkdtempSync(join(tmpdir(), 'inferjit-home-'));
  try {
    const files = plantUserFiles(home);
    const r = cli(['cache', 'clear', '--dir', home], { HOME: home });
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(r.err, new RegExp(`${home} is not an inferjit cache folder \\(it is not empty and has no inferjit-cache.json marker; it holds .*\\); nothing in it was changed`));
    assert.doesNotMatch(r.out, /removed/);
    assertSurvived(files);
    assert.deepEqual(readdirSync(home).sort(), ['notes.txt', 'project', 'tmp']);
    // ls and info refuse it the same way (read-only, but they would report garbage).
    assert.equal(cli(['cache', 'info', '--dir', home]).code, 1);
    // Without --dir the default ~/.cache/inferjit is used: absent, so nothing is created or removed.
    const d = cli(['cache', 'clear'], { HOME: home });
    assert.equal(d.code, 0, d.err);
    assert.equal(d.out.trim(), `removed 0 entries from ${join(home, '.cache', 'inferjit')}`);
    assertSurvived(files);
    assert.equal(existsSync(join(home, '.cache')), false);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('user files next to and inside a cache folder survive compiles and `cache clear`', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'inferjit-owned-'));
  const cacheDir = join(parent, 'cache');
  try {
    const first = await compileWith(cacheDir);
    assert.ok(first.same);
    assert.equal(first.diskWrites, 2);
    assert.equal(folderState(cacheDir).state, 'ours');
    assert.match(readFileSync(join(cacheDir, MARKER_FILE), 'utf8'), /"layout": 1/);
    // The user puts things next to the cache and inside it (even under names the cache uses).
    const files = [...plantUserFiles(parent), ...plantUserFiles(cacheDir)];
    mkdirSync(join(cacheDir, 'entries', 'my-notes'), { recursive: true });
    writeFileSync(join(cacheDir, 'entries', 'my-notes', 'x.txt'), 'user data');
    mkdirSync(join(cacheDir, 'inferjit-tmp'), { recursive: true });
    writeFileSync(join(cacheDir, 'inferjit-tmp', 'mine.txt'), 'user data');
    utimesSync(join(cacheDir, 'inferjit-tmp', 'mine.txt'), TWO_HOURS_AGO, TWO_HOURS_AGO);

    // A cache hit, then a compile of a new signature: it writes two entries and prunes.
    assert.equal((await compileWith(cacheDir)).diskWrites, 0);
    const again = await compileWith(cacheDir, 3);
    assert.ok(again.same);
    assert.equal(again.diskWrites, 2);
    assertSurvived(files);

    const r = cli(['cache', 'clear', '--dir', cacheDir]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), `removed 4 entries from ${cacheDir}`);
    assertSurvived(files);
    assert.equal(readFileSync(join(cacheDir, 'entries', 'my-notes', 'x.txt'), 'utf8'), 'user data');
    assert.equal(readFileSync(join(cacheDir, 'inferjit-tmp', 'mine.txt'), 'utf8'), 'user data');
    assert.deepEqual(new DiskCache(cacheDir).list(), []);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('cacheDir pointing at a user folder (like ".") is refused with one warning: nothing is written or pruned', async () => {
  const project = mkdtempSync(join(tmpdir(), 'inferjit-project-'));
  try {
    const files = plantUserFiles(project);
    const r = await compileWith(project);
    assert.ok(r.same, 'the model still runs, without the disk cache');
    assert.equal(r.diskWrites, 0);
    assert.equal(r.warnings.length, 1, r.warnings.join('\n'));
    assert.match(r.warnings[0], new RegExp(`cannot use ${project} \\(inferjit cache: ${project} is not an inferjit cache folder .*\\); continuing without the disk cache`));
    assertSurvived(files);
    assert.deepEqual(readdirSync(project).sort(), ['notes.txt', 'project', 'tmp']);
    assert.throws(() => new DiskCache(project).clear(), NotACacheFolderError);
    assert.throws(() => new DiskCache(project).evictIfNeeded(), NotACacheFolderError);
    // The filesystem root and the system temp folder are never a cache (INFERJIT_CACHE_DIR=/).
    assert.equal(folderState('/').state, 'foreign');
    assert.equal(folderState(tmpdir()).state, 'foreign');
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
});

test('a folder written by an inferjit without markers (only entries/ and tmp/) is adopted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-legacy-'));
  try {
    const k = sha256('legacy');
    mkdirSync(join(dir, 'entries', k), { recursive: true });
    mkdirSync(join(dir, 'tmp'));
    assert.equal(folderState(dir).state, 'unmarked-cache');
    const cache = new DiskCache(dir, { warn: () => {} });
    assert.equal(cache.list().length, 1); // the half-written entry, listed as damaged
    assert.ok(existsSync(join(dir, MARKER_FILE)));
    assert.equal(cache.clear(), 1);
    // One stray file is enough to make a folder foreign.
    const other = mkdtempSync(join(tmpdir(), 'inferjit-legacy-'));
    mkdirSync(join(other, 'entries'));
    writeFileSync(join(other, 'entries', 'photo.jpg'), 'user data');
    assert.equal(folderState(other).state, 'foreign');
    rmSync(other, { recursive: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('`cache clear` keeps the staging folder of a live process and removes a dead one\'s', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'inferjit-live-'));
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
  try {
    const cache = new DiskCache(cacheDir);
    cache.put(sha256('a'), { kind: 'capture', label: 'a', files: { 'g.json': 'x' } });
    const host = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    const live = join(cacheDir, 'inferjit-tmp', `put-${sha256('b').slice(0, 16)}-h${host}-${sleeper.pid}-00c0ffee`);
    mkdirSync(live, { recursive: true });
    writeFileSync(join(live, 'graph.json'), 'being written');
    utimesSync(live, TWO_HOURS_AGO, TWO_HOURS_AGO); // even an old one: its process is alive
    const r = cli(['cache', 'clear', '--dir', cacheDir]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), `removed 1 entry from ${cacheDir}`);
    assert.equal(readFileSync(join(live, 'graph.json'), 'utf8'), 'being written');
    // A later compile's prune keeps it too.
    cache.put(sha256('c'), { kind: 'capture', label: 'c' });
    assert.ok(existsSync(live));
    sleeper.kill();
    await new Promise((res) => sleeper.once('exit', res));
    assert.equal(cli(['cache', 'clear', '--dir', cacheDir]).code, 0);
    assert.equal(existsSync(live), false);
  } finally {
    sleeper.kill();
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
