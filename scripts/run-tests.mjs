// Runs the test suite with Node's test runner through tsx. Node 20's runner does not expand
// globs, so this finds test/**/*.test.ts itself. Extra arguments filter files by substring.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? find(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

const filters = process.argv.slice(2);
const files = find('test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
// A test that hangs fails after 10 minutes (named in the report) instead of stalling CI.
// The suite verifies the IR after every graph pass (the library does so only when asked).
const env = { ...process.env, INFERJIT_VERIFY_IR: process.env.INFERJIT_VERIFY_IR ?? '1' };
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-timeout=600000', '--test-reporter=spec', ...files], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
