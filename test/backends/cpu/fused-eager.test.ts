// Native eager kernels of the optimizer's fused ops (what the interpreter runs when a graph cannot
// be a native plan): fused_elementwise programs with broadcasting, unary math and where, and
// layer_norm_modulate with and without affine parameters, attention_fused in both layouts, against the float64 reference kernels,
// at odd sizes. Tolerances: a few fp32 roundings per register (the reference rounds each register
// to f32 as well), plus the vectorized exp/tanh's ~2 ulp and layer_norm's reduction of D terms.
import assert from 'node:assert/strict';
import { randn, rand, ops, type Tensor } from '../../../src/index.js';
import { dispatch1 } from '../../../src/ops/dispatch.js';
import { getKernel } from '../../../src/ops/registry.js';
import { nativeTest, both, assertClose, U } from './helpers.js';

let seed = 900;
const rnd = (shape: number[]): Tensor => randn(shape, { seed: seed++ });

nativeTest('fused_elementwise runs natively and matches the reference (broadcasting, unary ops, where)', () => {
  const a = rnd([2, 3, 17]), b = rnd([17]), c = rnd([2, 1, 17]), cond = ops.greater(rand([3, 1], { seed: 3 }), 0.5);
  assert.ok(getKernel('fused_elementwise', 'cpu', [a, b], { program: 'add(0,1)' }), 'a cpu kernel is registered');
  const cases: [string, Tensor[]][] = [
    ['mul(0,1) add(3,2)', [a, b, c]],
    ['tanh(0) mul(3,1) exp(4) sub(5,2)', [a, b, c]],
    ['where(0,1,2) neg(3)', [cond, rnd([3, 17]), rnd([1, 17])]],
    ['sigmoid(0) mul(3,2) add(4,1)', [rnd([1]), rnd([5, 1]), rnd([1, 7])]],
  ];
  for (const [program, inputs] of cases) {
    const { ref, cpu } = both(() => dispatch1('fused_elementwise', inputs, { program }));
    assertClose(cpu, ref, (_, e) => 16 * U * Math.max(1, Math.abs(e)), `program ${program}`);
  }
});

nativeTest('layer_norm_modulate runs natively and matches the reference', () => {
  for (const [N, T, D, affine] of [[2, 17, 33, true], [1, 1, 1, false], [3, 5, 64, false]] as const) {
    const x = rnd([N, T, D]), shift = rnd([N, D]), scale = rnd([N, D]);
    const w = affine ? rnd([D]) : null, bias = affine ? rnd([D]) : null;
    assert.ok(getKernel('layer_norm_modulate', 'cpu', [x, shift, scale, w, bias], { eps: 1e-6 }));
    const { ref, cpu } = both(() => dispatch1('layer_norm_modulate', [x, shift, scale, w, bias], { eps: 1e-6 }));
    assertClose(cpu, ref, (_, e) => (2 * D + 16) * U * Math.max(1, Math.abs(e)), `layer_norm_modulate [${N}, ${T}, ${D}] affine=${affine}`);
  }
});

nativeTest('attention_fused runs natively in both layouts (mask, causal) and matches the reference', () => {
  for (const layout of ['bshd', 'bhsd'] as const) {
    const shape = (B: number, L: number, H: number, D: number): number[] => (layout === 'bshd' ? [B, L, H, D] : [B, H, L, D]);
    const q = rnd(shape(2, 17, 3, 8)), k = rnd(shape(2, 33, 3, 8)), v = rnd(shape(2, 33, 3, 8));
    const mask = ops.greater(rand([17, 33], { seed: 5 }), 0.2);
    assert.ok(getKernel('attention_fused', 'cpu', [q, k, v, null], { causal: false, scale: 0, layout }));
    for (const attrs of [{ causal: false, scale: 0, layout }, { causal: true, scale: 0.5, layout }]) {
      const { ref, cpu } = both(() => dispatch1('attention_fused', [q, k, v, attrs.causal ? null : mask], attrs));
      assertClose(cpu, ref, () => 64 * 33 * U, `attention_fused ${layout} causal=${attrs.causal}`);
    }
  }
});
