// The Module base class: parameters and submodules are found by walking a module's own fields, so
// a model is ordinary TypeScript (`this.weight = randn(...)`, `this.blocks = [...]`) and still has
// PyTorch-style dotted names ('blocks.0.attn.qkv.weight') for state dicts, quantization and the tracer.
import { Tensor } from '../tensor/tensor.js';
import { type DType, isFloatDType } from '../tensor/dtype.js';
import { formatShape } from '../tensor/shape.js';

// ---- buffers ----

/** Buffers are tensors a module owns but that are not weights (fixed position tables, running
 *  statistics). The mark lives on the tensor itself, so a field holding `buffer(t)` stays typed as
 *  a plain Tensor. Persistent buffers are part of the state dict; non-persistent ones (caches that
 *  are recomputed from the config) are not. */
const bufferMarks = new WeakMap<Tensor, { persistent: boolean }>();

/** Marks `tensor` as a buffer and returns it: `posEmbed = nn.buffer(sinusoidalTable(256, 384))`. */
export function buffer(tensor: Tensor, options: { persistent?: boolean } = {}): Tensor {
  if (!(tensor instanceof Tensor)) throw new TypeError(`buffer: expected a Tensor, got ${describe(tensor)}`);
  bufferMarks.set(tensor, { persistent: options.persistent ?? true });
  return tensor;
}
export const isBuffer = (t: Tensor): boolean => bufferMarks.has(t);

// ---- state dicts ----

export type StateDict = Map<string, Tensor>;

export interface TensorSpec { dtype: DType; shape: readonly number[] }
export interface LoadReport {
  /** Names the model has but the state lacks. */
  missing: string[];
  /** Names the state has but the model lacks. */
  unexpected: string[];
  /** Names present in both whose dtype or shape differ: `expected` is the model's, `got` the state's. */
  mismatched: { name: string; expected: TensorSpec; got: TensorSpec }[];
}

/** One tensor slot in the module tree: where it is named, which object and key hold it. */
interface Slot {
  name: string;
  tensor: Tensor;
  kind: 'parameter' | 'buffer';
  persistent: boolean;
  holder: Record<string | number, unknown>;
  key: string | number;
}

/**
 * Base class of every model and layer.
 *
 * Discovery rules, applied to the module's own enumerable fields in declaration order:
 * - a Tensor is a parameter (or a buffer, when marked with `buffer()` / `registerBuffer()`);
 * - a Module is a submodule, named by its field;
 * - an array is walked element by element, elements named by index (`blocks.0`), so a plain array
 *   of modules or tensors works like PyTorch's ModuleList / ParameterList;
 * - a plain object (`{ cls: new Linear(..), box: new Linear(..) }`) is walked by key
 *   (`heads.cls.weight`), like ModuleDict; config objects without tensors contribute nothing;
 * - anything else (numbers, strings, functions, Maps, instances of other classes) is ignored.
 * A tensor that is neither weight nor buffer (e.g. a cache) belongs in a `#private` field, which
 * is not enumerable. Names follow field order, depth first. A tensor or module reachable under two
 * names (tied weights) is listed once by `namedParameters()`/`namedModules()` and under every name
 * by `stateDict()`, as in PyTorch.
 */
export abstract class Module {
  /** Whether the module is in training mode; this is an inference SDK, so it only matters to
   *  user code that branches on it. `eval()`/`train()` set it on the whole tree. */
  training = true;

  abstract forward(...args: any[]): any;

  /** Runs `forward` (a wrapped `forward`, e.g. by `@inferenceJit`, is what runs). */
  call(...args: Parameters<this['forward']>): ReturnType<this['forward']> {
    return this.forward(...args);
  }

  /** Registers `tensor` as a buffer in field `name` and returns it. */
  registerBuffer(name: string, tensor: Tensor, options: { persistent?: boolean } = {}): Tensor {
    (this as unknown as Record<string, unknown>)[name] = buffer(tensor, options);
    return tensor;
  }

