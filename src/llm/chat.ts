// Chat: a model's Jinja chat template (GGUF tokenizer.chat_template, or tokenizer_config.json's
// chat_template) rendered with @huggingface/jinja — the same engine transformers.js uses, not a
// hand-written subset — with the variables Hugging Face's apply_chat_template passes (messages,
// add_generation_prompt, bos_token, eos_token, ...), then tokenized and generated with generate().
import { Template } from '@huggingface/jinja';
import { type Tokenizer } from './tokenizer/index.js';
import { type StepEngine } from './step-engine.js';
import { generate, type GenerateOptions, type Generation, GENERATE_OPTION_NAMES } from './generate.js';
import { checkOptionNames } from './errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export interface ChatTemplateOptions {
  /** The Jinja template (default: the tokenizer's chatTemplate, read from the model file). */
  template?: string;
  /** End the prompt with the assistant turn's header so the model answers (default true). */
  addGenerationPrompt?: boolean;
  /** Extra template variables (e.g. tools, date_string); they override the defaults. */
  variables?: Record<string, unknown>;
}

export interface ChatOptions extends GenerateOptions, ChatTemplateOptions {}

const CHAT_ONLY_OPTIONS = ['template', 'addGenerationPrompt', 'variables'] as const;

/** Renders `template` for `messages` with the variables Hugging Face passes. */
export function renderChatTemplate(template: string, messages: readonly ChatMessage[], variables: Record<string, unknown> = {}): string {
  if (!Array.isArray(messages)) throw new TypeError('chat: messages must be an array of { role, content }');
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new TypeError(`chat: messages[${i}] is ${JSON.stringify(m)}; each message needs a string role and a string content`);
    }
  });
  let compiled: Template;
  try {
    compiled = new Template(template);
  } catch (e) {
    throw new SyntaxError(`chat: the chat template does not parse as Jinja: ${(e as Error).message}`);
  }
  try {
    // raise_exception() (templates refusing e.g. roles that do not alternate) is built into @huggingface/jinja.
    return compiled.render({
      add_generation_prompt: true,
      ...variables,
      messages: messages.map((m) => ({ ...m })),
    });
  } catch (e) {
    throw new Error(`chat: rendering the chat template failed: ${(e as Error).message}`);
  }
}

/** The template variables for a tokenizer: its BOS/EOS/UNK/PAD texts, as Hugging Face passes them. */
export function specialTokenVariables(tokenizer: Tokenizer): Record<string, string> {
  const vars: Record<string, string> = {};
  const set = (name: string, id: number | null): void => { if (id !== null) vars[name] = tokenizer.tokens[id]; };
  set('bos_token', tokenizer.bosId);
  set('eos_token', tokenizer.eosId);
  set('unk_token', tokenizer.unkId);
  set('pad_token', tokenizer.padId);
  return vars;
}

const NO_TEMPLATE = 'the model has no chat template (no tokenizer.chat_template in the GGUF file, no chat_template in ' +
  'tokenizer_config.json); pass one: chat(engine, tokenizer, messages, { template: "{% for m in messages %}..." }) ' +
  'or --chat-template <file> in examples/llm/generate.ts';

/** The prompt text for a conversation: the template rendered with the tokenizer's special tokens. */
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
  const template = options.template ?? tokenizer.chatTemplate;
  if (template === undefined || template === null) throw new TypeError(`chat: ${NO_TEMPLATE}`);
  if (typeof template !== 'string') throw new TypeError(`chat: template must be a string, got ${typeof template}`);
  return renderChatTemplate(template, messages, {
    ...specialTokenVariables(tokenizer),
    add_generation_prompt: options.addGenerationPrompt ?? true,
    ...options.variables,
  });
}

/**
 * Token ids for a rendered chat prompt. The template's own special tokens (<|im_start|>, [INST], ...)
 * are parsed as tokens; BOS is added only when the tokenizer adds one and the template did not already
 * write it (Llama 3, Mistral and Gemma templates start with bos_token: a second BOS degrades output).
 */
export function encodeChatPrompt(tokenizer: Tokenizer, prompt: string, addBos?: boolean): number[] {
  const ids = tokenizer.encode(prompt, { addBos: false, parseSpecial: true });
  const wantBos = addBos ?? tokenizer.addBos;
  if (wantBos && tokenizer.bosId !== null && ids[0] !== tokenizer.bosId) ids.unshift(tokenizer.bosId);
  return ids;
}

/** Renders the conversation with the model's chat template and generates the assistant's reply. */
export function chat(engine: StepEngine, tokenizer: Tokenizer, messages: readonly ChatMessage[], options: ChatOptions = {}): Generation {
  checkOptionNames('chat', options, [...GENERATE_OPTION_NAMES, ...CHAT_ONLY_OPTIONS]);
  const { template, addGenerationPrompt, variables, ...generateOptions } = options;
  const prompt = applyChatTemplate(tokenizer, messages, { template, addGenerationPrompt, variables });
  const ids = encodeChatPrompt(tokenizer, prompt, generateOptions.addBos);
  delete generateOptions.addBos; // decided above; generate() gets ids
  return generate(engine, tokenizer, ids, generateOptions);
}
