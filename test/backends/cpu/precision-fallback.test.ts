// precisionFallback: where the CPU lacks the instructions a reduced precision needs, compiling fails
// with an error naming them, or, when the user allows it, warns once and compiles fp32. This
// machine has AVX512_BF16, so INFERJIT_DISABLE_ISA hides it (reducedPrecisionSupport reads it on
// every call) to play a machine without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inferenceJit, randn, type Tensor } from '../../../src/index.js';
import { jitRunner } from '../../../src/jit/index.js';
import { TinyTransformer } from '../../../examples/models/transformer.js';
import { reducedPrecisionSupport } from '../../../src/backends/cpu/bf16.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';

const hasBf16 = reducedPrecisionSupport().bf16;
const skip = !planAddon ? 'native plan executor not built' : false;

/** Runs fn with INFERJIT_DISABLE_ISA set (when this CPU has the ISA), collecting inferjit warnings. */
async function withoutIsa<T>(isa: string, fn: () => T): Promise<{ result: T; warnings: string[] }> {
  const before = process.env.INFERJIT_DISABLE_ISA;
  const warnings: string[] = [];
  const listen = (w: Error & { code?: string }): void => { if (w.code === 'INFERJIT_PRECISION_FALLBACK') warnings.push(w.message); };
  process.on('warning', listen);
  process.env.INFERJIT_DISABLE_ISA = isa;
  try {
    const result = fn();
    await new Promise((r) => setImmediate(r)); // warnings are delivered on a later tick
    return { result, warnings };
  } finally {
    if (before === undefined) delete process.env.INFERJIT_DISABLE_ISA;
    else process.env.INFERJIT_DISABLE_ISA = before;
    process.off('warning', listen);
  }
}

test('INFERJIT_DISABLE_ISA hides AVX512_BF16 from reducedPrecisionSupport, naming it', { skip }, async () => {
  const { result: s } = await withoutIsa('avx512bf16', () => reducedPrecisionSupport());
  assert.equal(s.bf16, false);
  assert.equal(s.bf16Kernel, null);
  assert.match(s.missing!, /AVX512_BF16/);
  const { result: all } = await withoutIsa('avx512', () => reducedPrecisionSupport());
  assert.equal(all.f16Storage, false);
  assert.match(all.missing!, /lacks AVX-512/);
  assert.equal(reducedPrecisionSupport().bf16, hasBf16, 'restored afterwards');
});

test('precision bf16 without AVX512_BF16: a clear error, or with precisionFallback fp32 one warning and the fp32 result', { skip }, async () => {
  const model = new TinyTransformer({ dim: 32, heads: 2, depth: 1 });
  const x = randn([2, 5, 32], { seed: 3 });
  const fp32 = inferenceJit(model, { cache: 'memory' }).forward(x) as Tensor;

  const strict = inferenceJit(model, { cache: 'memory', precision: 'bf16' });
  const { result: error } = await withoutIsa('avx512bf16', () => { try { strict.forward(x); return null; } catch (e) { return e as Error; } });
  assert.ok(error, 'compiling bf16 without AVX512_BF16 must fail');
  assert.match(error.message, /precision 'bf16' on device 'cpu' needs AVX512_BF16: .*lacks AVX512_BF16/);
  assert.match(error.message, /set precisionFallback: 'fp32' \(or INFERJIT_PRECISION_FALLBACK=fp32\)/);

  const lenient = inferenceJit(model, { cache: 'memory', precision: 'bf16', precisionFallback: 'fp32' });
  const first = await withoutIsa('avx512bf16', () => lenient.forward(x) as Tensor);
  assert.equal(first.warnings.length, 1, `warnings: ${first.warnings.join(' | ')}`);
  assert.match(first.warnings[0], /precision 'bf16' on device 'cpu' needs AVX512_BF16: .*; compiling in fp32 instead/);
  assert.deepEqual(first.result.data, fp32.data, 'the fallback is exactly the fp32 compile');
  const exe = jitRunner(lenient)!.compiledEntries()[0].executable;
  assert.match(exe.describe!(), /^cpu plan: .*precision 'bf16' fell back to fp32: needs AVX512_BF16/);

  // a second model (and a second signature) falls back without warning again
  const other = inferenceJit(new TinyTransformer({ dim: 16, heads: 2, depth: 1 }), { cache: 'memory', precision: 'bf16', precisionFallback: 'fp32' });
  const second = await withoutIsa('avx512bf16', () => other.forward(randn([1, 3, 16], { seed: 4 })));
  assert.equal(second.warnings.length, 0);
});

test('precisionFallback via INFERJIT_PRECISION_FALLBACK, and bad values rejected by name', { skip }, async () => {
  const { resolveOptions, envOptions, validateOptions } = await import('../../../src/jit/options.js');
  assert.equal(resolveOptions({}, {}).precisionFallback, 'error');
  assert.equal(resolveOptions({ precisionFallback: 'error' }, { INFERJIT_PRECISION_FALLBACK: 'fp32' }).precisionFallback, 'fp32');
  assert.throws(() => envOptions({ INFERJIT_PRECISION_FALLBACK: 'fp64' }), /INFERJIT_PRECISION_FALLBACK: precisionFallback must be one of 'error', 'fp32', got "fp64"/);
  assert.throws(() => validateOptions({ precisionFallback: 'eager' } as never, 'inferenceJit options'), /inferenceJit options: precisionFallback must be one of 'error', 'fp32'/);
  const model = new TinyTransformer({ dim: 16, heads: 2, depth: 1 });
  const x = randn([1, 4, 16], { seed: 9 });
  const ref = inferenceJit(model, { cache: 'memory' }).forward(x) as Tensor;
  process.env.INFERJIT_PRECISION_FALLBACK = 'fp32';
  try {
    const fast = inferenceJit(model, { cache: 'memory', precision: 'bf16' });
    const { result } = await withoutIsa('avx512bf16', () => fast.forward(x) as Tensor);
    assert.deepEqual(result.data, ref.data);
  } finally {
    delete process.env.INFERJIT_PRECISION_FALLBACK;
  }
});

test('precision fp16 without AVX-512: an error naming AVX-512 and F16C, or the fp32 result with precisionFallback', { skip }, async () => {
  const model = new TinyTransformer({ dim: 32, heads: 2, depth: 1 });
  const x = randn([1, 7, 32], { seed: 8 });
  const fp32 = inferenceJit(model, { cache: 'memory' }).forward(x) as Tensor;
  const strict = inferenceJit(model, { cache: 'memory', precision: 'fp16' });
  const { result: error } = await withoutIsa('avx512', () => { try { strict.forward(x); return null; } catch (e) { return e as Error; } });
  assert.ok(error, 'compiling fp16 without AVX-512 must fail');
  assert.match(error.message, /precision 'fp16' on device 'cpu' needs AVX-512 and F16C: fp16 weight storage needs AVX-512 \(F\/BW\/DQ\/VL\) and F16C; this CPU lacks AVX-512/);
  assert.match(error.message, /precisionFallback: 'fp32'/);
  const lenient = inferenceJit(model, { cache: 'memory', precision: 'fp16', precisionFallback: 'fp32' });
  const { result, warnings } = await withoutIsa('avx512', () => lenient.forward(x) as Tensor);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /precision 'fp16' on device 'cpu' needs AVX-512 and F16C/);
  assert.deepEqual(result.data, fp32.data);
});
