// examples/llm/llava.ts end to end on its defaults (a seeded tiny checkpoint, a generated PNG): it
// writes the checkpoint, loads it by name, preprocesses the image, and generates through the
// compiled encoder and the compiled LLaVA step (the last line names the native plan).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

test('examples/llm/llava.ts generates text for an image through the compiled step', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/llm/llava.ts', '--max-tokens', '3'], { cwd: repo, encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /the image as 16 rows/);
  assert.match(r.stdout, /\n3 tokens \(length\)/);
  assert.match(r.stdout, /step: cpu plan/);
});
