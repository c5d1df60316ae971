// The cpu backend's Executable: runs an optimized graph as native plans, one per concrete shape
// binding (LRU), each a single call into native code (runPlan) or off the JS thread (runAsync).
// The graph's passes ran once; a new concrete shape only lowers a new plan. Derived constants
// (concatenated QKV weights, ...) are computed once by BoundConstants, GEMM weights are packed
// once per executable, and both are rebuilt when a parameter's version counter moves. A graph with
// an op or dtype the plan kernels do not cover runs on the interpreter instead, and says why.
// With precision 'bf16' the weights are packed as bf16 panels instead, with 'fp16' as f16 panels
// (see lower.ts; models stored in that 16-bit type are widened to fp32 compute and their weights
// packed from it), both through the disk cache when one is on (weight-cache.ts); the interpreter
// fallback has no reduced-precision path, so such a graph the plans cannot run is an error.
// A 'bf16' executable decides once how it computes (bf16ComputePlan: bf16 products, or the fp32
// kernels on bf16-rounded weights where bf16 products are slower here) and describe() says which.
import { Tensor } from '../../../tensor/tensor.js';
import { fromNumbers } from '../../../tensor/dtype.js';
import { subgraphsOf, type Graph } from '../../../ir/graph.js';
import { bindInputs, interpret } from '../../reference/interpret.js';
import { withEagerBackend } from '../../../ops/dispatch.js';
import { bindConstants, type BoundConstants } from '../../reference/bound-constants.js';
import { LruCache } from '../../../cache/lru.js';
import type { PackedHandle } from '../addon.js';
import { bf16ComputePlan, roundedToBf16, type Bf16ComputePlan, type PackedBf16Handle, type PackedF16Handle } from '../bf16.js';
import type { DiskCache } from '../../../cache/disk-cache.js';
import type { RunOptions } from '../../backend.js';
import { WeightCache, type WeightCacheStats } from './weight-cache.js';
import { planAddon, planUnavailable, type PlanAddon, type PlanHandle } from './native.js';
import { lowerPlan, PlanUnsupportedError, type LoweredPlan, type PlanPrecision, type PlanStats } from './lower.js';
import { registeredPlanOps } from './rules/index.js';

/** Ops the plan lowering has rules for (dtype and layout limits are checked when lowering). */
export const PLAN_OPS: ReadonlySet<string> = registeredPlanOps();

export interface PlanExecutableOptions {
  /** Concrete-shape plans kept (LRU); default 8. */
  maxPlans?: number;
  /** 'fp32' (default), 'bf16' (weight GEMMs and attention with bf16 products; needs AVX512_BF16) or
   *  'fp16' (weights stored as f16, fp32 compute; needs AVX-512 and F16C). */
  precision?: PlanPrecision;
  /** Appended to describe() (e.g. that a requested precision fell back to fp32). */
  note?: string;
  /** The JIT's disk cache: reduced-precision panels are stored in it and loaded from it. */
  disk?: DiskCache | null;
  /** precision 'bf16': how it computes; default bf16ComputePlan() (INFERJIT_BF16_KERNEL, else AMX,
   *  else a one-time measurement of bf16 against fp32 GEMM speed). */
  bf16Compute?: Bf16ComputePlan;
}

interface CachedPlan {
  handle: PlanHandle;
  lowered: LoweredPlan;
  /** Output tensors written in place by calls with reuseOutputs (allocated on the first such call). */
  reused: Tensor[] | null;
}

/** The concrete shapes and dtypes of the latest call's inputs, and the plan key they bound to. */
interface LastBinding { shapes: (readonly number[])[]; dtypes: string[]; key: string }

// Async runs are queued so at most one occupies a libuv thread (plans execute one at a time anyway).
let asyncTail: Promise<unknown> = Promise.resolve();

export class PlanExecutable {
  readonly backend = 'cpu';
  private readonly bound: BoundConstants;
  private readonly body: Graph;
  private readonly plans: LruCache<string, CachedPlan>;
  private readonly packs = new Map<string, PackedHandle>();
  /** Reduced-precision weights (null in fp32 plans). */
  private readonly weights: WeightCache | null;
  readonly precision: PlanPrecision;
  /** precision 'bf16': bf16 products or fp32 compute on bf16-rounded weights, and why (null otherwise). */
  readonly bf16Compute: Bf16ComputePlan | null;
  /** bf16 computed in fp32: f32 copies of weights rounded to bf16 that conv2d reads in place. */
  private readonly rounded = new Map<string, Tensor>();
  private readonly literals = new Map<string, Tensor>();
  /** Reduced-precision plans: f32 copies of f16/bf16 constants read other than as GEMM weights. */
  private readonly widened = new Map<string, Tensor>();
  private consts: Map<string, Tensor>;
  private snapshot: { tensor: Tensor; version: number }[];
  private fallback: string | null;
  private lastPlan: CachedPlan | null = null;
  private lastBinding: LastBinding | null = null;
  private readonly note: string | null;
  /** Plans lowered so far (a new concrete shape, or a weight update). */
  plansBuilt = 0;

