// The on-disk artifact cache: one directory per key holding named files (graph JSON, later packed
// weights, ONNX files, engines) and a manifest with the cache format version, sizes and content
// checksums (XXH64 with the native addon, sha256 without: content-hash.ts). Safe across processes: entries appear atomically, damaged entries are rebuilt, the
// folder is kept under a size cap by evicting the least recently used entries.
//
// Layout:  <root>/entries/<key>/entry.json + files      <root>/tmp/  (staging and trash)
// - Writing stages a complete entry in tmp/ and renames the directory into entries/ (atomic on
//   one filesystem). When two processes build the same key, the second rename fails because the
//   target exists; the loser keeps its in-memory result and drops its copy, so both succeed.
// - Reading checks the manifest's own checksum (sha256), the format version and every file's
//   size and checksum. Anything wrong (truncated write from a crash, disk damage, a hand edit) is reported
//   once per process and key, the entry is removed and the caller rebuilds it.
// - Deleting renames the entry into tmp/ first, so other readers see it whole or not at all.
// - "Last used" is the manifest's mtime, bumped on every hit (atime is unreliable under
//   noatime/relatime mounts); eviction removes the oldest entries until the total fits the cap.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { contentHash, hashWith, type ChecksumAlgorithm } from './content-hash.js';

/** Bump when the layout or manifest changes; entries of other formats are rebuilt. */
export const CACHE_FORMAT = 2;

/** hash: `<algorithm>:<hex digest>` of the file's bytes (content-hash.ts). */
export interface ManifestFile { name: string; size: number; hash: string }

export interface EntryManifest {
  format: number;
  key: string;
  /** What the entry holds ('capture', 'artifact', ...). */
  kind: string;
  /** Human-readable origin for listings (model name, device). */
  label: string;
  /** Small JSON metadata (checked together with the manifest). */
  meta: unknown;
  createdAt: string;
  files: ManifestFile[];
  /** sha256 of the manifest's canonical JSON without this field. */
  checksum: string;
}

export interface CacheEntry {
  manifest: EntryManifest;
  /** The verified contents of a file of the entry. */
  file(name: string): Buffer;
}

export interface EntryInfo {
  key: string;
  kind: string;
  label: string;
  bytes: number;
  createdAt: string;
  lastUsed: Date;
  /** False when the manifest cannot be read (the entry is damaged or being written). */
  ok: boolean;
}

export interface PutRequest {
  kind: string;
  label: string;
  meta?: unknown;
  files?: Record<string, Buffer | string>;
}

export type Warn = (message: string) => void;

const defaultWarn: Warn = (message) => process.emitWarning(message, { type: 'InferjitWarning', code: 'INFERJIT_CACHE' });
/** Keys already reported as damaged, per root, so a broken entry warns once per process. */
const reported = new Set<string>();
const STALE_TMP_MS = 60 * 60 * 1000;

export class DiskCache {
  readonly entriesDir: string;
  readonly tmpDir: string;
  private readonly warn: Warn;

  constructor(readonly root: string, readonly options: { maxBytes?: number; warn?: Warn } = {}) {
    this.entriesDir = join(root, 'entries');
    this.tmpDir = join(root, 'tmp');
    this.warn = options.warn ?? defaultWarn;
  }

  /** The verified entry for `key`, or null when absent (a damaged entry is reported, removed and
   *  also reported as absent). A hit marks the entry as recently used. */
  get(key: string): CacheEntry | null {
    checkKey(key);
    const dir = join(this.entriesDir, key);
    let raw: Buffer;
    try { raw = readFileSync(join(dir, 'entry.json')); } catch (e) {
      if (isMissing(e) && !existsSync(dir)) return null;
      // A directory without a readable manifest cannot come from our atomic rename: damage.
      return this.damaged(key, `cannot read entry.json (${(e as Error).message})`);
    }
    let manifest: EntryManifest;
    try { manifest = JSON.parse(raw.toString('utf8')); } catch {
      return this.damaged(key, `entry.json is not valid JSON (${raw.length} bytes; truncated?)`);
    }
    if (typeof manifest !== 'object' || manifest === null || manifest.checksum !== manifestChecksum(manifest)) {
      return this.damaged(key, 'entry.json checksum does not match its contents');
    }
    if (manifest.format !== CACHE_FORMAT) {
      // Not damage: an older or newer inferjit wrote it. Replace it quietly.
      this.remove(key);
      return null;
    }
    if (manifest.key !== key) return this.damaged(key, `entry.json belongs to key ${String(manifest.key).slice(0, 12)}…`);
    const files = new Map<string, Buffer>();
    for (const f of manifest.files) {
      let data: Buffer;
      try { data = readFileSync(join(dir, f.name)); } catch (e) {
        if (isMissing(e) && !existsSync(dir)) return null; // removed by another process meanwhile
        return this.damaged(key, `file ${f.name} is missing`);
      }
      if (data.length !== f.size) return this.damaged(key, `file ${f.name} has ${data.length} bytes, the manifest says ${f.size} (truncated?)`);
      const [algorithm, digest] = String(f.hash).split(':', 2) as [ChecksumAlgorithm, string];
      if (algorithm !== 'xxh64' && algorithm !== 'sha256') return this.damaged(key, `file ${f.name} has an unknown checksum "${String(f.hash).slice(0, 20)}"`);
      const actual = hashWith(algorithm, data);
      if (actual === null) {
        // Written by a process with the native addon (XXH64); this one cannot check it: rebuild.
        this.remove(key);
        return null;
      }
      if (actual !== digest) return this.damaged(key, `file ${f.name} does not match its ${algorithm} checksum`);
      files.set(f.name, data);
    }
    try { const now = new Date(); utimesSync(join(dir, 'entry.json'), now, now); } catch { /* removed meanwhile: still a valid read */ }
    return {
      manifest,
      file(name: string): Buffer {
        const data = files.get(name);
        if (!data) throw new Error(`inferjit cache: entry ${key.slice(0, 12)}… has no file "${name}" (it has ${[...files.keys()].join(', ') || 'none'})`);
        return data;
      },
    };
  }

