import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, readdirSync, rmSync, utimesSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { DiskCache, CACHE_FORMAT, sha256, canonicalJson } from '../../src/cache/disk-cache.js';
import { LruCache } from '../../src/cache/lru.js';

/** The pid of a process that has exited (and, on a quiet machine, not been reused yet). */
function deadProcessPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}
const hostTag = (): string => createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
const tmp = (): string => mkdtempSync(join(tmpdir(), 'inferjit-disk-'));
const key = (s: string): string => sha256(s);

test('put/get round-trips files and metadata; absent keys are null', () => {
  const root = tmp();
  const cache = new DiskCache(root);
  assert.equal(cache.get(key('nothing')), null);
  const m = cache.put(key('a'), { kind: 'capture', label: 'Model.forward', meta: { graphHash: 'abc', n: 1.5 }, files: { 'graph.json': '{"x":1}', 'w.bin': Buffer.from([1, 2, 3]) } });
  assert.equal(m.format, CACHE_FORMAT);
  const e = cache.get(key('a'));
  assert.ok(e);
  assert.deepEqual(e.manifest.meta, { graphHash: 'abc', n: 1.5 });
  assert.equal(e.file('graph.json').toString(), '{"x":1}');
  assert.deepEqual([...e.file('w.bin')], [1, 2, 3]);
  assert.throws(() => e.file('nope'), /has no file "nope"/);
  // Nothing is left behind in the staging folder.
  assert.deepEqual(readdirSync(join(root, 'inferjit-tmp')), []);
  rmSync(root, { recursive: true });
});

test('a truncated file, a damaged manifest or a missing file is reported once, removed and reads as absent', () => {
  const root = tmp();
  const warnings: string[] = [];
  const cache = new DiskCache(root, { warn: (m) => warnings.push(m) });
  const k1 = key('trunc'), k2 = key('manifest'), k3 = key('missing'), k4 = key('flip');
  for (const k of [k1, k2, k3, k4]) cache.put(k, { kind: 'artifact', label: 't', files: { 'data.json': JSON.stringify({ values: [1, 2, 3, 4, 5, 6] }) } });

  const f1 = join(root, 'entries', k1, 'data.json');
  writeFileSync(f1, readFileSync(f1).subarray(0, 10)); // truncated write
  const f2 = join(root, 'entries', k2, 'entry.json');
  writeFileSync(f2, readFileSync(f2).subarray(0, 30)); // manifest cut short
  rmSync(join(root, 'entries', k3, 'data.json'));
  const f4 = join(root, 'entries', k4, 'data.json');
  const flipped = Buffer.from(readFileSync(f4));
  flipped[5] ^= 0x01; // same size, different content
  writeFileSync(f4, flipped);

  for (const k of [k1, k2, k3, k4]) assert.equal(cache.get(k), null);
  assert.equal(warnings.length, 4);
  assert.match(warnings[0], /is damaged \(file data.json has 10 bytes, the manifest says \d+ \(truncated\?\)\); removing it and rebuilding/);
  assert.match(warnings[1], /entry.json is not valid JSON/);
  assert.match(warnings[2], /file data.json is missing/);
  assert.match(warnings[3], /does not match its (xxh64|sha256) checksum/);
  for (const k of [k1, k2, k3, k4]) assert.equal(existsSync(join(root, 'entries', k)), false);

  // Rebuilt entries work again; damaging the same key again does not warn a second time.
  cache.put(k1, { kind: 'artifact', label: 't', files: { 'data.json': 'x'.repeat(40) } });
  assert.equal(cache.get(k1)?.file('data.json').toString(), 'x'.repeat(40));
  writeFileSync(join(root, 'entries', k1, 'data.json'), 'short');
  assert.equal(cache.get(k1), null);
  assert.equal(warnings.length, 4);
  rmSync(root, { recursive: true });
});

test('an entry written by another cache format is replaced quietly', () => {
  const root = tmp();
  const warnings: string[] = [];
  const cache = new DiskCache(root, { warn: (m) => warnings.push(m) });
  const k = key('old');
  cache.put(k, { kind: 'capture', label: 'x' });
  const p = join(root, 'entries', k, 'entry.json');
  const m = JSON.parse(readFileSync(p, 'utf8'));
  const { checksum: _c, ...rest } = m;
  rest.format = CACHE_FORMAT + 1;
  writeFileSync(p, JSON.stringify({ ...rest, checksum: sha256(canonicalJson(rest)) }));
  assert.equal(cache.get(k), null);
  assert.deepEqual(warnings, []);
  assert.equal(existsSync(join(root, 'entries', k)), false);
  rmSync(root, { recursive: true });
});

