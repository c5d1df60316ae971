// A small least-recently-used map: the in-memory cache of compiled entries per module instance.
// A Map keeps insertion order, so re-inserting on access makes its first key the least recent.

export class LruCache<K, V> {
  private readonly map = new Map<K, V>();

  constructor(private bound: number, private readonly onEvict?: (key: K, value: V) => void) {
    if (!Number.isInteger(bound) || bound < 1) throw new RangeError(`LruCache: capacity must be a positive integer, got ${bound}`);
  }

  get capacity(): number { return this.bound; }
  set capacity(n: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`LruCache: capacity must be a positive integer, got ${n}`);
    this.bound = n;
    this.trim();
  }

  get size(): number { return this.map.size; }

  /** The value for `key`, marking it most recently used. */
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, v);
    return v;
  }

  has(key: K): boolean { return this.map.has(key); }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    this.trim();
  }

  delete(key: K): boolean { return this.map.delete(key); }
  clear(): void { this.map.clear(); }

  /** Keys from least to most recently used. */
  keys(): K[] { return [...this.map.keys()]; }
  /** Values from most to least recently used. */
  values(): V[] { return [...this.map.values()].reverse(); }

  private trim(): void {
    while (this.map.size > this.bound) {
      const [k, v] = this.map.entries().next().value as [K, V];
      this.map.delete(k);
      this.onEvict?.(k, v);
    }
  }
}
