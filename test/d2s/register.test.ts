// The Node loader hook end to end: a child process runs a real .ts file with
// `node --import tsx --import ./src/register.ts` and the models in it compile with tensor-dependent
// control flow (one capture, no graph break, results equal to eager loops computed here); the
// transformed file lands in the cache folder and a second run serves it from there. Without the
// hook, the same file behaves as before: a tensor-dependent `if` in traced code is a graph break.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randn, fromArray, full, ops, nn, type Tensor } from '../../src/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'inferjit-d2s-hook-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function runChild(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...args], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const close = (a: number[], b: number[], what: string): void => {
  assert.equal(a.length, b.length, what);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= 1e-5, `${what}[${i}]: ${x} vs ${b[i]}`));
};
const arr = (t: Tensor): number[] => Array.from(t.toFlatArray());

test('node --import tsx --import ./src/register.ts runs the models with control flow compiled; the transform is cached', () => {
  const cache = join(dir, 'cache');
  const args = ['--import', 'tsx', '--import', './src/register.ts', 'test/d2s/fixtures/run-models.ts'];
  const first = runChild(args, { INFERJIT_D2S_CACHE: cache });
  assert.equal(first.status, 0, first.stderr);
  const out = JSON.parse(first.stdout.trim().split('\n').pop()!);
  for (const name of ['early', 'shrink', 'sign']) {
    assert.equal(out[name].stats.captures, 1, `${name}: ${JSON.stringify(out[name].stats)}`);
    assert.equal(out[name].stats.graphBreaks, 0, name);
    assert.equal(out[name].stats.eagerCalls, 0, name);
  }
  // eager oracles with the same seeded weights as the fixture's modules
  const blocks = [1, 2, 3].map((seed) => new nn.Linear(8, 8, { seed }));
  const head = new nn.Linear(8, 1, { seed: 4 });
  let x = randn([2, 8], { seed: 3 });
  for (const b of blocks) { x = b.forward(x).tanh(); if (ops.max(head.forward(x).sigmoid()).item() > 0.5) break; }
  close(out.early.y, arr(x), 'early exit');
  const shrink = (v: Tensor): number[] => { let s = 0; while (ops.sum(v.mul(v)).item() > 0.5) { v = v.mul(0.5); s++; } return arr(v.add(s)); };
  close(out.shrink.y[0], shrink(fromArray([3, 4])), 'shrink [3, 4]');
  close(out.shrink.y[1], shrink(fromArray([0.1, 0.1])), 'shrink [0.1, 0.1]');
  const fc = new nn.Linear(4, 4, { seed: 5 });
  const sign = (v: Tensor): number[] => { const s = ops.sum(v).item(); return arr(s > 0 ? fc.forward(v).relu() : s < -1 && s > -100 ? v.neg() : v.mul(2)); };
  close(out.sign.y[0], sign(fromArray([1, 2, 3, 4])), 'sign +');
  close(out.sign.y[1], sign(fromArray([-1, -2, -3, -4])), 'sign -');
  close(out.sign.y[2], sign(fromArray([-0.1, 0, 0, 0])), 'sign ~0');

  // one transformed file (models.ts); files with nothing to convert are remembered as empty entries
  const files = readdirSync(cache).filter((f) => statSync(join(cache, f)).size > 0);
  assert.equal(files.length, 1, files.join(', '));
  const before = statSync(join(cache, files[0])).mtimeMs;
  const second = runChild(args, { INFERJIT_D2S_CACHE: cache });
  assert.equal(second.status, 0, second.stderr);
  assert.deepEqual(JSON.parse(second.stdout.trim().split('\n').pop()!), out);
  assert.equal(statSync(join(cache, files[0])).mtimeMs, before, 'the second run read the cached file instead of writing it again');
});

test('with the hook `if (tensor)` becomes a cond; without it behaviour is as before (the traced if silently takes the true branch)', () => {
  const file = join(root, 'test/d2s/fixtures/.plain-if.tmp.ts');
  writeFileSync(file, [
    "import { ops, inferenceJit, jitStats, fromArray, type Tensor } from '../../../src/index.js';",
    "class M { forward(x: Tensor): Tensor { if (ops.sum(x).greater(0)) { return x.mul(2); } return x.neg(); } }",
    "const f = inferenceJit(new M(), { cache: 'memory', fallback: 'eager' });",
    "process.removeAllListeners('warning');",
    "const y = f(fromArray([-1, -2]));",
    "console.log(JSON.stringify({ y: Array.from(y.toFlatArray()), stats: f.stats() }));",
  ].join('\n'));
  try {
    const withHook = runChild(['--import', 'tsx', '--import', './src/register.ts', file], { INFERJIT_D2S_CACHE: join(dir, 'cache2') });
    assert.equal(withHook.status, 0, withHook.stderr);
    const a = JSON.parse(withHook.stdout.trim().split('\n').pop()!);
    assert.deepEqual(a.y, [1, 2]);
    assert.equal(a.stats.graphBreaks, 0);
    assert.equal(a.stats.captures, 1);
    const plain = runChild(['--import', 'tsx', file]);
    assert.equal(plain.status, 0, plain.stderr);
    const b = JSON.parse(plain.stdout.trim().split('\n').pop()!);
    // today's behaviour, unchanged without the hook: a tensor is an object, so `if (tensor)` is
    // true while tracing and the graph holds only the then-branch (wrong for this input)
    assert.equal(b.stats.graphBreaks, 0);
    assert.deepEqual(b.y, [-2, -4]);
  } finally { rmSync(file, { force: true }); }
});