  constructor(graph: Graph, private readonly params: ReadonlyMap<string, Tensor>, options: PlanExecutableOptions = {}) {
    this.bound = bindConstants(graph, params);
    this.body = this.bound.graph;
    this.plans = new LruCache(options.maxPlans ?? 8);
    this.consts = this.bound.constants();
    this.snapshot = this.takeSnapshot(graph);
    for (const c of this.body.constants) {
      if (c.kind === 'literal') this.literals.set(c.name, Tensor.fromStorage(c.dtype, c.shape as number[], fromNumbers(c.dtype, c.data ?? [])));
    }
    this.precision = options.precision ?? 'fp32';
    this.bf16Compute = this.precision === 'bf16' ? options.bf16Compute ?? bf16ComputePlan() : null;
    // bf16 computed in fp32 packs fp32 panels (this.packs), so it has no reduced-precision weights
    this.weights = this.precision === 'fp32' || this.bf16Compute?.compute === 'fp32' ? null
      : new WeightCache(this.precision === 'bf16' ? 'bf16' : 'f16', options.disk ?? null);
    this.note = options.note ?? null;
    this.fallback = planUnavailable ?? null;
    if (!this.fallback && process.env.INFERJIT_PLAN === '0') this.fallback = 'plans disabled by INFERJIT_PLAN=0';
    if (!this.fallback) {
      const bad = this.body.nodes.findIndex((n) => !PLAN_OPS.has(n.op));
      if (bad >= 0) this.fallback = `node ${bad} (${this.body.nodes[bad].op}) has no plan kernel`;
      for (const { path, graph: sub } of bad >= 0 ? [] : subgraphsOf(this.body)) {
        const n = sub.nodes.findIndex((x) => !PLAN_OPS.has(x.op));
        if (n >= 0) { this.fallback = `${path}: node ${n} (${sub.nodes[n].op}) has no plan kernel`; break; }
      }
    }
    if (this.fallback) this.noReducedFallback(this.fallback);
  }

  /** 'plan' (native kernel lists) or 'interpreter' (node by node through eager dispatch). */
  get path(): 'plan' | 'interpreter' { return this.fallback ? 'interpreter' : 'plan'; }
  /** Why the interpreter runs this graph (null on the plan path). */
  get fallbackReason(): string | null { return this.fallback; }

  run(inputs: Tensor[], options?: RunOptions): Tensor[] {
    const prepared = this.prepare(inputs, options?.reuseOutputs === true);
    if (!prepared) return this.interpret(inputs);
    const { plan, outs } = prepared;
    (planAddon as PlanAddon).runPlan(plan.handle, inputs.map((t) => t.data as ArrayBufferView), outs.map((t) => t.data as ArrayBufferView));
    return this.collect(plan, inputs, outs);
  }

  /** Runs on a libuv worker thread; the JS thread stays free. Inputs must not be modified until it
   *  settles. With reuseOutputs the outputs are the plan's kept buffers (see RunOptions). */
  runAsync(inputs: Tensor[], options?: RunOptions): Promise<Tensor[]> {
    const reuse = options?.reuseOutputs === true;
    const job = asyncTail.then(() => new Promise<Tensor[]>((resolve, reject) => {
      const prepared = this.prepare(inputs, reuse);
      if (!prepared) { resolve(this.interpret(inputs)); return; }
      const { plan, outs } = prepared;
      (planAddon as PlanAddon).runPlanAsync(plan.handle, inputs.map((t) => t.data as ArrayBufferView), outs.map((t) => t.data as ArrayBufferView), (err) => {
        if (err) reject(err);
        else resolve(this.collect(plan, inputs, outs));
      });
    }));
    asyncTail = job.catch(() => undefined);
    return job;
  }

  /** Concrete-shape plans kept (LRU). */
  get maxPlans(): number { return this.plans.capacity; }

