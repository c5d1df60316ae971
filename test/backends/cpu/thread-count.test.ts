// Thread counts (issue 14): setNumThreads(1e6), INFERJIT_NUM_THREADS=1000000 and an LLM engine
// with threads: 1e6 used to abort the process (std::system_error escaping the native pool, exit
// 134), and setNumThreads(2 ** 32 + 3) silently gave 3. Counts are now whole numbers from 1 to
// MAX_THREADS, checked in TypeScript and again in the addon; an OS that refuses the threads gets an
// error and the pool keeps its size. Environment and OS-limit cases run in child processes, so an
// abort shows as a crash of the child.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backendInfo, getNumThreads, setNumThreads } from '../../../src/index.js';
import { MAX_THREADS } from '../../../src/backends/cpu/index.js';
import { addon } from '../../../src/backends/cpu/addon.js';
import { nativeTest } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

nativeTest('out-of-range, fractional and wrapped thread counts are refused; the pool keeps its size', () => {
  const before = getNumThreads();
  for (const n of [1e6, 2 ** 32 + 3, 0, -1, 1.5, NaN, Infinity, MAX_THREADS + 1]) {
    assert.throws(() => setNumThreads(n), (e: unknown) => e instanceof RangeError
      && new RegExp(`setNumThreads: n must be a whole number from 1 to ${MAX_THREADS} .*got ${String(n).replace('+', '\\+')}`).test(e.message), String(n));
    assert.equal(getNumThreads(), before, `after ${n}`);
  }
  assert.throws(() => setNumThreads('4' as never), /must be a whole number .*got "4"/);
  // The addon checks on its own too: 2 ** 32 + 3 is not converted to 3 on the way in.
  for (const n of [2 ** 32 + 3, 1e6, -5, 0.5]) {
    assert.throws(() => addon!.setNumThreads(n), /setNumThreads: n must be a whole number from 1 to 1024/);
  }
  assert.equal(getNumThreads(), before);
  setNumThreads(3);
  assert.equal(getNumThreads(), 3);
  setNumThreads(before);
});

/** Runs `code` (ESM, with inferjit's index as `ij`) in a child process; returns its outcome. */
function child(code: string, env: Record<string, string>): { status: number | null; signal: string | null; out: string; err: string } {
  const script = `const ij = await import(${JSON.stringify(join(root, 'src', 'index.ts'))});\n${code}`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8', timeout: 60_000, cwd: root, env: { ...process.env, ...env },
  });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

nativeTest('INFERJIT_NUM_THREADS out of range or not a number: one warning, the default pool, no crash', () => {
  const cores = addon?.info().physicalCores;
  const run = "const x = ij.randn([64, 64], { seed: 1 }); ij.ops.matmul(x, x); console.log(JSON.stringify({ threads: ij.getNumThreads() }));";
  for (const value of ['1000000', '4294967299', '2.5']) {
    const r = child(run, { INFERJIT_NUM_THREADS: value });
    assert.equal(r.signal, null, `INFERJIT_NUM_THREADS=${value} crashed the process (${r.signal}):\n${r.err}`);
    assert.equal(r.status, 0, r.err);
    assert.match(r.err, new RegExp(`INFERJIT_NUM_THREADS="${value}" is not a whole number from 1 to 1024; ignoring it`));
    const threads = JSON.parse(r.out.trim().split('\n').at(-1)!).threads as number;
    if (cores !== undefined) assert.equal(threads, cores);
    assert.ok(threads >= 1 && threads <= 1024);
  }
  const ok = child(run, { INFERJIT_NUM_THREADS: '3' });
  assert.equal(ok.status, 0, ok.err);
  assert.equal(JSON.parse(ok.out.trim().split('\n').at(-1)!).threads, 3);
  assert.doesNotMatch(ok.err, /INFERJIT_NUM_THREADS/);
});

nativeTest('when the OS refuses the threads, setNumThreads throws and the pool keeps its size (no abort)', () => {
  // A 3 GB address-space limit leaves room for node but not for 1023 thread stacks of 8 MB, so
  // thread creation fails inside the pool (EAGAIN). Plain node loads the addon directly: tsx's
  // WebAssembly does not start under such a limit.
  const js = `
    const a = require(${JSON.stringify(backendInfo().path)});
    a.setNumThreads(2);
    let message = null;
    try { a.setNumThreads(1024); } catch (e) { message = e.message; }
    console.log(JSON.stringify({ message, threads: a.getNumThreads() }));`;
  const r = spawnSync('bash', ['-c', `ulimit -v 3000000 && exec "${process.execPath}" -e '${js.replace(/'/g, "'\\''")}'`], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, INFERJIT_NUM_THREADS: '' },
  });
  assert.equal(r.signal, null, `the process crashed (${r.signal}):\n${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { message: string | null; threads: number };
  assert.match(out.message ?? 'no error', /^setNumThreads: could not start 1024 threads \(.+\); the pool keeps 2 threads$/);
  assert.equal(out.threads, 2);
  // The same limit at start-up (INFERJIT_NUM_THREADS=1024) falls back to the default pool.
  const s = spawnSync('bash', ['-c', `ulimit -v 3000000 && exec "${process.execPath}" -e 'console.log(require(${JSON.stringify(backendInfo().path)}).getNumThreads())'`], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, INFERJIT_NUM_THREADS: '1024' },
  });
  assert.equal(s.status, 0, s.stderr);
  assert.ok(Number(s.stdout) >= 1 && Number(s.stdout) < 1024, s.stdout);
});
