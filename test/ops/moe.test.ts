// moe (Mixtral's expert FFN): the native eager kernel and the plan's grouped-GEMM kernel against the
// float64 reference kernel on random inputs: one token, odd token counts, odd hidden sizes, experts
// that receive no token, every token routed to one expert (the GEMM-tile path), 8 experts top-2
// and top-1, f32 and quantized (Q8_0, Q4_0, mixed with Q4_K) expert stacks; and the routing itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, fromArray, type Tensor } from '../../src/index.js';
import { moe, quantizeExperts } from '../../src/ops/index.js';
import { route } from '../../src/ops/moe.js';
import { kernelBackends } from '../../src/ops/registry.js';
import { withEagerBackend, isNativeAvailable } from '../../src/ops/dispatch.js';
import { trace } from '../../src/trace/index.js';
import { optimize } from '../../src/passes/index.js';
import { PlanExecutable } from '../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import type { QuantFormat } from '../../src/tensor/quantized.js';
import { setQuantPacking } from '../../src/backends/cpu/plan/rules/quant.js';

const nativeSkip = isNativeAvailable() && kernelBackends('moe').includes('cpu') ? false : 'native moe kernel not built';
const planSkip = planAddon ? false : 'native plan executor not built';
let seed = 7100;

interface Case {
  name: string; T: number; H: number; F: number; E?: number; k?: number;
  /** Formats of the gate, up and down stacks (default f32). */
  formats?: [QuantFormat | 'f32', QuantFormat | 'f32', QuantFormat | 'f32'];
  /** Adds to every token's logits (e.g. +20 on one expert routes everything there). */
  bias?: number[];
  tol?: number;
}

function makeCase(c: Case) {
  const E = c.E ?? 8;
  const stack = (N: number, K: number, f: QuantFormat | 'f32'): Tensor => {
    const w = randn([E, N, K], { seed: seed++ }).mul(1 / Math.sqrt(K));
    return f === 'f32' ? w : quantizeExperts(w, f);
  };
  const [fg, fu, fd] = c.formats ?? ['f32', 'f32', 'f32'];
  const logits = Array.from(randn([c.T, E], { seed: seed++ }).toFlatArray());
  if (c.bias) for (let t = 0; t < c.T; t++) for (let e = 0; e < E; e++) logits[t * E + e] += c.bias[e] ?? 0;
  return {
    x: randn([c.T, c.H], { seed: seed++ }),
    logits: fromArray(logits, [c.T, E], 'f32'),
    gate: stack(c.F, c.H, fg), up: stack(c.F, c.H, fu), down: stack(c.H, c.F, fd),
    k: c.k ?? 2, E,
  };
}

function maxRelErr(got: Tensor, want: Tensor): number {
  const g = got.data as Float32Array, w = want.data as Float32Array;
  assert.equal(g.length, w.length);
  let worst = 0, scale = 1e-6;
  for (let i = 0; i < w.length; i++) { worst = Math.max(worst, Math.abs(g[i] - w[i])); scale = Math.max(scale, Math.abs(w[i])); }
  return worst / scale;
}

const cases: Case[] = [
  { name: 'one token (6 of 8 experts get none), odd sizes', T: 1, H: 13, F: 29 },
  { name: 'odd token count, odd hidden sizes', T: 7, H: 33, F: 47 },
  { name: 'expert 5 receives no token', T: 9, H: 24, F: 40, bias: [0, 0, 0, 0, 0, -50] },
  { name: 'every token to expert 3 (top-2: 3 and one other)', T: 40, H: 40, F: 72, bias: [0, 0, 0, 30] },
  { name: 'every token to expert 6, top-1 (one GEMM over all tokens)', T: 37, H: 35, F: 70, k: 1, bias: [0, 0, 0, 0, 0, 0, 30] },
  { name: 'prefill-sized batch spread over the experts', T: 96, H: 48, F: 80 },
  { name: 'four experts, top-3', T: 5, H: 16, F: 20, E: 4, k: 3 },
  { name: 'Q8_0 experts', T: 5, H: 64, F: 96, formats: ['q8_0', 'q8_0', 'q8_0'], tol: 2e-2 },
  { name: 'Q4_0 experts, every token to expert 2', T: 33, H: 64, F: 96, formats: ['q4_0', 'q4_0', 'q4_0'], bias: [0, 0, 30], tol: 2e-2 },
  { name: 'Q4_0 experts, one token', T: 1, H: 96, F: 64, formats: ['q4_0', 'q4_0', 'q4_0'], tol: 2e-2 },
  { name: 'mixed formats: Q4_K gate/up, Q8_0 down', T: 6, H: 256, F: 64, formats: ['q4_k', 'q4_k', 'q8_0'], tol: 2e-2 },
];

