// The W8A8 and FP8 plan kernels (native/quant/w8a8.cc via the w8a8_gemm / fp8_gemm rule) against
// the w8_linear reference kernel (src/quant/w8-linear-op.ts: per-token activation quantization in
// TypeScript, exact integer dot products, the scale product) on random inputs, over decode and
// prefill row counts (M = 1, 2, 3, 15, 16, 17, 33, 100), odd N and K not a multiple of 4 or 64;
// and W8A8 with activation scales per 32 values of a row (actGroup 32: K not a multiple of 32, a
// last partial block, blocks of one value).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, fromArray, type Tensor } from '../../src/index.js';
import { trace } from '../../src/trace/index.js';
import { dispatch1, withEagerBackend } from '../../src/ops/dispatch.js';
import { kernelBackends, loadKernels } from '../../src/ops/registry.js';
import { PlanExecutable } from '../../src/backends/cpu/plan/executable.js';
import { optimize } from '../../src/passes/index.js';
import { interpret } from '../../src/backends/reference/index.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';
import { W8_LINEAR } from '../../src/quant/w8-linear-op.js';
import { encodeE4M3 } from '../../src/quant/packing.js';
import { roundE4M3 } from '../../src/quant/numerics.js';

const skip = planAddon ? false : 'native plan executor not built';
let seed = 18_000;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);
/** A deterministic generator for codes. */
function lcg(s: number): () => number { let x = s >>> 0; return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32); }

function int8Weight(N: number, K: number): { w: Tensor; s: Tensor } {
  const r = lcg(seed++);
  const codes = Int8Array.from({ length: N * K }, () => Math.round(r() * 254) - 127);
  const scales = Float32Array.from({ length: N }, () => (0.5 + r()) / 127 / Math.sqrt(K));
  return { w: fromArray(codes, [N, K], 'i8'), s: fromArray(scales, [N], 'f32') };
}
function fp8Weight(N: number, K: number): { w: Tensor; s: Tensor } {
  const r = lcg(seed++);
  // E4M3 values spread over the format's range, subnormals included (never the NaN codes)
  const bits = Uint8Array.from({ length: N * K }, () => encodeE4M3(roundE4M3((r() - 0.5) * 2 * 448 * 2 ** -Math.floor(r() * 12))));
  const scales = Float32Array.from({ length: N }, () => (0.5 + r()) / 448 / Math.sqrt(K));
  return { w: fromArray(bits, [N, K], 'u8'), s: fromArray(scales, [N], 'f32') };
}

interface Case { weights: 'int8' | 'fp8'; activations: 'int8' | 'fp8' | 'none'; M: number; N: number; K: number; bias?: boolean; residual?: boolean; activation?: string; actGroup?: 0 | 32 }

function runCase(c: Case): { got: Float32Array; want: Float32Array; names: string[] } {
  const { w, s } = c.weights === 'int8' ? int8Weight(c.N, c.K) : fp8Weight(c.N, c.K);
  const params: Record<string, Tensor> = { w, s };
  if (c.bias) params.b = rnd([c.N], 0.5);
  // a few activation channels 20× larger than the rest, as LLM hidden states have
  const x = rnd([c.M, c.K]).mul(fromArray(Float32Array.from({ length: c.K }, (_, k) => (k % 37 === 5 ? 20 : 1)), [c.K], 'f32'));
  const r = c.residual ? rnd([c.M, c.N]) : null;
  const attrs = { weights: c.weights, activations: c.activations, activation: c.activation ?? 'none', ...(c.actGroup ? { actGroup: c.actGroup } : {}) };
  const fn = (xx: Tensor, rr?: Tensor): Tensor => dispatch1(W8_LINEAR, [xx, params.w, params.s, params.b ?? null, rr ?? null], attrs);
  const args = r ? [x, r] : [x];
  const t = trace(fn, args, { module: { namedParameters: () => Object.entries(params) } });
  const exe = new PlanExecutable(t.graph, t.constants);
  assert.equal(exe.path, 'plan', exe.describe());
  const got = exe.run(args)[0].toFlatArray() as unknown as Float32Array;
  const want = withEagerBackend('reference', () => fn(x, r ?? undefined)).toFlatArray() as unknown as Float32Array;
  return { got: Float32Array.from(got), want: Float32Array.from(want), names: exe.planStats()!.kernelNames };
}

const ROWS = [1, 2, 3, 15, 16, 17, 33, 100];

test('w8a8_gemm: bit-exact against the reference (per-token int8 activations, int32 sums, scale product)', { skip }, () => {
  for (const M of ROWS) {
    for (const [N, K] of [[1, 1], [17, 7], [63, 130], [100, 64], [130, 257]]) {
      const { got, want, names } = runCase({ weights: 'int8', activations: 'int8', M, N, K });
      assert.deepEqual(names, ['w8_linear']);
      assert.deepEqual(got, want, `M=${M} N=${N} K=${K}`);
    }
  }
});

