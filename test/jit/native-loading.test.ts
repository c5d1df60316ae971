// Whether native cpu kernels run must not depend on which modules were imported: the cpu backend
// installs a kernel loader, and the first lookup of a cpu kernel (or the JIT's cpu backend) runs it.
// A fresh process that imports only the JIT and the op layer, never the package entry or the cpu
// backend module itself, still gets them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backendInfo } from '../../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));

test('native cpu kernels are registered on first use, whatever was imported', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'native-loading.ts')], { cwd: join(here, '..', '..'), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { native: boolean; linearBackends: string[]; kernel: boolean; describe: string };
  const native = backendInfo().native;
  assert.equal(out.native, native);
  assert.equal(out.kernel, native);
  assert.equal(out.linearBackends.includes('cpu'), native);
  assert.match(out.describe, native ? /-> cpu plan/ : /-> cpu interpreter/);
});
