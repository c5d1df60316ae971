// The eager demo (`npm run demo`): a two-block transformer (dim 384, 6 heads) on a [1, 256, 384]
// input, run op by op with no compilation. Prints the output shape, a checksum and ms per forward.
// Usage: tsx examples/eager-transformer.ts [--runs N] [--seq L]
import { manualSeed, randn, ops } from '../src/index.js';
import { TinyTransformer } from './models/transformer.js';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`--${name} needs a positive integer, got ${process.argv[i + 1]}`);
  return v;
}

const runs = flag('runs', 3);
const seq = flag('seq', 256);
const config = { dim: 384, heads: 6, depth: 2 };

manualSeed(0);
const model = new TinyTransformer(config).eval();
const x = randn([1, seq, config.dim], { seed: 1 });

const backend = ops.getEagerBackend() === 'auto' ? (ops.isNativeAvailable() ? 'native cpu' : 'reference (pure TypeScript; native addon not built)') : ops.getEagerBackend();
console.log(`TinyTransformer dim=${config.dim} heads=${config.heads} depth=${config.depth}: ${(model.numParameters() / 1e6).toFixed(2)}M parameters`);
console.log(`eager backend: ${backend}`);

let t0 = performance.now();
let y = model.forward(x); // warm-up: first-call costs (JIT of the kernels' JS, allocations)
console.log(`warm-up forward: ${(performance.now() - t0).toFixed(1)} ms`);

const times: number[] = [];
for (let i = 0; i < runs; i++) {
  t0 = performance.now();
  y = model.forward(x);
  times.push(performance.now() - t0);
}

const v = y.toFlatArray();
let sum = 0, absSum = 0;
for (const e of v) { sum += e; absSum += Math.abs(e); }
times.sort((a, b) => a - b);
console.log(`input  [${x.shape.join(', ')}]`);
console.log(`output [${y.shape.join(', ')}] ${y.dtype}`);
console.log(`checksum: sum=${sum.toPrecision(7)} meanAbs=${(absSum / v.length).toFixed(6)}`);
console.log(`time per forward: median ${times[times.length >> 1].toFixed(1)} ms, min ${times[0].toFixed(1)} ms over ${runs} runs`);
