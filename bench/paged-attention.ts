// The paged_attention decode kernel alone: one layer's decode step of 16 sequences (one new token
// each, kv_write included) on f16 pools, as the compiled LLM step runs it, for the 110m shape (12
// heads, 12 kv heads) and the 1.1b shape (32 heads, 4 kv heads: GQA 8). Reports ms per layer-step
// (wall and process CPU, best of rounds) and the KV bytes read per second. No peer runs the kernel
// alone; the end-to-end comparison with llama.cpp is bench/llm.ts.
//   npx tsx bench/paged-attention.ts [--contexts 128,512] [--threads 2] [--rounds 5] [--layers 1]
// --layers N: N distinct K/V pools, run in turn, as a step's layers are: with the 1.1b's 22 the pools
// (3 MB each at context 192) no longer sit in cache between runs, and the KV streams from memory as in
// a served decode step; the default (1) times one layer's pool, cache-warm after the first run.
import { parseArgs } from 'node:util';
import { randn, fromArray, ops, type Tensor } from '../src/index.js';
import { trace } from '../src/trace/index.js';
import { optimize } from '../src/passes/index.js';
import { PlanExecutable } from '../src/backends/cpu/plan/executable.js';
import { setNumThreads, getNumThreads } from '../src/backends/cpu/index.js';

const { values: args } = parseArgs({
  options: { contexts: { type: 'string', default: '128,512' }, threads: { type: 'string' }, rounds: { type: 'string', default: '5' }, layers: { type: 'string', default: '1' } },
});
const contexts = args.contexts!.split(',').map(Number);
if (contexts.some((c) => !Number.isInteger(c) || c < 1)) throw new RangeError(`--contexts: whole numbers ≥ 1, got ${args.contexts}`);
if (args.threads !== undefined) setNumThreads(Number(args.threads));
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`--rounds must be a whole number ≥ 1, got ${args.rounds}`);
const layers = Number(args.layers);
if (!Number.isInteger(layers) || layers < 1) throw new RangeError(`--layers must be a whole number ≥ 1, got ${args.layers}`);

const S = 16, D = 64, BS = 16;
const shapes = [{ name: '110m', H: 12, Hkv: 12 }, { name: '1.1b', H: 32, Hkv: 4 }];
const rows: Record<string, unknown>[] = [];
console.log(`paged_attention decode, ${S} sequences, head dim ${D}, pages of ${BS}, f16 pools, ${getNumThreads()} threads, best of ${rounds} rounds, ${layers} layer pool${layers > 1 ? 's' : ''} in turn\n`);
console.log('| shape | context | ms per layer-step (wall) | ms CPU | KV GB/s (wall) |');
console.log('|---|---|---|---|---|');
for (const { name, H, Hkv } of shapes) {
  for (const L of contexts) {
    const per = Math.ceil(L / BS), NB = S * per;
    // pages scattered over the pool, as a long-running server's are
    const tables = Int32Array.from({ length: S * per }, (_, i) => (i * 7919) % NB);
    const slots = Int32Array.from({ length: S }, (_, i) => tables[i * per + Math.floor((L - 1) / BS)] * BS + ((L - 1) % BS));
    const perLayer = Array.from({ length: layers }, (_, l) => [randn([S, H, D], { seed: 1 }), randn([S, Hkv, D], { seed: 2 }), randn([S, Hkv, D], { seed: 3 }),
      randn([NB, Hkv, BS, D], { seed: 4 + 2 * l }).cast('f16'), randn([NB, Hkv, BS, D], { seed: 5 + 2 * l }).cast('f16'),
      fromArray(tables, [S, per], 'i32'), fromArray(new Int32Array(S).fill(L), [S], 'i32'),
      fromArray(Int32Array.from({ length: S + 1 }, (_, i) => i), [S + 1], 'i32'), fromArray(slots, [S], 'i32')]);
    const inputs = perLayer[0]!;
    const fn = (q: Tensor, k: Tensor, v: Tensor, kp: Tensor, vp: Tensor, bt: Tensor, sl: Tensor, qs: Tensor, sv: Tensor) =>
      ops.pagedAttention(q, ops.kvWrite(kp, k, sv), ops.kvWrite(vp, v, sv), bt, sl, qs, {});
    const t = trace(fn, inputs);
    const exe = new PlanExecutable(optimize(t.graph), t.constants);
    exe.run(inputs);
    const reps = Math.max(5, Math.round(4000 / L), 2 * layers);
    let wall = Infinity, cpu = Infinity;
    for (let r = 0; r < rounds; r++) {
      const c0 = process.cpuUsage(), t0 = performance.now();
      for (let i = 0; i < reps; i++) exe.run(perLayer[i % layers]!, { reuseOutputs: true });
      const c = process.cpuUsage(c0);
      wall = Math.min(wall, (performance.now() - t0) / reps);
      cpu = Math.min(cpu, (c.user + c.system) / 1000 / reps);
    }
    const gbs = (S * Hkv * L * D * 2 * 2) / (wall / 1000) / 1e9;
    console.log(`| ${name} (${H} heads, ${Hkv} kv) | ${L} | ${wall.toFixed(3)} | ${cpu.toFixed(3)} | ${gbs.toFixed(1)} |`);
    rows.push({ shape: name, context: L, wall_ms: +wall.toFixed(3), cpu_ms: +cpu.toFixed(3), kv_gbs: +gbs.toFixed(2) });
  }
}
console.log(JSON.stringify({ bench: 'paged-attention', threads: getNumThreads(), seqs: S, layers, rows }));
