// Quantized weights through the compiler: traced graphs whose linear layers read quantized
// parameters lower to the plan's qgemm kernel (native/plan/qgemm.cc), and the compiled plan
// matches node-by-node eager execution (same weight-only kernels) and the reference (TypeScript
// dequantize + f32 linear). Horizontal GEMM fusion joins quantized Q/K/V and gate/up weights of
// one format into one qgemm each, with the same results as before the pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, ops, type Tensor } from '../../../src/index.js';
import { trace } from '../../../src/trace/index.js';
import { interpret } from '../../../src/backends/reference/index.js';
import { withEagerBackend } from '../../../src/ops/dispatch.js';
import { optimize } from '../../../src/passes/index.js';
import type { Graph } from '../../../src/ir/index.js';
import { PlanExecutable } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';
import { type QuantFormat, quantizeWeight } from '../../../src/tensor/quantized.js';
import { setQuantPacking } from '../../../src/backends/cpu/plan/rules/quant.js';
import { assertClose, U } from './helpers.js';

const skip = planAddon ? false : 'native plan executor not built';
let seed = 9300;
const rnd = (shape: number[], scale = 1): Tensor => randn(shape, { seed: seed++ }).mul(scale);

interface Compiled { exe: PlanExecutable; graph: Graph; constants: Map<string, Tensor> }
function compile(fn: (...a: any[]) => unknown, args: Tensor[], params: Record<string, Tensor>, passes = true): Compiled {
  const t = trace(fn, args, { module: { namedParameters: () => Object.entries(params) } });
  const graph = passes ? optimize(t.graph) : t.graph;
  return { exe: new PlanExecutable(graph, t.constants), graph, constants: t.constants };
}
const run = (backend: 'cpu' | 'reference', c: Compiled, inputs: Tensor[]): Tensor[] => withEagerBackend(backend, () => interpret(c.graph, inputs, c.constants));

// The plan and eager execution call the same weight-only kernels (same activation quantization,
// same block sums): equal up to epilogue ordering. Against the reference the int8 activation
// quantization of the Q8_0/Q4_0/int8/int4 kernels costs ~1/254 of each block's largest input.
const nearEager = (_i: number, e: number): number => 16 * U * Math.abs(e) + 1e-5;
// Through a whole decoder layer (four chained GEMMs whose inputs are each quantized, then softmax
// over the Q·K scores) that compounds to several percent; the K-quant kernels quantize activations
// too (int8 per 256-value super-block, native/quant/kquants.cc).
const nearRefFor = (_format: QuantFormat) => (_i: number, e: number): number => 1e-1 * Math.max(1, Math.abs(e));

// The epilogues run inside the GEMM's pool job, tile by tile: one row, packed-kernel tile heights
// (5, 16, 20), and (one layer alone, so no int8 rounding of a hidden activation can flip between
// plan and eager) more than one 64-row block (65, 130) all see every element.
for (const [upFormat, downFormat] of [['q4_k', 'q6_k'], ['q4_0', 'q8_0']] as const) test(`quantized MLP (${upFormat} up with bias and silu, ${downFormat} down with residual): plan == eager == reference`, { skip }, () => {
  const D = 256, F = 512;
  const params = {
    up: quantizeWeight(rnd([F, D], 0.06), upFormat), upBias: rnd([F], 0.1),
    down: quantizeWeight(rnd([D, F], 0.04), downFormat),
  };
  const mlp = (x: Tensor): Tensor => ops.linear(ops.silu(ops.linear(x, params.up, params.upBias)), params.down).add(x);
  for (const T of [1, 5, 16, 20]) { // 20 rows: the K-quant prefill GEMM
    const x = rnd([T, D]);
    const c = compile(mlp, [x], params);
    assert.equal(c.exe.path, 'plan', c.exe.describe());
    const got = c.exe.run([x])[0];
    assertClose(got, run('cpu', c, [x])[0], nearEager, `T=${T} vs eager`);
    assertClose(got, withEagerBackend('reference', () => mlp(x)), nearRefFor(upFormat), `T=${T} vs reference`);
    const names = c.exe.planStats()!.kernelNames;
    assert.deepEqual(names, ['quant_linear', 'quant_linear'], 'silu and the residual add run in the qgemm epilogues');
    assert.deepEqual(c.graph.nodes.map((n) => [n.op, n.attrs.activation, n.inputs[3] !== null]), [['quant_linear', 'silu', false], ['quant_linear', 'none', true]]);
    assertClose(got, run('cpu', compile(mlp, [x], params, false), [x])[0], nearEager, `T=${T} vs the unfused graph`);
  }
  const layers = [(x: Tensor): Tensor => ops.silu(ops.linear(x, params.up, params.upBias)), (h: Tensor): Tensor => ops.linear(h, params.down).add(h.sliceAxis(1, 0, D))];
  for (const T of [65, 130]) {
    for (const [i, layer] of layers.entries()) {
      const x = rnd([T, i === 0 ? D : F]);
      const c = compile(layer, [x], params);
      assertClose(c.exe.run([x])[0], run('cpu', c, [x])[0], nearEager, `layer ${i}, T=${T} vs eager`);
      assert.deepEqual(c.exe.planStats()!.kernelNames, ['quant_linear'], `layer ${i}: one qgemm with its epilogue`);
    }
  }
});

