// Fuzz target for cache entries (issue 14): seeded mutations of real cache entries (truncated,
// bytes flipped, replaced by a folder, a FIFO or a symlink to /dev/zero or to another entry's file,
// deleted, grown, emptied, the entry folder replaced by a file, bogus manifest JSON, manifests with
// valid checksums but bad fields). Every case must give the unmutated output bit for bit and leave
// the entry rebuilt: never a crash, a hang, an unexpected error or a wrong output.
// INFERJIT_FUZZ_CASES (default 40) sets the number of cases, INFERJIT_FUZZ_SEED the seed,
// INFERJIT_FUZZ_CASE_MS the per-case time limit; a failure prints the case and seed to rerun it
// (FUZZ_ONLY=<case> with the same seed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const WORKER = join(here, 'fixtures', 'cache-fuzz-worker.ts');
const CASES = Number(process.env.INFERJIT_FUZZ_CASES ?? 40);
const SEED = Number(process.env.INFERJIT_FUZZ_SEED ?? 1);
const CASE_MS = Number(process.env.INFERJIT_FUZZ_CASE_MS ?? 15_000);
const STARTUP_MS = 60_000; // tsx start-up and the pristine compile

interface CaseResult { case: number; seed: number; entry: string; mutation: string; ok: boolean; problems: string[]; ms: number; warnings: number }

test(`cache entries: ${CASES} seeded mutations are detected and rebuilt with the unmutated output`, { timeout: STARTUP_MS + CASES * CASE_MS }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
    cwd: join(here, '..', '..'), env: { ...process.env, FUZZ_CASES: String(CASES), FUZZ_SEED: String(SEED) },
  });
  let out = '', err = '', current = 'start-up';
  let hung: string | null = null;
  // The per-case watchdog: restarted whenever a case starts; a case that runs past it is a hang.
  let timer = setTimeout(() => { hung = current; child.kill('SIGKILL'); }, STARTUP_MS);
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => {
    err += d;
    const starts = [...String(d).matchAll(/^start (\d+)$/gm)];
    if (starts.length) {
      current = `case ${starts.at(-1)![1]}`;
      clearTimeout(timer);
      timer = setTimeout(() => { hung = current; child.kill('SIGKILL'); }, CASE_MS);
    }
  });
  const [code, signal] = await new Promise<[number | null, string | null]>((res) => child.on('close', (c, s) => res([c, s])));
  clearTimeout(timer);
  assert.equal(hung, null, `${hung} (seed ${SEED}) ran past ${CASE_MS} ms: a hang. stderr:\n${err.slice(-2000)}`);
  assert.equal(signal, null, `the fuzz worker crashed (${signal}) during ${current}:\n${err.slice(-2000)}`);
  assert.equal(code, 0, `the fuzz worker failed during ${current}:\n${err.slice(-4000)}`);
  const results = out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as CaseResult);
  assert.equal(results.length, CASES, 'every case reported');
  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(failed.map((r) => `case ${r.case} (seed ${SEED}, ${r.entry}: ${r.mutation}): ${r.problems.join('; ')}`), []);
  // The mutations are varied: most kinds of damage were tried on more than one kind of entry.
  const kinds = new Set(results.map((r) => r.mutation.split(' ')[0].replace(/:$/, '')));
  if (CASES >= 40) assert.ok(kinds.size >= 8, `only ${[...kinds].join(', ')}`);
  assert.ok(results.filter((r) => r.warnings > 0).length >= CASES / 2, 'damage is reported');
});
