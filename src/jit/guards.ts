// Cheap per-call guards for a compiled entry. The authoritative checks (the module's configuration
// fingerprint and the parameter identities by name, see cache/fingerprint.ts and signature.ts)
// walk the whole module tree and serialize every field: tens of microseconds for a tiny model. A
// call that hits the cache only needs to know that nothing those checks read has changed, so at
// compile time we record, for every object they read (each module and the arrays, plain objects
// and other instances below its fields), its own keys and the value of each, and a call compares
// those by identity. Any difference (a field assigned, added or deleted, a parameter or submodule
// replaced) sends the call to the authoritative checks, which decide; when those find nothing
// changed (a field set to an equal value) the snapshot is taken again. Parameter contents are
// guarded by their version counters (ParamSnapshot), as before.
import { Tensor } from '../tensor/tensor.js';
import { Module } from '../nn/module.js';

/** Beyond this many recorded fields the snapshot gives up and every call takes the full check. */
const MAX_SLOTS = 20_000;
const MAX_DEPTH = 6;

export class StructureSnapshot {
  private readonly holders: object[] = [];
  private readonly keyCounts: number[] = [];
  private readonly slotHolder: number[] = [];
  private readonly slotKey: string[] = [];
  private readonly slotValue: unknown[] = [];
  /** False when identity cannot vouch for the configuration (a Map, Set or typed array holds part
   *  of it, a module that is not an nn.Module finds its parameters its own way, or the tree is
   *  huge): check() is then always false and the full check runs. */
  readonly exact: boolean;

  constructor(modules: Iterable<unknown>) {
    let exact = true;
    const seen = new Set<object>();
    const record = (holder: object, depth: number): void => {
      if (seen.has(holder) || !exact) return;
      seen.add(holder);
      const h = this.holders.length;
      const keys = Object.keys(holder);
      this.holders.push(holder);
      this.keyCounts.push(keys.length);
      for (const k of keys) {
        const v = (holder as Record<string, unknown>)[k];
        this.slotHolder.push(h);
        this.slotKey.push(k);
        this.slotValue.push(v);
        if (this.slotValue.length > MAX_SLOTS) { exact = false; return; }
        if (v === null || typeof v !== 'object' || v instanceof Tensor || v instanceof Module) continue; // modules are recorded on their own
        if (ArrayBuffer.isView(v) || v instanceof Map || v instanceof Set) { exact = false; return; }
        if (depth < MAX_DEPTH) record(v, depth + 1);
      }
    };
    for (const m of modules) {
      if (!(m instanceof Module)) { exact = false; break; }
      record(m, 0);
    }
    this.exact = exact;
  }

  /** True when every recorded object has the same keys with the same values (by identity). */
  check(): boolean {
    if (!this.exact) return false;
    const holders = this.holders, counts = this.keyCounts;
    for (let h = 0; h < holders.length; h++) {
      if (Object.keys(holders[h]).length !== counts[h]) return false;
    }
    const slotHolder = this.slotHolder, keys = this.slotKey, values = this.slotValue;
    for (let i = 0; i < values.length; i++) {
      const holder = holders[slotHolder[i]] as Record<string, unknown>;
      const v = values[i];
      if (holder[keys[i]] !== v) return false;
      // An undefined field deleted and another added keeps the count: check the key is still own.
      if (v === undefined && !Object.prototype.hasOwnProperty.call(holder, keys[i])) return false;
    }
    return true;
  }
}
