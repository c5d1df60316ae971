// What each graph pass buys: a stack of pre-norm transformer blocks compiled with inferenceJit on
// the cpu device, timed with all passes, with each pass disabled in turn, with none, and eagerly.
// Until the native plan executor lands, a compiled graph is interpreted node by node on the native
// eager kernels, so a pass pays off when it removes nodes or swaps several kernels for one fused
// kernel. Also prints each pass's rewrite count and the memory plan of the optimized graph.
// Run: node --expose-gc --import tsx bench/passes.ts [--dim 384] [--heads 6] [--depth 4] [--seq 256] [--batch 1] [--rounds 5]
// (npx tsx bench/passes.ts works too, without the collections between timings)
import { backendInfo, getNumThreads, inferenceJit, randn, type Tensor } from '../src/index.js';
import { trace } from '../src/trace/index.js';
import { DEFAULT_PASSES, runPasses, planMemory, describePlan } from '../src/passes/index.js';
import { getJitBackend } from '../src/jit/backend.js';
import { TinyTransformer } from '../examples/models/transformer.js';
import { timeIt, settle, table } from './lib/timing.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const dim = arg('dim', 384), heads = arg('heads', 6), depth = arg('depth', 4), seq = arg('seq', 256), batch = arg('batch', 1);

const info = backendInfo();
console.log(`transformer stack: dim ${dim}, heads ${heads}, depth ${depth}, seq ${seq}, batch ${batch}; ` +
  `${info.native ? `native ${info.isa}` : `reference kernels (${info.reason})`}, ${getNumThreads()} threads\n`);

const model = new TinyTransformer({ dim, heads, depth });
const x = randn([batch, seq, dim], { seed: 1 });

// Rewrites per pass and the memory plan, on the graph the cpu device compiles.
const traced = trace((t: Tensor) => model.forward(t), [x], { module: model });
const { graph: optimized, stats } = runPasses(traced.graph, DEFAULT_PASSES, { target: getJitBackend('cpu').target(), verify: false });
const plan = planMemory(optimized, new Map());

const names = DEFAULT_PASSES.map((p) => p.name);
const configs: { label: string; run: () => unknown; nodes: number | null }[] = [];
const compiled = (label: string, disable: string[]) => {
  const f = inferenceJit(model, { device: 'cpu', cache: 'memory', passes: { disable } });
  f(x); // compile outside the timing
  configs.push({ label, run: () => f(x), nodes: f.compiledEntries()[0].optimized.nodes.length });
};
compiled('all passes', []);
for (const n of names) compiled(`without ${n}`, [n]);
compiled('no passes', names);
configs.push({ label: 'eager', run: () => model.forward(x), nodes: null });

// Round robin: every config is timed once per round and keeps its best round median, so load from
// other processes on the machine hits every config alike instead of whichever ran last.
// Each round also rotates the order, so no config always runs right after the garbage-heavy eager
// one; with --expose-gc the heap is collected before each timing.
const rounds = arg('rounds', 5);
const gc = (globalThis as { gc?: () => void }).gc;
const times = new Map<string, number>();
for (let r = 0; r < rounds; r++) {
  for (const c of [...configs.slice(r % configs.length), ...configs.slice(0, r % configs.length)]) {
    gc?.();
    await settle(20);
    const t = (await timeIt(c.run, 300, 3, r === 0 ? 2 : 1)).medianMs;
    times.set(c.label, Math.min(times.get(c.label) ?? Infinity, t));
  }
}
const base = times.get('all passes')!;
const rows = configs.map((c) => {
  const ms = times.get(c.label)!;
  const name = c.label.startsWith('without ') ? c.label.slice(8) : null;
  const st = name ? stats.find((s) => s.name === name) : null;
  return [c.label, ms.toFixed(2), (ms / base).toFixed(3), c.nodes ?? '-', st ? st.rewrites : '-', name ? `${(((ms - base) / ms) * 100).toFixed(1)}%` : '-'];
});
console.log(table(['config', 'median ms', 'vs all passes', 'nodes', 'rewrites (all-pass run)', 'time saved by the pass'], rows));
console.log(`\ncaptured ${traced.graph.nodes.length} nodes -> optimized ${optimized.nodes.length}; memory plan: ${describePlan(plan)}`);
const ratio = times.get('eager')! / base;
console.log(`compiled (all passes) vs eager: ${ratio.toFixed(2)}x`);
console.log(JSON.stringify({
  bench: 'passes', dim, heads, depth, seq, batch, native: info.native,
  all_ms: +base.toFixed(3), eager_ms: +times.get('eager')!.toFixed(3), no_passes_ms: +times.get('no passes')!.toFixed(3),
  without: Object.fromEntries(names.map((n) => [n, +times.get(`without ${n}`)!.toFixed(3)])),
  arena_bytes: plan.arenaBytes, naive_bytes: plan.naiveBytes,
}));
