// Filesystem helpers for folders other processes and people can put anything into. The cache
// must never block or run away on what it finds there: a FIFO blocks open() and read() forever, a
// symlink to /dev/zero reads forever (and grows memory), and Node's recursive mkdir spins forever
// on paths such as /proc/self/x where mkdir keeps answering ENOENT under an existing parent.
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, readdirSync, statSync, type Stats } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { dirname, join, resolve } from 'node:path';

/** A filesystem problem the cache reports with its own message; `code` is the errno-style code, so
 *  the tolerant disk users (tolerantDiskIo) turn the disk cache off with a warning. */
export class CacheFsError extends Error {
  constructor(message: string, readonly code: string) { super(message); this.name = 'CacheFsError'; }
}

/** Why `path` cannot be read as a cache file, or null when it is a plain regular file. */
export type ReadRefusal = { reason: string; missing: boolean };

/**
 * Reads a regular file of at most `maxBytes` bytes without following a symlink (unless asked:
 * user source files may be links) and without
 * blocking on a FIFO, socket or device: the path is checked with lstat, opened with O_NOFOLLOW |
 * O_NONBLOCK (a FIFO then opens at once instead of waiting for a writer) and checked again with
 * fstat on the open descriptor (the file may have been swapped between the two). Returns the
 * bytes, or why it refused.
 */
export function readRegularFile(path: string, maxBytes: number, { followSymlinks = false }: { followSymlinks?: boolean } = {}): Buffer | ReadRefusal {
  let st: Stats;
  try { st = followSymlinks ? statSync(path) : lstatSync(path); } catch (e) {
    return { reason: errMessage(e), missing: isMissingError(e) };
  }
  const kind = fileKind(st);
  if (kind !== 'file') return { reason: `is a ${kind}, not a regular file`, missing: false };
  if (st.size > Math.min(maxBytes, bufferConstants.MAX_LENGTH)) return { reason: `has ${st.size} bytes, more than the ${maxBytes} expected`, missing: false };
  let fd: number;
  try { fd = openSync(path, constants.O_RDONLY | (followSymlinks ? 0 : constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0)); } catch (e) {
    return { reason: errMessage(e), missing: isMissingError(e) };
  }
  try {
    const fst = fstatSync(fd);
    if (!fst.isFile()) return { reason: `is a ${fileKind(fst)}, not a regular file`, missing: false };
    if (fst.size > Math.min(maxBytes, bufferConstants.MAX_LENGTH)) return { reason: `has ${fst.size} bytes, more than the ${maxBytes} expected`, missing: false };
    // Read at most the size fstat gave: a file growing meanwhile cannot make this read run on.
    const buf = Buffer.allocUnsafe(fst.size);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, done);
      if (n === 0) break; // shrank meanwhile: the caller's size check reports it as truncated
      done += n;
    }
    return done === buf.length ? buf : buf.subarray(0, done);
  } catch (e) {
    return { reason: errMessage(e), missing: false };
  } finally {
    closeSync(fd);
  }
}

export const isRefusal = (r: Buffer | ReadRefusal): r is ReadRefusal => !Buffer.isBuffer(r);

/** 'file', 'folder', 'symlink', 'FIFO', 'socket', 'device' or 'special file'. */
export function fileKind(st: Stats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'folder';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device';
  return 'special file';
}

/** lstat, or null when the path does not exist (other errors propagate). */
export function lstatOrNull(path: string): Stats | null {
  try { return lstatSync(path); } catch (e) {
    if (isMissingError(e)) return null;
    throw e;
  }
}

/**
 * mkdir -p that cannot loop: walks up to the deepest existing ancestor, then creates each missing
 * folder once. Any failure (ENOENT under /proc, EACCES, a file in the way) becomes a CacheFsError
 * naming the folder, the step that failed and what to do.
 */
export function makeDirs(path: string, what = 'the cache folder'): void {
  const target = resolve(path);
  const missing: string[] = [];
  let p = target;
  for (;;) {
    let st: Stats | null;
    try { st = statSync(p); } catch (e) {
      if (!isMissingError(e)) throw cannotCreate(target, p, e, what);
      st = null;
    }
    if (st) {
      if (!st.isDirectory()) {
        throw new CacheFsError(`inferjit cache: cannot create ${what} ${target}: ${p} is a ${fileKind(st)}, not a folder; choose another cacheDir / INFERJIT_CACHE_DIR`, 'ENOTDIR');
      }
      break;
    }
    missing.push(p);
    const parent = dirname(p);
    if (parent === p) break; // the filesystem root does not exist: mkdir below reports it
    p = parent;
  }
  for (const dir of missing.reverse()) {
    try { mkdirSync(dir); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && isDirectory(dir)) continue; // another process made it
      throw cannotCreate(target, dir, e, what);
    }
  }
}

function cannotCreate(target: string, step: string, e: unknown, what: string): CacheFsError {
  const code = (e as NodeJS.ErrnoException)?.code ?? 'EIO';
  const at = step === target ? '' : ` (creating ${step})`;
  return new CacheFsError(`inferjit cache: cannot create ${what} ${target}${at}: ${errMessage(e)}; set cacheDir / INFERJIT_CACHE_DIR to a writable folder on a regular filesystem`, code);
}

function isDirectory(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

/** Bytes of the regular files under `dir`, without following symlinks. */
export function treeBytes(dir: string): number {
  let total = 0;
  let names: string[];
  try { names = readdirSync(dir); } catch { return 0; }
  for (const n of names) {
    const p = join(dir, n);
    let st: Stats;
    try { st = lstatSync(p); } catch { continue; }
    if (st.isFile()) total += st.size;
    else if (st.isDirectory()) total += treeBytes(p);
  }
  return total;
}

export const isMissingError = (e: unknown): boolean => ['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException)?.code ?? '');
const errMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));
