// A quantized decoder's step graph for one sequence, optimized and lowered to a native plan, with the
// plan's logits (all positions): what the W8A8 and rotation tests compare against the interpreter.
import { traceStep, flatInputs } from '../../src/quant/calibrate.js';
import { prefillArgs } from '../../src/quant/step.js';
import { applyQuantPlan } from '../../src/quant/graph-passes.js';
import { optimize } from '../../src/passes/index.js';
import { PlanExecutable } from '../../src/backends/cpu/plan/executable.js';
import type { QuantizedDecoder } from '../../src/quant/decoder.js';

export function compiledQuantStep(model: Parameters<typeof traceStep>[0], q: QuantizedDecoder, seq: number[]): { exe: PlanExecutable; logits: Float32Array } {
  const traced = traceStep(model, prefillArgs(model, seq, { allLogits: true }));
  const graph = optimize(applyQuantPlan(traced.graph, q.plan, (n) => ({ dtype: q.params.get(n)!.dtype, shape: [...q.params.get(n)!.shape] })));
  const constants = new Map(traced.constants);
  for (const [name, t] of q.params) constants.set(name, t);
  const exe = new PlanExecutable(graph, constants);
  const logits = Float32Array.from(exe.run(flatInputs(prefillArgs(model, seq, { allLogits: true })))[0].toFlatArray());
  return { exe, logits };
}