for (const c of cases) {
  const tol = c.tol ?? 2e-5;
  test(`moe native eager == reference: ${c.name}`, { skip: nativeSkip }, () => {
    const s = makeCase(c);
    const want = withEagerBackend('reference', () => moe(s.x, s.logits, s.gate, s.up, s.down, { topK: s.k }));
    const got = withEagerBackend('cpu', () => moe(s.x, s.logits, s.gate, s.up, s.down, { topK: s.k }));
    const err = maxRelErr(got, want);
    assert.ok(err < tol, `max |native − reference| / max |reference| = ${err}`);
  });
  test(`moe plan == reference: ${c.name}`, { skip: planSkip }, () => {
    const s = makeCase(c);
    const fn = (x: Tensor, l: Tensor): Tensor => moe(x, l, s.gate, s.up, s.down, { topK: s.k });
    const t = trace(fn, [s.x, s.logits]);
    const exe = new PlanExecutable(optimize(t.graph), t.constants);
    assert.equal(exe.path, 'plan', exe.describe());
    const [got] = exe.run([s.x, s.logits]);
    const names = exe.planStats()!.kernelNames;
    assert.ok(names.includes('moe'), names.join(', '));
    const want = withEagerBackend('reference', () => fn(s.x, s.logits));
    const err = maxRelErr(got, want);
    assert.ok(err < tol, `max |plan − reference| / max |reference| = ${err}`);
  });
}

// the plan reads Q8_0/Q4_0 stacks 16-row interleaved where the packed kernels are fast ('auto');
// both layouts must give the reference's result
for (const packing of ['always', 'never'] as const) {
  for (const format of ['q8_0', 'q4_0'] as const) {
    test(`moe plan == reference, ${format} stacks ${packing === 'always' ? '16-row interleaved' : 'as stored'}`, { skip: planSkip }, () => {
      const prev = setQuantPacking(packing);
      try {
        const s = makeCase({ name: 'packing', T: 21, H: 64, F: 96, formats: [format, format, format], bias: [0, 0, 0, 0, 0, 0, 0, 4] });
        const fn = (x: Tensor, l: Tensor): Tensor => moe(x, l, s.gate, s.up, s.down, { topK: s.k });
        const t = trace(fn, [s.x, s.logits]);
        const exe = new PlanExecutable(optimize(t.graph), t.constants);
        const [got] = exe.run([s.x, s.logits]);
        const want = withEagerBackend('reference', () => fn(s.x, s.logits));
        const err = maxRelErr(got, want);
        assert.ok(err < 2e-2, `max |plan − reference| / max |reference| = ${err}`);
      } finally { setQuantPacking(prev); }
    });
  }
}

test('moe routing: top-k by logit (ties to the lower index), weights = softmax over the selected logits', () => {
  const r = route([0.5, 2, -1, 2, 1], 2);
  assert.deepEqual(r.experts, [1, 3]);
  assert.ok(Math.abs(r.weights[0] - 0.5) < 1e-12 && Math.abs(r.weights[1] - 0.5) < 1e-12);
  const m = route([Math.log(3), 0, -9], 2);
  assert.deepEqual(m.experts, [0, 1]);
  assert.ok(Math.abs(m.weights[0] - 0.75) < 1e-12, `${m.weights}`);
  // a single token through the reference equals the hand-written Mixtral block for that token
  const s = makeCase({ name: 'hand', T: 1, H: 4, F: 6, E: 3 });
  const y = Array.from(withEagerBackend('reference', () => moe(s.x, s.logits, s.gate, s.up, s.down)).toFlatArray());
  const x = s.x.toFlatArray(), G = s.gate.toFlatArray(), U = s.up.toFlatArray(), D = s.down.toFlatArray();
  const { experts, weights } = route(s.logits.toFlatArray(), 2);
  const want = [0, 0, 0, 0];
  experts.forEach((e, j) => {
    const h = Array.from({ length: 6 }, (_, f) => {
      let g = 0, u = 0;
      for (let i = 0; i < 4; i++) { g += G[(e * 6 + f) * 4 + i] * x[i]; u += U[(e * 6 + f) * 4 + i] * x[i]; }
      return g / (1 + Math.exp(-g)) * u;
    });
    for (let o = 0; o < 4; o++) { let v = 0; for (let f = 0; f < 6; f++) v += D[(e * 4 + o) * 6 + f] * h[f]; want[o] += weights[j] * v; }
  });
  want.forEach((w, i) => assert.ok(Math.abs(w - y[i]) < 1e-5, `out[${i}] ${y[i]} vs ${w}`));
});

test('moe: bad shapes and top_k are specific errors', () => {
  const s = makeCase({ name: 'bad', T: 2, H: 8, F: 12, E: 4 });
  assert.throws(() => moe(s.x, s.logits, s.gate, s.up, s.down, { topK: 5 }), /top_k must lie in 1\.\.4/);
  assert.throws(() => moe(s.x, s.logits, s.gate, s.gate, s.gate), /down weights must be f32 \[experts 4, 8, 12\]/);
  const wrongTokens = fromArray(new Float32Array(12), [3, 4], 'f32');
  assert.throws(() => moe(s.x, wrongTokens, s.gate, s.up, s.down), /router_logits \[3, 4\] must be \[tokens, 4\]/);
});
