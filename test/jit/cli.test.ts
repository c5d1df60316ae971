// `inferjit cache ls|info|clear`, in process through main() and once through bin/inferjit.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main, formatBytes } from '../../src/cli/main.js';
import { DiskCache, sha256 } from '../../src/cache/disk-cache.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

function run(argv: string[], env: Record<string, string | undefined> = {}): { code: number; out: string; err: string } {
  const out: string[] = [], err: string[] = [];
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const code = main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
}

function filledCache(): string {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-cli-'));
  const cache = new DiskCache(dir);
  cache.put(sha256('one'), { kind: 'capture', label: 'Model.forward', files: { 'graph.json': 'x'.repeat(2000) } });
  cache.put(sha256('two'), { kind: 'artifact', label: 'Model.forward cpu/fp32', files: { 'optimized.json': 'y'.repeat(100) } });
  return dir;
}

test('cache ls lists entries with key, kind, size and label; --json gives the same as data', () => {
  const dir = filledCache();
  const r = run(['cache', 'ls', '--dir', dir]);
  assert.equal(r.code, 0);
  const lines = r.out.split('\n');
  assert.match(lines[0], /^key\s+kind\s+size\s+last used\s+label$/);
  assert.equal(lines.length, 3);
  assert.ok(lines.some((l) => l.startsWith(sha256('one').slice(0, 16)) && /capture\s+2\.\d KiB .* Model\.forward$/.test(l)), r.out);
  const json = JSON.parse(run(['cache', 'ls', '--json', `--dir=${dir}`]).out) as { key: string; kind: string; ok: boolean }[];
  assert.deepEqual(json.map((e) => e.key).sort(), [sha256('one'), sha256('two')].sort());
  assert.ok(json.every((e) => e.ok));
  rmSync(dir, { recursive: true });
});

test('cache info reports folder, entries and size; the folder comes from INFERJIT_CACHE_DIR without --dir', () => {
  const dir = filledCache();
  const r = run(['cache', 'info'], { INFERJIT_CACHE_DIR: dir, INFERJIT_CACHE_MAX_BYTES: '1M' });
  assert.equal(r.code, 0);
  assert.match(r.out, new RegExp(`folder:\\s+${dir}`));
  assert.match(r.out, /entries:\s+2\n/);
  assert.match(r.out, /size:\s+2\.\d KiB of 1\.0 MiB cap/);
  const info = JSON.parse(run(['cache', 'info', '--json', '--dir', dir]).out);
  assert.equal(info.entries, 2);
  assert.ok(info.bytes > 2100);
  rmSync(dir, { recursive: true });
});

test('cache clear removes every entry', () => {
  const dir = filledCache();
  assert.equal(run(['cache', 'clear', '--dir', dir]).out, `removed 2 entries from ${dir}`);
  assert.equal(run(['cache', 'ls', '--dir', dir]).out, `(no entries in ${dir})`);
  rmSync(dir, { recursive: true });
});

test('usage errors exit with 2 and print usage', () => {
  const r = run(['cache', 'prune']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown cache command "prune"/);
  assert.match(r.err, /usage: inferjit cache/);
  assert.equal(run(['nothing']).code, 2);
  assert.equal(run(['cache', 'ls', '--dir']).code, 2);
  assert.equal(run(['--help']).code, 0);
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB');
});

test('bin/inferjit.mjs runs the CLI through tsx', () => {
  const dir = filledCache();
  const r = spawnSync(process.execPath, [join(root, 'bin', 'inferjit.mjs'), 'cache', 'info', '--json'], { env: { ...process.env, INFERJIT_CACHE_DIR: dir }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).entries, 2);
  rmSync(dir, { recursive: true });
});