test('a second put of an existing key keeps the sound first entry; a damaged one is replaced', () => {
  const root = tmp();
  const cache = new DiskCache(root, { warn: () => {} });
  const k = key('race');
  cache.put(k, { kind: 'artifact', label: 'first', files: { 'a.txt': 'one' } });
  const m = cache.put(k, { kind: 'artifact', label: 'second', files: { 'a.txt': 'two' } });
  assert.equal(m.label, 'first');
  assert.equal(cache.get(k)?.file('a.txt').toString(), 'one');
  writeFileSync(join(root, 'entries', k, 'a.txt'), 'xx'); // damage it
  cache.put(k, { kind: 'artifact', label: 'third', files: { 'a.txt': 'three' } });
  assert.equal(cache.get(k)?.file('a.txt').toString(), 'three');
  assert.deepEqual(readdirSync(join(root, 'inferjit-tmp')), []);
  rmSync(root, { recursive: true });
});

test('the size cap evicts least recently used entries, never the one just written', () => {
  const root = tmp();
  // Each entry: a 1000-byte file plus a manifest of a few hundred bytes; the cap fits two.
  const cache = new DiskCache(root, { maxBytes: 3000 });
  const [a, b, c] = [key('A'), key('B'), key('C')];
  const put = (k: string): void => { cache.put(k, { kind: 'artifact', label: k.slice(0, 4), files: { 'blob.bin': Buffer.alloc(1000, 7) } }); };
  put(a);
  put(b);
  // Make 'a' older than 'b', then use 'a': 'b' becomes the least recently used.
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(root, 'entries', a, 'entry.json'), past, past);
  utimesSync(join(root, 'entries', b, 'entry.json'), new Date(Date.now() - 30_000), new Date(Date.now() - 30_000));
  assert.ok(cache.get(a)); // touches a
  put(c);
  const keys = cache.list().map((e) => e.key).sort();
  assert.deepEqual(keys, [a, c].sort());
  // A cap smaller than one entry still keeps the newest entry.
  const tiny = new DiskCache(root, { maxBytes: 10 });
  tiny.put(key('D'), { kind: 'artifact', label: 'D', files: { 'blob.bin': Buffer.alloc(100) } });
  assert.deepEqual(tiny.list().map((e) => e.key), [key('D')]);
  rmSync(root, { recursive: true });
});

test('list, info and clear; stale staging folders are cleaned', () => {
  const root = tmp();
  const cache = new DiskCache(root, { maxBytes: 1 << 20 });
  cache.put(key('x'), { kind: 'capture', label: 'M.forward', files: { 'g.json': 'abc' } });
  cache.put(key('y'), { kind: 'artifact', label: 'M.forward cpu/fp32', files: { 'o.json': 'abcdef' } });
  const list = cache.list();
  assert.equal(list.length, 2);
  assert.deepEqual(list.map((e) => e.kind).sort(), ['artifact', 'capture']);
  assert.ok(list.every((e) => e.ok && e.bytes > 0));
  const info = cache.info();
  assert.equal(info.entries, 2);
  assert.equal(info.bytes, list[0].bytes + list[1].bytes);
  assert.equal(info.maxBytes, 1 << 20);
  // A staging folder left by a crashed process of this host is removed on the next write (its
  // pid is not running); so is one an earlier inferjit left in tmp/ two hours ago.
  const deadPid = deadProcessPid();
  const stale = join(root, 'inferjit-tmp', `put-${key('q').slice(0, 16)}-h${hostTag()}-${deadPid}-0badc0de`);
  mkdirSync(stale, { recursive: true });
  const legacy = join(root, 'tmp', `put-${key('q').slice(0, 16)}-${deadPid}-0badc0de`);
  mkdirSync(legacy, { recursive: true });
  const old = new Date(Date.now() - 2 * 3600_000);
  utimesSync(legacy, old, old);
  cache.put(key('z'), { kind: 'capture', label: 'z' });
  assert.equal(existsSync(stale), false);
  assert.equal(existsSync(join(root, 'tmp')), false);
  assert.equal(cache.clear(), 3);
  assert.deepEqual(cache.list(), []);
  rmSync(root, { recursive: true });
});

test('invalid keys and file names are rejected', () => {
  const cache = new DiskCache(tmp());
  assert.throws(() => cache.get('../etc'), /invalid key/);
  assert.throws(() => cache.put(key('k'), { kind: 'x', label: 'x', files: { '../evil': 'x' } }), /invalid file name/);
});

test('LruCache keeps the most recently used entries within its capacity', () => {
  const evicted: string[] = [];
  const lru = new LruCache<string, number>(2, (k) => evicted.push(k));
  lru.set('a', 1);
  lru.set('b', 2);
  assert.equal(lru.get('a'), 1); // a is now most recent
  lru.set('c', 3);
  assert.deepEqual(evicted, ['b']);
  assert.deepEqual(lru.keys(), ['a', 'c']);
  lru.capacity = 1;
  assert.deepEqual(evicted, ['b', 'a']);
  assert.deepEqual(lru.values(), [3]);
  assert.throws(() => { lru.capacity = 0; }, /capacity must be a positive integer/);
});
