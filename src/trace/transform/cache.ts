// The transform cache shared by the Node loader hook and the esbuild plugin: transformed files are
// kept in memory and on disk under a key hashed from everything the output depends on (the file's
// content, its path, the runtime import, the compile settings and this transformer's version), so
// an edited file is transformed again and an unchanged one never is. Files are written atomically
// (temporary name, then rename); a cache folder that cannot be written only costs the speed-up.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

/** Bumped whenever the transform's output changes for the same input. */
export const TRANSFORM_VERSION = 1;

/** The transformer's own code, so editing it (or upgrading inferjit) never serves stale output. */
const TRANSFORMER_FINGERPRINT = ((): string => {
  const h = createHash('sha256');
  for (const f of ['./transform', './runtime', './node-compile']) {
    for (const ext of ['.ts', '.js']) {
      try { h.update(readFileSync(new URL(f + ext, import.meta.url))); break; } catch { /* the other extension */ }
    }
  }
  return h.digest('hex');
})();

/** INFERJIT_D2S_CACHE, or a per-user folder under the OS temp directory. */
export function defaultCacheDir(): string {
  if (process.env.INFERJIT_D2S_CACHE) return process.env.INFERJIT_D2S_CACHE;
  let user = 'user';
  try { user = userInfo().username.replace(/[^A-Za-z0-9_-]/g, '_'); } catch { /* no passwd entry */ }
  return join(tmpdir(), `inferjit-d2s-${user}`);
}

export class TransformCache {
  private readonly memory = new Map<string, string>();
  hits = 0;
  misses = 0;

  /** `dir` null keeps the cache in memory only. */
  constructor(private readonly dir: string | null = defaultCacheDir()) {}

  static key(...parts: string[]): string {
    const h = createHash('sha256');
    h.update(`v${TRANSFORM_VERSION}:${TRANSFORMER_FINGERPRINT}`);
    for (const p of parts) { h.update('\u0000'); h.update(p); }
    return h.digest('hex');
  }

  /** The cached output for `key`, or compute() it and store it. */
  get(key: string, compute: () => string): string {
    const hit = this.memory.get(key) ?? this.readDisk(key);
    if (hit !== undefined) { this.hits++; this.memory.set(key, hit); return hit; }
    this.misses++;
    const out = compute();
    this.memory.set(key, out);
    this.writeDisk(key, out);
    return out;
  }

  private file(key: string): string { return join(this.dir!, `${key}.js`); }

  private readDisk(key: string): string | undefined {
    if (!this.dir) return undefined;
    try { return readFileSync(this.file(key), 'utf8'); } catch { return undefined; }
  }

  private writeDisk(key: string, text: string): void {
    if (!this.dir) return;
    try {
      mkdirSync(this.dir, { recursive: true });
      const tmp = `${this.file(key)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
      writeFileSync(tmp, text);
      renameSync(tmp, this.file(key));
    } catch { /* read-only or full disk: the memory cache still serves this process */ }
  }
}
