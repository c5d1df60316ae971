// The official `openai` npm client against the real server on loopback, unchanged: completions and
// chat, streaming and not, models; /health, /tokenize, /detokenize.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, MODEL, greedyText, postJson, modelFile } from './serve-fixtures.js';
import { createServer, loadServedModel } from '../../src/serve/index.js';

// A template given to the server (the tiny model file has none; test/serve/paged-serving.test.ts covers the file's own).
const chatTemplate = (messages: { role: string; content: string }[]) => `${messages.map((m) => `${m.role}: ${m.content}`).join('\n')}\nassistant:`;
const { server, url } = await startServer({ chatTemplate });
after(() => server.close());
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });

test('completions: non-streaming greedy text equals generate() run alone', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'the quick brown', max_tokens: 12, temperature: 0, ignore_eos: true } as any);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text, await greedyText('the quick brown', 12));
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage?.completion_tokens, 12);
  assert.ok(r.usage!.prompt_tokens > 0);
  assert.equal(r.usage?.total_tokens, r.usage!.prompt_tokens + 12);
});

test('completions: streaming chunks concatenate to the same text, usage last, then [DONE]', async () => {
  const stream = await client.completions.create({ model: MODEL, prompt: 'the quick brown', max_tokens: 12, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } } as any);
  let text = '', finish = null as string | null, usage = null as any, chunks = 0;
  for await (const c of stream as any) {
    chunks++;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) { text += ch.text; if (ch.finish_reason) finish = ch.finish_reason; }
  }
  assert.ok(chunks > 2);
  assert.equal(text, await greedyText('the quick brown', 12));
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
  // The raw stream ends with data: [DONE].
  const raw = await (await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'hi', max_tokens: 3, stream: true }) })).text();
  assert.match(raw, /data: \[DONE\]\n\n$/);
});

test('completions: n, seed, stop, and several prompts', async () => {
  const a = await client.completions.create({ model: MODEL, prompt: 'the quick brown', max_tokens: 8, temperature: 1, seed: 7, n: 3 });
  const b = await client.completions.create({ model: MODEL, prompt: 'the quick brown', max_tokens: 8, temperature: 1, seed: 7, n: 3 });
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text), 'the same seed reproduces every choice');
  const full = await greedyText('the quick brown', 16);
  const stop = full.slice(4, 7);
  const cut = full.indexOf(stop);
  const s = await client.completions.create({ model: MODEL, prompt: 'the quick brown', max_tokens: 16, temperature: 0, stop: [stop], ignore_eos: true } as any);
  assert.equal(s.choices[0].text, full.slice(0, cut));
  assert.equal(s.choices[0].finish_reason, 'stop');
  const multi = await client.completions.create({ model: MODEL, prompt: ['the quick brown', 'hello'], max_tokens: 5, temperature: 0, ignore_eos: true } as any);
  assert.equal(multi.choices.length, 2);
  assert.equal(multi.choices[1].text, await greedyText('hello', 5));
});

test('chat: non-streaming and streaming through the template', async () => {
  const messages = [{ role: 'user' as const, content: 'the quick brown' }];
  const r = await client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: 10, temperature: 0, ignore_eos: true } as any);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, await greedyText(chatTemplate(messages), 10));
  const stream = await client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: 10, temperature: 0, ignore_eos: true, stream: true } as any);
  let text = '', role = '';
  for await (const c of stream as any) { role ||= c.choices[0]?.delta?.role ?? ''; text += c.choices[0]?.delta?.content ?? ''; }
  assert.equal(role, 'assistant');
  assert.equal(text, r.choices[0].message.content);
});

test('models, tokenize and detokenize', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
  const t = await postJson(`${url}/tokenize`, { prompt: 'hello world' });
  assert.equal(t.status, 200);
  assert.equal(t.json.count, t.json.tokens.length);
  const d = await postJson(`${url}/detokenize`, { tokens: t.json.tokens });
  assert.equal(d.json.prompt, 'hello world');
});

test('/health answers 503 while the model loads, 200 after; chat without a template is a 400', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const s = createServer({ model: async () => { await gate; return loadServedModel(modelFile, { threads: 1 }); } });
  const u = await s.listen(0);
  try {
    const before = await fetch(`${u}/health`);
    assert.equal(before.status, 503);
    assert.equal(((await before.json()) as { status: string }).status, 'loading');
    const early = await postJson(`${u}/v1/completions`, { model: MODEL, prompt: 'hi' });
    assert.equal(early.status, 503);
    assert.match(early.json.error.message, /still loading/);
    release();
    await s.ready;
    assert.equal((await fetch(`${u}/health`)).status, 200);
    const chat = await postJson(`${u}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(chat.status, 400);
    assert.equal(chat.json.error.param, 'messages');
    assert.match(chat.json.error.message, /has no chat template/);
  } finally {
    await s.close();
  }
});
