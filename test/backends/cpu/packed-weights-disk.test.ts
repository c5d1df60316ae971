// Packed reduced-precision weights in the JIT's disk cache, across processes: the first process
// packs and stores every bf16 weight, a second loads all of them (0 packs) and computes bit-identical
// outputs, a changed weight is repacked (and only it), and a damaged panel file is reported,
// rebuilt and never used. Each process is fixtures/packed-weights-worker.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DiskCache } from '../../../src/cache/disk-cache.js';
import type { JitStats } from '../../../src/jit/index.js';
import type { WeightCacheStats } from '../../../src/backends/cpu/plan/weight-cache.js';
import { reducedPrecisionSupport } from '../../../src/backends/cpu/bf16.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const WORKER = join(here, 'fixtures', 'packed-weights-worker.ts');

interface WorkerResult { stats: JitStats; weights: WeightCacheStats; describe: string; output: string; fresh: string; stderr: string }

function runWorker(cacheDir: string, env: Record<string, string> = {}): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
      cwd: root,
      env: { ...process.env, INFERJIT_CACHE_DIR: cacheDir, INFERJIT_CACHE: '', INFERJIT_DEVICE: '', INFERJIT_PRECISION: '', ...env },
    });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`worker exited with ${code}:\n${err}`));
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as WorkerResult;
      r.stderr = err;
      resolve(r);
    });
  });
}

const support = reducedPrecisionSupport();
// These tests check the bf16 kernels themselves, so they pin one (unless the environment names
// one); whether 'auto' computes bf16 plans in fp32 on this CPU is plan-bf16-compute.test.ts's subject.
if (support.bf16) process.env.INFERJIT_BF16_KERNEL ??= support.amx ? 'amx' : 'avx512';
const skip = !planAddon ? 'native plan executor not built' : !support.bf16 ? `no bf16 here: ${support.missing}` : false;
const packedKeys = (dir: string): string[] => new DiskCache(dir).list().filter((e) => e.kind === 'packed-weight').map((e) => e.key).sort();

test('bf16 panels in the disk cache: a second process packs nothing and matches bit for bit; changed weights repack; damage is rebuilt', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-panels-'));
  try {
    const first = await runWorker(dir);
    const W = first.weights.packed;
    // per block: fused qkv, out projection, fc1, fc2
    assert.ok(W >= 8, `weights packed: ${W}`);
    assert.equal(first.weights.loaded, 0);
    assert.equal(first.weights.written, W);
    assert.equal(first.stats.weightsPacked, W);
    assert.equal(first.output, first.fresh, 'disk-cached compile == in-memory compile');
    const keys = packedKeys(dir);
    assert.equal(keys.length, W, 'one cache entry per packed weight');

    const second = await runWorker(dir);
    assert.equal(second.stats.captures, 0, 'the graph came from the disk too');
    assert.equal(second.weights.packed, 0, 'no bf16 packs in the second process');
    assert.equal(second.weights.loaded, W);
    assert.equal(second.stats.weightsPacked, 0);
    assert.equal(second.stats.weightsLoaded, W);
    assert.equal(second.output, first.output, 'loaded panels give bit-identical outputs');
    assert.match(second.describe, new RegExp(`^cpu plan bf16 \\(${W} bf16 weights: 0 packed here, ${W} loaded from the disk cache;`));

    // One weight changes: only it is packed again, and its stale panels are never used.
    const perturbed = await runWorker(dir, { WORKER_PERTURB: '1' });
    assert.equal(perturbed.weights.packed, 1);
    assert.equal(perturbed.weights.loaded, W - 1);
    assert.notEqual(perturbed.output, first.output);
    assert.equal(perturbed.output, perturbed.fresh, 'the changed weight was packed from its new values');
    assert.equal(packedKeys(dir).length, W + 1);

    // Flip one byte in the middle of a panel file the unperturbed model uses.
    const victim = join(dir, 'entries', keys[0], 'panels.bin');
    const bytes = Buffer.from(readFileSync(victim));
    bytes[bytes.length >> 1] ^= 0x04;
    writeFileSync(victim, bytes);
    const repaired = await runWorker(dir);
    assert.match(repaired.stderr, /inferjit cache: entry [0-9a-f]{12}… in .* is damaged \(file panels\.bin does not match its (xxh64|sha256) checksum\); removing it and rebuilding/);
    assert.equal(repaired.weights.packed, 1, 'the damaged weight is repacked');
    assert.equal(repaired.weights.loaded, W - 1);
    assert.equal(repaired.output, first.output, 'the damaged panels were not used');

    const after = await runWorker(dir);
    assert.equal(after.weights.packed, 0, 'the rebuilt entry is used again');
    assert.equal(after.output, first.output);
    assert.doesNotMatch(after.stderr, /is damaged/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('f16 panels (precision fp16) go through the disk cache the same way', { skip: !planAddon ? 'native plan executor not built' : !support.f16Storage ? `no fp16 storage here: ${support.f16Missing}` : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'inferjit-panels16-'));
  try {
    const env = { WORKER_PRECISION: 'fp16' };
    const first = await runWorker(dir, env);
    assert.ok(first.weights.packed >= 8 && first.weights.written === first.weights.packed);
    assert.equal(first.output, first.fresh);
    const second = await runWorker(dir, env);
    assert.equal(second.weights.packed, 0);
    assert.equal(second.weights.loaded, first.weights.packed);
    assert.equal(second.output, first.output);
    assert.match(second.describe, /^cpu plan fp16 /);
    // bf16 and f16 panels of the same weights are different entries
    const bf16 = await runWorker(dir);
    assert.equal(bf16.weights.loaded, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
