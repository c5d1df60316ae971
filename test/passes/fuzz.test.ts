// Differential fuzzing: seeded random programs over the op set (elementwise math with broadcasts,
// GEMMs with parameter weights, decomposed and fused norms, attention written out, adaLN
// modulation, reshapes, permutes, splits, reductions) are traced, optimized with every pass, and
// the optimized graph's results compared with eager execution of the same program.
// INFERJIT_FUZZ_CASES=N runs N cases (default 40); INFERJIT_FUZZ_SEED picks the first seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as O } from '../../src/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { randn } from '../../src/tensor/creation.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { optimize } from '../../src/passes/index.js';
import { traced, run, assertClose } from './helpers.js';

const CASES = Number(process.env.INFERJIT_FUZZ_CASES ?? 40);
const FIRST_SEED = Number(process.env.INFERJIT_FUZZ_SEED ?? 1);

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const B = 2, T = 4, D = 8, H = 2;
/** A target without the reference-only fused ops (what the native cpu device allows today). */
const NATIVE_LIKE = { name: 'native-like', canEmit: (op: string) => !['fused_elementwise', 'layer_norm_modulate', 'attention_fused'].includes(op) };

type Step = (pool: Tensor[], p: Record<string, Tensor>, pick: () => Tensor, u: () => number) => Tensor;

/** Each step reads from the pool of [B, T, D] tensors and returns a new one (values stay O(1)). */
function steps(): Record<string, Step> {
  const norm = (x: Tensor, eps: number) => { const d = x.sub(x.mean(-1, true)); return d.mul(d.pow(2).mean(-1, true).add(eps).rsqrt()); };
  return {
    unary: (_pool, _p, pick, u) => {
      const fns = [(x: Tensor) => x.tanh(), (x: Tensor) => x.sigmoid(), (x: Tensor) => x.silu(), (x: Tensor) => x.gelu(), (x: Tensor) => x.relu(), (x: Tensor) => x.neg(), (x: Tensor) => O.gelu(x, 'tanh')];
      return fns[Math.floor(u() * fns.length)](pick());
    },
    tanhAdd: (_pool, _p, pick) => pick().add(pick()).tanh(),
    scaleShift: (_pool, p, pick) => pick().mul(p.vec).add(0.5).sub(p.vec2),
    maxMin: (_pool, _p, pick) => O.maximum(pick(), pick().mul(0.5)).sub(O.minimum(pick(), 0)),
    linearAct: (_pool, p, pick) => O.linear(pick(), p.w, p.b).silu(),
    matmulBias: (_pool, p, pick) => O.matmul(pick(), p.wkn).add(p.b).add(pick()),
    residualLn: (_pool, p, pick) => O.layerNorm(pick().add(pick()), D, p.g, p.b),
    decomposedLn: (_pool, p, pick) => norm(pick(), 1e-5).mul(p.g).add(p.b),
    decomposedRms: (_pool, _p, pick) => { const x = pick(); return x.mul(x.mul(x).mean(-1, true).add(1e-6).rsqrt()); },
    modulate: (_pool, p, pick) => {
      const [shift, scale] = O.linear(pick().mean(1), p.wmod).chunk(2, 1);
      return O.layerNorm(pick(), D, null, null, 1e-6).mul(scale.unsqueeze(1).add(1)).add(shift.unsqueeze(1));
    },
    attention: (_pool, p, pick) => {
      const heads = (x: Tensor) => x.reshape([B, T, H, D / H]).transpose(1, 2);
      const [q, k, v] = [pick(), pick(), pick()].map(heads);
      const o = O.matmul(q, k.transpose(-2, -1)).mul(1 / Math.sqrt(D / H)).softmax(-1).matmul(v);
      return O.linear(o.transpose(1, 2).reshape([B, T, D]), p.w);
    },
    sdpaHeads: (_pool, _p, pick) => {
      const [q, k, v] = O.split(O.concat([pick(), pick(), pick()], -1), D, -1).map((x) => x.reshape([B, T, H, D / H]).transpose(1, 2));
      return O.scaledDotProductAttention(q, k, v, { causal: true }).transpose(1, 2).reshape([B, T, D]);
    },
    qkvSeparate: (_pool, p, pick) => { const x = pick(); return O.linear(x, p.w, p.b).mul(O.linear(x, p.w2, p.b2).sigmoid()); },
    movement: (_pool, _p, pick) => pick().reshape([B, T * D]).reshape([B, T, 2, D / 2]).permute(0, 2, 1, 3).permute(0, 2, 1, 3).reshape([B, T, D]),
    reduceBroadcast: (_pool, _p, pick) => pick().sub(pick().sum([1], true).mul(0.25)),
  };
}

