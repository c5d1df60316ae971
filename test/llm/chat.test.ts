// Chat templates: the public Llama 3, ChatML (Qwen 2), Mistral and Gemma templates rendered with
// @huggingface/jinja for a two-turn conversation must give exactly the prompt text those models were
// trained on; chat() on a GGUF file carrying tokenizer.chat_template generates from that prompt with
// one BOS; a model without a template gets an error saying how to pass one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGguf } from '../../src/io/gguf/index.js';
import {
  loadPagedLlama, chat, applyChatTemplate, renderChatTemplate, encodeChatPrompt, greedyTokens, tokenizerFromGguf,
  tokenizerFromHuggingFace, type ChatMessage,
} from '../../src/llm/index.js';
import { writeTinyLlamaGguf } from './llama-fixtures.js';

// The templates as published in each model's tokenizer_config.json (Jinja source; "\n" inside Jinja
// string literals is Jinja's escape, hence String.raw).
const LLAMA3 = String.raw`{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}`;
const CHATML_QWEN2 = String.raw`{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`;
const MISTRAL = String.raw`{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}`;
const GEMMA = String.raw`{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}`;

const CONVERSATION: ChatMessage[] = [
  { role: 'user', content: 'Hello!' },
  { role: 'assistant', content: 'Hi there. ' },
  { role: 'user', content: 'What is 2+2?' },
];

