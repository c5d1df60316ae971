// Call signatures and guards: what about a call decides whether a compiled entry can serve it.
// A signature is the input dtypes and shapes (dynamic dims by name, from the input spec), the
// non-tensor arguments in canonical form, the module's training flag, the device and precision.
// Parameter identity and versions are checked separately (they change without the signature
// changing, and a change needs new weights, not a new graph).
import { Tensor } from '../tensor/tensor.js';
import { formatShape } from '../tensor/shape.js';
import type { DType } from '../tensor/dtype.js';
import { canonicalJson } from '../cache/disk-cache.js';
import type { InputSpec } from '../trace/index.js';
import { flattenArgs as flattenTree, type TreeNode } from '../trace/tree.js';

/** The tensor leaves of a call's arguments and the rest of the arguments' structure. */
export interface FlatArgs {
  tensors: Tensor[];
  /** The argument trees (src/trace/tree.ts), for the tracer. */
  trees: TreeNode[];
  /** Canonical JSON of the arguments with each tensor replaced by {"$tensor": i}. */
  skeleton: string;
  /** False when an argument (a function, a class instance) could only be guarded by identity,
   *  which does not survive the process: such calls are not cached on disk. */
  portable: boolean;
}

const identities = new WeakMap<object, number>();
let nextIdentity = 1;

/** Flattens arguments with the tracer's flattener (arrays by index, plain objects by key in
 *  insertion order: the order of the graph inputs) and describes the non-tensor rest for the
 *  signature. Unlike the tracer's guard form, class instances and functions are guarded by
 *  identity here: re-reading their contents on every call would cost more than a recompile saves. */
export function flattenArgs(args: readonly unknown[]): FlatArgs {
  const flat = flattenTree(args);
  let portable = true;
  const leaf = (v: unknown): unknown => {
    switch (typeof v) {
      case 'number':
        // JSON would turn NaN/Infinity into null and -0 into 0; keep them distinct.
        return Number.isFinite(v) && !Object.is(v, -0) ? v : { $num: Object.is(v, -0) ? '-0' : String(v) };
      case 'string': case 'boolean': return v;
      case 'undefined': return { $undefined: true };
      case 'bigint': return { $bigint: v.toString() };
      case 'object':
        if (v === null) return null;
        portable = false;
        return { $identity: identityOf(v), class: (v as object).constructor?.name ?? 'object' };
      default: // function, symbol
        portable = false;
        return { $identity: typeof v === 'function' ? identityOf(v) : String(v), kind: typeof v };
    }
  };
  const walk = (n: TreeNode): unknown => {
    switch (n.t) {
      case 'tensor': return { $tensor: n.i };
      case 'array': return n.items.map(walk);
      // Key order matters to tensor order, so record it next to the (sorted) canonical form.
      case 'object': return { $object: n.entries.map(([k]) => k), fields: Object.fromEntries(n.entries.map(([k, c]) => [k, walk(c)])) };
      case 'value': return leaf(n.v);
    }
  };
  const skeleton = canonicalJson(flat.trees.map(walk));
  return { tensors: flat.tensors, trees: flat.trees, skeleton, portable };
}

function identityOf(o: object): number {
  let id = identities.get(o);
  if (id === undefined) identities.set(o, (id = nextIdentity++));
  return id;
}

/** An input spec with every -1 replaced by a generated name, checked against the tensors. */
export type NormalizedSpec = (InputSpec | null)[];

export function normalizeInputSpec(spec: readonly (InputSpec | null)[] | null, tensors: readonly Tensor[], where: string): NormalizedSpec {
  if (spec === null) return tensors.map(() => null);
  if (spec.length > tensors.length) {
    throw new TypeError(`${where}: inputSpec has ${spec.length} entries but the call has ${tensors.length} tensor input${tensors.length === 1 ? '' : 's'}`);
  }
  return tensors.map((t, i) => {
    const s = spec[i];
    if (!s) return null;
    if (s.shape.length !== t.rank) {
      throw new TypeError(`${where}: inputSpec[${i}] has rank ${s.shape.length} (${formatShape(s.shape)}) but input ${i} has shape ${formatShape(t.shape)}`);
    }
    return { shape: s.shape.map((d, axis) => (d === -1 ? `in${i}_d${axis}` : d)), ...(s.dtype ? { dtype: s.dtype } : {}) };
  });
}

export interface Signature {
  /** The memory-cache key: canonical JSON of everything below. */
  key: string;
  inputs: { dtype: DType; shape: (number | string)[]; device: string }[];
  skeleton: string;
  training: boolean | null;
  device: string;
  precision: string;
}

/** The signature of a call, checking the concrete shapes against the input spec: static dims of
 *  the spec must match, and equal dim names must have equal sizes. */
