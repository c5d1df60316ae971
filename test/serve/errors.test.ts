// Bad requests get a 4xx in OpenAI's error shape naming the parameter, and the server stays up.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, MODEL, postJson } from './serve-fixtures.js';

const { server, url } = await startServer();
after(() => server.close());
const completions = `${url}/v1/completions`;

async function expectError(body: unknown, status: number, param: string | null, message: RegExp, path = completions): Promise<void> {
  const r = await postJson(path, body);
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(typeof r.json.error, 'object', 'OpenAI error shape');
  assert.equal(r.json.error.param, param);
  assert.equal(typeof r.json.error.type, 'string');
  assert.match(r.json.error.message, message);
}

test('malformed JSON', async () => {
  await expectError('{"model": "tiny.gguf", "prompt": ', 400, null, /not valid JSON/);
});

test('fields of the wrong type are refused, not coerced', async () => {
  await expectError({ model: MODEL, prompt: 'hi', max_tokens: '8' }, 400, 'max_tokens', /'max_tokens' must be integer/);
  await expectError({ model: MODEL, prompt: 'hi', stream: 'yes' }, 400, 'stream', /'stream' must be boolean/);
  await expectError({ model: MODEL, prompt: 42 }, 400, 'prompt', /'prompt' must be a string, an array of strings/);
  await expectError({ model: MODEL, prompt: 'hi', stop: 3 }, 400, 'stop', /'stop' must be a string or an array/);
  await expectError({ model: MODEL }, 400, 'prompt', /must have required property 'prompt'/);
  await expectError({ model: MODEL, messages: [{ role: 'robot', content: 'x' }] }, 400, 'messages.0.role', /must be equal to one of the allowed values/, `${url}/v1/chat/completions`);
});

test('out-of-range parameters name the parameter', async () => {
  await expectError({ model: MODEL, prompt: 'hi', temperature: 5 }, 400, 'temperature', /must be <= 2/);
  await expectError({ model: MODEL, prompt: 'hi', top_p: 0 }, 400, 'top_p', /must be > 0/);
  await expectError({ model: MODEL, prompt: 'hi', n: 0 }, 400, 'n', /must be >= 1/);
  await expectError({ model: MODEL, prompt: 'hi', max_tokens: 0 }, 400, 'max_tokens', /must be >= 1/);
  await expectError({ model: MODEL, prompt: 'hi', presence_penalty: -3 }, 400, 'presence_penalty', /must be >= -2/);
  await expectError({ model: MODEL, prompt: 'hi', seed: -1 }, 400, 'seed', /must be >= 0/);
  await expectError({ model: MODEL, prompt: 'hi', logit_bias: { 5: 500 } }, 400, 'logit_bias.5', /must be <= 100/);
  await expectError({ model: MODEL, prompt: 'hi', logit_bias: { 99999: 1 } }, 400, 'logit_bias', /99999 is not a token id/);
  await expectError({ model: MODEL, prompt: [1, 99999] }, 400, 'prompt', /99999 at index 1 is not a token id/);
});

test('unsupported parameters are refused by name, not ignored', async () => {
  await expectError({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], top_logprobs: 2 }, 400, 'top_logprobs', /'top_logprobs' needs 'logprobs': true/, `${url}/v1/chat/completions`);
  await expectError({ model: MODEL, prompt: 'hi', logprobs: 21 }, 400, 'logprobs', /must be <= 20/);
  await expectError({ model: MODEL, prompt: 'hi', echo: true }, 400, 'echo', /'echo' is not supported/);
});

test('unknown model', async () => {
  await expectError({ model: 'gpt-4', prompt: 'hi' }, 404, 'model', /the model 'gpt-4' does not exist; this server serves 'tiny.gguf'/);
});

test('a prompt longer than the context, or a budget past it', async () => {
  const long = Array.from({ length: 600 }, () => 5);
  await expectError({ model: MODEL, prompt: long }, 400, 'prompt', /maximum context length is 512 tokens; the prompt has 600 tokens/);
  await expectError({ model: MODEL, prompt: [5, 6, 7], max_tokens: 510 }, 400, 'max_tokens', /you asked for 513 \(3 in the prompt, 510 for the completion\)/);
});

test('the server is still up and serving after all of that', async () => {
  assert.equal((await fetch(`${url}/health`)).status, 200);
  const r = await postJson(completions, { model: MODEL, prompt: 'hi', max_tokens: 4, ignore_eos: true });
  assert.equal(r.status, 200);
  assert.equal(r.json.usage.completion_tokens, 4);
  const unknown = await fetch(`${url}/v2/nothing`);
  assert.equal(unknown.status, 404);
});
