// The gRPC API with a real @grpc/grpc-js client on loopback against the tiny model: Generate and
// GenerateStream produce what POST /v1/completions produces; bad input is INVALID_ARGUMENT naming the
// field; a cancelled stream and a passed deadline free the sequence's KV blocks.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer, loadInferjitProto } from '../../src/serve/grpc.js';
import { startServer, MODEL, postJson, metric } from './serve-fixtures.js';

const { server, url } = await startServer();
const rpc = createGrpcServer(server);
const port = await rpc.listen(0, '127.0.0.1');
const Inference = (loadInferjitProto() as any).inferjit.v1.Inference as grpc.ServiceClientConstructor;
const client = new Inference(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
after(async () => { client.close(); await rpc.close(); await server.close(); });

function unary(method: 'Generate' | 'Tokenize', req: unknown, options: grpc.CallOptions = {}): Promise<any> {
  return new Promise((resolve, reject) => client[method](req, new grpc.Metadata(), options, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))));
}

function streamAll(req: unknown, options: grpc.CallOptions = {}): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const chunks: any[] = [];
    const call = client.GenerateStream(req, new grpc.Metadata(), options);
    call.on('data', (c: unknown) => chunks.push(c));
    call.on('error', reject);
    call.on('end', () => resolve(chunks));
  });
}