test('w8a8_gemm epilogue: bias (one fused multiply-add), silu and residual within a few ulps', { skip }, () => {
  for (const M of [1, 3, 17, 33]) {
    for (const [N, K] of [[17, 30], [80, 131]]) {
      const { got, want } = runCase({ weights: 'int8', activations: 'int8', M, N, K, bias: true, residual: true, activation: 'silu' });
      // the bias is added with one rounding in the kernel, two in the reference; silu's exp differs by ulps
      for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * (1 + Math.abs(want[i])), `M=${M} N=${N} K=${K} [${i}]: ${got[i]} vs ${want[i]}`);
    }
  }
});

test('w8a8_gemm, activation scales per 32 values: against the reference (block dots exact, block scaling as fused multiply-adds)', { skip }, () => {
  for (const M of ROWS) {
    for (const [N, K] of [[1, 1], [17, 7], [16, 31], [33, 32], [63, 33], [100, 64], [130, 257]]) {
      const c = { weights: 'int8', activations: 'int8', M, N, K, actGroup: 32, bias: M % 2 === 1, residual: M === 17, activation: M === 3 ? 'silu' : 'none' } as const;
      const { got, want, names } = runCase(c);
      assert.deepEqual(names, ['w8_linear']);
      // the kernel's fused multiply-adds round once, the reference's f64 sum then fround may round twice
      for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * (1 + Math.abs(want[i])), `M=${M} N=${N} K=${K} [${i}]: ${got[i]} vs ${want[i]}`);
    }
  }
});

test('activation scales per 32 values are closer to the f32 product than one per token when a few channels are large', { skip }, () => {
  const M = 17, N = 48, K = 256;
  const { w, s } = int8Weight(N, K);
  const x = rnd([M, K]).mul(fromArray(Float32Array.from({ length: K }, (_, k) => (k % 37 === 5 ? 40 : 1)), [K], 'f32'));
  const exact = withEagerBackend('reference', () => dispatch1('linear', [x, dispatch1('mul', [w.cast('f32'), s.reshape([N, 1])])])).toFlatArray();
  const err = (actGroup: 0 | 32): number => {
    const fn = (xx: Tensor): Tensor => dispatch1(W8_LINEAR, [xx, w, s, null, null], { weights: 'int8', activations: 'int8', activation: 'none', actGroup });
    const t = trace(fn, [x], { module: { namedParameters: () => Object.entries({ w, s }) } });
    const got = new PlanExecutable(t.graph, t.constants).run([x])[0].toFlatArray();
    return got.reduce((a, v, i) => a + (v - exact[i]) ** 2, 0);
  };
  const perToken = err(0), perGroup = err(32);
  // (one large channel in every 37: most blocks of 32 hold one, so the gain is a few-fold, not more)
  assert.ok(perGroup < perToken / 2, `squared error per 32 values ${perGroup} vs per token ${perToken}`);
});

test('w8_linear refuses an activation group other than 0 or 32, and one on fp8 weights', () => {
  const { w, s } = int8Weight(16, 32);
  const x = rnd([2, 32]);
  assert.throws(() => dispatch1(W8_LINEAR, [x, w, s, null, null], { weights: 'int8', activations: 'int8', activation: 'none', actGroup: 16 }), /actGroup must be 0 .* or 32, got 16/);
  const f = fp8Weight(16, 32);
  assert.throws(() => dispatch1(W8_LINEAR, [x, f.w, f.s, null, null], { weights: 'fp8', activations: 'fp8', activation: 'none', actGroup: 32 }), /applies to int8 W8A8 only/);
});

test('a zero activation row gives a zero scale, not NaN', { skip }, () => {
  const { w, s } = int8Weight(16, 32);
  const x = fromArray(new Float32Array(2 * 32), [2, 32], 'f32');
  const fn = (xx: Tensor): Tensor => dispatch1(W8_LINEAR, [xx, w, s, null, null], { weights: 'int8', activations: 'int8', activation: 'none' });
  const t = trace(fn, [x], { module: { namedParameters: () => Object.entries({ w, s }) } });
  assert.deepEqual([...new PlanExecutable(t.graph, t.constants).run([x])[0].toFlatArray()], new Array(32).fill(0));
});

test('fp8_gemm: E4M3 weights (subnormals included), f32 or E4M3 activations, against the reference', { skip }, () => {
  for (const activations of ['none', 'fp8'] as const) {
    for (const M of ROWS) {
      for (const [N, K] of [[1, 1], [17, 7], [63, 130], [100, 257]]) {
        const { got, want, names } = runCase({ weights: 'fp8', activations, M, N, K, bias: M % 2 === 1, residual: M === 17, activation: M === 3 ? 'gelu' : 'none' });
        assert.deepEqual(names, ['w8_linear']);
        // fp32 sums in another order: a K-term dot product of values of size ~1/sqrt(K)
        for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 2e-6 * Math.sqrt(K) * (1 + Math.abs(want[i])), `${activations} M=${M} N=${N} K=${K} [${i}]: ${got[i]} vs ${want[i]}`);
      }
    }
  }
});

