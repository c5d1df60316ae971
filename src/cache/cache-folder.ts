// Which folders the disk cache may delete in, and which of their children. A cache folder is set
// by the user (cacheDir, INFERJIT_CACHE_DIR, `inferjit cache clear --dir`), so it can be any
// folder: their home, '.', '/'. The cache therefore marks a folder as its own with a marker file
// (written atomically when it first uses an absent or empty folder), refuses to write, prune or
// clear a non-empty folder without one, and deletes only names it creates itself:
//   inferjit-cache.json           the marker (purpose and layout format)
//   entries/<hex key>/            entries (disk-cache.ts)
//   onnx/<hex key>/               ONNX exports of the onnxruntime and tensorrt backends
//   inferjit-tmp/<op>-<key>-<host>-<pid>-<random>/   staging and trash, one per operation
// Staging folders carry their owner's host and pid: pruning and `cache clear` skip those whose
// process is alive, so a clear never pulls a folder from under another process's write.
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { CacheFsError, fileKind, isRefusal, lstatOrNull, makeDirs, readRegularFile } from './safe-fs.js';

export const MARKER_FILE = 'inferjit-cache.json';
/** Layout of the folder (the names above); an entry's own format is CACHE_FORMAT. */
export const FOLDER_LAYOUT = 1;
export const ENTRIES_DIR = 'entries';
export const ONNX_DIR = 'onnx';
export const STAGING_DIR = 'inferjit-tmp';
/** Where inferjit <= 0.x staged entries; only its own put-/del- names are ever removed there. */
export const LEGACY_STAGING_DIR = 'tmp';

export const KEY_RE = /^[0-9a-f]{16,128}$/;
const MARKER_TMP_RE = /^inferjit-cache\.json\.\d+\.[0-9a-f]+\.tmp$/;
/** put-/del- + key prefix + host tag + pid + random; the legacy form has no host tag. */
const STAGING_RE = /^(put|del)-([0-9a-f]{1,16})-(?:h([0-9a-f]{8})-)?(\d+)-([0-9a-f]{8})$/;

/** Not an inferjit cache folder (or not one this process may use). */
export class NotACacheFolderError extends CacheFsError {
  constructor(readonly folder: string, why: string) {
    super(`inferjit cache: ${folder} is not an inferjit cache folder (${why}); nothing in it was changed. `
      + `Point cacheDir / INFERJIT_CACHE_DIR / --dir at the folder inferjit created (default ~/.cache/inferjit) or at a new or empty folder`, 'EINFERJIT_NOT_A_CACHE');
    this.name = 'NotACacheFolderError';
  }
}

export type FolderState = 'absent' | 'empty' | 'ours' | 'unmarked-cache' | 'foreign';

/**
 * What `root` is: absent, empty, marked as a cache ('ours'), an unmarked folder holding nothing
 * but the cache's own layout (written by an inferjit without markers, or a marker being written
 * right now by another process: adopted by writing the marker), or anything else ('foreign').
 * Throws NotACacheFolderError when `root` is not a folder at all.
 */
export function folderState(root: string): { state: FolderState; why?: string } {
  let st: Stats;
  try { st = statSync(root); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { state: 'absent' };
    if (code === 'ENOTDIR') throw new NotACacheFolderError(root, 'a part of its path is a file, not a folder');
    throw e;
  }
  if (!st.isDirectory()) throw new NotACacheFolderError(root, `it is a ${fileKind(st)}`);
  const names = readdirSync(root);
  if (names.includes(MARKER_FILE)) {
    const why = markerProblem(join(root, MARKER_FILE));
    return why ? { state: 'foreign', why } : { state: 'ours' };
  }
  if (names.length === 0) return { state: 'empty' };
  const strange = names.filter((n) => !looksLikeLayout(root, n));
  if (strange.length === 0) return { state: 'unmarked-cache' };
  const shown = strange.slice(0, 3).map((n) => `"${n}"`).join(', ');
  return { state: 'foreign', why: `it is not empty and has no ${MARKER_FILE} marker; it holds ${shown}${strange.length > 3 ? ` and ${strange.length - 3} more` : ''}` };
}

