// The server over PagedServeEngine (the compiled decoder, one batched ragged step per scheduler
// iteration, run off the JS thread), on a real server on loopback: concurrent different prompts
// give each prompt's greedy tokens alone; a repeated prefix is served from the prefix cache (counted
// in the metrics, output unchanged); preemption on a tiny pool re-admits and finishes with the solo
// output; log-probabilities come from the step's logits; chat uses the model file's own template.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startServer, MODEL, postJson, metric, greedyText, greedyIds, modelFile } from './serve-fixtures.js';
import { writeTinyLlamaGguf } from '../llm/llama-fixtures.js';
import { createServer, type PagedServeEngine } from '../../src/serve/index.js';
import { applyChatTemplate, encodeChatPrompt, loadCausalLM } from '../../src/llm/index.js';

const PROMPTS = ['the quick brown fox', 'hello world', 'tokenizers split text into pieces', 'a b c d e f g'];
const complete = (url: string, body: Record<string, unknown>) => postJson(`${url}/v1/completions`, { model: MODEL, temperature: 0, ignore_eos: true, ...body });

test('4 concurrent different prompts: each gets its greedy text alone, in shared batched steps off the JS thread', async () => {
  const { server, url } = await startServer();
  try {
    const N = 16;
    const results = await Promise.all(PROMPTS.map((prompt) => complete(url, { prompt, max_tokens: N })));
    for (let i = 0; i < PROMPTS.length; i++) {
      assert.equal(results[i].status, 200, JSON.stringify(results[i].json));
      assert.equal(results[i].json.choices[0].text, await greedyText(PROMPTS[i], N), PROMPTS[i]);
    }
    const stats = (server.scheduler!.engine as PagedServeEngine).runner.stats;
    assert.ok(stats.steps < PROMPTS.length * N, `${stats.steps} steps for ${PROMPTS.length * N} tokens: sequences shared steps`);
    assert.ok(stats.asyncSteps > 0 && stats.asyncSteps >= stats.steps - stats.buckets.size, `steps ran off the JS thread (${stats.asyncSteps} of ${stats.steps})`);
  } finally {
    await server.close();
  }
});

test('a repeated prefix is served from the prefix cache: hits counted, output unchanged', async () => {
  const { server, url } = await startServer({ engine: { threads: 1, blockSize: 4 } });
  try {
    const system = 'tokenizers split text into pieces and the quick brown fox jumps over the lazy dog';
    const first = await complete(url, { prompt: `${system} hello`, max_tokens: 8 });
    assert.equal(await metric(url, 'vllm:prefix_cache_hits_total'), 0, 'a cold cache has no hits');
    const queriesBefore = await metric(url, 'vllm:prefix_cache_queries_total');
    const second = await complete(url, { prompt: `${system} world`, max_tokens: 8 });
    const hits = await metric(url, 'vllm:prefix_cache_hits_total');
    assert.ok(hits >= 8 && hits % 4 === 0, `whole blocks of the shared prefix hit (${hits} tokens)`);
    assert.ok(await metric(url, 'vllm:prefix_cache_queries_total') > queriesBefore);
    assert.equal(first.json.choices[0].text, await greedyText(`${system} hello`, 8));
    assert.equal(second.json.choices[0].text, await greedyText(`${system} world`, 8), 'the cached prefix gives the same tokens');
    assert.equal(await metric(url, 'vllm:gpu_cache_usage_perc'), 0, 'cached blocks nobody uses count as free');
  } finally {
    await server.close();
  }
});

test('preemption on a tiny pool: the preempted requests are re-admitted and finish with their solo output', async () => {
  // 8 blocks of 4 positions: three sequences of ~20-30 positions cannot all hold their KV at once.
  const { server, url } = await startServer({ engine: { threads: 1, cacheTokens: 32, blockSize: 4 }, scheduler: { maxBatchedTokens: 8 } });
  try {
    const prompts = PROMPTS.slice(0, 3);
    const results = await Promise.all(prompts.map((prompt) => complete(url, { prompt, max_tokens: 14 })));
    for (let i = 0; i < prompts.length; i++) {
      assert.equal(results[i].status, 200, JSON.stringify(results[i].json));
      assert.equal(results[i].json.choices[0].text, await greedyText(prompts[i], 14), prompts[i]);
      assert.equal(results[i].json.usage.completion_tokens, 14);
    }
    assert.ok(await metric(url, 'vllm:num_preemptions_total') > 0, 'the tiny pool forced preemptions');
    assert.equal(await metric(url, 'vllm:gpu_cache_usage_perc'), 0);
  } finally {
    await server.close();
  }
});