/** One pre-norm decoder layer (RMSNorm, Q/K/V, causal GQA attention, O, RMSNorm, SwiGLU MLP). */
function decoderLayer(format: QuantFormat, D: number, H: number, Hkv: number, F: number) {
  const hd = D / H;
  const q = (n: number, k: number): Tensor => quantizeWeight(rnd([n, k], 1 / Math.sqrt(k)), format, { group: 64 });
  const params = {
    n1: rnd([D], 0.1).add(1), n2: rnd([D], 0.1).add(1),
    wq: q(D, D), wk: q(Hkv * hd, D), wv: q(Hkv * hd, D), wo: q(D, D),
    gate: q(F, D), up: q(F, D), down: q(D, F),
  };
  const fn = (x: Tensor): Tensor => {
    const [B, T] = x.shape;
    const h = ops.rmsNorm(x, params.n1);
    const heads = (t: Tensor, n: number): Tensor => t.reshape(B, T, n, hd).permute(0, 2, 1, 3);
    const att = ops.scaledDotProductAttention(heads(ops.linear(h, params.wq), H), heads(ops.linear(h, params.wk), Hkv), heads(ops.linear(h, params.wv), Hkv), { causal: true });
    const x1 = ops.linear(att.permute(0, 2, 1, 3).reshape(B, T, D), params.wo).add(x);
    const h2 = ops.rmsNorm(x1, params.n2);
    return ops.linear(ops.silu(ops.linear(h2, params.gate)).mul(ops.linear(h2, params.up)), params.down).add(x1);
  };
  return { fn, params };
}

for (const format of ['q4_0', 'q8_0', 'int4', 'int8', 'q4_k', 'q5_k'] as QuantFormat[]) {
  test(`tiny ${format} decoder layer: fused QKV and gate/up, plan == eager == unfused == reference`, { skip }, () => {
    const K = format.endsWith('_k') ? 256 : 64;
    const { fn, params } = decoderLayer(format, K, 4, 2, 2 * K);
    for (const T of [1, 7]) {
      const x = rnd([1, T, K]);
      const c = compile(fn, [x], params);
      assert.equal(c.exe.path, 'plan', c.exe.describe());
      assert.match(c.exe.describe(), /^cpu plan/);
      const concats = c.graph.nodes.filter((n) => n.op === 'quant_concat');
      assert.equal(concats.length, 2, `Q/K/V and gate/up each fused: ${c.graph.nodes.map((n) => n.op).join(', ')}`);
      const got = c.exe.run([x])[0];
      const names = c.exe.planStats()!.kernelNames;
      assert.equal(names.filter((n) => n === 'quant_linear').length, 4, `4 qgemm kernels (qkv, o, gate|up, down): ${names.join(', ')}`);
      assertClose(got, run('cpu', c, [x])[0], nearEager, `${format} T=${T} vs eager`);
      // before the pass: the unfused traced graph on the eager native kernels
      const unfused = compile(fn, [x], params, false);
      assertClose(got, run('cpu', unfused, [x])[0], nearEager, `${format} T=${T} vs unfused eager`);
      assertClose(got, withEagerBackend('reference', () => fn(x)), nearRefFor(format), `${format} T=${T} vs reference`);
    }
  });
}