  /**
   * Keeps at least `n` concrete-shape plans. A caller that knows every shape it will run (a server's
   * step buckets) lowers them all up front; with fewer kept than it cycles through, the LRU would
   * evict and lower them again on the JS thread while it serves.
   */
  reservePlans(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`PlanExecutable.reservePlans: n must be a positive integer, got ${n}`);
    if (n > this.plans.capacity) this.plans.capacity = n;
  }

  /** One line: which path runs the graph and, for plans, the latest plan's shape. */
  describe(): string {
    const note = this.note ? `; ${this.note}` : '';
    if (this.fallback) return `cpu interpreter (${this.fallback})${note}`;
    const s = this.lastPlan?.lowered.stats;
    if (!s) return `cpu plan (no plan built yet)${note}`;
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(2)} MiB`;
    const w = this.weights?.stats;
    const from = w ? `: ${w.packed} packed here, ${w.loaded} loaded from the disk cache` : '';
    const c = this.bf16Compute;
    const bf16 = s.precision === 'bf16' && s.bf16Compute === 'fp32'
      ? ` bf16 as fp32 compute (${s.bf16Rounded} weights rounded to bf16 for the fp32 kernels, fp32 attention; why: ${c!.reason})`
      : s.precision === 'bf16'
      ? ` bf16 (${s.bf16Weights} bf16 weights${from}; ${s.bf16Attention} bf16 attention${w!.from16Bit ? `; ${w!.from16Bit} weights read from bf16 storage, ${s.widened.length} bf16 constants widened to f32` : ''})`
        + ` on ${c?.kernel ?? 'auto'}${c && c.reason !== 'AMX-BF16' ? ` (${c.reason})` : ''}`
      : s.precision === 'fp16' ? ` fp16 (${s.f16Weights} f16 weights${from}, ${w!.from16Bit} read from f16 storage; ${s.widened.length} f16 constants widened to f32)` : '';
    const subs = s.subPlans ? ` (+ ${s.subPlans} control-flow sub-plans, ${s.subKernels} kernels)` : '';
    // which kernels the plan runs (e.g. that a model's moe or paged_attention became one kernel each)
    const counts = new Map<string, number>();
    for (const k of s.kernelNames) counts.set(k, (counts.get(k) ?? 0) + 1);
    const kinds = [...counts].map(([k, n]) => (n > 1 ? `${k}×${n}` : k)).join(', ');
    return `cpu plan${bf16}: ${s.kernels} kernels${subs}, arena ${mib(s.arenaBytes)} (naive ${mib(s.naiveBytes)}), ${s.views} view nodes, ${s.copies} copies, `
      + `${s.inPlace} in place, ${s.packedWeights} packed weights; ${this.plans.size} plan(s) cached; kernels: ${kinds}${note}`;
  }

  /** Reduced-precision weights packed in this process and loaded from the disk cache (all zero in
   *  fp32 plans, whose fp32 panels are always packed in memory). */
  weightStats(): WeightCacheStats {
    return { ...(this.weights?.stats ?? { packed: 0, loaded: 0, written: 0, from16Bit: 0 }) };
  }

  /** Stats of the plan for these inputs (built if needed), or null on the interpreter path. */
  planStats(inputs?: Tensor[]): PlanStats | null {
    if (inputs) return this.prepare(inputs)?.plan.lowered.stats ?? null;
    return this.lastPlan?.lowered.stats ?? null;
  }

  /** Cumulative native time per kernel name of the latest plan (ms), for benchmarks. */
  profile(reset = false): { runs: number; byKernel: Record<string, number> } | null {
    if (!this.lastPlan || !planAddon) return null;
    const p = planAddon.planProfile(this.lastPlan.handle, reset);
    const byKernel: Record<string, number> = {};
    this.lastPlan.lowered.stats.kernelNames.forEach((name, i) => { byKernel[name] = (byKernel[name] ?? 0) + p.ns[i] / 1e6; });
    return { runs: p.runs, byKernel };
  }

  // ---- internals ----

  private prepare(inputs: Tensor[], reuseOutputs = false): { plan: CachedPlan; outs: Tensor[] } | null {
    if (this.fallback) return null;
    this.refresh();
    const key = this.planKey(inputs);
    let plan = this.plans.get(key);
    if (!plan) {
      const bindings = bindInputs(this.body, inputs);
      let lowered: LoweredPlan;
      try {
        lowered = lowerPlan(this.body, bindings, {
          constant: (name) => this.constant(name),
          pack: (name, t, K, N, transB) => this.pack(name, t, K, N, transB),
          precision: this.precision,
          packBf16: (name, t, K, N, transB) => this.packBf16(name, t, K, N, transB),
          packF16: (name, t, K, N, transB) => this.weights!.get(name, t, K, N, transB) as PackedF16Handle,
          constantF32: (name) => this.constantF32(name),
          bf16Compute: this.bf16Compute?.compute,
          bf16Kernel: this.bf16Compute?.kernel,
          packBf16AsF32: (name, t, K, N, transB) => this.pack(`${name}#bf16`, t, K, N, transB, true),
          constantBf16Rounded: (name, t) => this.constantBf16Rounded(name, t),
        });
      } catch (e) {
        if (!(e instanceof PlanUnsupportedError)) throw e;
        this.noReducedFallback(e.message);
        this.fallback = e.message;
        return null;
      }
      this.weights?.flush();
      plan = { handle: (planAddon as PlanAddon).createPlan(lowered.desc), lowered, reused: null };
      this.plans.set(key, plan);
      this.plansBuilt++;
    }
    this.lastPlan = plan;
    const fresh = () => plan.lowered.slots.map((s) => Tensor.empty(s.dtype, s.shape));
    if (!reuseOutputs) return { plan, outs: fresh() };
    return { plan, outs: (plan.reused ??= fresh()) };
  }

  /**
   * The plan key of these inputs (their dims bound to the graph's symbols). A call whose input
   * shapes and dtypes equal the previous call's reuses its key without binding again (a decode
   * loop repeats the same shapes every step; bindInputs checks and names every input).
   */
  private planKey(inputs: Tensor[]): string {
    const last = this.lastBinding;
    if (last && last.shapes.length === inputs.length) {
      let same = true;
      for (let i = 0; same && i < inputs.length; i++) {
        const t = inputs[i], shape = last.shapes[i];
        if (!(t instanceof Tensor) || t.dtype !== last.dtypes[i] || t.shape.length !== shape.length) same = false;
        else for (let k = 0; k < shape.length; k++) if (t.shape[k] !== shape[k]) { same = false; break; }
      }
      if (same) return last.key;
    }
    const bindings = bindInputs(this.body, inputs);
    const key = [...bindings].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(',');
    this.lastBinding = { shapes: inputs.map((t) => [...t.shape]), dtypes: inputs.map((t) => t.dtype), key };
    return key;
  }

  private collect(plan: CachedPlan, inputs: Tensor[], outs: Tensor[]): Tensor[] {
    return plan.lowered.outputs.map((o) => (o.kind === 'slot' ? outs[o.slot] : o.kind === 'input' ? inputs[o.index] : this.constant(o.name)));
  }

  private interpret(inputs: Tensor[]): Tensor[] {
    this.refresh();
    const consts = new Map(this.consts);
    for (const [k, t] of this.literals) consts.set(k, t);
    return withEagerBackend('auto', () => interpret(this.body, inputs, consts));
  }

  private constant(name: string): Tensor {
    const t = this.consts.get(name) ?? this.literals.get(name);
    if (!t) throw new Error(`cpu plan: constant @${name} has no tensor`);
    return t;
  }

  private constantF32(name: string): Tensor {
    let t = this.widened.get(name);
    if (!t) {
      t = withEagerBackend('auto', () => this.constant(name).cast('f32'));
      this.widened.set(name, t);
    }
    return t;
  }

  /** fp32 panels of weight t (cached by name); roundToBf16: of its values rounded to bf16 (a
   *  temporary copy; f32 and 16-bit weights alike). */
  private pack(name: string, t: Tensor, K: number, N: number, transB: boolean, roundToBf16 = false): PackedHandle {
    const key = `${name}|${transB ? 't' : 'n'}`;
    let h = this.packs.get(key);
    if (!h) {
      const src = roundToBf16 ? roundedToBf16(t) : t;
      h = (planAddon as PlanAddon).packB(src.data as Float32Array, K, N, transB);
      this.packs.set(key, h);
    }
    return h;
  }

  private constantBf16Rounded(name: string, t: Tensor): Tensor {
    let r = this.rounded.get(name);
    if (!r) {
      r = roundedToBf16(t);
      this.rounded.set(name, r);
    }
    return r;
  }

  private packBf16(name: string, t: Tensor, K: number, N: number, transB: boolean): PackedBf16Handle {
    return this.weights!.get(name, t, K, N, transB) as PackedBf16Handle;
  }

  /** A reduced-precision executable must not silently run in fp32 on the interpreter. */
  private noReducedFallback(why: string): void {
    if (this.precision !== 'fp32') throw new Error(`inferenceJit: precision '${this.precision}' runs only as a native cpu plan, and this graph cannot: ${why}`);
  }

  /** Parameters updated in place since the plans were built: recompute derived constants, repack
   *  weights and lower plans again (their constant pointers stay valid; packed copies do not). */
  private refresh(): void {
    if (this.snapshot.every((s) => s.tensor.version === s.version)) return;
    this.consts = this.bound.constants();
    this.packs.clear();
    this.weights?.clear();
    this.widened.clear();
    this.rounded.clear();
    this.plans.clear();
    this.lastPlan = null;
    this.snapshot = this.snapshot.map((s) => ({ tensor: s.tensor, version: s.tensor.version }));
  }

  private takeSnapshot(graph: Graph): { tensor: Tensor; version: number }[] {
    const out: { tensor: Tensor; version: number }[] = [];
    for (const c of graph.constants) {
      if (c.kind !== 'param') continue;
      const t = this.params.get(c.name);
      if (t) out.push({ tensor: t, version: t.version });
    }
    return out;
  }
}

/** Whether native plans can run here (else why not). */
export const planSupportReason = (): string | null => planUnavailable ?? null;
