// Both TypeScript decorator flavours. This file itself is compiled under the root tsconfig
// (standard TC39 decorators); fixtures/decorated-models.ts runs in child processes under
// fixtures/tsconfig.legacy.json (experimentalDecorators) and fixtures/tsconfig.standard.json.
// Compiled results must equal the eager results exactly (same kernels through the same dispatch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nn, randn, type Tensor, inferenceJit, jitStats } from '../../src/index.js';

// Deploy-time INFERJIT_* variables override options by design; keep them out of these tests.
for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

@inferenceJit({ cache: 'memory' })
class Block extends nn.Module {
  norm = new nn.LayerNorm(6);
  fc = new nn.Linear(6, 6, { seed: 11 });
  forward(x: Tensor): Tensor { return x.add(this.fc.forward(this.norm.forward(x))); }
}

test('standard class decorator (in process): forward is compiled per instance', () => {
  const a = new Block(), b = new Block();
  const x = randn([2, 6], { seed: 1 });
  const eager = x.add(a.fc.forward(a.norm.forward(x)));
  assert.deepEqual(a.forward(x).toArray(), eager.toArray());
  assert.deepEqual(a.forward(x).toArray(), eager.toArray());
  b.forward(x);
  assert.equal(jitStats(a)!.hits, 1);
  assert.equal(jitStats(a)!.captures, 1);
  assert.equal(jitStats(b)!.captures, 1); // each instance has its own cache (own weights)
});

test('decorating something that is neither a class with forward nor a method fails clearly', () => {
  assert.throws(() => inferenceJit({ cache: 'memory' })(class NoForward {}), /class NoForward has no forward\(\) method to compile/);
  assert.throws(() => (inferenceJit as (...a: unknown[]) => unknown)(42, 'x'), /cannot tell how it is used from its arguments \(number, string\)/);
});

interface Report {
  flavour: string;
  [k: string]: unknown;
  stats: Record<string, { calls: number; hits: number; captures: number; recompiles: number } | null>;
  options: { base: object; derived: object };
  backend: { derived: string };
  describe: { beforeFirstCall: { stats: { calls: number } | null; describe: string | null }; bare: string; encode: string; encodeHits: number; methodsForward: string | null };
}

function runFixture(tsconfig: string, cacheDir: string): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'decorated-models.ts')], {
      cwd: root,
      env: { ...process.env, TSX_TSCONFIG_PATH: join(here, 'fixtures', tsconfig), INFERJIT_CACHE_DIR: cacheDir },
    });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`fixture under ${tsconfig} exited with ${code}:\n${err}`));
      else resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Report);
    });
  });
}

test('legacy (experimentalDecorators) and standard decorators: class, options, methods, metadata', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'inferjit-dec-'));
  try {
    const [legacy, standard] = await Promise.all([
      runFixture('tsconfig.legacy.json', join(cacheDir, 'legacy')),
      runFixture('tsconfig.standard.json', join(cacheDir, 'standard')),
    ]);
    assert.equal(legacy.flavour, 'legacy');
    assert.equal(standard.flavour, 'standard');
    for (const r of [legacy, standard]) {
      for (const k of ['bare', 'withOptions', 'encode', 'decode', 'derived']) {
        const v = r[k] as { compiled: unknown; eager: unknown };
        assert.deepEqual(v.compiled, v.eager, `${r.flavour} ${k}: compiled != eager`);
      }
      const bare = r.bare as { compiled: unknown; viaCall: unknown };
      assert.deepEqual(bare.viaCall, bare.compiled); // Module.call goes through the compiled forward
      assert.equal(r.stats.bare!.calls, 2);
      assert.equal(r.stats.bare!.captures, 1);
      // inputSpec from the decorator: batch 2 and batch 5 share one graph.
      assert.equal(r.stats.withOptions!.captures, 1);
      assert.equal(r.stats.withOptions!.recompiles, 0);
      assert.equal(r.stats.encode!.captures, 1);
      assert.equal(r.stats.decode!.captures, 1);
      assert.equal(r.stats.methodsForward, null);
      // reflect-metadata: the subclass's jitOptions refine the base class's decorator options.
      assert.deepEqual(r.options.base, { cache: 'memory', device: 'cpu' });
      assert.deepEqual(r.options.derived, { cache: 'memory', device: 'reference' });
      assert.equal(r.backend.derived, 'reference');
      // Decorated instances have describe() and stats() too (jitDescribe / jitHandle).
      assert.equal(r.describe.beforeFirstCall.stats!.calls, 0);
      assert.match(r.describe.beforeFirstCall.describe!, /^Bare\.forward: nothing compiled yet/);
      assert.match(r.describe.bare, /^Bare\.forward: 1 signature in memory \(device cpu, precision fp32, cache disk\)\n  f32\[2,4\] -> /);
      assert.match(r.describe.encode, /^Methods\.encode: 1 signature in memory .*\n  f32\[2,4\] -> /);
      assert.equal(r.describe.encodeHits, 0);
      assert.equal(r.describe.methodsForward, null);
    }
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