test('nn.Linear layers with quantized weights through inferenceJit: a native plan, in-place weight updates respected', { skip }, async () => {
  const { inferenceJit, nn } = await import('../../../src/index.js');
  const { jitRunner } = await import('../../../src/jit/index.js');
  class Block extends nn.Module {
    q = new nn.Linear(64, 64, { seed: 1 });
    k = new nn.Linear(64, 32, { seed: 2 });
    out = new nn.Linear(96, 64, { seed: 3, bias: false });
    forward(x: Tensor): Tensor { return this.out.forward(ops.concat([this.q.forward(x), this.k.forward(x)], -1)).add(x); }
  }
  const m = new Block();
  m.q.weight = quantizeWeight(m.q.weight, 'q8_0');
  m.k.weight = quantizeWeight(m.k.weight, 'q8_0');
  m.out.weight = quantizeWeight(m.out.weight, 'int4', { group: 32 });
  const fast = inferenceJit(m, { device: 'cpu', cache: 'memory' });
  const x = rnd([3, 64]);
  assertClose(fast.forward(x) as Tensor, withEagerBackend('cpu', () => m.forward(x)), nearEager, 'compiled vs eager');
  const exe = jitRunner(fast)!.compiledEntries()[0].executable as unknown as PlanExecutable;
  assert.equal(exe.path, 'plan', exe.describe());
  // new values written into the fused (derived) weight's source in place
  m.k.weight.copyFrom(quantizeWeight(rnd([32, 64], 0.2), 'q8_0'));
  const after = fast.forward(x) as Tensor;
  assertClose(after, withEagerBackend('cpu', () => m.forward(x)), nearEager, 'after the in-place update');
  assert.throws(() => m.q.weight.matmul(x), /only linear/);
});

test('swapping a quantized weight for another format of the same byte size recompiles (config guard)', { skip }, async () => {
  const { inferenceJit, nn } = await import('../../../src/index.js');
  const lin = new nn.Linear(64, 1, { seed: 4, bias: false });
  const dense = lin.weight;
  lin.weight = quantizeWeight(dense, 'q8_0'); // 68 bytes: 2 scale bytes + 64 int8
  const fast = inferenceJit(lin, { device: 'cpu', cache: 'memory' });
  const x = rnd([2, 64]);
  assertClose(fast.forward(x) as Tensor, withEagerBackend('cpu', () => lin.forward(x)), nearEager, 'q8_0');
  lin.weight = quantizeWeight(dense.mul(-2), 'int8'); // also 68 bytes: 64 int8 + one f32 scale
  assert.equal(lin.weight.shape[0], 68);
  assertClose(fast.forward(x) as Tensor, withEagerBackend('cpu', () => lin.forward(x)), nearEager, 'int8 after the swap');
});

test('Q8_0/Q4_0 weights read 16-row interleaved or in GGUF layout give the same plan results (N = 37: padded rows)', { skip }, () => {
  for (const format of ['q8_0', 'q4_0'] as QuantFormat[]) {
    const params = { w: quantizeWeight(rnd([37, 96], 0.1), format), b: rnd([37]) };
    const fn = (x: Tensor): Tensor => ops.gelu(ops.linear(x, params.w, params.b));
    for (const M of [1, 5, 20]) {
      const x = rnd([M, 96]);
      const results = (['always', 'never'] as const).map((mode) => {
        const prev = setQuantPacking(mode);
        try {
          const c = compile(fn, [x], params);
          const got = c.exe.run([x])[0];
          assertClose(got, run('cpu', c, [x])[0], nearEager, `${format} M=${M} packing ${mode} vs eager`);
          return got;
        } finally { setQuantPacking(prev); }
      });
      assertClose(results[0], results[1], nearEager, `${format} M=${M}: packed vs GGUF layout`);
    }
  }
});

// The packed (16-row interleaved) kernels pick their tiles by row count (two groups at a time for
// up to 8 activation rows, 16-row tiles beyond) and by the groups left in a task (an odd group count,
// padded rows): every row count 1..17 against the GGUF-layout kernels (same int8 activations, exact
// integer dots) and the reference, for N with an odd number of groups and padded rows and K of one,
// two, three and five blocks (N = 21: the second group of a pair padded).
test('Q8_0/Q4_0 packed kernels: every row count 1..17 == GGUF layout == reference (odd group counts, padded rows)', { skip }, () => {
  for (const format of ['q4_0', 'q8_0'] as QuantFormat[]) {
    for (const [N, K] of [[48, 96], [37, 32], [21, 64], [80, 160]] as const) {
      const params = { w: quantizeWeight(rnd([N, K], 0.1), format) };
      const fn = (x: Tensor): Tensor => ops.linear(x, params.w);
      for (let M = 1; M <= 17; M++) {
        const x = rnd([M, K]);
        const results = (['always', 'never'] as const).map((mode) => {
          const prev = setQuantPacking(mode);
          try { return compile(fn, [x], params).exe.run([x])[0]; } finally { setQuantPacking(prev); }
        });
        assertClose(results[0], results[1], nearEager, `${format} N=${N} K=${K} M=${M}: packed vs GGUF layout`);
        assertClose(results[0], withEagerBackend('reference', () => fn(x)), nearRefFor(format), `${format} N=${N} K=${K} M=${M}: packed vs reference`);
      }
    }
  }
});

