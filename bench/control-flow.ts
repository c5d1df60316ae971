// Control-flow benchmark: a tensor-dependent while loop (a damped update until an iteration count
// held in a tensor is reached) run as a native plan with sub-plans (native/plan/control_flow.cc:
// no JavaScript between iterations) against the graph interpreter (INFERJIT_PLAN=0: native
// kernels, one JS step per node and per iteration), on the same traced graph.
// Run: npx tsx bench/control-flow.ts [--size 4096] [--iterations 200] [--round-ms 400]
import { trace } from '../src/trace/index.js';
import { convertWhile } from '../src/trace/transform/runtime.js';
import { randn, full, backendInfo, getNumThreads, type Tensor } from '../src/index.js';
import { PlanExecutable } from '../src/backends/cpu/plan/executable.js';
import { compare, table } from './lib/timing.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`bench/control-flow: --${name} needs a positive number, got ${process.argv[i + 1]}`);
  return v;
};
const SIZE = arg('size', 4096), ITERS = arg('iterations', 200), ROUND_MS = arg('round-ms', 400);

/** What the dynamic-to-static transform writes for `while (i < n) { x = x * 0.999 + 0.001; i++ }`. */
const loop = (x: Tensor, n: Tensor): Tensor => {
  let i = full([], 0);
  convertWhile(() => i.less(n), () => { x = x.mul(0.999).add(0.001).tanh(); i = i.add(1); }, () => [x, i], (v) => { [x, i] = v as Tensor[]; }, ['x', 'i']);
  return x;
};

const x = randn([SIZE], { seed: 1 }), n = full([], ITERS);
const traced = trace(loop, [x, n]);
const plan = new PlanExecutable(traced.graph, traced.constants);
process.env.INFERJIT_PLAN = '0';
const interp = new PlanExecutable(traced.graph, traced.constants);
delete process.env.INFERJIT_PLAN;
if (plan.path !== 'plan') throw new Error(`bench/control-flow: the loop did not lower to a plan (${plan.fallbackReason})`);
const a = plan.run([x, n])[0].toFlatArray(), b = interp.run([x, n])[0].toFlatArray();
const diff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
if (diff > 1e-5) throw new Error(`bench/control-flow: plan and interpreter differ by ${diff}`);

const [tp, ti] = await compare(() => plan.run([x, n]), () => interp.run([x, n]), 5, ROUND_MS);
const ratio = ti.medianMs / tp.medianMs;
const info = backendInfo();
console.log(`inferjit ${info.native ? info.isa : 'no native backend'}, ${getNumThreads()} threads; while loop of ${ITERS} iterations over ${SIZE} floats\n${plan.describe()}\n`);
console.log(table(['path', 'median ms', 'min ms', 'us / iteration'], [
  ['native plan (sub-plans)', tp.medianMs.toFixed(3), tp.minMs.toFixed(3), (tp.medianMs * 1000 / ITERS).toFixed(1)],
  ['graph interpreter', ti.medianMs.toFixed(3), ti.minMs.toFixed(3), (ti.medianMs * 1000 / ITERS).toFixed(1)],
]));
console.log(`\nthe native plan is ${ratio.toFixed(2)}x the interpreter's speed`);
console.log(JSON.stringify({ bench: 'control-flow', size: SIZE, iterations: ITERS, threads: getNumThreads(), plan_ms: +tp.medianMs.toFixed(3), interpreter_ms: +ti.medianMs.toFixed(3), speedup: +ratio.toFixed(3) }));
