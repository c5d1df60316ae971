// The f32 parameters quantize() rewrites, and what repeated builds of one model share.
//
// WorkingParams: a copy of each parameter quantize() touches, made on first read, with the folds
// (smoothing factors into consumer columns, 1/s into a norm gain or a producer's rows, a rotation)
// recorded as edits. An edit to a parameter nobody has read yet is queued, not applied, and every
// edit carries a tag naming what it applied (site and choice): the tags are the parameter's
// provenance, which, within one quantize() call, determines its values.
//
// BuildMemo: PSS's model-level selection (pss-select.ts) builds dozens of trial models that differ
// from the current best in one site's factors. Keyed by provenance, the memo hands a trial the
// quantized weights and tensors an earlier build made for the same parameter (no copy, fold,
// requantization or packing), and keeps the tensors' identity, which is what lets the incremental
// interpreter (src/backends/reference/incremental.ts) reuse every value computed from them.
import type { Tensor } from '../tensor/tensor.js';

type Edit = (values: Float32Array) => void;

export class WorkingParams {
  #live: Map<string, Tensor>;
  #values = new Map<string, Float32Array>();
  #pending = new Map<string, Edit[]>();
  #tags = new Map<string, string[]>();
  #released = new Set<string>();

  constructor(parameters: Iterable<[string, Tensor]>) {
    this.#live = new Map(parameters);
  }

  #tensor(name: string): Tensor {
    const t = this.#live.get(name);
    if (!t) throw new Error(`quantize: parameter "${name}" is not in the module`);
    if (t.dtype !== 'f32') throw new TypeError(`quantize: parameter "${name}" is ${t.dtype}; quantize() reads f32 weights (load the model with f32 weights)`);
    return t;
  }

  shape(name: string): number[] { return [...this.#tensor(name).shape]; }

  /** The parameter's current values (copied from the module on first read, queued edits applied);
   *  the array is the working copy: later edits land in it. */
  values(name: string): Float32Array {
    this.#checkLive(name);
    let v = this.#values.get(name);
    if (!v) {
      v = (this.#tensor(name).data as Float32Array).slice();
      for (const edit of this.#pending.get(name) ?? []) edit(v);
      this.#pending.delete(name);
      this.#values.set(name, v);
    }
    return v;
  }

  /** Applies `edit` (now if the parameter was read, else when it is); `tag` names it in the provenance. */
  edit(name: string, tag: string, edit: Edit): void {
    this.#tensor(name);
    this.#checkLive(name);
    const v = this.#values.get(name);
    if (v) edit(v);
    else this.#pending.set(name, [...(this.#pending.get(name) ?? []), edit]);
    this.#tags.set(name, [...(this.#tags.get(name) ?? []), tag]);
  }

  /**
   * Drops the working copy of a parameter whose values were consumed: a weight once quantized (the
   * build keeps its codes and dequantized values, not the folded f32 it was quantized from; at 1B
   * scale those copies are ~4 GB). Its provenance stays; reading or editing it again is an error.
   */
  release(name: string): void {
    this.#values.delete(name);
    this.#pending.delete(name);
    this.#released.add(name);
  }

  #checkLive(name: string): void {
    if (this.#released.has(name)) throw new Error(`quantize: internal error: parameter "${name}" was used after its working copy was released`);
  }

  /** What was applied to the parameter, in order ('' for none). */
  provenance(name: string): string { return (this.#tags.get(name) ?? []).join(' '); }

  /** Every parameter read or edited (the ones a quantized model replaces). */
  names(): string[] { return [...new Set([...this.#values.keys(), ...this.#pending.keys(), ...this.#released])]; }
}

interface MemoEntry { key: string | null; value: unknown; tensors: Tensor[] }

export class BuildMemo {
  #entries = new Map<string, MemoEntry[]>();

  /** The value stored for `name` under provenance `key`, or the one `make` computes (then stored).
   *  `tensorsOf` lists the tensors the value holds (retain() keeps entries by them). */
  get<T>(name: string, key: string, make: () => T, tensorsOf: (v: T) => Tensor[]): T {
    const list = this.#entries.get(name) ?? [];
    const hit = list.find((e) => e.key === key);
    if (hit) return hit.value as T;
    const value = make();
    list.push({ key, value, tensors: tensorsOf(value) });
    this.#entries.set(name, list);
    return value;
  }

  /** `t`, or an earlier build's tensor for `name` with the same dtype, shape and bytes (small
   *  tensors computed each build: shift biases, scales). */
  stable(name: string, t: Tensor): Tensor {
    const list = this.#entries.get(name) ?? [];
    const bytes = (x: Tensor): Buffer => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength);
    const same = list.find((e) => {
      const u = e.tensors[0];
      return e.key === null && u.dtype === t.dtype && u.shape.length === t.shape.length && u.shape.every((d, i) => d === t.shape[i]) && bytes(u).equals(bytes(t));
    });
    if (same) return same.tensors[0];
    list.push({ key: null, value: t, tensors: [t] });
    this.#entries.set(name, list);
    return t;
  }

  /** Drops every entry none of whose tensors is among `alive` (the parameters of the models still in use). */
  retain(alive: ReadonlySet<Tensor>): void {
    for (const [name, list] of this.#entries) {
      const kept = list.filter((e) => e.tensors.some((t) => alive.has(t)));
      if (kept.length > 0) this.#entries.set(name, kept);
      else this.#entries.delete(name);
    }
  }
}