// 9..16 rows on packed weights run packedTileX2Rows (block-major activations), four rows side by
// side through the k-groups; INFERJIT_QGEMM_ROWS_KERNEL=old runs them one at a time. Each output's
// integer dot and float steps are the same either way, so the results must match bit for bit, for
// row counts that leave 1..3 rows after the groups of four, N with a padded second group of a pair
// and a group left alone, K of an odd block count.
test('Q8_0/Q4_0 packed 9..16-row tiles: rows interleaved == one row at a time, bit for bit', { skip }, () => {
  for (const format of ['q4_0', 'q8_0'] as QuantFormat[]) {
    for (const [N, K] of [[21, 96], [80, 160], [48, 32]] as const) {
      const params = { w: quantizeWeight(rnd([N, K], 0.1), format) };
      const fn = (x: Tensor): Tensor => ops.linear(x, params.w);
      for (const M of [9, 10, 11, 12, 15, 16]) {
        const x = rnd([M, K]);
        const prevPacking = setQuantPacking('always');
        const prevEnv = process.env.INFERJIT_QGEMM_ROWS_KERNEL;
        try {
          const exe = compile(fn, [x], params).exe;
          const interleaved = exe.run([x])[0]!.toFlatArray();
          process.env.INFERJIT_QGEMM_ROWS_KERNEL = 'old';
          const single = exe.run([x])[0]!.toFlatArray();
          for (let i = 0; i < single.length; i++) {
            assert.ok(Object.is(interleaved[i], single[i]), `${format} N=${N} K=${K} M=${M}: y[${i}] interleaved ${interleaved[i]}, one row at a time ${single[i]}`);
          }
        } finally {
          if (prevEnv === undefined) delete process.env.INFERJIT_QGEMM_ROWS_KERNEL;
          else process.env.INFERJIT_QGEMM_ROWS_KERNEL = prevEnv;
          setQuantPacking(prevPacking);
        }
      }
    }
  }
});

test('disk cache: a quantized model\'s compiled graph is stored and reused by a second compile (weights read as parameters)', { skip }, async () => {
  const { inferenceJit, nn } = await import('../../../src/index.js');
  const { jitRunner } = await import('../../../src/jit/index.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-quant-'));
  try {
    const make = () => {
      const m = new nn.Linear(256, 40, { seed: 9 });
      m.weight = quantizeWeight(m.weight, 'q6_k');
      return m;
    };
    const x = rnd([3, 256]);
    const m1 = make(), m2 = make();
    const a = inferenceJit(m1, { device: 'cpu', cache: 'disk', cacheDir: dir });
    const ya = a.forward(x) as Tensor;
    const b = inferenceJit(m2, { device: 'cpu', cache: 'disk', cacheDir: dir });
    const yb = b.forward(x) as Tensor;
    assert.deepEqual(yb.data, ya.data);
    assertClose(yb, withEagerBackend('cpu', () => m2.forward(x)), nearEager, 'second compile vs eager');
    const s = jitRunner(b)!.stats();
    assert.equal(s.diskHits, 1, JSON.stringify(s));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('Q8_0/Q4_0 plan GEMM quantizes its activations inside its own pool job: plan == eager for row counts across row blocks (2, 63..65, 130)', { skip }, () => {
  for (const format of ['q8_0', 'q4_0'] as QuantFormat[]) {
    const params = { w: quantizeWeight(rnd([70, 128], 0.1), format) };
    const fn = (x: Tensor): Tensor => ops.linear(x, params.w);
    for (const mode of ['always', 'never'] as const) {
      const prev = setQuantPacking(mode);
      try {
        for (const M of [2, 63, 64, 65, 130]) {
          const x = rnd([M, 128]);
          const c = compile(fn, [x], params);
          for (let rep = 0; rep < 3; rep++) {
            assertClose(c.exe.run([x])[0], run('cpu', c, [x])[0], nearEager, `${format} M=${M} packing ${mode} rep ${rep}: plan vs eager`);
          }
          assertClose(c.exe.run([x])[0], run('reference', c, [x])[0], nearRefFor(format), `${format} M=${M} packing ${mode}: plan vs reference`);
        }
      } finally { setQuantPacking(prev); }
    }
  }
});