test('logprobs and top_logprobs come from the step logits (completions, chat, streaming)', async () => {
  const { server, url } = await startServer({ chatTemplate: (ms) => `${ms.map((m) => `${m.role}: ${m.content}`).join('\n')}\nassistant:` });
  try {
    const r = await complete(url, { prompt: 'the quick brown', max_tokens: 6, logprobs: 3 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const lp = r.json.choices[0].logprobs;
    assert.equal(lp.tokens.length, 6);
    assert.equal(lp.tokens.join(''), r.json.choices[0].text);
    assert.equal(lp.text_offset[0], 0);
    for (let i = 0; i < 6; i++) {
      assert.ok(lp.token_logprobs[i] <= 0 && Number.isFinite(lp.token_logprobs[i]));
      const top = Object.entries(lp.top_logprobs[i]) as [string, number][];
      assert.ok(top.length >= 1 && top.length <= 3);
      // greedy: the chosen token is the most likely one
      assert.equal(Math.max(...top.map(([, v]) => v)), lp.token_logprobs[i]);
      assert.ok(top.reduce((s, [, v]) => s + Math.exp(v), 0) <= 1 + 1e-9, 'probabilities of the top tokens sum to at most 1');
    }
    // the logprobs do not change the tokens
    assert.equal(r.json.choices[0].text, await greedyText('the quick brown', 6));

    const chat = await postJson(`${url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0, ignore_eos: true, logprobs: true, top_logprobs: 2 });
    assert.equal(chat.status, 200, JSON.stringify(chat.json));
    const content = chat.json.choices[0].logprobs.content;
    assert.equal(content.length, 4);
    for (const c of content) {
      assert.equal(typeof c.token, 'string');
      assert.ok(Array.isArray(c.bytes));
      assert.equal(c.top_logprobs.length, 2);
      assert.equal(c.top_logprobs[0].logprob, c.logprob);
      assert.ok(c.top_logprobs[1].logprob <= c.logprob);
    }
    const noLogprobs = await postJson(`${url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    assert.equal(noLogprobs.json.choices[0].logprobs, null);

    const raw = await (await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'the quick brown', max_tokens: 6, temperature: 0, ignore_eos: true, logprobs: 3, stream: true }),
    })).text();
    const chunks = raw.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)));
    const streamed = chunks.flatMap((c) => c.choices[0].logprobs?.token_logprobs ?? []);
    assert.deepEqual(streamed, lp.token_logprobs, 'streamed logprobs equal the non-streamed ones');
  } finally {
    await server.close();
  }
});

test('chat uses the chat template from the model file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-chat-'));
  try {
    const file = path.join(dir, 'chat.gguf');
    const template = '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}';
    // The same seed as the shared fixture: the same weights and vocabulary, plus a template.
    writeTinyLlamaGguf(file, { seed: 11, metadata: { 'tokenizer.chat_template': template } });
    const server = createServer({ model: file, engine: { threads: 1 } });
    const url = await server.listen(0);
    await server.ready;
    try {
      const messages = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'the quick brown' }];
      const r = await postJson(`${url}/v1/chat/completions`, { model: 'chat.gguf', messages, max_tokens: 8, temperature: 0, ignore_eos: true });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const tokenizer = loadCausalLM(modelFile, { compile: false }).tokenizer!;
      const ids = encodeChatPrompt(tokenizer, applyChatTemplate(tokenizer, messages, { template }));
      assert.equal(ids.filter((t) => t === tokenizer.bosId).length, 1, 'one BOS: the template wrote it');
      assert.equal(r.json.usage.prompt_tokens, ids.length);
      assert.equal(r.json.choices[0].message.content, tokenizer.decode(await greedyIds(ids, 8), { stripDummyPrefix: false }));
      const t = await postJson(`${url}/tokenize`, { messages });
      assert.deepEqual(t.json.tokens, ids);
    } finally {
      await server.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
