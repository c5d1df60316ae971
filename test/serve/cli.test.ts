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
    [['serve', '--model', modelFile, '--max-runing', '4'], /unknown option --max-runing \(did you mean --max-running\?/],
    [['serve', '--model', modelFile, '--frobnicate'], /unknown option --frobnicate \(inferjit serve --help lists every option\)/],
    [['serve', '--frobnicate'], /unknown option --frobnicate/],
    [['serve', '--model', modelFile, '--port', '1', '--port=2'], /--port is given more than once/],
    [['serve', '--model', modelFile, '--prefill-chunk', '600'], /--prefill-chunk \(600\) must be at most --max-batched-tokens \(512\)/],
    [['serve', '--model', modelFile, '--max-batched-tokens', '64', '--prefill-chunk', '65'], /--prefill-chunk \(65\) must be at most --max-batched-tokens \(64\)/],
    [['serve', '--model', modelFile, '--prefill-chunk', '3'], /--prefill-floor \(4\) must be at most --prefill-chunk \(3\)/],
    [['serve', '--model', modelFile, '--max-decode-slowdown', '1'], /--max-decode-slowdown must be above 1 .*or 0 to turn it off; got 1/],
    [['serve', '--model', modelFile, '--max-decode-slowdown', '-3'], /--max-decode-slowdown must be a decimal number, got "-3"/],
    [['serve', '--model', modelFile, '--max-waiting', '0'], /--max-waiting must be an integer >= 1, got "0"/],
    [['serve', '--model', modelFile, '--max-waiting-tokens', 'many'], /--max-waiting-tokens must be an integer >= 1, got "many"/],
    [['serve', '--model', modelFile, '--max-batched-tokens'], /--max-batched-tokens needs a value/],
  ] as const) {
    const c = capture();
    assert.equal(await runCli(args, c.io), 2, args.join(' '));
    assert.match(c.err.join('\n'), message);
  }
});

test('--help lists every scheduler, engine and queue knob; the flags given are the limits in force', async () => {
  const c = capture();
  assert.equal(await runCli(['serve', '--help'], c.io), 0);
  const help = c.out.join('\n');
  for (const flag of ['--max-batched-tokens', '--max-running', '--max-waiting', '--max-waiting-tokens', '--prefill-chunk', '--max-decode-slowdown',
    '--prefill-floor', '--kv-dtype', '--cache-tokens', '--block-size', '--max-context', '--no-prefix-cache', '--threads', '--grpc-port',
    '--queue', '--queue-prefix', '--queue-liveness-ms', '--queue-event-timeout-ms', '--queue-max-outstanding', '--queue-no-pull']) {
    assert.match(help, new RegExp(`^  ${flag}\\b`, 'm'), flag);
  }
  const s = capture();
  let stop!: () => void;
  const stopped = new Promise<void>((r) => { stop = r; });
  const exit = runServeCommand(['--model', modelFile, '--port', '0', '--threads', '1', '--max-batched-tokens', '64', '--prefill-chunk', '32', '--prefill-floor', '4',
    '--max-decode-slowdown', '2.5', '--max-running', '3', '--max-waiting', '7', '--max-waiting-tokens', '900', '--kv-dtype', 'f16'], s.io, stopped);
  const [line] = await s.waitFor(/scheduler: .*/);
  assert.equal(line, 'scheduler: max batched tokens 64, max running 3, prefill chunk 32, max decode slowdown 2.5, prefill floor 4, max waiting 7 requests / 900 tokens');
  stop();
  assert.equal(await exit, 0);
});

test('a model file that cannot be loaded exits 1 with the reason', async () => {
  const c = capture();
  assert.equal(await runServeCommand(['--model', '/nonexistent/x.gguf', '--port', '0'], c.io, new Promise(() => {})), 1);
  assert.match(c.err.join('\n'), /x\.gguf/);
});
