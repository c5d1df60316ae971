// A tiny seeded GGUF model and helpers to start the real server on 127.0.0.1 for the serving tests.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeTinyLlamaGguf } from '../llm/llama-fixtures.js';
import { createServer, type ServerOptions, type InferjitServer } from '../../src/serve/index.js';
import { loadCausalLM, type LoadedCausalLM } from '../../src/llm/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-serve-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
export const modelFile = path.join(dir, 'tiny.gguf');
writeTinyLlamaGguf(modelFile, { seed: 11 });
export const MODEL = 'tiny.gguf';

/** Starts a server on an ephemeral loopback port and waits for the model. */
export async function startServer(options: Partial<ServerOptions> = {}): Promise<{ server: InferjitServer; url: string }> {
  const server = createServer({ model: modelFile, engine: { threads: 1 }, ...options });
  const url = await server.listen(0, '127.0.0.1');
  await server.ready;
  return { server, url };
}

export async function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });
  const text = await r.text();
  let json: unknown;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, json, headers: r.headers };
}

/** One metric's value from the Prometheus text (the first sample whose name and labels start with `prefix`). */
export async function metric(url: string, prefix: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

let reference: LoadedCausalLM | null = null;
/** Greedy token ids of `prompt` generated alone by the compiled model's StepEngine, without prefix caching (the reference the server must reproduce). */
export async function greedyIds(prompt: string | number[], maxTokens: number): Promise<number[]> {
  reference ??= loadCausalLM(modelFile, { prefixCaching: false });
  const ids = typeof prompt === 'string' ? reference.tokenizer!.encode(prompt) : prompt;
  return (await reference.engine.generate(ids, { maxTokens, temperature: 0 })).tokens;
}
/** The text of greedyIds, decoded as the server streams it. */
export async function greedyText(prompt: string | number[], maxTokens: number): Promise<string> {
  const ids = await greedyIds(prompt, maxTokens);
  return reference!.tokenizer!.decode(ids, { stripDummyPrefix: false });
}

/** Starts `inferjit serve` as a separate process on the Redis queue (one sequence at a time, so a test
 *  can SIGKILL / SIGSTOP it and nothing is cleaned up); resolves once it serves. */
export async function spawnQueueInstance(redisUrl: string, prefix: string, livenessTtlMs: number): Promise<{ child: ChildProcess; exited: Promise<unknown> }> {
  const bin = fileURLToPath(new URL('../../bin/inferjit.mjs', import.meta.url));
  const child = spawn(process.execPath, [bin, 'serve', '--model', modelFile, '--port', '0', '--threads', '1', '--max-running', '1',
    '--queue', redisUrl, '--queue-prefix', prefix, '--queue-liveness-ms', String(livenessTtlMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr!.on('data', (d) => { out += d; });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => { out += d; if (/serving /.test(out)) resolve(); });
    child.once('exit', (code) => reject(new Error(`the instance exited with ${code}:\n${out}`)));
  });
  child.removeAllListeners('exit');
  return { child, exited: new Promise((r) => child.once('exit', r)) };
}

/** The data of each server-sent event of a streaming response, in order ('[DONE]' included). */
export async function* sseData(r: Response): AsyncGenerator<string> {
  let buffered = '';
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += Buffer.from(part).toString();
    let cut;
    while ((cut = buffered.indexOf('\n\n')) >= 0) {
      yield buffered.slice(0, cut).replace(/^data: /, '');
      buffered = buffered.slice(cut + 2);
    }
  }
}