test('w8_linear rejects mismatched weights, scales and formats with specific errors', () => {
  const { w, s } = int8Weight(4, 8);
  const x = rnd([2, 8]);
  const call = (attrs: Record<string, string>, ww = w, ss = s, xx = x) => dispatch1(W8_LINEAR, [xx, ww, ss, null, null], { activation: 'none', ...attrs });
  assert.throws(() => call({ weights: 'int8', activations: 'none' }), /int8 weights run with int8 activations/);
  assert.throws(() => call({ weights: 'fp8', activations: 'fp8' }), /fp8 weight must be u8 \[N, K\]/);
  assert.throws(() => call({ weights: 'int8', activations: 'int8' }, w, rnd([3])), /scales must be f32 \[4\]/);
  assert.throws(() => call({ weights: 'int8', activations: 'int8' }, w, s, rnd([2, 9])), /must be f32 ending in the weight's 8 input features/);
});

test('w8-epilogue pass: bias add, silu and the residual add fold into w8_linear, same values before and after', { skip }, () => {
  for (const weights of ['int8', 'fp8'] as const) {
    const { w, s } = weights === 'int8' ? int8Weight(40, 72) : fp8Weight(40, 72);
    const b = rnd([40], 0.3);
    const params = { w, s, b };
    const fn = (x: Tensor, r: Tensor): Tensor => {
      const y = dispatch1(W8_LINEAR, [x, w, s, null, null], { weights, activations: weights, activation: 'none' });
      return r.add(dispatch1('silu', [y.add(b)]));
    };
    const x = rnd([5, 72]), r = rnd([5, 40]);
    const t = trace(fn, [x, r], { module: { namedParameters: () => Object.entries(params) } });
    const before = withEagerBackend('reference', () => interpret(t.graph, [x, r], t.constants))[0];
    const graph = optimize(t.graph);
    assert.deepEqual(graph.nodes.map((n) => [n.op, n.attrs.activation, n.inputs[3] !== null, n.inputs[4] !== null]), [[W8_LINEAR, 'silu', true, true]]);
    const after = withEagerBackend('reference', () => interpret(graph, [x, r], t.constants))[0];
    const native = new PlanExecutable(graph, t.constants).run([x, r])[0];
    const bv = before.toFlatArray(), av = after.toFlatArray(), nv = native.toFlatArray();
    // the fused reference adds the bias inside its one rounding of the scaled sum: a few ulps
    for (let i = 0; i < bv.length; i++) {
      assert.ok(Math.abs(av[i] - bv[i]) <= 1e-6 * (1 + Math.abs(bv[i])), `${weights} fused reference [${i}]: ${av[i]} vs ${bv[i]}`);
      assert.ok(Math.abs(nv[i] - bv[i]) <= 1e-5 * (1 + Math.abs(bv[i])), `${weights} native [${i}]: ${nv[i]} vs ${bv[i]}`);
    }
  }
});

test('eager w8_linear on the cpu backend runs the native kernel and matches the reference (int8 per token / per 32, fp8)', { skip }, () => {
  loadKernels('cpu');
  assert.ok(kernelBackends(W8_LINEAR).includes('cpu'), 'w8_linear has a native eager kernel');
  const cases: Case[] = [];
  for (const M of [1, 3, 17]) {
    for (const [N, K] of [[1, 1], [17, 7], [63, 130]]) {
      cases.push({ weights: 'int8', activations: 'int8', M, N, K });
      cases.push({ weights: 'int8', activations: 'int8', M, N, K, actGroup: 32, bias: true, activation: 'silu' });
      cases.push({ weights: 'fp8', activations: M === 3 ? 'none' : 'fp8', M, N, K, bias: M === 1, residual: true });
    }
  }
  for (const c of cases) {
    const { w, s } = c.weights === 'int8' ? int8Weight(c.N, c.K) : fp8Weight(c.N, c.K);
    const b = c.bias ? rnd([c.N], 0.5) : null;
    const x = rnd([c.M, c.K]).mul(fromArray(Float32Array.from({ length: c.K }, (_, k) => (k % 37 === 5 ? 20 : 1)), [c.K], 'f32'));
    const r = c.residual ? rnd([c.M, c.N]) : null;
    const attrs = { weights: c.weights, activations: c.activations, activation: c.activation ?? 'none', ...(c.actGroup ? { actGroup: c.actGroup } : {}) };
    const run = (backend: 'cpu' | 'reference') => withEagerBackend(backend, () => dispatch1(W8_LINEAR, [x, w, s, b, r], attrs)).toFlatArray();
    const got = run('cpu'), want = run('reference');
    const exact = c.weights === 'int8' && !c.actGroup && !c.bias;
    // int8 per token without a bias is bit-exact (the plan kernel's contract); a bias, per-32 scaling
    // and fp8's fp32 sums round differently by a few ulps (the plan tests above give the bounds)
    const tol = exact ? 0 : c.weights === 'fp8' ? 2e-6 * Math.sqrt(c.K) : 1e-6;
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])), `${JSON.stringify(c)} [${i}]: ${got[i]} vs ${want[i]}`);
  }
});