/** Writes the marker atomically (a temporary name renamed into place). */
export function writeMarker(root: string): void {
  const tmp = join(root, `${MARKER_FILE}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const body = { purpose: 'inferjit disk cache: inferjit creates and deletes entries/, onnx/ and inferjit-tmp/ in this folder', layout: FOLDER_LAYOUT, createdAt: new Date().toISOString() };
  try {
    writeFileSync(tmp, `${JSON.stringify(body, null, 2)}\n`, { flag: 'wx' });
    renameSync(tmp, join(root, MARKER_FILE));
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Makes `root` usable for writing: creates it (and the marker) when absent, marks an empty or
 *  unmarked cache folder, refuses anything else. */
export function claimFolder(root: string): void {
  const { state, why } = folderState(root);
  if (state === 'ours') return;
  if (state === 'foreign') throw new NotACacheFolderError(root, why!);
  if (state === 'absent') makeDirs(root);
  writeMarker(root);
}

function markerProblem(path: string): string | null {
  const data = readRegularFile(path, 64 * 1024);
  if (isRefusal(data)) return `its ${MARKER_FILE} ${data.reason}`;
  try {
    const m = JSON.parse(data.toString('utf8')) as { purpose?: unknown; layout?: unknown };
    if (typeof m.purpose === 'string' && m.purpose.startsWith('inferjit disk cache') && Number.isInteger(m.layout)) return null;
  } catch { /* below */ }
  return `its ${MARKER_FILE} is not an inferjit cache marker`;
}

/** A child of an unmarked folder that the cache itself would have created. */
function looksLikeLayout(root: string, name: string): boolean {
  if (MARKER_TMP_RE.test(name)) return true;
  const children = (re: RegExp): boolean => {
    const st = lstatOrNull(join(root, name));
    if (!st?.isDirectory()) return false;
    try { return readdirSync(join(root, name)).every((n) => re.test(n)); } catch { return false; }
  };
  if (name === ENTRIES_DIR || name === ONNX_DIR) return children(KEY_RE);
  if (name === STAGING_DIR || name === LEGACY_STAGING_DIR) return children(STAGING_RE);
  return false;
}

// ---- staging folders ----

const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** A fresh staging name for `op` on `key`, owned by this process. */
export function stagingName(op: 'put' | 'del', key: string): string {
  return `${op}-${key.slice(0, 16)}-h${HOST_TAG}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Staging folders of other hosts cannot be checked for a live owner; they are left alone this long. */
const FOREIGN_HOST_STALE_MS = 60 * 60 * 1000;

/** True when the staging folder `name` may be deleted: it is one of the cache's names and its
 *  owner is gone (this host: the pid is not running; another host: untouched for an hour). */
export function isAbandonedStaging(name: string, mtimeMs: number, now = Date.now()): boolean {
  const m = STAGING_RE.exec(name);
  if (!m) return false;
  const host = m[3], pid = Number(m[4]);
  if (host !== undefined && host !== HOST_TAG) return now - mtimeMs > FOREIGN_HOST_STALE_MS;
  // Legacy names (no host tag) come from this machine's earlier inferjit, or from a shared folder:
  // require both a dead pid and an hour of age for them.
  if (host === undefined && now - mtimeMs <= FOREIGN_HOST_STALE_MS) return false;
  return !processAlive(pid);
}

export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}

/** Removes the abandoned staging folders under the cache's staging folder of `root` (and the
 *  legacy one, which is then removed too when empty). Returns how many it removed. */
export function pruneStaging(root: string): number {
  let removed = 0;
  for (const dirName of [STAGING_DIR, LEGACY_STAGING_DIR]) {
    const dir = join(root, dirName);
    let names: string[];
    try { names = readdirSync(dir); } catch { continue; }
    for (const n of names) {
      const p = join(dir, n);
      const st = lstatOrNull(p);
      if (!st || !isAbandonedStaging(n, st.mtimeMs)) continue;
      try { rmSync(p, { recursive: true, force: true }); removed++; } catch { /* removed by someone else, or not ours to remove */ }
    }
    // The current staging folder stays (another process may be about to stage in it). The legacy
    // one goes once empty, never recursively: whatever else is in it is not ours.
    if (dirName === LEGACY_STAGING_DIR) try { rmdirSync(dir); } catch { /* not empty, or gone */ }
  }
  return removed;
}
