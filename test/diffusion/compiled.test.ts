// CompiledDiT (DiT with @inferenceJit) against eager DiT: outputs for several tiny configs at
// several batch sizes from one compile (dynamic batch), the same with each graph pass disabled,
// guided sampling through the compiled forward, the disk cache across instances, and the
// latent-size checks of the decorated classes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromArray, randn, inferenceJit, jitStats, type Tensor } from '../../src/index.js';
import { withEagerBackend } from '../../src/ops/dispatch.js';
import { listPassNames } from '../../src/passes/index.js';
import {
  DiT, CompiledDiT, CompiledDiT512, createDiT, ditInputSpec, type DiTConfig,
} from '../../examples/diffusion/dit.js';
import { generate } from '../../examples/diffusion/sample.js';

// Every compile in this file stays in memory unless a test points the disk cache at a temp dir.
process.env.INFERJIT_CACHE = 'memory';

// Tolerances. Outputs are O(1). The compiled plan runs fused f32 kernels (GEMM epilogues, fused
// norms, fused attention) whose summation order may differ from the eager op-by-op chain: a few
// f32 ulps per op through ~20 ops of width ≤ 256, so 1e-5 relative to (1 + |eager|). Against the
// reference backend (float64 per op, rounded to f32 after each) allow 1e-4. Measured: ~1e-6 against
// both, on outputs of magnitude ~2.5.
const TOL_EAGER = 1e-5;
const TOL_REFERENCE = 1e-4;

/** Tiny 256×256-image configs (latents [N, 4, 32, 32], what CompiledDiT is declared for): 16, 64
 *  and 256 tokens, with and without learnSigma and the null class, other head sizes and MLP ratios. */
const CONFIGS: Partial<DiTConfig>[] = [
  { inputSize: 32, patchSize: 8, hiddenSize: 64, depth: 2, numHeads: 4, numClasses: 10 },
  { inputSize: 32, patchSize: 4, hiddenSize: 48, depth: 2, numHeads: 3, mlpRatio: 2, numClasses: 7, learnSigma: false },
  { inputSize: 32, patchSize: 2, hiddenSize: 32, depth: 1, numHeads: 2, numClasses: 5, classDropoutProb: 0 },
];

function inputs(n: number, numClasses: number, size = 32): [Tensor, Tensor, Tensor] {
  return [
    randn([n, 4, size, size], { seed: 100 + n }),
    fromArray(Array.from({ length: n }, (_, i) => 999 - 211 * i), [n]),
    fromArray(Array.from({ length: n }, (_, i) => (3 * i + 1) % numClasses), [n], 'i64'),
  ];
}

function assertClose(got: Tensor, want: Tensor, tol: number, what: string): void {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const g = got.toFlatArray(), w = want.toFlatArray();
  for (let i = 0; i < w.length; i++) {
    if (!(Math.abs(g[i] - w[i]) <= tol * (1 + Math.abs(w[i])))) assert.fail(`${what}[${i}]: compiled ${g[i]}, eager ${w[i]} (tol ${tol})`);
  }
}

test('CompiledDiT matches eager (native and reference kernels) at batch 2, 3 and 1 from one compile', () => {
  for (const [k, config] of CONFIGS.entries()) {
    const model = new CompiledDiT(config, { seed: 20 + k });
    for (const n of [2, 3, 1]) {
      const x = inputs(n, model.config.numClasses);
      const got = model.forward(...x);
      assert.deepEqual(got.shape, [n, model.outChannels, 32, 32]);
      assertClose(got, model.eager(...x), TOL_EAGER, `config ${k} batch ${n} vs eager`);
      assertClose(got, withEagerBackend('reference', () => model.eager(...x)), TOL_REFERENCE, `config ${k} batch ${n} vs reference`);
    }
    const stats = jitStats(model)!;
    // The batch dim is dynamic in the decorator's input spec: one trace serves all three sizes.
    assert.deepEqual([stats.calls, stats.misses, stats.recompiles, stats.captures, stats.eagerCalls], [3, 1, 0, 1, 0], `config ${k}: ${JSON.stringify(stats)}`);
  }
});

