// The single door through which every tensor op runs. It validates inputs and attributes, infers
// output metadata, and then either computes (choosing a backend kernel) or, when a tracer is
// active or an input is symbolic, hands the call to the tracer to record a graph node.
import { Tensor } from '../tensor/tensor.js';
import { formatShape } from '../tensor/shape.js';
import { getOp, getKernel, loadKernels, type OpDef, type TensorMeta, type BackendName } from './registry.js';
import { normalizeAttrs, type AttrValues } from './attrs.js';
import { quantSpecOf } from '../tensor/quantized.js';

/** Receives ops that involve symbolic tensors; returns the symbolic outputs. */
export type TraceHook = (def: OpDef<any>, inputs: (Tensor | null)[], attrs: AttrValues, outs: TensorMeta[]) => Tensor[];

let traceHook: TraceHook | null = null;

/** Installs the tracer's hook for the duration of fn (nesting restores the previous hook). */
export function withTraceHook<T>(hook: TraceHook, fn: () => T): T {
  const prev = traceHook;
  traceHook = hook;
  try { return fn(); } finally { traceHook = prev; }
}

/** Runs fn with tracing switched off, so ops on concrete tensors compute (the tracer uses this to
 *  fold ops on literals into constants). */
export function withoutTraceHook<T>(fn: () => T): T {
  const prev = traceHook;
  traceHook = null;
  try { return fn(); } finally { traceHook = prev; }
}

export type EagerBackend = 'auto' | BackendName;
let eagerBackend: EagerBackend = 'auto';
/** Whether native cpu kernels exist; null until the cpu backend's kernel loader has run. */
let nativeAvailable: boolean | null = null;

/** Chooses the kernels eager ops run on: 'auto' (native cpu when built, else reference),
 *  'cpu' (native only; ops without a native kernel still use the reference kernel) or 'reference'. */
export function setEagerBackend(b: EagerBackend): void {
  if (b === 'cpu' && !isNativeAvailable()) throw new Error("setEagerBackend('cpu'): the native addon is not built; run `npm run build:native` and check its output");
  eagerBackend = b;
}
export const getEagerBackend = (): EagerBackend => eagerBackend;
/** Whether eager ops may use native cpu kernels. The first call runs the cpu backend's kernel
 *  loader (src/backends/cpu/index.ts installs it with setKernelLoader; see registry.ts), so this is
 *  decided at first use, not by which modules happened to be imported. */
export function isNativeAvailable(): boolean {
  if (nativeAvailable !== null) return nativeAvailable;
  const ok = loadKernels('cpu');
  if (ok === null) return false; // no cpu backend linked in yet: ask again later
  return (nativeAvailable = ok);
}

/** Runs `fn` with a given eager backend, restoring the previous one afterwards (used by tests
 *  that compare native kernels with the reference). */
export function withEagerBackend<T>(b: EagerBackend, fn: () => T): T {
  const prev = eagerBackend;
  setEagerBackend(b);
  try { return fn(); } finally { eagerBackend = prev; }
}

export const metaOf = (t: Tensor): TensorMeta => ({ dtype: t.dtype, shape: t.metaShape });

export function checkInputs(def: OpDef<any>, inputs: readonly (Tensor | null | undefined)[]): (Tensor | null)[] {
  const specs = def.inputs;
  const variadic = specs.length > 0 && specs[specs.length - 1].startsWith('...');
  const fixed = variadic ? specs.length - 1 : specs.length;
  const required = specs.filter((s) => !s.endsWith('?') && !s.startsWith('...')).length;
  if (inputs.length < required || (!variadic && inputs.length > fixed)) {
    throw new TypeError(`${def.name}: expected ${variadic ? `at least ${required}` : required === fixed ? fixed : `${required} to ${fixed}`} inputs (${specs.join(', ')}), got ${inputs.length}`);
  }
  const out: (Tensor | null)[] = [];
  for (let i = 0; i < Math.max(inputs.length, fixed); i++) {
    const spec = i < fixed ? specs[i] : specs[specs.length - 1];
    const t = inputs[i];
    if (t === null || t === undefined) {
      if (!spec.endsWith('?')) throw new TypeError(`${def.name}: input "${spec.replace('...', '')}" is required but was ${t}`);
      out.push(null);
    } else if (!(t instanceof Tensor)) {
      throw new TypeError(`${def.name}: input "${spec.replace(/^\.\.\.|\?$/g, '')}" must be a Tensor, got ${typeof t}`);
    } else out.push(t);
  }
  return out;
}

/** Runs op `name` on `inputs` with `attrs` and returns all of its outputs. */
export function dispatch(name: string, inputs: readonly (Tensor | null | undefined)[], attrs?: Record<string, unknown>): Tensor[] {
  const def = getOp(name);
  const ins = checkInputs(def, inputs);
  const a = normalizeAttrs(def.name, def.attrs, attrs);
  if (!QUANT_OPS.has(def.name)) checkNotQuantized(def.name, ins);
  const outs = def.infer(ins.map((t) => (t ? metaOf(t) : null)), a);
  if (traceHook || ins.some((t) => t?.isSymbolic)) {
    if (!traceHook) throw new Error(`${def.name}: a symbolic tensor was used outside of tracing (it escaped from a traced function?)`);
    return traceHook(def, ins, a, outs);
  }
  const device = ins.find((t) => t)?.device ?? 'cpu';
  for (const t of ins) {
    if (t && t.device !== device) throw new Error(`${def.name}: inputs are on different devices (${device} and ${t.device})`);
  }
  const kernel = selectKernel(def, ins, a);
  const result = kernel(ins, a, outs);
  checkOutputs(def, result, outs);
  return result;
}

/** Ops that read quantized weights (src/tensor/quantized.ts); any other op would see raw block bytes. */
const QUANT_OPS = new Set(['quant_linear', 'dequantize', 'quant_concat', 'moe']);
function checkNotQuantized(op: string, ins: readonly (Tensor | null)[]): void {
  for (const t of ins) {
    const q = t && quantSpecOf(t);
    if (q) {
      throw new TypeError(`${op}: input is a quantized ${q.format} [${q.N}, ${q.K}] weight; only linear (F.linear / nn.Linear) reads quantized weights. ` +
        'Use dequantize(weight) for its f32 values.');
    }
  }
}

/** Runs a single-output op. */
export function dispatch1(name: string, inputs: readonly (Tensor | null | undefined)[], attrs?: Record<string, unknown>): Tensor {
  return dispatch(name, inputs, attrs)[0];
}

function selectKernel(def: OpDef<any>, ins: (Tensor | null)[], a: AttrValues) {
  if (eagerBackend !== 'reference' && (nativeAvailable ?? isNativeAvailable())) {
    const k = getKernel(def.name, 'cpu', ins, a);
    if (k) return k;
  }
  return getKernel(def.name, 'reference', ins, a) ?? def.reference;
}

function checkOutputs(def: OpDef<any>, result: Tensor[], outs: TensorMeta[]): void {
  if (result.length !== outs.length) throw new Error(`${def.name}: kernel returned ${result.length} outputs, inference says ${outs.length}`);
  for (let i = 0; i < outs.length; i++) {
    const r = result[i], m = outs[i];
    if (r.dtype !== m.dtype || r.shape.length !== m.shape.length || r.shape.some((d, j) => d !== m.shape[j])) {
      throw new Error(`${def.name}: kernel output ${i} is ${r.dtype}${formatShape(r.shape)} but inference says ${m.dtype}${formatShape(m.shape)}`);
    }
  }
}
