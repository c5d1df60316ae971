// The cache machinery shared by the JIT (jit/) and the backends (backends/): an LRU for compiled
// entries in memory, the versioned, atomic disk cache, content hashes and module fingerprints.
// It sits below both, so neither has to reach into the other for it.
export { LruCache } from './lru.js';
export { DiskCache, CACHE_FORMAT, type EntryInfo, type EntryManifest } from './disk-cache.js';
export { NotACacheFolderError, MARKER_FILE } from './cache-folder.js';
export { CacheFsError } from './safe-fs.js';