export function computeSignature(flat: FlatArgs, spec: NormalizedSpec, extra: { training: boolean | null; device: string; precision: string }, where: string): Signature {
  const bound = new Map<string, { size: number; input: number; axis: number }>();
  const inputs = flat.tensors.map((t, i) => {
    const s = spec[i];
    if (s?.dtype && s.dtype !== t.dtype) {
      throw new TypeError(`${where}: inputSpec[${i}] says dtype ${s.dtype} but input ${i} is ${t.dtype}${formatShape(t.shape)}`);
    }
    if (!s) return { dtype: t.dtype, shape: [...t.shape] as (number | string)[], device: t.device as string };
    s.shape.forEach((d, axis) => {
      const size = t.shape[axis];
      if (typeof d === 'number') {
        if (d !== size) throw new TypeError(`${where}: input ${i} has shape ${formatShape(t.shape)} but inputSpec[${i}] is ${formatShape(s.shape)} (dim ${axis} must be ${d})`);
        return;
      }
      const prev = bound.get(d);
      if (prev && prev.size !== size) {
        throw new TypeError(`${where}: dynamic dim "${d}" is ${prev.size} in input ${prev.input} (axis ${prev.axis}) but ${size} in input ${i} (axis ${axis}); inputs sharing a dim name must agree`);
      }
      if (!prev) bound.set(d, { size, input: i, axis });
    });
    return { dtype: t.dtype, shape: [...s.shape], device: t.device as string };
  });
  const body = { inputs, skeleton: flat.skeleton, training: extra.training, device: extra.device, precision: extra.precision };
  return { key: canonicalJson(body), ...body };
}

/** Names the first guard that differs between the signature an entry was compiled for and a new
 *  call's, for stats and recompile messages. */
export function diffSignatures(old: Signature, now: Signature): { guard: string; detail: string } {
  if (old.device !== now.device) return { guard: 'device', detail: `device changed from ${old.device} to ${now.device}` };
  if (old.precision !== now.precision) return { guard: 'precision', detail: `precision changed from ${old.precision} to ${now.precision}` };
  if (old.inputs.length !== now.inputs.length) return { guard: 'inputs', detail: `${old.inputs.length} tensor inputs before, ${now.inputs.length} now` };
  for (let i = 0; i < now.inputs.length; i++) {
    const a = old.inputs[i], b = now.inputs[i];
    if (a.device !== b.device) return { guard: `input ${i} device`, detail: `input ${i} was on ${a.device}, now on ${b.device}` };
    if (a.dtype !== b.dtype) return { guard: `input ${i} dtype`, detail: `input ${i} dtype was ${a.dtype}, now ${b.dtype}` };
    if (canonicalJson(a.shape) !== canonicalJson(b.shape)) return { guard: `input ${i} shape`, detail: `input ${i} shape was ${formatShape(a.shape)}, now ${formatShape(b.shape)}` };
  }
  if (old.skeleton !== now.skeleton) return { guard: 'non-tensor args', detail: `non-tensor arguments changed: ${clip(old.skeleton)} -> ${clip(now.skeleton)}` };
  if (old.training !== now.training) return { guard: 'training', detail: `module training flag was ${old.training}, now ${now.training}` };
  return { guard: 'signature', detail: 'signature changed' };
}

const clip = (s: string): string => (s.length > 120 ? `${s.slice(0, 117)}...` : s);

/** Parameters (and buffers) by name as the entry saw them: the tensor object and its version. */
export type ParamSnapshot = { name: string; tensor: Tensor; version: number }[];

export function snapshotParams(named: Iterable<[string, Tensor]>): ParamSnapshot {
  return [...named].map(([name, tensor]) => ({ name, tensor, version: tensor.version }));
}

/** Null when every parameter is the same object at the same version; otherwise what changed. */
export function checkParams(snapshot: ParamSnapshot, current: Iterable<[string, Tensor]> | null): { guard: string; detail: string; structural: boolean } | null {
  // Versions first: the cheap check that catches in-place updates (copyFrom, loadStateDict).
  for (const s of snapshot) {
    if (s.tensor.version !== s.version) {
      return { guard: `parameter ${s.name}`, detail: `parameter ${s.name} was modified in place (version ${s.version} -> ${s.tensor.version})`, structural: false };
    }
  }
  if (current === null) return null;
  const byName = new Map(current);
  if (byName.size !== snapshot.length) {
    return { guard: 'parameters', detail: `the module has ${byName.size} parameters now, ${snapshot.length} when compiled`, structural: true };
  }
  for (const s of snapshot) {
    const t = byName.get(s.name);
    if (t === undefined) return { guard: `parameter ${s.name}`, detail: `parameter ${s.name} no longer exists`, structural: true };
    if (t !== s.tensor) {
      const same = t.dtype === s.tensor.dtype && t.rank === s.tensor.rank && t.shape.every((d, i) => d === s.tensor.shape[i]);
      return {
        guard: `parameter ${s.name}`,
        detail: `parameter ${s.name} was replaced by another tensor${same ? '' : ` (${s.tensor.dtype}${formatShape(s.tensor.shape)} -> ${t.dtype}${formatShape(t.shape)})`}`,
        structural: !same,
      };
    }
  }
  return null;
}
