// The on-disk artifact cache: one directory per key holding named files (graph JSON, later packed
// weights, ONNX files, engines) and a manifest with the cache format version, sizes and content
// checksums (XXH64 with the native addon, sha256 without: content-hash.ts). Safe across processes: entries appear atomically, damaged entries are rebuilt, the
// folder is kept under a size cap by evicting the least recently used entries.
//
// Layout (cache-folder.ts):  <root>/inferjit-cache.json  (marker: the folder is the cache's own)
//   <root>/entries/<key>/entry.json + files   <root>/onnx/<key>/ (ONNX exports of the ORT backends)
//   <root>/inferjit-tmp/  (staging and trash, one folder per operation, named after its process)
// - The cache only writes, prunes or clears a folder it marked as its own (or creates); it only
//   ever deletes the names above, never other children of the folder.
// - Writing stages a complete entry in inferjit-tmp/ and renames the directory into entries/ (atomic on
//   one filesystem). When two processes build the same key, the second rename fails because the
//   target exists; the loser keeps its in-memory result and drops its copy, so both succeed.
// - Reading checks that every file is a regular file (not a FIFO, device or symlink, which would
//   block or read forever) of the size the manifest says, then the manifest's own checksum
//   (sha256), the format version and every file's checksum. Anything wrong (truncated write from a
//   crash, disk damage, a hand edit) is reported once per process and key, the entry is removed and
//   the caller rebuilds it.
// - Deleting renames the entry into inferjit-tmp/ first, so other readers see it whole or not at all.
// - "Last used" is the manifest's mtime (an ONNX export's: its folder's), bumped on every hit (atime is unreliable under
//   noatime/relatime mounts); eviction removes the oldest entries (and ONNX exports) until the
//   total fits the cap.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { contentHash, hashWith, type ChecksumAlgorithm } from './content-hash.js';
import { ENTRIES_DIR, KEY_RE, NotACacheFolderError, ONNX_DIR, STAGING_DIR, claimFolder, folderState, pruneStaging, stagingName } from './cache-folder.js';
import { fileKind, isMissingError, isRefusal, lstatOrNull, makeDirs, readRegularFile, treeBytes } from './safe-fs.js';

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
  /** Where it lives: an entry (entries/<key>) or an ONNX export of the ORT backends (onnx/<key>). */
  folder: 'entries' | 'onnx';
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
/** A manifest is a few KiB (file list, small metadata); anything far larger is not one. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
const FILE_NAME_RE = /^[A-Za-z0-9._-]+$/;

export class DiskCache {
  readonly entriesDir: string;
  /** ONNX exports the onnxruntime/tensorrt backends write (counted, evicted and cleared here). */
  readonly onnxDir: string;
  /** Staging and trash folders of this cache's operations. */
  readonly stagingDir: string;
  private readonly warn: Warn;
  /** Set once the folder is known to be the cache's own (marked). */
  private owned = false;

  constructor(readonly root: string, readonly options: { maxBytes?: number; warn?: Warn } = {}) {
    this.entriesDir = join(root, ENTRIES_DIR);
    this.onnxDir = join(root, ONNX_DIR);
    this.stagingDir = join(root, STAGING_DIR);
    this.warn = options.warn ?? defaultWarn;
  }

  /** Whether the folder may hold entries this cache may touch. Reads of an absent or empty folder
   *  find nothing (and create nothing); writes create and mark it. A non-empty folder without the
   *  marker is refused with NotACacheFolderError (nothing in it is read, changed or deleted). */
  private usable(write: boolean): boolean {
    if (this.owned) return true;
    const { state, why } = folderState(this.root);
    if (state === 'foreign') throw new NotACacheFolderError(this.root, why!);
    if ((state === 'absent' || state === 'empty') && !write) return false;
    if (state !== 'ours') claimFolder(this.root);
    this.owned = true;
    return true;
  }

  /** Marks the folder as this cache's own (creating it when absent); throws NotACacheFolderError
   *  for a folder that holds other things. The backends call it before writing into onnxDir. */
  claim(): void { this.usable(true); }

  /** The verified entry for `key`, or null when absent (a damaged entry is reported, removed and
   *  also reported as absent). A hit marks the entry as recently used. */
  get(key: string): CacheEntry | null {
    checkKey(key);
    if (!this.usable(false)) return null;
    const dir = join(this.entriesDir, key);
    const dirStat = lstatOrNull(dir);
    if (!dirStat) return null;
    // Our rename only ever puts a folder here.
    if (!dirStat.isDirectory()) return this.damaged(key, `it is a ${fileKind(dirStat)}, not a folder`);
    const raw = readRegularFile(join(dir, 'entry.json'), MAX_MANIFEST_BYTES);
    if (isRefusal(raw)) {
      if (raw.missing && !existsSync(dir)) return null; // removed by another process meanwhile
      // A directory without a readable manifest cannot come from our atomic rename: damage.
      return this.damaged(key, `cannot read entry.json (${raw.reason})`);
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
    if (!Array.isArray(manifest.files) || !manifest.files.every(isManifestFile)) return this.damaged(key, 'entry.json lists malformed files');
    const files = new Map<string, Buffer>();
    for (const f of manifest.files) {
      // The manifest's size is the cap: a file that grew, or a device, is never read past it.
      const data = readRegularFile(join(dir, f.name), f.size);
      if (isRefusal(data)) {
        if (data.missing && !existsSync(dir)) return null;
        return this.damaged(key, data.missing ? `file ${f.name} is missing` : `file ${f.name} ${data.reason}`);
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
    for (const name of Object.keys(req.files ?? {})) {
      if (!FILE_NAME_RE.test(name) || name === 'entry.json') throw new TypeError(`inferjit cache: invalid file name "${name}"`);
    }
    this.usable(true);
    makeDirs(this.entriesDir);
    const stage = this.newStage('put', key);
    try {
      const files: ManifestFile[] = [];
      for (const [name, content] of Object.entries(req.files ?? {})) {
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
    if (!this.usable(false)) return false;
    return this.removeFolder(join(this.entriesDir, key), key);
  }

  /** Every entry and ONNX export, most recently used first. Damaged entries are listed with ok = false. */
  list(): EntryInfo[] {
    if (!this.usable(false)) return [];
    const out: EntryInfo[] = [];
    for (const key of keyNames(this.entriesDir)) {
      const dir = join(this.entriesDir, key);
      const dirStat = lstatOrNull(dir);
      if (!dirStat) continue;
      const manifestStat = dirStat.isDirectory() ? lstatOrNull(join(dir, 'entry.json')) : null;
      const m = manifestStat?.isFile() ? this.readManifest(key) : null;
      if (!m || !manifestStat) {
        out.push({ key, kind: '?', label: '?', bytes: dirStat.isDirectory() ? treeBytes(dir) : 0, createdAt: '', lastUsed: (manifestStat ?? dirStat).mtime, ok: false, folder: 'entries' });
        continue;
      }
      const bytes = m.files.reduce((n, f) => n + f.size, 0) + manifestStat.size;
      out.push({ key, kind: m.kind, label: m.label, bytes, createdAt: m.createdAt, lastUsed: manifestStat.mtime, ok: true, folder: 'entries' });
    }
    for (const key of keyNames(this.onnxDir)) {
      const dir = join(this.onnxDir, key);
      const dirStat = lstatOrNull(dir);
      if (!dirStat) continue;
      const model = dirStat.isDirectory() ? lstatOrNull(join(dir, 'model.onnx')) : null;
      const ok = model?.isFile() ?? false;
      const engines = dirStat.isDirectory() && existsSync(join(dir, 'tensorrt'));
      out.push({
        key, kind: 'onnx', label: `ONNX export${engines ? ' + TensorRT engines' : ''}`, bytes: dirStat.isDirectory() ? treeBytes(dir) : 0,
        createdAt: (model ?? dirStat).birthtime.toISOString(), lastUsed: dirStat.mtime, ok, folder: 'onnx',
      });
    }
    return out.sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime());
  }

  /** Totals for `inferjit cache info`; `bytes` and the cap count the ONNX exports too. */
  info(): { root: string; format: number; entries: number; onnxExports: number; damaged: number; bytes: number; maxBytes: number | null } {
    const list = this.list();
    return {
      root: this.root, format: CACHE_FORMAT, entries: list.filter((e) => e.folder === 'entries').length, onnxExports: list.filter((e) => e.folder === 'onnx').length,
      damaged: list.filter((e) => !e.ok).length, bytes: list.reduce((n, e) => n + e.bytes, 0), maxBytes: this.options.maxBytes ?? null,
    };
  }

  /** Removes every entry and ONNX export, and the staging folders of processes that are gone
   *  (never another live process's); returns how many entries and exports were removed. Refuses
   *  (NotACacheFolderError) a folder that is not the cache's own; other files in it are kept. */
  clear(): number {
    let n = 0;
    for (const e of this.list()) if (this.removeItem(e)) n++;
    if (this.owned) pruneStaging(this.root);
    return n;
  }

  /** Removes least recently used entries and exports until the total size fits `maxBytes`; never
   *  removes `keep` (the entry just written). Also clears staging leftovers of crashed processes. */
  evictIfNeeded(keep?: string): string[] {
    if (!this.usable(false)) return [];
    pruneStaging(this.root);
    const max = this.options.maxBytes;
    if (max === undefined) return [];
    const list = this.list(); // most recent first
    let total = list.reduce((n, e) => n + e.bytes, 0);
    const evicted: string[] = [];
    for (let i = list.length - 1; i >= 0 && total > max; i--) {
      if (list[i].key === keep) continue;
      if (this.removeItem(list[i])) evicted.push(list[i].key);
      total -= list[i].bytes;
    }
    return evicted;
  }

  private removeItem(e: EntryInfo): boolean {
    return this.removeFolder(join(e.folder === 'onnx' ? this.onnxDir : this.entriesDir, e.key), e.key);
  }

  /** Moves a folder of ours into the trash (other readers see it whole or not at all), then
   *  deletes it. A symlink in its place is removed as a link; its target is never touched. */
  private removeFolder(dir: string, key: string): boolean {
    if (!lstatOrNull(dir)) return false;
    const trash = this.newStage('del', key);
    rmSync(trash, { recursive: true, force: true }); // the rename needs the name free
    try { renameSync(dir, trash); } catch (e) {
      if (isMissingError(e)) return false;
      throw e;
    }
    rmSync(trash, { recursive: true, force: true });
    return true;
  }

  /** A fresh staging folder of this process (created; its parent is created when missing). */
  private newStage(op: 'put' | 'del', key: string): string {
    makeDirs(this.stagingDir);
    const stage = join(this.stagingDir, stagingName(op, key));
    try { mkdirSync(stage); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      makeDirs(this.stagingDir); // removed by someone meanwhile
      mkdirSync(stage);
    }
    return stage;
  }

  private readManifest(key: string): EntryManifest | null {
    const raw = readRegularFile(join(this.entriesDir, key, 'entry.json'), MAX_MANIFEST_BYTES);
    if (isRefusal(raw)) return null;
    try {
      const m = JSON.parse(raw.toString('utf8')) as EntryManifest;
      return m && typeof m === 'object' && m.checksum === manifestChecksum(m) && Array.isArray(m.files) && m.files.every(isManifestFile) ? m : null;
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
}

function isManifestFile(f: unknown): f is ManifestFile {
  const m = f as ManifestFile;
  return typeof m === 'object' && m !== null && typeof m.name === 'string' && FILE_NAME_RE.test(m.name) && m.name !== 'entry.json'
    && Number.isSafeInteger(m.size) && m.size >= 0 && typeof m.hash === 'string';
}

/** The names in `dir` that are keys (the only children the cache reads or deletes). */
function keyNames(dir: string): string[] {
  try { return readdirSync(dir).filter((n) => KEY_RE.test(n)); } catch (e) {
    if (isMissingError(e)) return [];
    throw e;
  }
}

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

const isExists = (e: unknown): boolean => ['EEXIST', 'ENOTEMPTY', 'EPERM', 'EISDIR'].includes((e as NodeJS.ErrnoException)?.code ?? '');
/** Renames a staged entry into place; false when the target already exists. */
function tryRename(from: string, to: string): boolean {
  try { renameSync(from, to); return true; } catch (e) {
    if (isExists(e)) return false;
    throw e;
  }
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
