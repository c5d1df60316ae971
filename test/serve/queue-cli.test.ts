// `inferjit serve --queue`: bad queue options are usage errors (exit 2); a queue that cannot be
// reached fails the start with the address (exit 1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { runCli } from '../../src/cli/main.js';
import { runServeCommand } from '../../src/cli/serve.js';
import { modelFile } from './serve-fixtures.js';

function capture() {
  const out: string[] = [], err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
}

test('queue usage errors exit 2 with the reason', async () => {
  for (const [args, message] of [
    [['serve', '--model', modelFile, '--queue', 'localhost:6379'], /--queue must be a redis:\/\/ URL, got "localhost:6379"/],
    [['serve', '--model', modelFile, '--queue-prefix', 'x'], /--queue-prefix needs --queue/],
    [['serve', '--model', modelFile, '--queue-no-pull', '--queue-event-timeout-ms', '5000'], /--queue-event-timeout-ms, --queue-no-pull need --queue/],
    [['serve', '--model', modelFile, '--queue', 'redis://127.0.0.1:6379', '--queue-event-timeout-ms', '50'], /--queue-event-timeout-ms must be an integer >= 100, got "50"/],
    [['serve', '--model', modelFile, '--queue', 'redis://127.0.0.1:6379', '--queue-max-outstanding', '0'], /--queue-max-outstanding must be an integer >= 1/],
    [['serve', '--model', modelFile, '--queue', 'redis://127.0.0.1:6379', '--queue-liveness-ms', '5'], /--queue-liveness-ms must be an integer >= 100/],
    [['serve', '--model', modelFile, '--grpc-port', '70000'], /--grpc-port must be at most 65535/],
  ] as const) {
    const c = capture();
    assert.equal(await runCli(args, c.io), 2, args.join(' '));
    assert.match(c.err.join('\n'), message);
  }
});

test('an unreachable queue fails the start with its address', async () => {
  // A port nobody listens on: bind one, close it.
  const port = await new Promise<number>((resolve) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); }); });
  const c = capture();
  assert.equal(await runServeCommand(['--model', modelFile, '--port', '0', '--threads', '1', '--queue', `redis://127.0.0.1:${port}`], c.io, new Promise(() => {})), 1);
  assert.match(c.err.join('\n'), new RegExp(`queue: cannot connect to redis://127\\.0\\.0\\.1:${port}`));
});
