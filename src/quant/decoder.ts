// A quantized decoder: the original decoder module (its forward is still the source of truth),
// the quantization plan, and the parameters the plan replaces or adds. forward() traces the
// module's step for the call's shapes (once per shape), rewrites the graph with the plan
// (applyQuantPlan: smoothing/shift nodes, fake_quant before quantized linears and KV writes) and
// interprets it with the replaced parameters, so it runs anywhere the reference kernels do and
// fits the StepEngine's decoder interface (use it with { compile: false }).
import { Tensor } from '../tensor/tensor.js';
import type { Graph } from '../ir/graph.js';
import type { StepInputs, StepDecoder } from '../llm/step-engine.js';
import { interpret } from '../backends/reference/interpret.js';
import { traceStep, flatInputs, type QuantizableDecoder } from './calibrate.js';
import type { TraceResult } from '../trace/index.js';
import { applyQuantPlan, type QuantPlan } from './graph-passes.js';
import type { QuantizedMatrix } from './gptq.js';
import { kvOnPools, type QuantizeOptions } from './options.js';
import type { KvCacheDtype } from '../llm/paged-runner.js';

/** What quantize() decided at one site (for reports and the artifact's config). */
export interface SiteReport {
  key: string;
  fold: 'norm' | 'linear' | 'none';
  /** Whether the site's activation is Hadamard-rotated after smoothing (option rotate). */
  rotated?: boolean;
  /** SmoothQuant α, or PSS's per-piece α (pieces by increasing activation magnitude), or AWQ's α. */
  alphas: number[];
  /** Sampled output error Σ‖ΔY‖² of the chosen factors, and of plain (unsmoothed) quantization. */
  error: number | null;
  baselineError: number | null;
  /** max |X_j| over channels / median: how outlier-heavy the activation is. */
  outlierRatio: number;
}

export type ResolvedOptions = Omit<QuantizeOptions, 'calibration'> & { groupSize: number | undefined; calibrationTokens: number };

export class QuantizedDecoder implements StepDecoder {
  readonly config: StepDecoder['config'];
  readonly maxPositions?: number;
  #graphs = new Map<string, { graph: Graph; constants: Map<string, Tensor> }>();

  /** 'int8' where the KV cache runs on the engine's int8 page pools (kvCache 'int8' on a real
   *  kernel): StepEngine's default pools, and the pools prefillArgs builds for evaluation. */
  readonly kvDtype?: KvCacheDtype;

  constructor(
    readonly model: QuantizableDecoder,
    readonly plan: QuantPlan,
    /** Parameters by graph name: replaced module tensors (folded, dequantized) and new constants. */
    readonly params: Map<string, Tensor>,
    /** The quantized linears (codes and scales), by weight name. */
    readonly weights: Map<string, QuantizedMatrix>,
    readonly options: ResolvedOptions,
    readonly report: SiteReport[],
  ) {
    this.config = model.config;
    this.maxPositions = model.maxPositions;
    if (kvOnPools(options)) this.kvDtype = 'int8';
  }

  /** Every tensor the quantized graph reads, by its graph name (the module's parameters with the
   *  replaced ones swapped in, then the added ones). Tracing this decoder (inferenceJit, the
   *  StepEngine's default compile) finds its weights here and keeps them named parameters rather
   *  than baking them into the graph as literals. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<string>();
    for (const [name, t] of this.model.namedParameters()) { out.push([name, this.params.get(name) ?? t]); seen.add(name); }
    for (const [name, t] of this.params) if (!seen.has(name)) out.push([name, t]);
    return out;
  }

  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    const { graph, constants, inputs } = this.lowered(step, kPools, vPools);
    return interpret(graph, inputs, constants)[0];
  }

  /** The rewritten graph of the step for these arguments' shapes (traced once per shape), the
   *  tensors it reads by name, and the arguments as its flat inputs. `traces` shares the module's
   *  trace between quantized decoders of one model (PSS's trial models: the module is the same,
   *  only the plan and parameters differ). */
  lowered(step: StepInputs, kPools: Tensor[], vPools: Tensor[], traces?: Map<string, TraceResult>): { graph: Graph; constants: Map<string, Tensor>; inputs: Tensor[] } {
    const args = { step, kPools, vPools };
    const inputs = flatInputs(args);
    const key = inputs.map((t) => `${t.dtype}[${t.shape.join(',')}]`).join(' ');
    let g = this.#graphs.get(key);
    if (!g) {
      let traced = traces?.get(key);
      if (!traced) { traced = traceStep(this.model, args); traces?.set(key, traced); }
      const metaOf = (name: string): { dtype: Tensor['dtype']; shape: number[] } => {
        const t = this.params.get(name);
        if (!t) throw new Error(`quantize: the plan names parameter "${name}", which this quantized model does not hold`);
        return { dtype: t.dtype, shape: [...t.shape] };
      };
      const graph = applyQuantPlan(traced.graph, this.plan, metaOf);
      const constants = new Map(traced.constants);
      for (const [name, t] of this.params) constants.set(name, t);
      g = { graph, constants };
      this.#graphs.set(key, g);
    }
    return { ...g, inputs };
  }
}