test('with any single graph pass disabled, and with all of them, the compiled DiT still matches eager', () => {
  const model = new CompiledDiT(CONFIGS[0], { seed: 7 });
  const x = inputs(2, model.config.numClasses);
  const want = model.eager(...x);
  const names = listPassNames();
  assert.ok(names.length > 0);
  for (const disable of [...names.map((n) => [n]), names]) {
    // The function form on the decorated instance: class options (the input spec) plus these.
    const compiled = inferenceJit(model, { passes: { disable } });
    assertClose(compiled(...x), want, TOL_EAGER, `without ${disable.join(', ')}`);
  }
});

test('guided sampling through the compiled forward equals eager sampling', () => {
  const config = CONFIGS[0];
  const eager = new DiT(config, { seed: 5 }), compiled = new CompiledDiT(config, { seed: 5 });
  const options = { classes: [1, 4], steps: 3, cfgScale: 4, sampler: 'ddim' as const, seed: 9 };
  const a = generate(eager, options), b = generate(compiled, options);
  // forwardWithCfg calls this.call(), which must reach the compiled forward: one call per step.
  const stats = jitStats(compiled)!;
  assert.deepEqual([stats.calls, stats.misses, stats.eagerCalls], [3, 1, 0]);
  // With random weights the latents grow to O(10³) in three steps, and each step feeds the previous
  // step's few-ulp differences back through the model and the DDIM update (coefficients up to
  // ~1/√ᾱ), so an element's error tracks the scale of the whole latent, not its own value: bound
  // the max difference by 1e-5 of the largest latent (measured: ~1e-6 of it).
  const want = a.latents.toFlatArray(), got = b.latents.toFlatArray();
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const diff = got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
  assert.ok(diff <= 1e-5 * (1 + scale), `latents after 3 steps: max |compiled - eager| = ${diff}, largest latent ${scale}`);
});

test('a second CompiledDiT compiles from the disk cache the first one filled', () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-dit-disk-'));
  const saved = { cache: process.env.INFERJIT_CACHE, dir: process.env.INFERJIT_CACHE_DIR };
  process.env.INFERJIT_CACHE = 'disk';
  process.env.INFERJIT_CACHE_DIR = dir;
  try {
    const x = inputs(2, 10);
    const first = new CompiledDiT(CONFIGS[0], { seed: 3 });
    const out1 = first.forward(...x);
    assert.equal(jitStats(first)!.captures, 1);
    assert.ok(jitStats(first)!.diskWrites >= 1);
    const second = new CompiledDiT(CONFIGS[0], { seed: 3 });
    assertClose(second.forward(...x), out1, 0, 'second instance');
    const s = jitStats(second)!;
    assert.deepEqual([s.captures, s.diskHits, s.artifactHits], [0, 1, 1], JSON.stringify(s));
  } finally {
    process.env.INFERJIT_CACHE = saved.cache;
    if (saved.dir === undefined) delete process.env.INFERJIT_CACHE_DIR; else process.env.INFERJIT_CACHE_DIR = saved.dir;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the decorated classes fix the latent size; createDiT({ compiled }) picks the class', () => {
  assert.deepEqual(ditInputSpec({ inChannels: 4, inputSize: 32 }), [{ shape: ['batch', 4, 32, 32] }, { shape: ['batch'] }, { shape: ['batch'] }]);
  assert.throws(() => new CompiledDiT({ inputSize: 16, patchSize: 8, hiddenSize: 32, depth: 1, numHeads: 2 }),
    /CompiledDiT: compiled for latents \[batch, 4, 32, 32\] \(256×256 images\), got inChannels 4, inputSize 16; .*ditInputSpec\(config\)/);
  assert.ok(createDiT('DiT-S/2', { hiddenSize: 32, depth: 1, numHeads: 2, numClasses: 4 }, { compiled: true }) instanceof CompiledDiT);
  assert.ok(!(createDiT('DiT-S/2', { hiddenSize: 32, depth: 1, numHeads: 2, numClasses: 4 }) instanceof CompiledDiT));

  // 512×512: latents [N, 4, 64, 64], 64 tokens at patch 8.
  const big = createDiT('DiT-S/8', { inputSize: 64, hiddenSize: 32, depth: 1, numHeads: 2, numClasses: 4 }, { compiled: true, seed: 2 });
  assert.ok(big instanceof CompiledDiT512);
  const x = inputs(1, 4, 64);
  assertClose(big.forward(...x), big.eager(...x), TOL_EAGER, 'CompiledDiT512');
  assert.equal(jitStats(big)!.misses, 1);
});
