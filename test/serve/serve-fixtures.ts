// A tiny seeded GGUF model and helpers to start the real server on 127.0.0.1 for the serving tests.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeTinyLlamaGguf } from '../llm/llama-fixtures.js';
import { createServer, type ServerOptions, type InferjitServer } from '../../src/serve/index.js';
import { generate, loadPagedLlama, type StepEngine, type Tokenizer } from '../../src/llm/index.js';

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

let reference: { engine: StepEngine; tokenizer: Tokenizer } | null = null;
/** Greedy text of `prompt` run alone through generate() on the compiled step (the reference the server must reproduce). */
export async function greedyText(prompt: string, maxTokens: number): Promise<string> {
  if (!reference) { const l = loadPagedLlama(modelFile, { maxSeqs: 1 }); reference = { engine: l.engine, tokenizer: l.tokenizer! }; }
  const s = await generate(reference.engine, reference.tokenizer, prompt, { maxTokens, temperature: 0, ignoreEos: true }).complete();
  return s.text;
}
