// The reduced-precision GEMM weights of one plan executable: each weight is packed once into bf16
// (or f16) panels and, when the JIT's disk cache is on, stored there so that the next process loads
// the panels instead of converting the weight again.
//
// Each packed weight is its own cache entry, keyed by the sha256 of the source weight's bytes (with
// its dtype, the [K, N] it is read as, its orientation, the precision and the panel layout version).
// Weight values are not part of any other JIT key (graphs are hashed without them and parameter
// versions only mean something inside one process), so the content hash is what guarantees that a
// changed weight never meets stale panels; unchanged weights are shared by every graph, shape and
// process that packs them. The cache's own checksums catch damaged panel files, which are then
// reported, removed and repacked.
import type { Tensor } from '../../../tensor/tensor.js';
import type { DiskCache } from '../../../cache/disk-cache.js';
import { canonicalJson, sha256, tolerantDiskIo, type TolerantDiskUser } from '../../../cache/disk-cache.js';
import { inferjitVersion, tensorDigest } from '../../../cache/fingerprint.js';
import { exportPackedWeight, importPackedWeight, packWeightAs, type PackedWeight, type PackedBf16Handle, type PackedF16Handle } from '../bf16.js';

/** Bump whenever the packed-bf16 or packed-f16 layouts of native/gemm/gemm_bf16.h change. */
export const PANEL_LAYOUT_VERSION = 1;

const PANELS_FILE = 'panels.bin';

/** What happened to the reduced-precision weights of an executable so far. */
export interface WeightCacheStats {
  /** Weights converted and packed in this process. */
  packed: number;
  /** Weights whose panels came from the disk cache (no conversion). */
  loaded: number;
  /** Panel entries written to the disk cache. */
  written: number;
  /** Of `packed`, weights read directly from 16-bit (f16 or bf16) storage: no fp32 copy exists. */
  from16Bit: number;
}

export type ReducedPrecision = 'bf16' | 'f16';

const diskFailures = new Set<string>();

export class WeightCache {
  private readonly packs = new Map<string, PackedWeight>();
  private readonly diskUser: TolerantDiskUser;
  private wrote = false;
  readonly stats: WeightCacheStats = { packed: 0, loaded: 0, written: 0, from16Bit: 0 };

  constructor(readonly precision: ReducedPrecision, disk: DiskCache | null = null) {
    this.diskUser = {
      disk, warned: diskFailures,
      warning: (root, message) => `inferjit cache: cannot store packed weights in ${root} (${message}); packing them in memory only`,
    };
  }

  /** The packed form of weight `name` (tensor `t` read as B [K, N], stored [N, K] when transB). */
  get(name: string, t: Tensor, K: number, N: number, transB: boolean): PackedBf16Handle | PackedF16Handle {
    const memKey = `${name}|${transB ? 't' : 'n'}`;
    let w = this.packs.get(memKey);
    if (!w) {
      const diskKey = this.diskUser.disk ? this.diskKey(t, K, N, transB) : null;
      w = (diskKey ? this.load(diskKey, K, N) : null) ?? this.pack(t, K, N, transB, diskKey);
      this.packs.set(memKey, w);
    }
    return w.handle;
  }

  /** Forgets the packed weights (their sources changed in place); the disk keeps its entries. */
  clear(): void { this.packs.clear(); }

  /** Keeps the disk cache under its size cap, once after a batch of writes (a plan's weights)
   *  rather than after each of them. */
  flush(): void {
    if (!this.wrote) return;
    this.wrote = false;
    this.diskIo((d) => d.evictIfNeeded(), null);
  }

  private diskKey(t: Tensor, K: number, N: number, transB: boolean): string {
    return sha256(canonicalJson({
      entry: 'packed-weight', layout: PANEL_LAYOUT_VERSION, inferjit: inferjitVersion(), precision: this.precision,
      K, N, transB, dtype: t.dtype, content: tensorDigest(t),
    }));
  }

  private load(key: string, K: number, N: number): PackedWeight | null {
    const hit = this.diskIo((d) => d.get(key), null);
    if (!hit) return null;
    try {
      const bytes = hit.file(PANELS_FILE);
      // readFileSync's buffers start on their own allocation, but a Uint16Array needs an even offset
      const aligned = bytes.byteOffset % 2 === 0 ? bytes : Buffer.from(bytes);
      const panels = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
      const w = importPackedWeight({ precision: this.precision, K, N, panels });
      this.stats.loaded++;
      return w;
    } catch (e) {
      // The checksums passed, so the entry is sound but not what this build expects (a layout
      // change without a version bump): drop it and repack.
      process.emitWarning(`inferjit cache: packed weight ${key.slice(0, 12)}… is unusable (${(e as Error).message}); repacking it`, { type: 'InferjitWarning', code: 'INFERJIT_CACHE' });
      this.diskIo((d) => d.remove(key), false);
      return null;
    }
  }

  private pack(t: Tensor, K: number, N: number, transB: boolean, diskKey: string | null): PackedWeight {
    const w = packWeightAs(this.precision, t, K, N, transB);
    this.stats.packed++;
    if (t.dtype === 'f16' || t.dtype === 'bf16') this.stats.from16Bit++;
    if (diskKey) {
      const { panels } = exportPackedWeight(w);
      const written = this.diskIo((d) => d.put(diskKey, {
        kind: 'packed-weight', label: `${this.precision} [K=${K}, N=${N}] from ${t.dtype}`,
        meta: { precision: this.precision, K, N, transB, dtype: t.dtype, layout: PANEL_LAYOUT_VERSION },
        files: { [PANELS_FILE]: Buffer.from(panels.buffer, panels.byteOffset, panels.byteLength) },
      }, { evict: false }), null);
      if (written) { this.stats.written++; this.wrote = true; }
    }
    return w;
  }

  /** A filesystem error (read-only folder, disk full) turns the disk off for this cache with one
   *  warning per folder, as the JIT's own cache use does; the weights are still packed. */
  private diskIo<T>(op: (disk: DiskCache) => T, fallback: T): T {
    return tolerantDiskIo(this.diskUser, op, fallback);
  }
}
