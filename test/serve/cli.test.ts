// `inferjit serve`: starts the server from the command line, serves requests, stops cleanly; bad
// arguments are usage errors (exit 2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../../src/cli/main.js';
import { runServeCommand } from '../../src/cli/serve.js';
import { modelFile, postJson } from './serve-fixtures.js';

function capture() {
  const out: string[] = [], err: string[] = [];
  let onOut: ((l: string) => void) | null = null;
  return { out, err, io: { out: (l: string) => { out.push(l); onOut?.(l); }, err: (l: string) => err.push(l) }, waitFor(re: RegExp) {
    return new Promise<RegExpMatchArray>((resolve) => {
      const hit = out.map((l) => l.match(re)).find((m) => m);
      if (hit) return resolve(hit);
      onOut = (l) => { const m = l.match(re); if (m) resolve(m); };
    });
  } };
}

test('inferjit serve --model file --port 0 serves completions until stopped', async () => {
  const c = capture();
  let stop!: () => void;
  const stopped = new Promise<void>((r) => { stop = r; });
  const exit = runServeCommand(['--model', modelFile, '--port', '0', '--threads', '1', '--model-name', 'tiny', '--max-running', '2'], c.io, stopped);
  const [, url] = await c.waitFor(/serving tiny at (http:\/\/127\.0\.0\.1:\d+)\/v1/);
  const r = await postJson(`${url}/v1/completions`, { model: 'tiny', prompt: 'hello', max_tokens: 3, ignore_eos: true });
  assert.equal(r.status, 200);
  assert.equal(r.json.usage.completion_tokens, 3);
  stop();
  assert.equal(await exit, 0);
  await assert.rejects(fetch(`${url}/health`), 'the server is closed');
});

test('usage errors exit 2 with the reason', async () => {
  for (const [args, message] of [
    [['serve'], /--model is required/],
    [['serve', '--model', modelFile, '--port', 'eighty'], /--port must be an integer >= 0, got "eighty"/],
    [['serve', '--model', modelFile, '--kv-dtype', 'f8'], /--kv-dtype must be one of f32, f16/],
    [['serve', '--model', modelFile, '--max-context', '1'], /--max-context must be an integer >= 2, got "1"/],
    [['serve', '--model', modelFile, 'extra'], /unexpected arguments: extra/],
  ] as const) {
    const c = capture();
    assert.equal(await runCli(args, c.io), 2, args.join(' '));
    assert.match(c.err.join('\n'), message);
  }
});

test('a model file that cannot be loaded exits 1 with the reason', async () => {
  const c = capture();
  assert.equal(await runServeCommand(['--model', '/nonexistent/x.gguf', '--port', '0'], c.io, new Promise(() => {})), 1);
  assert.match(c.err.join('\n'), /x\.gguf/);
});