  /** Stores an entry atomically. If another process stored the same key first, its (equivalent)
   *  entry is kept. Returns the manifest written or found. Evicts old entries beyond the cap, unless
   *  `evict` is false (a caller writing many entries at once then calls evictIfNeeded itself). */
  put(key: string, req: PutRequest, { evict = true }: { evict?: boolean } = {}): EntryManifest {
    checkKey(key);
    mkdirSync(this.entriesDir, { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
    const stage = join(this.tmpDir, `put-${key.slice(0, 16)}-${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirSync(stage);
    try {
      const files: ManifestFile[] = [];
      for (const [name, content] of Object.entries(req.files ?? {})) {
        if (!/^[A-Za-z0-9._-]+$/.test(name) || name === 'entry.json') throw new TypeError(`inferjit cache: invalid file name "${name}"`);
        const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
        writeFileSync(join(stage, name), data);
        files.push({ name, size: data.length, hash: contentHash(data) });
      }
      const body: Omit<EntryManifest, 'checksum'> = {
        format: CACHE_FORMAT, key, kind: req.kind, label: req.label, meta: req.meta ?? null, createdAt: new Date().toISOString(), files,
      };
      const manifest = { ...body, checksum: manifestChecksum(body) } as EntryManifest;
      // The manifest goes last: a staging folder without one is never renamed into place.
      writeFileSync(join(stage, 'entry.json'), JSON.stringify(manifest));
      const target = join(this.entriesDir, key);
      if (!tryRename(stage, target)) {
        // Someone else's entry is there. Keep it if it is sound; if get() found it damaged (and
        // removed it), put ours in its place.
        const sound = this.get(key) !== null;
        if (sound || !tryRename(stage, target)) {
          rmSync(stage, { recursive: true, force: true });
          const existing = this.readManifest(key);
          if (evict) this.evictIfNeeded(key);
          return existing ?? manifest;
        }
      }
      if (evict) this.evictIfNeeded(key);
      return manifest;
    } catch (e) {
      rmSync(stage, { recursive: true, force: true });
      throw e;
    }
  }

  /** Removes one entry; true if it existed. */
  remove(key: string): boolean {
    checkKey(key);
    const dir = join(this.entriesDir, key);
    mkdirSync(this.tmpDir, { recursive: true });
    const trash = join(this.tmpDir, `del-${key.slice(0, 16)}-${process.pid}-${randomBytes(4).toString('hex')}`);
    try { renameSync(dir, trash); } catch (e) {
      if (isMissing(e)) return false;
      throw e;
    }
    rmSync(trash, { recursive: true, force: true });
    return true;
  }

  /** Every entry, most recently used first. Damaged entries are listed with ok = false. */
  list(): EntryInfo[] {
    let keys: string[];
    try { keys = readdirSync(this.entriesDir); } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
    const out: EntryInfo[] = [];
    for (const key of keys) {
      if (!KEY_RE.test(key)) continue;
      const dir = join(this.entriesDir, key);
      let lastUsed: Date;
      try { lastUsed = statSync(join(dir, 'entry.json')).mtime; } catch {
        try { lastUsed = statSync(dir).mtime; } catch { continue; }
        out.push({ key, kind: '?', label: '?', bytes: dirBytes(dir), createdAt: '', lastUsed, ok: false });
        continue;
      }
      const m = this.readManifest(key);
      if (!m) { out.push({ key, kind: '?', label: '?', bytes: dirBytes(dir), createdAt: '', lastUsed, ok: false }); continue; }
      const bytes = m.files.reduce((n, f) => n + f.size, 0) + statSafe(join(dir, 'entry.json'));
      out.push({ key, kind: m.kind, label: m.label, bytes, createdAt: m.createdAt, lastUsed, ok: true });
    }
    return out.sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime());
  }

  /** Totals for `inferjit cache info`. */
  info(): { root: string; format: number; entries: number; damaged: number; bytes: number; maxBytes: number | null } {
    const list = this.list();
    return {
      root: this.root, format: CACHE_FORMAT, entries: list.length, damaged: list.filter((e) => !e.ok).length,
      bytes: list.reduce((n, e) => n + e.bytes, 0), maxBytes: this.options.maxBytes ?? null,
    };
  }

  /** Removes every entry (and leftover staging folders); returns how many entries were removed. */
  clear(): number {
    let n = 0;
    for (const e of this.list()) if (this.remove(e.key)) n++;
    rmSync(this.tmpDir, { recursive: true, force: true });
    return n;
  }

  /** Removes least recently used entries until the total size fits `maxBytes`; never removes
   *  `keep` (the entry just written). Also clears staging leftovers of crashed processes. */
  evictIfNeeded(keep?: string): string[] {
    this.cleanStaleTmp();
    const max = this.options.maxBytes;
    if (max === undefined) return [];
    const list = this.list(); // most recent first
    let total = list.reduce((n, e) => n + e.bytes, 0);
    const evicted: string[] = [];
    for (let i = list.length - 1; i >= 0 && total > max; i--) {
      if (list[i].key === keep) continue;
      if (this.remove(list[i].key)) evicted.push(list[i].key);
      total -= list[i].bytes;
    }
    return evicted;
  }

  private readManifest(key: string): EntryManifest | null {
    try {
      const m = JSON.parse(readFileSync(join(this.entriesDir, key, 'entry.json'), 'utf8')) as EntryManifest;
      return m.checksum === manifestChecksum(m) ? m : null;
    } catch { return null; }
  }

  private damaged(key: string, why: string): null {
    const id = `${this.root}\0${key}`;
    if (!reported.has(id)) {
      reported.add(id);
      this.warn(`inferjit cache: entry ${key.slice(0, 12)}… in ${this.root} is damaged (${why}); removing it and rebuilding`);
    }
    try { this.remove(key); } catch { /* another process removed or replaced it */ }
    return null;
  }

  private cleanStaleTmp(): void {
    let names: string[];
    try { names = readdirSync(this.tmpDir); } catch { return; }
    const now = Date.now();
    for (const n of names) {
      const p = join(this.tmpDir, n);
      try { if (now - statSync(p).mtimeMs > STALE_TMP_MS) rmSync(p, { recursive: true, force: true }); } catch { /* gone */ }
    }
  }
}

const KEY_RE = /^[0-9a-f]{16,128}$/;
function checkKey(key: string): void {
  if (!KEY_RE.test(key)) throw new TypeError(`inferjit cache: invalid key "${key}" (expected lowercase hex)`);
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function manifestChecksum(m: Partial<EntryManifest>): string {
  const { checksum: _omit, ...rest } = m as EntryManifest;
  return sha256(canonicalJson(rest));
}

/** JSON with object keys sorted, so equal values always serialize (and hash) the same. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(sortKeys(v));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object' && (v as object).constructor === Object) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

const isMissing = (e: unknown): boolean => ['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException)?.code ?? '');
const isExists = (e: unknown): boolean => ['EEXIST', 'ENOTEMPTY', 'EPERM', 'EISDIR'].includes((e as NodeJS.ErrnoException)?.code ?? '');
/** Renames a staged entry into place; false when the target already exists. */
function tryRename(from: string, to: string): boolean {
  try { renameSync(from, to); return true; } catch (e) {
    if (isExists(e)) return false;
    throw e;
  }
}
function statSafe(p: string): number { try { return statSync(p).size; } catch { return 0; } }
function dirBytes(dir: string): number {
  try { return readdirSync(dir).reduce((n, f) => n + statSafe(join(dir, f)), 0); } catch { return 0; }
}

/** A user of the disk cache that can go on without it: `disk` until a filesystem error turns it
 *  off, the folders it already warned about, and what the warning says happens instead. */
export interface TolerantDiskUser {
  disk: DiskCache | null;
  readonly warned: Set<string>;
  /** The warning for folder `root` and the error's message. */
  warning(root: string, message: string): string;
}

/** Runs a disk cache operation for `user`: a filesystem error (read-only folder, disk full,
 *  permissions) is reported once per folder and turns the cache off for that user, so a cache
 *  problem never stops a model from running; other errors are bugs and propagate. */
export function tolerantDiskIo<T>(user: TolerantDiskUser, op: (disk: DiskCache) => T, fallback: T): T {
  const disk = user.disk;
  if (!disk) return fallback;
  try {
    return op(disk);
  } catch (e) {
    if (typeof (e as NodeJS.ErrnoException)?.code !== 'string') throw e;
    if (!user.warned.has(disk.root)) {
      user.warned.add(disk.root);
      process.emitWarning(user.warning(disk.root, (e as Error).message), { type: 'InferjitWarning', code: 'INFERJIT_CACHE' });
    }
    user.disk = null;
    return fallback;
  }
}