  /** Direct children, named relative to this module ('attn', 'blocks.0'). */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [name, value] of this.ownEntries()) if (value instanceof Module) out.push([name, value]);
    return out;
  }
  children(): Module[] { return this.namedChildren().map(([, m]) => m); }

  /** This module ('' name) and every descendant, each once, depth first in field order. */
  namedModules(): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const visit = (m: Module, prefix: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([prefix, m]);
      for (const [name, child] of m.namedChildren()) visit(child, join(prefix, name));
    };
    visit(this, '');
    return out;
  }
  modules(): Module[] { return this.namedModules().map(([, m]) => m); }

  /** Every parameter once, with its dotted path ('blocks.0.attn.qkv.weight'). */
  namedParameters(): [string, Tensor][] { return this.uniqueSlots('parameter'); }
  parameters(): Tensor[] { return this.namedParameters().map(([, t]) => t); }
  /** Every buffer once (persistent or not), with its dotted path. */
  namedBuffers(): [string, Tensor][] { return this.uniqueSlots('buffer'); }
  buffers(): Tensor[] { return this.namedBuffers().map(([, t]) => t); }

  /** Total element count of the parameters. */
  numParameters(): number { return this.parameters().reduce((n, t) => n + t.size, 0); }

  /** Parameters and persistent buffers under every name they are reachable by, in field order.
   *  The tensors are the module's own (not copies). */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    for (const s of this.slots()) if (s.kind === 'parameter' || s.persistent) out.set(s.name, s.tensor);
    return out;
  }

  /**
   * Copies `state` into the module's existing tensors (with `copyFrom`, so versions are bumped and
   * compiled code that captured the weights sees the change). Every entry is checked first; in
   * strict mode any missing, unexpected or mismatched (dtype or shape) name throws one Error listing
   * all problems, and nothing is copied. In non-strict mode the entries that match are copied and
   * the report says what was skipped.
   */
  loadStateDict(state: StateDict | Record<string, Tensor>, options: { strict?: boolean } = {}): LoadReport {
    const strict = options.strict ?? true;
    const entries = state instanceof Map ? [...state.entries()] : Object.entries(state);
    const given = new Map<string, Tensor>();
    for (const [name, t] of entries) {
      if (!(t instanceof Tensor)) throw new TypeError(`loadStateDict: state entry "${name}" is ${describe(t)}, not a Tensor`);
      given.set(name, t);
    }
    const own = this.stateDict();
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
    const toCopy: [Tensor, Tensor][] = [];
    for (const [name, dst] of own) {
      const src = given.get(name);
      if (!src) { report.missing.push(name); continue; }
      if (src.dtype !== dst.dtype || !sameShape(src.shape, dst.shape)) {
        report.mismatched.push({ name, expected: spec(dst), got: spec(src) });
        continue;
      }
      toCopy.push([dst, src]);
    }
    for (const name of given.keys()) if (!own.has(name)) report.unexpected.push(name);
    const problems = [
      ...report.missing.map((n) => `missing "${n}"`),
      ...report.unexpected.map((n) => `unexpected "${n}"`),
      ...report.mismatched.map(({ name, expected, got }) =>
        expected.dtype !== got.dtype
          ? `dtype mismatch for "${name}": model ${expected.dtype}, state ${got.dtype}`
          : `shape mismatch for "${name}": model ${formatShape(expected.shape)}, state ${formatShape(got.shape)}`),
    ];
    if (strict && problems.length > 0) {
      throw new Error(`loadStateDict: ${problems.length} problem${problems.length === 1 ? '' : 's'}: ${problems.join('; ')}`);
    }
    for (const [dst, src] of toCopy) if (dst !== src) dst.copyFrom(src); else dst.markModified();
    return report;
  }

  /** Sets `training` on this module and every descendant. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }
  eval(): this { return this.train(false); }

  /**
   * Casts every floating-point parameter and buffer to `dtype`, replacing the field values (the
   * tensors are new objects; buffer marks are kept). Integer tensors (token tables, indices) stay.
   */
  to(dtype: DType): this {
    const replaced = new Map<Tensor, Tensor>(); // tied tensors stay tied
    for (const s of this.slots()) {
      if (!isFloatDType(s.tensor.dtype) || s.tensor.dtype === dtype) continue;
      let t = replaced.get(s.tensor);
      if (!t) {
        t = s.tensor.cast(dtype);
        const mark = bufferMarks.get(s.tensor);
        if (mark) bufferMarks.set(t, { ...mark });
        replaced.set(s.tensor, t);
      }
      s.holder[s.key] = t;
    }
    return this;
  }

  /** Extra text for `toString()`, e.g. 'inFeatures=4, outFeatures=8, bias=true'. */
  extraRepr(): string { return ''; }

  /** A PyTorch-like tree: `Linear(inFeatures=4, outFeatures=8, bias=true)`. */
  toString(): string {
    const children = this.namedChildren();
    const head = `${this.constructor.name}(${this.extraRepr()}`;
    if (children.length === 0) return `${head})`;
    const lines = children.map(([name, m]) => `  (${name}): ${m.toString().split('\n').join('\n  ')}`);
    return `${head}\n${lines.join('\n')}\n)`;
  }

  // ---- the walk ----

  /** Own fields, with arrays and plain objects flattened to 'field.i' / 'field.key', as
   *  [name, value, holder, key]. */
  private ownEntries(): [string, unknown, Record<string | number, unknown>, string | number][] {
    const out: [string, unknown, Record<string | number, unknown>, string | number][] = [];
    const open = new Set<object>(); // containers on the current path: a self-referencing config cannot loop
    const walk = (holder: Record<string | number, unknown>, keys: (string | number)[], prefix: string): void => {
      for (const key of keys) {
        const v = holder[key];
        const name = join(prefix, String(key));
        if (Array.isArray(v) || isPlainObject(v)) {
          if (open.has(v)) continue;
          open.add(v);
          walk(v as Record<string | number, unknown>, Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v), name);
          open.delete(v);
        } else out.push([name, v, holder, key]);
      }
    };
    const self = this as unknown as Record<string, unknown>;
    walk(self, Object.keys(self), '');
    return out;
  }

  /** Every tensor slot under every name, depth first; a module already on the current path (a
   *  back-reference to a parent) is not entered again, so cycles terminate. */
  private slots(): Slot[] {
    const out: Slot[] = [];
    const onPath = new Set<Module>();
    const visit = (m: Module, prefix: string): void => {
      if (onPath.has(m)) return;
      onPath.add(m);
      for (const [name, value, holder, key] of m.ownEntries()) {
        const full = join(prefix, name);
        if (value instanceof Tensor) {
          const mark = bufferMarks.get(value);
          out.push({ name: full, tensor: value, kind: mark ? 'buffer' : 'parameter', persistent: mark?.persistent ?? true, holder, key });
        } else if (value instanceof Module) visit(value, full);
      }
      onPath.delete(m);
    };
    visit(this, '');
    return out;
  }

  private uniqueSlots(kind: Slot['kind']): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const s of this.slots()) {
      if (s.kind !== kind || seen.has(s.tensor)) continue;
      seen.add(s.tensor);
      out.push([s.name, s.tensor]);
    }
    return out;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
function join(prefix: string, name: string): string { return prefix ? `${prefix}.${name}` : name; }
function sameShape(a: readonly number[], b: readonly number[]): boolean { return a.length === b.length && a.every((d, i) => d === b[i]); }
const spec = (t: Tensor): TensorSpec => ({ dtype: t.dtype, shape: [...t.shape] });
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return `a ${(v as object).constructor?.name ?? 'object'}`;
  return typeof v;
}
