// `inferjit serve --grpc-port`: the CLI serves gRPC next to HTTP, and stops both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { runServeCommand } from '../../src/cli/serve.js';
import { loadInferjitProto } from '../../src/serve/grpc.js';
import { modelFile } from './serve-fixtures.js';

test('inferjit serve --grpc-port 0 answers Generate until stopped', async () => {
  const lines: string[] = [];
  let seen: (() => void) | null = null;
  const io = { out: (l: string) => { lines.push(l); seen?.(); }, err: (l: string) => lines.push(l) };
  let stop!: () => void;
  const exit = runServeCommand(['--model', modelFile, '--port', '0', '--grpc-port', '0', '--threads', '1', '--model-name', 'tiny'], io, new Promise((r) => { stop = r; }));
  while (!lines.some((l) => /serving tiny/.test(l))) await new Promise<void>((r) => { seen = r; });
  const port = Number(lines.join('\n').match(/gRPC on 127\.0\.0\.1:(\d+)/)![1]);
  const Inference = (loadInferjitProto() as any).inferjit.v1.Inference as grpc.ServiceClientConstructor;
  const client = new Inference(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
  const r: any = await new Promise((resolve, reject) => client.Generate({ model: 'tiny', prompt: 'hello', max_tokens: 3, ignore_eos: true }, (e: Error | null, v: unknown) => (e ? reject(e) : resolve(v))));
  assert.equal(r.usage.completion_tokens, 3);
  client.close();
  stop();
  assert.equal(await exit, 0);
});