/** Polls until the scheduler holds nothing (the request's blocks are back). */
async function drained(): Promise<void> {
  for (let i = 0; i < 200 && (server.scheduler!.numRunning > 0 || server.scheduler!.numWaiting > 0 || server.scheduler!.kvUsage > 0); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

// A request that runs for most of the context (long enough to cancel or time out mid-way).
const maxModelLen = ((await (await fetch(`${url}/v1/models`)).json()) as any).data[0].max_model_len as number;
const LONG = maxModelLen - 16;
const request = { model: MODEL, prompt: 'the quick brown fox', max_tokens: 12, temperature: 0, ignore_eos: true };

test('Generate and GenerateStream produce the HTTP API output for the same greedy request', async () => {
  const http = await postJson(`${url}/v1/completions`, request);
  assert.equal(http.status, 200);
  const expected = http.json.choices[0].text as string;
  assert.ok(expected.length > 0);

  const r = await unary('Generate', request);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text, expected);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.deepEqual(r.usage, http.json.usage);
  assert.match(r.id, /^cmpl-/);

  const chunks = await streamAll(request);
  assert.ok(chunks.length > 3, 'the text came in pieces');
  assert.equal(chunks.map((c) => c.text ?? '').join(''), expected);
  assert.equal(chunks.filter((c) => c.finish_reason).map((c) => c.finish_reason).join(), 'length');
  assert.deepEqual(chunks.at(-1).usage, http.json.usage, 'the last chunk carries the usage');

  // A prompt of token ids and n > 1 (seeded sampling) agree with HTTP as well.
  const ids = (await postJson(`${url}/tokenize`, { prompt: 'hello world' })).json.tokens as number[];
  const sampled = { model: MODEL, max_tokens: 6, temperature: 0.9, seed: 7, n: 2, stop: ['zz'], logit_bias: { 5: -100 } };
  const h2 = await postJson(`${url}/v1/completions`, { ...sampled, prompt: ids });
  const g2 = await unary('Generate', { ...sampled, prompt_tokens: { ids } });
  assert.deepEqual(g2.choices.map((c: any) => c.text), h2.json.choices.map((c: any) => c.text));

  const t = await unary('Tokenize', { model: MODEL, prompt: 'hello world' });
  assert.deepEqual(t.tokens, ids);
  assert.equal(t.count, ids.length);
});

test('bad input is INVALID_ARGUMENT with the field named; an unknown model is NOT_FOUND', async () => {
  const cases: [Record<string, unknown>, grpc.status, string | null, RegExp][] = [
    [{ ...request, max_tokens: 0 }, grpc.status.INVALID_ARGUMENT, 'max_tokens', /'max_tokens' must be >= 1/],
    [{ ...request, temperature: 5 }, grpc.status.INVALID_ARGUMENT, 'temperature', /'temperature' must be <= 2/],
    [{ ...request, top_p: 0 }, grpc.status.INVALID_ARGUMENT, 'top_p', /'top_p' must be > 0/],
    [{ ...request, stop: ['a', 'b', 'c', 'd', 'e'] }, grpc.status.INVALID_ARGUMENT, 'stop', /'stop' must be a string or an array of at most 4/],
    [{ ...request, logit_bias: { 99999: 1 } }, grpc.status.INVALID_ARGUMENT, 'logit_bias', /99999 is not a token id/],
    [{ model: MODEL, max_tokens: 3 }, grpc.status.INVALID_ARGUMENT, 'prompt', /must have required property 'prompt'/],
    [{ ...request, prompt: undefined, prompt_tokens: { ids: [] } }, grpc.status.INVALID_ARGUMENT, 'prompt', /'prompt' must be a string, an array of strings, an array of token ids/],
    [{ ...request, prompt: undefined, prompt_tokens: { ids: [1, 99999] } }, grpc.status.INVALID_ARGUMENT, 'prompt', /prompt token 99999 at index 1 is not a token id/],
    [{ ...request, prompt: 'word '.repeat(3000) }, grpc.status.INVALID_ARGUMENT, 'prompt', /maximum context length is \d+ tokens; the prompt has \d+ tokens/],
    [{ ...request, model: 'gpt-9' }, grpc.status.NOT_FOUND, 'model', /the model 'gpt-9' does not exist; this server serves 'tiny.gguf'/],
  ];
  for (const [req, code, param, message] of cases) {
    for (const call of [() => unary('Generate', req), () => streamAll(req)]) {
      const e = await call().then(() => null, (err: grpc.ServiceError) => err);
      assert.ok(e, `${JSON.stringify(req).slice(0, 80)} was refused`);
      assert.equal(e.code, code, e.details);
      assert.match(e.details, message);
      assert.deepEqual(e.metadata.get('inferjit-param'), param === null ? [] : [param]);
    }
  }
  const ok = await unary('Generate', { ...request, max_tokens: 2 });
  assert.equal(ok.usage.completion_tokens, 2, 'the server keeps serving');
});

test('cancelling a stream mid-way frees its sequence and KV blocks', async () => {
  const aborted = () => metric(url, 'vllm:request_success_total{model_name="tiny.gguf",finished_reason="abort"}');
  const before = await aborted();
  const call = client.GenerateStream({ ...request, max_tokens: LONG });
  let seen = 0;
  let held = 0;
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    call.on('data', () => { if (++seen === 3) { held = server.scheduler!.kvUsage; call.cancel(); } });
    call.on('error', () => undefined);
    call.on('status', resolve);
  });
  assert.ok(held > 0, 'the sequence held blocks while it ran');
  assert.equal(status.code, grpc.status.CANCELLED);
  await drained();
  assert.equal(server.scheduler!.kvUsage, 0, 'every block is back');
  assert.equal(await metric(url, 'vllm:num_requests_running'), 0);
  assert.equal(await aborted(), before + 1, 'the sequence ended as aborted');
  assert.ok(await metric(url, 'vllm:generation_tokens_total') > 0);
});

test('a passed deadline is DEADLINE_EXCEEDED and frees the sequence', async () => {
  // 8 choices of most of the context: far more work than the deadline allows on any machine.
  const long = { ...request, max_tokens: LONG, n: 8 };
  for (const call of [
    (deadline: number) => unary('Generate', long, { deadline }),
    (deadline: number) => streamAll(long, { deadline }),
  ]) {
    const e = await call(Date.now() + 200).then(() => null, (err: grpc.ServiceError) => err);
    assert.ok(e, 'the call failed');
    assert.equal(e.code, grpc.status.DEADLINE_EXCEEDED, e.details);
    await drained();
    assert.equal(server.scheduler!.kvUsage, 0, 'every block is back');
  }
  const ok = await unary('Generate', { ...request, max_tokens: 2 });
  assert.equal(ok.usage.completion_tokens, 2, 'the server keeps serving');
});