test('Llama 3 template: bos once, header/eot per turn, content trimmed, assistant header at the end', () => {
  const out = renderChatTemplate(LLAMA3, CONVERSATION, { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', add_generation_prompt: true });
  assert.equal(out,
    '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>' +
    '<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\n');
  const noPrompt = renderChatTemplate(LLAMA3, CONVERSATION, { bos_token: '<|begin_of_text|>', add_generation_prompt: false });
  assert.ok(noPrompt.endsWith('What is 2+2?<|eot_id|>'));
});

test('ChatML (Qwen 2) template: default system turn, im_start/im_end per turn', () => {
  const out = renderChatTemplate(CHATML_QWEN2, CONVERSATION, { add_generation_prompt: true });
  assert.equal(out,
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
    '<|im_start|>user\nHello!<|im_end|>\n' +
    '<|im_start|>assistant\nHi there. <|im_end|>\n' +
    '<|im_start|>user\nWhat is 2+2?<|im_end|>\n' +
    '<|im_start|>assistant\n');
  const withSystem = renderChatTemplate(CHATML_QWEN2, [{ role: 'system', content: 'Be brief.' }, CONVERSATION[0]], { add_generation_prompt: false });
  assert.equal(withSystem, '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n');
});

test('Mistral template: [INST] turns, eos after the assistant, raise_exception on non-alternating roles', () => {
  const out = renderChatTemplate(MISTRAL, CONVERSATION, { bos_token: '<s>', eos_token: '</s>', add_generation_prompt: true });
  assert.equal(out, '<s>[INST] Hello! [/INST]Hi there. </s>[INST] What is 2+2? [/INST]');
  assert.throws(() => renderChatTemplate(MISTRAL, [CONVERSATION[0], CONVERSATION[0]], { bos_token: '<s>', eos_token: '</s>' }),
    /rendering the chat template failed: .*Conversation roles must alternate/);
});

test('Gemma template: model role, start/end_of_turn, trims content, refuses a system message', () => {
  const out = renderChatTemplate(GEMMA, CONVERSATION, { bos_token: '<bos>', eos_token: '<eos>', add_generation_prompt: true });
  assert.equal(out,
    '<bos><start_of_turn>user\nHello!<end_of_turn>\n' +
    '<start_of_turn>model\nHi there.<end_of_turn>\n' +
    '<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n' +
    '<start_of_turn>model\n');
  assert.throws(() => renderChatTemplate(GEMMA, [{ role: 'system', content: 'x' }], { bos_token: '<bos>' }), /System role not supported/);
});

test('bad messages and bad templates get specific errors', () => {
  assert.throws(() => renderChatTemplate(CHATML_QWEN2, [{ role: 'user' } as unknown as ChatMessage]), /messages\[0\] is .*string role and a string content/);
  assert.throws(() => renderChatTemplate('{% for m in messages %}', CONVERSATION), /chat template/);
});

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-chat-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

// A template for the tiny SentencePiece vocabulary: starts with bos_token, as Llama/Mistral/Gemma's do.
const TINY_TEMPLATE = String.raw`{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ '\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}`;

test('chat() on a GGUF with tokenizer.chat_template: one BOS, greedy reply equals greedy decoding of the rendered prompt', async () => {
  const file = path.join(dir, 'chat.gguf');
  writeTinyLlamaGguf(file, { seed: 5, metadata: { 'tokenizer.chat_template': TINY_TEMPLATE } });
  const tokenizer = tokenizerFromGguf(readGguf(file));
  assert.equal(tokenizer.chatTemplate, TINY_TEMPLATE);
  const messages: ChatMessage[] = [{ role: 'system', content: 'the quick brown fox' }, { role: 'user', content: 'jumps over the lazy dog' }];
  const prompt = applyChatTemplate(tokenizer, messages);
  assert.equal(prompt, '<s>system: the quick brown fox\nuser: jumps over the lazy dog\nassistant:');
  const ids = encodeChatPrompt(tokenizer, prompt);
  assert.equal(ids[0], tokenizer.bosId);
  assert.equal(ids.filter((id) => id === tokenizer.bosId).length, 1, 'the template wrote BOS; no second one is added');
  assert.deepEqual(ids.slice(1), tokenizer.encode(prompt.slice(3), { addBos: false }));

  const { engine } = loadPagedLlama(file, { maxContext: 128 });
  const run = chat(engine, tokenizer, messages, { maxTokens: 8, ignoreEos: true });
  let text = '';
  for await (const c of run) text += c.text;
  const s = run.stats!;
  assert.equal(s.promptTokens, ids.length);
  assert.deepEqual(s.tokens, await greedyTokens(engine, ids, 8));
  assert.equal(text, tokenizer.decode(s.tokens, { stripDummyPrefix: false }));

  // A template without bos_token: chat() adds the tokenizer's BOS (add_bos_token is set) exactly once.
  const plain = String.raw`{% for m in messages %}{{ m['content'] }}{% endfor %}`;
  const s2 = await chat(engine, tokenizer, messages.slice(1), { template: plain, maxTokens: 3, ignoreEos: true }).complete();
  assert.deepEqual(s2.tokens, await greedyTokens(engine, tokenizer.encode('jumps over the lazy dog'), 3));
  assert.throws(() => chat(engine, tokenizer, messages, { tempalte: 'x' } as never), /tempalte/);
});

test('a model without a chat template: the error says how to pass one', () => {
  const file = path.join(dir, 'plain.gguf');
  writeTinyLlamaGguf(file, { seed: 6, layers: 1 });
  const tokenizer = tokenizerFromGguf(readGguf(file));
  assert.equal(tokenizer.chatTemplate, undefined);
  assert.throws(() => applyChatTemplate(tokenizer, CONVERSATION), /no chat template .*tokenizer\.chat_template.*\{ template: /);
});

test('tokenizer_config.json next to tokenizer.json supplies the chat template and the BOS/EOS rules', () => {
  const hf = path.join(dir, 'hf');
  fs.mkdirSync(hf, { recursive: true });
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (const c of ['▁', 'h', 'i', '▁h', '▁hi']) vocab[c] = Object.keys(vocab).length;
  fs.writeFileSync(path.join(hf, 'tokenizer.json'), JSON.stringify({
    added_tokens: [{ id: 0, content: '<unk>', special: true }, { id: 1, content: '<s>', special: true }, { id: 2, content: '</s>', special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] },
    model: { type: 'BPE', unk_token: '<unk>', byte_fallback: true, vocab, merges: ['▁ h', '▁h i'] },
  }));
  fs.writeFileSync(path.join(hf, 'tokenizer_config.json'), JSON.stringify({
    add_bos_token: true, add_eos_token: true, bos_token: { content: '<s>' }, eos_token: '</s>', chat_template: MISTRAL,
  }));
  const tok = tokenizerFromHuggingFace(path.join(hf, 'tokenizer.json'));
  assert.equal(tok.chatTemplate, MISTRAL);
  assert.deepEqual(tok.encode('hi'), [1, vocab['▁hi'], 2]);
  assert.equal(applyChatTemplate(tok, CONVERSATION.slice(0, 1)), '<s>[INST] Hello! [/INST]');
  // The rendered prompt starts with <s>: it is not doubled.
  assert.deepEqual(encodeChatPrompt(tok, '<s>hi').filter((id) => id === 1).length, 1);

  // Without chat_template in the config, a chat_template.jinja file beside tokenizer.json is used.
  fs.writeFileSync(path.join(hf, 'tokenizer_config.json'), JSON.stringify({ add_bos_token: false, eos_token: '</s>' }));
  fs.writeFileSync(path.join(hf, 'chat_template.jinja'), GEMMA);
  const tok2 = tokenizerFromHuggingFace(path.join(hf, 'tokenizer.json'));
  assert.equal(tok2.chatTemplate, GEMMA);
  assert.deepEqual(tok2.encode('hi'), [vocab['▁hi']], 'add_bos_token: false in the config wins over the post-processor');
});