function buildCase(seed: number) {
  const rand = prng(seed);
  const r = (shape: number[], k: number, scale = 1) => randn(shape, { seed: seed * 1000 + k }).mul(scale);
  const params: Record<string, Tensor> = {
    w: r([D, D], 1, 1 / Math.sqrt(D)), w2: r([D, D], 2, 1 / Math.sqrt(D)), wkn: r([D, D], 3, 1 / Math.sqrt(D)),
    b: r([D], 4, 0.1), b2: r([D], 5, 0.1), g: r([D], 6, 0.5).add(1), vec: r([D], 7), vec2: r([D], 8), wmod: r([2 * D, D], 9, 0.3),
  };
  const table = steps();
  const names = Object.keys(table);
  const length = 3 + Math.floor(rand() * 6);
  const chosen = Array.from({ length }, () => names[Math.floor(rand() * names.length)]);
  const picks = Array.from({ length: length * 4 }, () => rand());
  const fn = (...inputs: Tensor[]): Tensor[] => {
    const pool = [...inputs];
    let k = 0;
    const u = () => picks[k++ % picks.length];
    const pick = () => pool[Math.floor(u() * pool.length)];
    for (const name of chosen) pool.push(table[name](pool, params, pick, u));
    return pool.slice(inputs.length).filter((_, i) => i === chosen.length - 1 || picks[i] < 0.3);
  };
  const inputs = [r([B, T, D], 10), r([B, T, D], 11)];
  return { fn, inputs, params, chosen };
}

test(`${CASES} random programs: all passes vs eager`, () => {
  const fired = new Set<string>();
  for (let seed = FIRST_SEED; seed < FIRST_SEED + CASES; seed++) {
    const { fn, inputs, params, chosen } = buildCase(seed);
    const t = traced(fn, inputs, params);
    const g = optimize(t.graph, { verify: true });
    for (const n of g.nodes) fired.add(n.op);
    const want = withEagerBackend('reference', () => fn(...inputs));
    const got = run(g, inputs, t.constants);
    assert.equal(got.length, want.length);
    // up to ~8 chained steps, each fused op skipping a few f32 roundings, norms and softmax
    // amplifying differences by their 1/std: 1e-4 on O(1) values
    got.forEach((x, i) => assertClose(x, want[i], { atol: 1e-4, rtol: 1e-4 }, `seed ${seed} (${chosen.join(', ')}) output ${i}`));
    // the pipeline as the native cpu device runs it (fusions limited to ops with native kernels)
    const cpu = optimize(t.graph, { verify: true, target: NATIVE_LIKE });
    run(cpu, inputs, t.constants).forEach((x, i) => assertClose(x, want[i], { atol: 1e-4, rtol: 1e-4 }, `seed ${seed} cpu target output ${i}`));
  }
  // the generator exercises the fusions, not only the clean-up passes
  if (CASES >= 40) {
    for (const op of ['linear_fused', 'layer_norm', 'add_layer_norm', 'rms_norm', 'layer_norm_modulate', 'fused_elementwise', 'scaled_dot_product_attention', 'attention_fused']) assert.ok(fired.has(op), `no case produced ${op}`);
  }
});
